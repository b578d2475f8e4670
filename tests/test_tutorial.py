"""examples/tutorial.ipynb: stored without outputs, and executed end to end (nbclient, kernel python3) in a
temporary working directory, where it trains its runs and writes ``tutorial_answer.json``; the answer is
checked against the runs it wrote, recomputed here."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"
CELL_TIMEOUT_S = 600


def test_tutorial_is_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install '.[test]')")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the tutorial has no code cells"
    assert all(c.outputs == [] and c.execution_count is None for c in code), \
        "commit examples/tutorial.ipynb without outputs (jupyter nbconvert --clear-output --inplace)"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.fixture
def python3_kernel(tmp_path, monkeypatch):
    """A ``python3`` kernelspec that runs this interpreter (so the kernel imports the same twoclocks),
    installed under tmp_path and put first on JUPYTER_PATH."""
    pytest.importorskip("nbclient", reason="nbclient is not installed (pip install '.[test]')")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install '.[test]')")
    from ipykernel.kernelspec import install
    prefix = tmp_path / "kernel"
    install(kernel_name="python3", prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")


def test_tutorial_executes_and_answers(tmp_path, python3_kernel, record_property):
    import nbformat
    from nbclient import NotebookClient
    from scipy.stats import ttest_ind

    from twoclocks.probes.clocks import compute_clocks

    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    t0 = time.time()
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(work)}}).execute()   # raises on a failing cell
    seconds = time.time() - t0
    record_property("notebook_seconds", round(seconds, 1))
    print(f"examples/tutorial.ipynb executed in {seconds:.1f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors

    # what the notebook wrote into its working directory
    answer = json.loads((work / "tutorial_answer.json").read_text())
    assert (work / "tutorial_clocks.png").stat().st_size > 10_000
    assert set(answer) >= {"question", "level", "runs", "conditions", "difference", "verdict"}
    runs = answer["runs"]
    assert len(runs) >= 4
    for r in runs:
        assert (work / r["run"] / "probes" / "samples.zarr").is_dir()

    # the per-run clocks, recomputed from the runs the notebook trained
    clocks = compute_clocks([work / r["run"] for r in runs], n_boot=0)
    for i, r in enumerate(runs):
        c = clocks.isel(run=i)
        assert r["weight_decay"] == float(c.weight_decay) and r["seed"] == int(c.seed)
        for name in ("tau_rule", "tau_mem", "window"):
            assert r[name] == pytest.approx(float(c[name]), nan_ok=True), (r["run"], name)
        if math.isfinite(r["window"]):
            # the window's bootstrap interval: both clocks reached and tau_rule <= tau_mem in every replicate
            assert 0 <= r["window_lo"] <= r["window_hi"] <= float(c.last_step)

    # per condition: mean and sd over the seeds with a window, as the seed summary
    conds = answer["conditions"]
    assert len(conds) == 2
    finite = {}
    for cond in conds:
        w = np.array([r["window"] for r in runs if r["weight_decay"] == cond["weight_decay"]], float)
        assert cond["n_seeds"] == len(w) >= 2
        finite[cond["weight_decay"]] = w = w[np.isfinite(w)]
        assert cond["window_n"] == len(w)
        assert cond["window_mean"] == pytest.approx(w.mean() if len(w) else np.nan, nan_ok=True)
        assert cond["window_sd"] == pytest.approx(w.std(ddof=1) if len(w) >= 2 else np.nan, nan_ok=True)

    # the difference of means (larger weight decay minus smaller) and its Welch interval at the level
    d = answer["difference"]
    lo_wd, hi_wd = sorted(finite)
    if min(len(w) for w in finite.values()) < 2:   # no interval: the notebook must say it cannot tell
        assert answer["verdict"].startswith("cannot tell") and not math.isfinite(d["lo"])
        return
    assert d["mean"] == pytest.approx(finite[hi_wd].mean() - finite[lo_wd].mean())
    res = ttest_ind(finite[hi_wd], finite[lo_wd], equal_var=False)
    ci = res.confidence_interval(confidence_level=answer["level"])
    assert (d["lo"], d["hi"], d["dof"]) == pytest.approx((ci.low, ci.high, res.df))
    assert d["lo"] < d["mean"] < d["hi"]

    # the verdict follows from the interval
    verdict = answer["verdict"]
    expected = "yes" if d["lo"] > 0 else "no" if d["hi"] < 0 else "cannot tell"
    assert verdict.startswith(expected), (verdict, d)
