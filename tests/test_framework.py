"""The probe framework: every cube matches its declared schema, the store, a user-defined probe end
to end (CLI, kill -9 and resume, probe-all, plot, entry point), the registry-driven docs, and no
import cycles in the package."""
from __future__ import annotations

import ast
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from conftest import SMALL
from twoclocks import TwoclocksError
from twoclocks.cli import app
from twoclocks.probes.registry import all_probes, get_probe, load_probe
from twoclocks.schema import SchemaError
from twoclocks.store import open_cube

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "custom_probe.py"
runner = CliRunner()


def _copy(run, tmp_path, name="run"):
    dst = tmp_path / name
    shutil.copytree(run, dst)
    shutil.rmtree(dst / "probes", ignore_errors=True)
    return dst


def _without_time(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.load()
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != "created_at"}
    return ds


# ------------------------------------------------------------------------------------- schemas
def test_every_cube_matches_its_schema(tiny_run, tiny_gpt_run, tmp_path):
    """Each built-in probe's cube on a real run: every variable and coordinate declared, with the
    declared dims, dtype and units (the writer stamps them; this re-checks what is on disk)."""
    dit, gpt = _copy(tiny_run, tmp_path, "dit"), _copy(tiny_gpt_run, tmp_path, "gpt")
    seen = set()
    for probe in all_probes():
        run = dit if probe.applies_to("dit") else gpt
        for need in getattr(probe, "needs", ()):
            get_probe(need)(run, progress=False, device="cpu", steps="0:20")
        kw = {} if probe.kind == "derived" else dict(progress=False, device="cpu", steps="0:20")
        probe(run, **kw, **SMALL.get(probe.name, {}))
        ds = open_cube(run / "probes" / f"{probe.cube}.zarr")
        probe.schema.check(ds)
        for name, spec in {**probe.schema.coords, **probe.schema.data_vars}.items():
            if name in ds.variables and spec.units is not None:
                assert ds[name].attrs.get("units") == spec.units, (probe.name, name)
        assert json.loads(ds.attrs["probe_params"]) is not None and ds.attrs["twoclocks_version"]
        assert "run_config" in ds.attrs and "source_steps" in ds.attrs
        seen.add(probe.name)
    assert {"samples", "markov", "dsm-spectrum", "ce"} <= seen


def test_schema_check_fails_on_undeclared_or_other_units():
    schema = get_probe("ce").schema
    ds = schema.example({"step": 2, "split": 3, "position": 4})
    schema.check(ds)
    with pytest.raises(SchemaError, match="undeclared variable 'extra'"):
        schema.check(ds.assign(extra=("step", [1.0, 2.0])))
    bad = ds.copy()
    bad["ce"].attrs["units"] = "bits"
    with pytest.raises(SchemaError, match="units 'bits'"):
        schema.check(bad)
    with pytest.raises(SchemaError, match="dims"):
        schema.check(ds.assign(ce_mean=(("split", "step"), ds.ce_mean.values.T)))


def test_a_probe_writing_an_undeclared_variable_is_refused(tiny_run, tmp_path, monkeypatch):
    run = _copy(tiny_run, tmp_path)
    probe = load_probe(f"{EXAMPLE}:PROBE")
    real = probe.compute
    monkeypatch.setattr(probe, "compute", lambda *a: real(*a).assign(stray=("step", [1.0])))
    with pytest.raises(SchemaError, match="stray"):
        probe(run, progress=False, device="cpu", steps="0:2", n_items=4)


def test_docs_cubes_md_is_generated_from_the_registry():
    from twoclocks.probes.registry import markdown
    on_disk = (ROOT / "docs" / "cubes.md").read_text()
    assert on_disk == markdown(), "docs/cubes.md is stale: python -m twoclocks.probes > docs/cubes.md"


# ------------------------------------------------------------------------------------- the store
def test_store_chunks_many_steps_and_opens_old_format(tmp_path):
    from twoclocks.store import write_dataset
    steps = np.arange(300)
    ds = xr.Dataset({"a": (("step", "seed"), np.random.default_rng(0).random((300, 64)))}, coords={"step": steps})
    write_dataset(ds, tmp_path / "new.zarr")
    files = [p for p in (tmp_path / "new.zarr").rglob("*") if p.is_file()]
    assert len(files) < 12  # metadata and one chunk of 300 steps (not one per step)
    back = open_cube(tmp_path / "new.zarr")
    assert back["a"].encoding["chunks"] == (300, 64)
    xr.testing.assert_identical(back.load(), ds)
    ds.to_zarr(tmp_path / "old.zarr", zarr_format=2, consolidated=True)  # as twoclocks < 0.2 wrote them
    xr.testing.assert_identical(open_cube(tmp_path / "old.zarr").load(), ds)


