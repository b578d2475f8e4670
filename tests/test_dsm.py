"""DSM spectrum probe: fixed rows, exact references, Monte-Carlo agreement, clocks, resumability, CLI."""
import shutil
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

import twoclocks.probes.dsm as dsm
from twoclocks import TwoclocksError
from twoclocks.cli import app
from twoclocks.ideal import memorizing_denoiser
from twoclocks.run import open_run

OPTS = dict(n_sigma=8, sigma_min=0.01, sigma_max=10.0, n_subset=64, batch_size=500)
CLI_OPTS = ["--n-sigma", "8", "--sigma-min", "0.01", "--sigma-max", "10", "--n-subset", "64", "--batch-size", "500"]
S = OPTS["n_sigma"]


@pytest.fixture(scope="module")
def dsm_run(tiny_run, tmp_path_factory):
    """A copy of the tiny run with its DSM spectrum computed once (8 sigmas, 64 rows per split: train has
    32 items, each with 2 noise draws)."""
    path = tmp_path_factory.mktemp("dsm") / "run"
    shutil.copytree(tiny_run, path)
    dsm.run_dsm_spectrum(path, progress=False, **OPTS)
    return path


def open_clean(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(path).load()


def test_cube_schema_grid_splits_sizes(dsm_run):
    run = open_run(dsm_run)
    ds = open_clean(run.probe_path("dsm_spectrum"))
    sig = np.exp(np.linspace(np.log(0.01), np.log(10.0), 8))  # the log grid the options ask for
    np.testing.assert_allclose(ds["sigma"].values, sig, rtol=1e-12)
    assert list(ds["split"].values) == ["train", "heldout", "hypercube"]
    assert list(ds["step"].values) == run.steps
    assert ds["loss"].dims == ("step", "split", "sigma")
    sizes = {s: min(64, len(run.cells(s))) for s in dsm.SPLITS}  # train has 32 < 64: all of it
    assert dict(zip(ds["split"].values, ds["subset_size"].values.tolist())) == sizes
    assert ds["noise_draws"].values.tolist() == [64 // sizes[s] for s in dsm.SPLITS] == [2, 1, 1]
    for i, s in enumerate(dsm.SPLITS):
        idx = ds["subset_index"].values[i]
        used = idx[:sizes[s]]
        assert len(set(used.tolist())) == sizes[s] and used.min() >= 0 and used.max() < len(run.cells(s))
        assert (idx[sizes[s]:] == -1).all()
    for v in ("loss", "loss_se", "loss_weighted", "reference_loss", "reference_loss_se", "gap", "rel_gap_mem"):
        assert np.isfinite(ds[v].values[..., -8:]).all(), v  # all finite where losses are not ~0
    for v in ("loss", "loss_se", "loss_weighted", "reference_loss", "gap"):
        assert np.isfinite(ds[v].values).all(), v
    w = (sig ** 2 + 0.25) / (sig * 0.5) ** 2
    np.testing.assert_allclose(ds["loss_weighted"].values, ds["loss"].values * w, rtol=1e-12)
    for name, v in ds.variables.items():
        if name not in ds.dims:
            assert "long_name" in v.attrs and "units" in v.attrs, name
    assert set(ds["reference"].values) == {"ideal-rule", "ideal-cube", "memorize"}
    assert np.isscalar(ds["tau_mem_loss"].values.item()) and len(ds.attrs["criterion_band_mem"]) == 2
    assert "run_config" in ds.attrs and ds.attrs["probe"] == "dsm_spectrum"


def test_fixed_rows_are_reproducible(dsm_run):
    run = open_run(dsm_run)
    a = dsm.make_rows(run, S, 0.01, 10.0, 64)
    b = dsm.make_rows(run, S, 0.01, 10.0, 64)
    assert torch.equal(a.y, b.y) and torch.equal(a.x, b.x) and a.y.shape[0] == 3 * 64 * S
    small = dsm.make_rows(run, S, 0.01, 10.0, 20)  # a smaller subset is a prefix, with the same noises
    np.testing.assert_array_equal(small.subsets["heldout"], a.subsets["heldout"][:20])
    off_a, off_s = 64 * S, 20 * S  # heldout rows start after the train rows
    assert torch.equal(small.y[off_s:off_s + 20 * S], a.y[off_a:off_a + 20 * S])
    ds = open_clean(run.probe_path("dsm_spectrum"))
    np.testing.assert_array_equal(ds["subset_index"].values[1, :64], a.subsets["heldout"])
    # y - x = s n: the same n for every split at a given (row, sigma); a train item's 2 draws differ
    n = ((a.y - a.x) / a.s[:, None]).reshape(3, 64, S, -1)
    assert torch.allclose(n[0], n[1], atol=1e-4) and torch.allclose(n[0], n[2], atol=1e-4)
    assert torch.equal(a.x[:32 * S], a.x[32 * S:64 * S]) and not torch.allclose(n[0, :32], n[0, 32:])


def test_rederive_rows_from_documented_seeds(dsm_run):
    """A user re-derives subsets and noises from the module docstring and gets the stored loss and SE."""
    run = open_run(dsm_run)
    ds = open_clean(run.probe_path("dsm_spectrum"))
    seed, sig, n_sub = run.config.data_seed, ds["sigma"].values, OPTS["n_subset"]
    P = run.x("train").shape[1]
    noise = np.random.default_rng([seed, 5, 1]).standard_normal((n_sub, S, P), dtype=np.float32)
    D = run.denoiser(run.steps[-1])
    for i, split in enumerate(dsm.SPLITS):
        x_all = run.x(split)
        idx = np.random.default_rng([seed, 5, 0, i]).permutation(len(x_all))[:n_sub]
        np.testing.assert_array_equal(ds["subset_index"].values[i, :len(idx)], idx)
        n, d = len(idx), max(1, n_sub // len(idx))
        j = np.arange(n * d)  # row j: item j % n, draw j // n
        x = torch.tensor(x_all[idx[j % n]])[:, None, :].expand(-1, S, -1)
        s32 = torch.tensor(sig, dtype=torch.float32)
        y = x + s32[None, :, None] * torch.tensor(noise[:n * d])
        with torch.no_grad():
            per_row = ((D(y.reshape(-1, P), s32.repeat(n * d)) - x.reshape(-1, P)) ** 2).mean(1)
        per_item = np.zeros((n, S))
        np.add.at(per_item, j % n, per_row.reshape(n * d, S).numpy() / d)
        L = ds.isel(step=-1).sel(split=split)
        np.testing.assert_allclose(L["loss"].values, per_item.mean(0), rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(L["loss_se"].values, per_item.std(0, ddof=1) / np.sqrt(n), rtol=1e-3, atol=1e-9)


def fresh_mc(D, x, sigmas, reps=2, seed=123):
    """Independent Monte Carlo: fresh noise, ``reps`` draws per item; mean and SE per sigma."""
    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(x)
    xx = x.repeat(reps, 1)
    means, ses = [], []
    for s in sigmas:
        y = xx + float(s) * torch.randn(xx.shape, generator=g)
        with torch.no_grad():
            per = ((D(y, torch.full((len(y),), float(s))).float() - xx) ** 2).mean(1)
        per_item = per.reshape(reps, len(x)).mean(0).double().numpy()
        means.append(per_item.mean())
        ses.append(per_item.std(ddof=1) / np.sqrt(len(x)))
    return np.array(means), np.array(ses)


@pytest.mark.parametrize("source", ["last", "ideal-rule", "memorize"])
def test_matches_independent_monte_carlo(dsm_run, source):
    run = open_run(dsm_run)
    ds = open_clean(run.probe_path("dsm_spectrum"))
    if source == "last":
        D, L, E = run.denoiser(run.steps[-1]), ds["loss"].isel(step=-1), ds["loss_se"].isel(step=-1)
    else:
        D, L, E = run.denoiser(source), ds["reference_loss"].sel(reference=source), \
            ds["reference_loss_se"].sel(reference=source)
    for i, split in enumerate(dsm.SPLITS):
        idx = ds["subset_index"].values[i]
        x = run.x(split)[idx[idx >= 0]]
        m, se = fresh_mc(D, x, ds["sigma"].values, seed=7 + i)
        a, sa = L.sel(split=split).values, E.sel(split=split).values
        tol = 4 * np.sqrt(sa ** 2 + se ** 2) + 1e-6
        assert (np.abs(a - m) <= tol).all(), (split, a, m, tol)
    # and the check is not trivially loose: the train losses span orders of magnitude over the grid
    assert L.sel(split="train").values[-1] > 100 * L.sel(split="train").values[0] + 0.5


def test_reference_physics(dsm_run):
    run = open_run(dsm_run)
    ds = open_clean(run.probe_path("dsm_spectrum"))
    R, E, sig = ds["reference_loss"], ds["reference_loss_se"], ds["sigma"].values
    mid = (sig > 0.4) & (sig < 1.5)
    # paired comparison on the very same rows: per-item difference of the two exact denoisers
    rows = dsm.make_rows(run, S, OPTS["sigma_min"], OPTS["sigma_max"], OPTS["n_subset"])
    per = {r: dsm.row_losses(run.denoiser(r), rows) for r in ("ideal-rule", "ideal-cube")}
    np.testing.assert_allclose(dsm.split_stats(rows, per["ideal-rule"])[0], R.sel(reference="ideal-rule").values,
                               rtol=1e-6, atol=1e-12)
    d, d_se = dsm.split_stats(rows, per["ideal-cube"] - per["ideal-rule"])
    he = dsm.SPLITS.index("heldout")
    assert (d[he, mid] > 4 * d_se[he, mid]).all()  # knowing the rule helps on valid held-out data
    rule, cube = R.sel(reference="ideal-rule", split="heldout"), R.sel(reference="ideal-cube", split="heldout")
    for r in (rule, cube):  # both go to 0 as sigma -> 0 (monotone over the small-sigma end)
        assert r.values[0] < 1e-6 and r.values[np.argmin(np.abs(sig - 1))] > 0.1
        assert np.all(np.diff(r.values[:6]) >= -1e-9)
    mem_tr, mem_he = R.sel(reference="memorize", split="train"), R.sel(reference="memorize", split="heldout")
    se_m = np.sqrt(E.sel(reference="memorize", split="train") ** 2 + E.sel(reference="memorize", split="heldout") ** 2)
    assert ((mem_he - mem_tr).values[mid] > 4 * se_m.values[mid]).all()  # the memorizer knows only train
    # the ideal-rule reference ignores the train set: hypercube (mostly invalid) data costs it most
    assert (R.sel(reference="ideal-rule", split="hypercube") > rule).values[mid].all()


def test_reference_denoiser_mode_matches_reference_dim(dsm_run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(dsm_run, path)
    ds = dsm.run_dsm_spectrum(path, denoiser="ideal-cube", progress=False, **OPTS)
    main = open_clean(open_run(path).probe_path("dsm_spectrum"))
    assert list(ds["step"].values) == [-1] and "reference" not in ds.dims
    np.testing.assert_allclose(ds["loss"].isel(step=0).values,
                               main["reference_loss"].sel(reference="ideal-cube").values, rtol=1e-6, atol=1e-9)
    assert np.isnan(float(ds["tau_mem_loss"])) and (open_run(path).probe_path("dsm_spectrum-ideal-cube")).exists()


def test_omitted_reference_is_named(dsm_run, monkeypatch):
    """A reference that does not exist for a run (TwoclocksError from run.denoiser) is left out and named."""
    from twoclocks import TwoclocksError
    run = open_run(dsm_run)
    real = run.denoiser

    def deny(source, *a, **k):
        if source == "ideal-rule":
            raise TwoclocksError("no exact ideal-rule denoiser here")
        return real(source, *a, **k)
    monkeypatch.setattr(run, "denoiser", deny)
    rows = dsm.make_rows(run, 4, 0.1, 2.0, 8)
    piece = dsm.reference_piece(run, rows, 64)
    assert list(piece["reference"].values) == ["ideal-cube", "memorize"]
    assert "ideal-rule" in piece.attrs["references_omitted"]


def test_memorizing_denoiser_exact_against_float64():
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 2, (3001, 16), generator=g).float() * 2 - 1
    y = torch.cat([X[:20] + 0.3 * torch.randn(20, 16, generator=g), torch.randn(20, 16, generator=g) * 3])
    s = torch.tensor([0.002, 0.05, 0.3, 1.0, 80.0]).repeat(8)
    Xd = X.double()
    logits = -((y.double()[:, None, :] - Xd[None]) ** 2).sum(-1) / (2 * s.double()[:, None] ** 2)
    ref = torch.softmax(logits, 1) @ Xd
    for chunk, max_elems in ((8192, 1 << 26), (700, 1 << 26), (8192, 40 * 333)):
        got = memorizing_denoiser(X, chunk=chunk, max_elems=max_elems)(y, s)
        assert (got.double() - ref).abs().max() < 2e-5, (chunk, max_elems)


def synthetic(steps, mem_from=None, rule_from=None, flicker=(), out_of_band=False):
    """A spectrum cube whose splits separate from chosen steps on (SE 0.01 everywhere)."""
    sig = np.geomspace(0.01, 50, 20)
    L = np.ones((len(steps), 3, 20)) * 0.5
    band = (sig > 0.05) & (sig < 0.15) if out_of_band else (sig > 0.5) & (sig < 1.5)
    for i, st in enumerate(steps):
        if (mem_from is not None and st >= mem_from) or st in flicker:
            L[i, 0, band] = 0.3  # train below held-out
        if rule_from is not None and st >= rule_from:
            L[i, 2, band] = 0.8  # hypercube above held-out
    return xr.Dataset({"loss": (("step", "split", "sigma"), L), "loss_se": (("step", "split", "sigma"), L * 0 + 0.01)},
                      coords={"step": steps, "split": list(dsm.SPLITS), "sigma": sig})


def test_loss_clocks_logic():
    steps = [0, 10, 20, 40, 80, 160, 320]
    d = dsm.add_derived(synthetic(steps, mem_from=80, rule_from=20, flicker=(10,)))
    assert float(d.tau_mem_loss) == 80 and float(d.tau_rule_loss) == 20
    assert d["separated_mem"].values.tolist() == [False, True, False, False, True, True, True]
    assert np.isnan(float(dsm.add_derived(synthetic(steps, mem_from=320)).tau_mem_loss))  # fewer than k left
    late = dsm.add_derived(synthetic(steps, mem_from=20, rule_from=80))
    assert np.isnan(float(late.tau_rule_loss)) and late.attrs["tau_rule_loss_raw_step"] == 80
    assert np.isnan(float(dsm.add_derived(synthetic(steps, mem_from=0, out_of_band=True)).tau_mem_loss))
    k1 = dsm.add_derived(synthetic(steps, mem_from=80, flicker=(10,)), dsm.LossClockCriterion(k=1))
    assert float(k1.tau_mem_loss) == 10
    noisy = synthetic(steps, mem_from=80)
    noisy["loss_se"] = noisy["loss_se"] * 10  # a gap of 0.2 is within 3 SE of 0.1 each: not separated
    assert np.isnan(float(dsm.add_derived(noisy).tau_mem_loss))


def test_untrained_network_splits_coincide(dsm_run):
    ds = open_clean(open_run(dsm_run).probe_path("dsm_spectrum"))
    d0 = ds.sel(step=0)
    assert not bool(d0["separated_mem"]) and not bool(d0["separated_rule"])
    # D = c_skip y at init: the loss has the closed form (1 - c)^2 + c^2 s^2 in expectation for |x_i| = 1
    s = ds["sigma"].values
    c = 0.25 / (s ** 2 + 0.25)
    expect = (1 - c) ** 2 + c ** 2 * s ** 2
    L, E = d0["loss"].values, d0["loss_se"].values
    assert (np.abs(L - expect) <= 4 * E + 1e-6).all()


def test_resume_computes_only_missing(dsm_run, tmp_path, monkeypatch):
    path = tmp_path / "run"
    shutil.copytree(dsm_run, path)
    shutil.rmtree(path / "probes")
    want = [0, 1, 2, 3]
    calls = []
    real = dsm.step_piece

    def failing(rows, per_row, step, sd):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(step)
        return real(rows, per_row, step, sd)
    monkeypatch.setattr(dsm, "step_piece", failing)
    with pytest.raises(KeyboardInterrupt):
        dsm.run_dsm_spectrum(path, steps="0:3", progress=False, **OPTS)
    part = open_clean(open_run(path).probe_path("dsm_spectrum"))  # a valid cube of the finished pieces
    assert list(part["step"].values) == calls and "reference_loss" in part
    done_first = list(calls)
    calls.clear()
    monkeypatch.setattr(dsm, "step_piece", lambda *a: calls.append(a[2]) or real(*a))
    ref_calls = []
    real_ref = dsm.reference_piece
    monkeypatch.setattr(dsm, "reference_piece", lambda *a: ref_calls.append(1) or real_ref(*a))
    ds = dsm.run_dsm_spectrum(path, steps="0:3", progress=False, **OPTS)
    assert sorted(calls) == [s for s in want if s not in done_first] and not ref_calls
    full = open_clean(open_run(dsm_run).probe_path("dsm_spectrum")).sel(step=want)
    assert list(ds["step"].values) == want
    np.testing.assert_allclose(ds["loss"].values, full["loss"].values, rtol=1e-6)
    np.testing.assert_allclose(ds["reference_loss"].values, full["reference_loss"].values, rtol=1e-6)
    calls.clear()
    dsm.run_dsm_spectrum(path, steps="0:3", progress=False, **OPTS)  # all stored: nothing is computed
    assert calls == [] and not ref_calls


def test_overlapped_loop_same_pieces(dsm_run, tmp_path):
    """The GPU path of the driver (prefetch the next checkpoint, write in a helper thread), run here on
    the CPU, gives the same cube as the in-line path."""
    path = tmp_path / "run"
    shutil.copytree(dsm_run, path)
    shutil.rmtree(path / "probes")
    got = dsm.PROBE(path, steps="2,3,6", progress=False, device="cpu", overlap=True, **OPTS)
    ref = open_clean(open_run(dsm_run).probe_path("dsm_spectrum")).sel(step=[2, 3, 6])
    np.testing.assert_allclose(got["loss"].values, ref["loss"].values, rtol=1e-6)


def test_cli_runs_and_bad_options(dsm_run):
    runner = CliRunner()
    before = open_clean(open_run(dsm_run).probe_path("dsm_spectrum"))
    r = runner.invoke(app, ["dsm-spectrum", str(dsm_run), "--quiet", *CLI_OPTS])
    assert r.exit_code == 0, r.output
    assert "tau_mem_loss" in r.stdout and "dsm_spectrum.zarr" in r.stdout
    bad = [["--n-sigma", "1"], ["--sigma-min", "0"], ["--sigma-min", "5", "--sigma-max", "1"], ["--n-subset", "1"],
           ["--batch-size", "0"], ["--denoiser", "nope"], ["--steps", "7777"],
           ["--steps", "3", "--denoiser", "memorize"], ["--device", "tpu"], ["--n-sigma", "9"]]  # the last: options differ from the stored cube, no --force
    for extra in bad:
        opts = dict(zip(CLI_OPTS[::2], CLI_OPTS[1::2]))
        opts.update(dict(zip(extra[::2], extra[1::2])))
        r = runner.invoke(app, ["dsm-spectrum", str(dsm_run), "--quiet", *[t for kv in opts.items() for t in kv]])
        assert r.exit_code == 2, (extra, r.output)
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, (extra, r.stderr)
    after = open_clean(open_run(dsm_run).probe_path("dsm_spectrum"))
    xr.testing.assert_allclose(before[["loss", "reference_loss"]], after[["loss", "reference_loss"]])


def test_api_rejects_bad_options(dsm_run):
    with pytest.raises(TwoclocksError, match="n-sigma"):
        dsm.run_dsm_spectrum(dsm_run, n_sigma=1.5)
