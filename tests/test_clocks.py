"""The two clocks: sustained onsets on synthetic curves, statuses, power-law fits across runs."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from twoclocks import TwoclocksError
from twoclocks.probes.clocks import (clocks_from_curves, compute_clocks, fit_power_law, format_clocks_table,
                                     mem_threshold_for, sustained_onset)

STEPS = np.arange(0, 1000, 4)


def step_curve(onset, lo=0.0, hi=1.0, steps=STEPS):
    return np.where(steps >= onset, hi, lo).astype(float)


# ------------------------------------------------------------------------------ one run
def test_transient_spikes_do_not_count():
    acc = step_curve(400)
    acc[10] = 0.95                       # one-evaluation spike
    acc[20:22] = 0.99                    # two-evaluation spike: still shorter than k = 3
    assert sustained_onset(STEPS, acc, 0.9, k=3) == (400.0, "reached")
    assert sustained_onset(STEPS, acc, 0.9, k=1) == (float(STEPS[10]), "reached")
    assert sustained_onset(STEPS, acc, 0.9, k=2) == (float(STEPS[20]), "reached")


def test_threshold_never_reached_and_pending():
    tau, status = sustained_onset(STEPS, np.full(len(STEPS), 0.5), 0.9)
    assert np.isnan(tau) and status == "never"
    v = np.zeros(len(STEPS))
    v[-2:] = 1.0                          # above only at the last 2 < k evaluations
    tau, status = sustained_onset(STEPS, v, 0.9, k=3)
    assert np.isnan(tau) and status.startswith("pending") and "2 of 3" in status
    v[:] = np.nan                         # NaN counts as below
    assert sustained_onset(STEPS, v, 0.9)[1] == "never"


def test_inclusive_accuracy_strict_memorization():
    flat = np.full(len(STEPS), 0.1)
    assert sustained_onset(STEPS, flat, 0.1)[0] == 0.0
    assert np.isnan(sustained_onset(STEPS, flat, 0.1, strict=True)[0])


def test_clocks_window_and_discarded_tau_rule():
    c = clocks_from_curves(STEPS, step_curve(200), step_curve(600, 0.0, 0.5))
    assert (c["tau_rule"], c["tau_mem"], c["window"]) == (200.0, 600.0, 400.0)
    assert c["tau_rule_status"] == c["tau_mem_status"] == "reached" and c["window_status"] == "open"

    c = clocks_from_curves(STEPS, step_curve(800), step_curve(600, 0.0, 0.5))   # tau_rule > tau_mem
    assert np.isnan(c["tau_rule"]) and c["tau_rule_raw"] == 800.0 and c["tau_mem"] == 600.0
    assert c["tau_rule_status"] == "discarded: after tau_mem" and np.isnan(c["window"])
    assert c["window_status"].startswith("none")

    c = clocks_from_curves(STEPS, step_curve(200), np.zeros(len(STEPS)))        # tau_mem never
    assert c["tau_rule"] == 200.0 and np.isnan(c["tau_mem"]) and c["tau_mem_status"] == "never"
    assert c["window_status"].startswith("open-ended")

    order = np.random.default_rng(0).permutation(len(STEPS))                     # unsorted input
    c2 = clocks_from_curves(STEPS[order], step_curve(200)[order], step_curve(600, 0, .5)[order])
    assert (c2["tau_rule"], c2["tau_mem"]) == (200.0, 600.0)


def test_adaptive_memorization_threshold():
    b = 0.25
    assert mem_threshold_for(b, 0.1, adaptive=True) == pytest.approx(0.325)
    assert mem_threshold_for(0.0, 0.1, adaptive=True) == 0.1
    assert mem_threshold_for(np.nan, 0.1, adaptive=True) == 0.1
    mem = step_curve(104, 0.0, 0.3) + step_curve(704, 0.0, 0.3)    # 0.3 after rule learning, 0.6 after 704
    acc = step_curve(104)
    fixed = clocks_from_curves(STEPS, acc, mem, baseline=b, mem_adaptive=False)   # adaptive is the default
    adaptive = clocks_from_curves(STEPS, acc, mem, baseline=b, mem_adaptive=True)
    assert fixed["tau_mem"] == 104.0 and "mem-adaptive" in fixed["notes"]
    assert adaptive["tau_mem"] == 704.0 and adaptive["mem_threshold"] == pytest.approx(0.325)


def test_power_law_fit_recovers_parameters():
    n = np.array([512, 1024, 2048, 4096, 8192, 16384])
    f = fit_power_law(n, 35.3 * n ** 1.14)
    assert f["c"] == pytest.approx(35.3) and f["alpha"] == pytest.approx(1.14) and f["r2"] == pytest.approx(1)
    assert f["n"] == 6
    noisy = 35.3 * n ** 1.14 * np.exp(np.random.default_rng(0).normal(0, 0.2, len(n)))
    g = fit_power_law(np.r_[n, 1000], np.r_[noisy, np.nan])          # NaN (never reached) is left out
    assert g["n"] == 6 and 0.8 < g["alpha"] < 1.5 and g["r2"] < 1
    assert np.isnan(fit_power_law([64, 64], [10, 20])["alpha"])


# ------------------------------------------------------------------------------ across runs
def make_run(path, n_train, group, tau_rule, tau_mem, dsm=None, seed=0):
    """A run directory (no training) with a synthetic samples.zarr whose clocks are known."""
    from twoclocks.store import write_dataset
    from twoclocks.training.config import TrainConfig
    from twoclocks.training.train import create_run
    create_run(path, TrainConfig(side=4, group=group, n_train=n_train, n_heldout=8, n_hypercube=8, n_noise=8,
                                 model="tiny", seed=seed, device="cpu"), set())
    ds = xr.Dataset({"sample_acc": ("step", step_curve(tau_rule)), "sample_mem": ("step", step_curve(tau_mem, 0, .5)),
                     "uniform_valid_sample_mem": ((), 0.01)}, coords={"step": STEPS})
    write_dataset(ds, path / "probes" / "samples.zarr")
    if dsm is not None:
        write_dataset(xr.Dataset({"tau_rule_loss": ((), dsm[0]), "tau_mem_loss": ((), dsm[1])}),
                      path / "probes" / "dsm_spectrum.zarr")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("clockruns")
    out = []
    for g in (2, 4):                   # G=2: tau_mem = 3 N; G=4: tau_mem = 24 N^0.5 (on the 4-step grid)
        for i, n in enumerate((4, 16, 64)):
            dsm = (50.0, 2.0 * n) if (g, n) == (2, 4) else None
            out.append(make_run(root / f"g{g}n{n}", n, g, 4 * g * g // 2, 24 * n ** 0.5 if g == 4 else 3 * n,
                                dsm=dsm, seed=i))
    return out


def test_compute_clocks_across_runs_and_fits(runs, tmp_path):
    ds = compute_clocks(runs, out=tmp_path / "clocks.zarr")
    assert ds.sizes["run"] == 6
    assert ds.n_train.values.tolist() == [4, 16, 64] * 2 and ds.group.values.tolist() == [2] * 3 + [4] * 3
    assert "rule" in ds.coords and "lr" in ds.coords
    np.testing.assert_array_equal(ds.tau_rule.values, [8] * 3 + [32] * 3)
    np.testing.assert_array_equal(ds.tau_mem.values, [12, 48, 192, 48, 96, 192])
    np.testing.assert_array_equal(ds.window.values, ds.tau_mem.values - ds.tau_rule.values)
    assert ds.sizes["fit"] == 2                                       # one fit per G (seeds differ: still grouped)
    f = ds.isel(fit=int(ds.fit_index.values[0]))
    assert f.fit_alpha.item() == pytest.approx(1.0) and f.fit_c.item() == pytest.approx(3.0)
    assert f.fit_n.item() == 3 and f.fit_label.item() == "group=2"
    f = ds.isel(fit=int(ds.fit_index.values[-1]))
    assert f.fit_alpha.item() == pytest.approx(0.5) and f.fit_c.item() == pytest.approx(24.0)
    assert ds.tau_rule_loss.values[0] == 50.0 and np.isnan(ds.tau_rule_loss.values[1:]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = xr.open_zarr(tmp_path / "clocks.zarr")
    assert back.tau_mem_status.values.tolist() == ["reached"] * 6
    table = format_clocks_table(ds)
    assert "tau_rule_loss" in table and "fit tau_mem = c N^alpha [group=2]" in table
    pooled = compute_clocks(runs, pool=("group",))
    assert pooled.sizes["fit"] == 1 and pooled.fit_n.item() == 6



def test_compute_clocks_with_a_further_clock(tmp_path):
    """clocks="valid-novel": tau_novel (accuracy >= 0.85 and valid-novel fraction >= 0.5, sustained 3
    evaluations) is stored as extra_tau over extra_clock, read back from the cube and printed."""
    from twoclocks.store import write_dataset
    paths = []
    for i, novel_on in enumerate((100, None)):            # the second run's valid-novel fraction stays at 0.3
        path = make_run(tmp_path / f"r{i}", 16, 2, 40, 600, seed=i)
        novel = step_curve(novel_on, 0.0, 0.8) if novel_on is not None else np.full(STEPS.size, 0.3)
        novel[STEPS == 104] = 0.1                         # one dip: the onset is sustained, not the first crossing
        ds = xr.open_zarr(path / "probes" / "samples.zarr").load()
        frac = np.stack([novel, 1 - novel], axis=1)
        ds = ds.assign(state_frac=(("step", "state_label"), frac)).assign_coords(state_label=["valid_novel", "other"])
        write_dataset(ds, path / "probes" / "samples.zarr")
        paths.append(path)
    ds = compute_clocks(paths, clocks="valid-novel", out=tmp_path / "clocks.zarr")
    assert ds["extra_clock"].values.tolist() == ["tau_novel"]
    assert ds["extra_tau"].dims == ("run", "extra_clock")
    want = [sustained_onset(STEPS, (step_curve(40) >= 0.85) & (step_curve(on, 0.0, 0.8) >= 0.5)
                            & (STEPS != 104), None, 3)[0] if on is not None else np.nan for on in (100, None)]
    assert want[0] == 108.0
    np.testing.assert_array_equal(ds["extra_tau"].sel(extra_clock="tau_novel").values, want)
    assert ds["extra_tau_status"].sel(extra_clock="tau_novel").values.tolist() == ["reached", "never"]
    np.testing.assert_array_equal(ds.tau_rule.values, [40, 40])
    back = xr.open_zarr(tmp_path / "clocks.zarr")
    np.testing.assert_array_equal(back["extra_tau"].sel(extra_clock="tau_novel").values, want)
    assert back["extra_tau"].attrs["units"] == "steps"
    head, first, second = format_clocks_table(ds).splitlines()[:3]
    col = head.split().index("tau_novel")
    assert first.split()[col] == "108" and second.split()[col] == "-"

def test_clocks_errors(runs, tmp_path):
    from twoclocks.training.config import TrainConfig
    from twoclocks.training.train import create_run
    bare = tmp_path / "bare"
    create_run(bare, TrainConfig(side=4, group=2, n_train=8, n_heldout=8, n_hypercube=8, n_noise=8,
                                 model="tiny"), set())
    with pytest.raises(TwoclocksError, match=f"twoclocks-probe samples {bare}"):
        compute_clocks([runs[0], bare])
    with pytest.raises(TwoclocksError, match="--pool"):
        compute_clocks(runs, pool=("nonsense",))
    from twoclocks.cli import app
    res = CliRunner().invoke(app, ["clocks", str(runs[0]), str(bare)])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and str(bare) in res.output
    res = CliRunner().invoke(app, ["clocks", *map(str, runs[:3]), "--k", "2", "--mem-adaptive"])
    assert res.exit_code == 0, res.output
    assert "fit tau_mem" in res.output


def test_clocks_on_tiny_run_say_why_not(tiny_run, tmp_path):
    """A tiny run trained 60 steps does not learn the rule: the table says so instead of a number."""
    import shutil
    from twoclocks.probes.samples import run_samples
    run = tmp_path / "t"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("probes"))
    run_samples(run, steps="0,56,60", progress=False)
    ds = compute_clocks([run])
    assert np.isnan(ds.tau_rule.item()) and ds.tau_rule_status.item() == "never"
    assert "tau_rule never" in format_clocks_table(ds)
