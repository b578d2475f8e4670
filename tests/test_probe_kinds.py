"""The probe kinds: every Dataset a probe returns (written or not) carries exactly its schema's attrs."""
from __future__ import annotations

import os
import re
import shutil
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import twoclocks
from conftest import SMALL
from twoclocks import TwoclocksError
from twoclocks.cli import app
from twoclocks.landscape.basin import run_basin
from twoclocks.landscape.plane import run_plane
from twoclocks.probes.ce import ce_probe
from twoclocks.probes.clocks import compute_clocks
from twoclocks.probes.clocks_schema import CLOCKS_SCHEMA
from twoclocks.probes.dsm import run_dsm_spectrum
from twoclocks.probes.markov import compute_markov
from twoclocks.probes.registry import (DerivedProbe, Probe, all_probes, all_schemas, get_probe, load_probe,
                                       register)
from twoclocks.probes.samples import run_samples
from twoclocks.store import open_cube


def assert_schema_attrs(ds, schema, what):
    """Every array of ``ds`` has exactly the attrs its schema gives it (nothing more, nothing less)."""
    for name, var in ds.variables.items():
        want = schema.attrs_of(name)
        if want is None:
            assert name in ds.dims and name not in ds.coords, f"{what}: {name} is not declared"
            continue
        assert dict(var.attrs) == want, f"{what}: {name} has attrs {dict(var.attrs)}, schema {want}"


def test_every_returned_dataset_has_exactly_the_schema_attrs(tiny_run, tiny_gpt_run, tmp_path):
    dit, gpt = tmp_path / "dit", tmp_path / "gpt"
    for src, dst in ((tiny_run, dit), (tiny_gpt_run, gpt)):
        shutil.copytree(src, dst)
        shutil.rmtree(dst / "probes", ignore_errors=True)
    seen = set()
    for probe in all_probes():
        run = dit if probe.applies_to("dit") else gpt
        kw = {} if probe.kind == "derived" else dict(progress=False, device="cpu", steps="0:20")
        for _ in range(2):  # computed, then read back from the store
            assert_schema_attrs(probe(run, **kw, **SMALL.get(probe.name, {})), probe.schema, probe.name)
        seen.add(probe.name)
    assert {"samples", "markov", "dsm-spectrum", "ce", "plane", "basin"} <= seen
    assert_schema_attrs(compute_markov(dit, write=False), get_probe("markov").schema, "markov, not written")
    clocks = compute_clocks([dit], n_boot=5)  # not written
    assert_schema_attrs(clocks, CLOCKS_SCHEMA, "clocks")
    assert {"probe", "probe_params", "twoclocks_version", "created_at", "environment"} <= set(clocks.attrs)
    written = compute_clocks([dit], n_boot=0, out=tmp_path / "c.zarr")
    assert_schema_attrs(written, CLOCKS_SCHEMA, "clocks, written")


# ------------------------------------------------------------------------------------- kinds and registry
def test_kinds_builtin_flag_and_register():
    per_run = {p.name: p for p in all_probes()}
    assert isinstance(per_run["samples"], Probe) and isinstance(per_run["markov"], DerivedProbe)
    assert per_run["markov"].needs == ("samples",) and not per_run["markov"].cross_run
    everything = {p.name: p for p in all_probes(cross_run=True)}
    for name in ("clocks", "collect", "fit", "sensitivity"):  # across runs: declared, not per-run commands
        assert everything[name].cross_run and everything[name].builtin and name not in per_run
    assert all(p.builtin for p in everything.values() if p.name in SMALL or p.cross_run)
    assert {s.name for s in all_schemas()} >= {"samples", "markov", "clocks", "collect", "clock_fit", "sensitivity"}
    samples = get_probe("samples")
    mine = Probe(name="samples", cube="mine", help="x", options=samples.options, schema=samples.schema,
                 compute=lambda *a: None)
    with pytest.raises(TwoclocksError, match="built-in probe.*another name") as e:
        register(mine)
    assert "\n" not in str(e.value) and get_probe("samples") is samples
    try:
        assert register(mine, replace=True) is mine and get_probe("samples") is mine
    finally:
        register(samples, replace=True)
    assert get_probe("samples") is samples