def test_options_define_the_cube(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    probe = load_probe(f"{EXAMPLE}:PROBE")
    probe(run, progress=False, device="cpu", steps="0:3", n_items=4)
    with pytest.raises(TwoclocksError, match="other options.*n_items.*--force"):
        probe(run, progress=False, device="cpu", n_items=5)
    probe(run, progress=False, device="cpu", n_items=5, force=True, steps="0:1")
    assert not (run / "probes" / ".denoise_norm.parts").exists()  # pieces compacted away
    with pytest.raises(TwoclocksError, match="must be an integer"):
        probe(run, n_items="many")


# ------------------------------------------------------------------------------------- a user probe
def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "twoclocks.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT.parent) + os.pathsep +
            os.environ.get("PYTHONPATH", "")}


def kill_and_resume(cmd: list, cube: Path, seed: int) -> tuple[xr.Dataset, xr.Dataset, float]:
    """Run ``cmd`` uninterrupted (timed), then on a fresh copy kill -9 it at a random moment within that
    time and run it again: returns both cubes and the kill time."""
    env = _env()
    t0 = time.monotonic()
    full = subprocess.run(cmd[0], capture_output=True, text=True, env=env, timeout=600)
    assert full.returncode == 0, full.stderr
    duration = time.monotonic() - t0
    ref = _without_time(open_cube(cube[0]))
    at = random.Random(seed).uniform(0.3, 1.0) * duration
    p = subprocess.Popen(cmd[1], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(at)
    p.send_signal(signal.SIGKILL)
    p.wait()
    again = subprocess.run(cmd[1], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    return ref, _without_time(open_cube(cube[1])), at


def _kill_case(run_a, run_b, name, opts, seed):
    cmd = [[sys.executable, "-m", "twoclocks.cli", name, str(r), "--device", "cpu", "--quiet", *opts]
           for r in (run_a, run_b)]
    cube = get_probe(name).cube if ":" not in name else "denoise_norm"
    return kill_and_resume(cmd, [r / "probes" / f"{cube}.zarr" for r in (run_a, run_b)], seed)


@pytest.mark.parametrize("family", ["samples", "dsm-spectrum", "ce", "custom"])
def test_kill9_at_a_random_moment_then_rerun_equals_uninterrupted(family, tiny_run, tiny_gpt_run, tmp_path):
    src = tiny_gpt_run if family == "ce" else tiny_run
    a, b = _copy(src, tmp_path, "a"), _copy(src, tmp_path, "b")
    opts = {"samples": [], "dsm-spectrum": ["--n-sigma", "6", "--n-subset", "16"], "ce": ["--n", "16"],
            "custom": ["-o", "n_items=16"]}[family]
    if family == "custom":
        cmd = [[sys.executable, "-m", "twoclocks.cli", "probe", f"{EXAMPLE}:PROBE", str(r), "--device", "cpu",
                "--quiet", *opts] for r in (a, b)]
        ref, got, at = kill_and_resume(cmd, [r / "probes" / "denoise_norm.zarr" for r in (a, b)], 3)
    else:
        ref, got, at = _kill_case(a, b, family, opts, {"samples": 0, "dsm-spectrum": 1, "ce": 2}[family])
    for k in ("run_dir",):
        ref.attrs.pop(k, None), got.attrs.pop(k, None)
    xr.testing.assert_identical(got, ref)
    assert not any(p.name.endswith(".parts") for p in (b / "probes").iterdir())


def test_custom_probe_with_probe_all_plot_and_reference(tiny_run, tmp_path):
    from twoclocks.sweep import probe_all
    run = _copy(tiny_run, tmp_path)
    r = runner.invoke(app, ["probe", f"{EXAMPLE}:PROBE", str(run), "-o", "n_items=8", "--steps", "0:6",
                            "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "mean ||D(y; s) - y||" in r.output
    ds = open_cube(run / "probes" / "denoise_norm.zarr")
    assert ds["step"].values.tolist() == [0, 1, 2, 3, 6]
    assert ds["displacement"].attrs["units"] == "model-space units"
    # on the ideal-cube reference, D = tanh(y / s^2) in closed form: the displacement is known exactly
    import torch
    from twoclocks.probes.driver import Context
    from twoclocks.run import open_run
    probe = load_probe(f"{EXAMPLE}:PROBE")
    ref = probe(run, denoiser="ideal-cube", progress=False, n_items=8)
    assert ref["step"].values.tolist() == [-1]
    ctx = Context(open_run(run), probe.make_options(n_items=8), torch.device("cpu"))
    rows = probe.setup(ctx)
    expect = (torch.tanh(rows.y / rows.s[:, None] ** 2) - rows.y).norm(dim=1).numpy().reshape(rows.shape).mean(1)
    np.testing.assert_allclose(ref["displacement"].values[0], expect, rtol=1e-5)
    r = runner.invoke(app, ["plot", str(run), "--probe", f"{EXAMPLE}:PROBE"])
    assert r.exit_code == 0 and (run / "figures" / "denoise_norm.png").exists(), r.output
    # probe-all over a one-run sweep, in process (debug executor)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    shutil.copytree(run, sweep / "only")
    from twoclocks.sweep.spec import spec_from_options
    from twoclocks.sweep.state import write_sweep
    spec = spec_from_options(None, base=["model='tiny'"])
    write_sweep(sweep, spec, [{"name": "only", "point": {}, "overrides": json.loads(
        (run / "config.json").read_text())["config"]}])
    rep = probe_all(sweep, {f"{EXAMPLE}:PROBE": {"n_items": 8, "steps": "0:10"}}, executor="debug",
                    progress=False)
    assert [o["state"] for o in rep["outcomes"]] == ["done"], rep
    assert open_cube(sweep / "only" / "probes" / "denoise_norm.zarr")["step"].values.tolist() == [0, 1, 2, 3, 6, 10]


def test_entry_point_registers_a_probe(tmp_path, monkeypatch):
    """An installed package's `twoclocks.probes` entry point makes its probe a registered one."""
    from twoclocks.probes import registry
    pkg = tmp_path / "site"
    (pkg / "myprobes").mkdir(parents=True)
    shutil.copy(EXAMPLE, pkg / "myprobes" / "custom.py")
    (pkg / "myprobes" / "__init__.py").write_text("")
    dist = pkg / "myprobes-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myprobes\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[twoclocks.probes]\ndenoise-norm = myprobes.custom:PROBE\n")
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setattr(registry, "_LOADED", False)
    monkeypatch.setattr(registry, "_REGISTRY", {})
    names = [p.name for p in registry.all_probes()]
    assert names[:4] == ["samples", "markov", "dsm-spectrum", "ce"] and "denoise-norm" in names
    assert registry.get_probe("denoise-norm").cube == "denoise_norm"


# ------------------------------------------------------------------------------------- structure
def _module_imports(path: Path, pkg_root: Path) -> set[str]:
    """Modules of the package that ``path`` imports at module level (not inside functions)."""
    tree = ast.parse(path.read_text())
    mod = "twoclocks." + ".".join(path.relative_to(pkg_root).with_suffix("").parts).replace(".__init__", "")
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("twoclocks"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("twoclocks"))
    return {m for m in out if m != mod}


def test_no_module_level_import_cycle():
    files = [p for p in ROOT.rglob("*.py") if not any(part in ("tests", "benchmarks", "examples", "build")
                                                      or part.startswith(".") for part in p.relative_to(ROOT).parts)]
    name = {p: "twoclocks." + ".".join(p.relative_to(ROOT).with_suffix("").parts).replace(".__init__", "")
            for p in files}
    name = {p: (n[:-len(".__init__")] if n.endswith(".__init__") else n) for p, n in name.items()}
    mods = set(name.values())
    graph = {}
    for p in files:  # `from a.b import c`: the module a.b.c if it is one, else a.b
        deps = _module_imports(p, ROOT)
        graph[name[p]] = {m for m in deps if m in mods and not any(d.startswith(m + ".") and d in mods for d in deps)}
        graph[name[p]].discard(name[p])
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m)


# ------------------------------------------------------------------------------------- one threshold policy
@pytest.mark.parametrize("mem_adaptive", [None, False, True])
def test_plot_and_clocks_agree_on_tau_mem(tiny_run, tmp_path, mem_adaptive):
    """A designed samples cube whose memorization passes the fixed 0.1 at step 300 and the adaptive
    threshold (the run's baseline N/|support| = 32/2^8 = 0.125: 0.2125) at step 400: the clocks table and
    the figure give the same tau_mem for every threshold choice, and the default is the same for both."""
    from twoclocks.plotting.load import run_clock_values
    from twoclocks.probes.clocks import compute_clocks
    from twoclocks.store import write_dataset
    run = _copy(tiny_run, tmp_path)
    steps = np.array([0, 100, 200, 300, 400, 600, 1000, 1500, 2000, 3000])
    mem = np.array([0, 0, 0.05, 0.2, 0.25, 0.3, 0.5, 0.6, 0.7, 0.8])
    ds = get_probe("samples").schema.example({"step": len(steps), "seed": 4, "cell": 16, "eps": 2, "subset": 3,
                                              "state_label": 4})
    ds = ds.assign_coords(step=steps).assign(sample_mem=("step", mem), sample_acc=("step", np.full(10, 0.95)),
                                             uniform_valid_sample_mem=0.125, support_sample_mem=0.125)
    write_dataset(ds, run / "probes" / "samples.zarr")
    table = compute_clocks([run], mem_adaptive=mem_adaptive)
    figure = run_clock_values(ds, mem_adaptive)
    assert float(table["tau_mem"][0]) == figure["tau_mem"]
    assert figure["tau_mem"] == (300 if mem_adaptive is False else 400)


def test_readme_command_table_is_generated_from_the_commands():
    from twoclocks.cli import commands_markdown
    text = (ROOT / "README.md").read_text()
    start = text.index("-->", text.index("<!-- commands:start")) + 4
    end = text.index("<!-- commands:end -->")
    assert text[start:end] == commands_markdown(), "README command table is stale: regenerate it"
