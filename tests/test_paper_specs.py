"""The paper's experiments as sweep specs (examples/paper/*.toml at the paper's scale, examples/paper/cpu/
at CPU scale): each passes `sweep --dry-run` through the CLI with as many runs as its header says, the
paper-scale ones also with `--executor slurm` (the sbatch script checked against the spec's [slurm]
table), and the GPU-hour estimate in each paper-scale header is what examples/paper/estimate_cost.py
computes."""
import importlib.util
import re
from pathlib import Path

import pytest
import tomllib
from twoclocks.cli import app
from typer.testing import CliRunner

runner = CliRunner()
PAPER = Path(__file__).resolve().parents[1] / "examples" / "paper"
PAPER_SPECS = sorted(PAPER.glob("*.toml"))
CPU_SPECS = sorted((PAPER / "cpu").glob("*.toml"))
ALL_SPECS = PAPER_SPECS + CPU_SPECS
SIZE = re.compile(r"^# Size: (\d+) runs?\b", re.MULTILINE)
COST = re.compile(r"^# Cost: ~([\d.,]+) GPU-hours \(estimate", re.MULTILINE)


def _id(p: Path) -> str:
    return str(p.relative_to(PAPER))


def header_runs(path: Path) -> int:
    m = SIZE.search(path.read_text())
    assert m, f"{path.name}: no '# Size: N runs' line in the header"
    return int(m.group(1))


def dry_run(path: Path, tmp_path: Path, *extra: str):
    res = runner.invoke(app, ["sweep", str(path), "--dir", str(tmp_path / path.stem), "--dry-run", "--quiet",
                              *extra])
    assert res.exit_code == 0, f"{path.name}: {res.output}"
    return res.output


def test_specs_exist():
    assert len(PAPER_SPECS) >= 10 and len(CPU_SPECS) >= 5
    names = {p.stem for p in PAPER_SPECS}
    for need in ("g_sweep", "n_sweep_dit_mini", "n_sweep_gpt_mini", "n_sweep_gpt_b", "model_size_dit", "lr_dit",
                 "wd_dit", "lr_gpt", "wd_gpt", "rules_exact_k", "rules_row_k", "latin_sudoku_scalar", "dit_vs_gpt"):
        assert need in names
    assert {"g_sweep", "n_sweep"} <= {p.stem for p in CPU_SPECS}


@pytest.mark.parametrize("path", ALL_SPECS, ids=_id)
def test_dry_run_grid_size(path, tmp_path):
    n = header_runs(path)
    out = dry_run(path, tmp_path)
    m = re.search(r"^(\d+) runs in .*: (\d+) new$", out, re.MULTILINE)
    assert m, out
    assert int(m.group(1)) == int(m.group(2)) == n, f"{path.name}: header says {n} runs, dry run: {m.group(0)}"
    assert not (tmp_path / path.stem).exists(), "a dry run must not write the sweep directory"


@pytest.mark.parametrize("path", ALL_SPECS, ids=_id)
def test_header(path):
    text = path.read_text()
    head = text.split("\n[", 1)[0]
    assert "paper" in head.lower() and re.search(r"(Figs?|Tables?)\.? ?\d", head), f"{path.name}: cite the figure/table"
    assert "twoclocks-probe sweep examples/paper/" in head and "collect" in head, f"{path.name}: give the commands"
    if path.parent.name == "cpu":
        assert "Expected:" in head, f"{path.name}: state the expected outcome"
    else:
        assert "Claim:" in head, f"{path.name}: state the paper's claim"


@pytest.mark.parametrize("path", PAPER_SPECS, ids=_id)
def test_slurm_script(path, tmp_path):
    spec = tomllib.loads(path.read_text())
    slurm = spec["slurm"]
    n = header_runs(path)
    out = dry_run(path, tmp_path, "--executor", "slurm")
    assert "# sbatch script that would be submitted:" in out
    script = out.split("# sbatch script that would be submitted:", 1)[1]
    cap = slurm.get("max_parallel", n)
    assert f"#SBATCH --array=0-{n - 1}%{cap}" in script
    assert f"#SBATCH --partition={slurm['partition']}" in script
    assert f"#SBATCH --time={slurm['time_min']}" in script
    assert f"#SBATCH --gpus-per-node={slurm.get('gpus_per_node', 1)}" in script
    assert "#SBATCH --requeue" in script and "#SBATCH --signal=USR2@" in script
    if "mem_gb" in slurm:
        assert f"#SBATCH --mem={slurm['mem_gb']}GB" in script
    assert "submitit.core._submit" in script


def _estimate_module():
    spec = importlib.util.spec_from_file_location("paper_estimate_cost", PAPER / "estimate_cost.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", PAPER_SPECS, ids=_id)
def test_cost_matches_estimate(path):
    m = COST.search(path.read_text())
    assert m, f"{path.name}: no '# Cost: ~X GPU-hours (estimate ...' line"
    runs, hours = _estimate_module().estimate(path)
    assert runs == header_runs(path)
    stated = float(m.group(1).replace(",", ""))
    assert stated == pytest.approx(hours, rel=0.06, abs=0.06), f"{path.name}: header {stated}, script {hours:.2f}"


def test_cross_run_figures():
    """The figures docs/reproducing.md shows, on a synthetic collect-like Dataset: tau_rule vs G with a
    censored clock, tau_mem vs N with a censored run (both fits), and which figures a sweep gets."""
    import numpy as np
    import xarray as xr
    from twoclocks.plotting.load import mem_fits, sweep_figures
    from twoclocks.plotting.sweep import plot_mem_vs_n, plot_rule_vs_group
    runs = [f"r{i}" for i in range(6)]
    ds = xr.Dataset({"tau_rule": ("run", [80.0, 220, np.nan, 90, 250, np.nan]),
                     "tau_rule_raw": ("run", [80.0, 220, np.nan, 90, 250, 3000]),
                     "tau_mem": ("run", [150.0, 200, 290, 700, 1600, np.nan]),
                     "last_step": ("run", [2000.0] * 6), "mem_threshold": ("run", [0.1] * 6)},
                    coords={"run": runs, "group": ("run", [2, 3, 4, 2, 3, 4]),
                            "n_train": ("run", [16, 32, 64, 128, 256, 512])})
    assert sweep_figures(ds) == ["rule_vs_group", "mem_vs_n", "memorization_collapse", "clock_scaling",
                                 "train_montage"]
    assert sweep_figures(ds.isel(run=[0, 1, 2]).assign_coords(n_train=("run", [64] * 3))) == ["rule_vs_group",
                                                                                             "train_montage"]
    for fig in (plot_rule_vs_group(ds), plot_mem_vs_n(ds, fits=mem_fits(ds))):
        assert fig.axes and fig.axes[0].get_yscale() == "log"
    labels = [t.get_text() for t in plot_mem_vs_n(ds, fits=mem_fits(ds)).legends[0].get_texts()]
    assert any("least squares" in t for t in labels)
    assert any("never memorized" in t for t in labels)
    assert any("censored ML" in t for t in labels)