def test_option_constraints_are_one_line_errors(tiny_run):

    runner = CliRunner()
    cases = [("samples", ["--eps", "0,0.1"], "--eps values must be > 0"),
             ("samples", ["--eps", "0.1,x"], "cannot parse probe samples: --eps"),
             ("samples", ["--eps-state", "-1"], "--eps-state must be > 0"),
             ("samples", ["--batch-size", "0"], "--batch-size must be >= 1"),
             ("dsm-spectrum", ["--n-sigma", "1"], "--n-sigma must be >= 2"),
             ("dsm-spectrum", ["--sigma-min", "5", "--sigma-max", "1"], "--sigma-min < --sigma-max"),
             ("plane", ["--grid", "2"], "--grid must be >= 3"),
             ("basin", ["--n-alpha", "1"], "--n-alpha must be >= 2"),
             ("markov", ["--k", "0"], "--k must be >= 1")]
    for name, args, message in cases:
        res = runner.invoke(app, [name, str(tiny_run), *args])
        assert res.exit_code == 2, (name, args, res.output)
        assert message in res.output and len(res.output.strip().splitlines()) == 1, (name, args, res.output)
    for name, kw, message in (("ce", {"n": 0}, "--n must be >= 1"),
                              ("basin", {"alpha_range": (0.5, 1.0)}, "lo < 0 <= hi")):
        with pytest.raises(TwoclocksError, match=message):
            get_probe(name).make_options(**kw)
    assert get_probe("samples").make_options(eps="0.2, 0.05").eps == (0.05, 0.1, 0.2)  # eps_state 0.1 joins


def test_markov_takes_the_common_quiet(tiny_run, tmp_path):

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    get_probe("samples")(run, progress=False, device="cpu", steps="0:20")
    res = CliRunner().invoke(app, ["markov", str(run), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and (run / "probes" / "markov.zarr").is_dir()


def test_a_probe_loaded_by_file_path_keeps_its_import_spec(tiny_run, tmp_path, monkeypatch):
    """load_probe makes a file path absolute; the cube names the spec; a job in another directory loads it."""

    example = Path(__file__).resolve().parents[1] / "examples" / "custom_probe.py"
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    monkeypatch.chdir(example.parent)
    probe = load_probe("custom_probe.py:PROBE")
    assert probe.source == f"{example}:PROBE" and not probe.builtin
    probe(run, progress=False, device="cpu", steps="0:1", n_items=4)
    assert open_cube(run / "probes" / "denoise_norm.zarr").attrs["probe_source"] == probe.source
    monkeypatch.chdir(tmp_path)
    assert load_probe(probe.source).name == "denoise-norm" and os.getcwd() == str(tmp_path)
    samples = get_probe("samples")(run, progress=False, device="cpu", steps="0")
    assert "probe_source" not in samples.attrs  # a built-in probe: its name says where its code is


def test_the_six_wrappers_are_deprecated(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    calls = [(run_samples, dict(steps="0:2")), (compute_markov, {}),
             (run_dsm_spectrum, dict(steps="0", n_sigma=3, n_subset=4)),
             (run_plane, dict(steps="0", grid=3, sigmas=(1.0,))), (run_basin, dict(steps="0", anchors=[0], n_alpha=3))]
    for fn, kw in calls:
        with pytest.warns(DeprecationWarning, match=r"removed in twoclocks 0\.4.*get_probe"):
            fn(run, **kw, **({} if fn is compute_markov else {"progress": False, "device": "cpu"}))
    with pytest.warns(DeprecationWarning, match="ce_probe"):
        with pytest.raises(Exception):  # a DiT run: refused after the warning
            ce_probe(run, progress=False)


def test_version_agrees_with_pyproject_and_changelog():

    root = Path(__file__).resolve().parents[1]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    assert twoclocks.__version__ == declared
    top = re.search(r"^## (\S+)", (root / "CHANGELOG.md").read_text(), re.M).group(1)
    assert top == declared, f"CHANGELOG's top section {top} is not the package version {declared}"
