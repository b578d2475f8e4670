"""The samples probe: states, memorization and Hamming vs brute force, reference denoisers, resume."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from twoclocks import TwoclocksError
from twoclocks.data import BinaryEncoding, GroupParity, OneHotEncoding, RowLatin, ScalarEncoding
from twoclocks.data import bits as bitsmod
from twoclocks.data.bits import nn_hamming_packed, pack
from twoclocks.probes.memo import GroupIndex, TrainIndex
from twoclocks.probes.samples import STATES, SampleEvaluator, classify, parse_eps, run_samples


def brute_hamming(q, r):
    return (np.asarray(q)[:, None, :] != np.asarray(r)[None]).sum(2)


# ------------------------------------------------------------------------------ four states
def test_classify_truth_table():
    q = np.array([0.5, 0.5, 0.0, 0.0, 0.0, 0.1])
    valid = np.array([True, False, False, True, True, True])
    mem = np.array([True, False, True, False, True, True])
    assert classify(q, valid, mem, 0.1).tolist() == [0, 0, 1, 2, 3, 3]  # q == eps is not invalid


def test_states_and_metrics_on_hand_built_samples():
    rule, enc = GroupParity(2, 2, group=2), BinaryEncoding()
    train = np.array([[0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]], np.uint8)
    cells = np.array([[0, 0, 0, 0],   # made ambiguous below: q = 0.5 -> invalid value
                      [1, 0, 0, 0],   # odd first group -> rule error
                      [1, 1, 1, 1],   # valid, not in train, both groups seen at their positions
                      [1, 1, 0, 0]],  # a train sample -> memorized (q = 0.05 still counts as a value)
                     np.uint8)
    x = enc.encode(cells)
    x[0, 0] = 0.5          # decodes to 1: [1,0,0,0]
    x[3] *= 0.95
    ds = SampleEvaluator(rule, enc, train).evaluate(x, eps=(0.01, 0.2), eps_state=0.1)
    assert ds.state.values.tolist() == [0, 1, 2, 3]
    assert "flag_meanings" not in ds.state.attrs  # a piece: the schema's attrs come with the cube
    from twoclocks.probes.samples import SCHEMA
    assert SCHEMA.data_vars["state"].attrs()["flag_meanings"].split() == list(STATES)
    dec = np.array([[1, 0, 0, 0], *cells[1:]])
    assert np.array_equal(ds["sample"].values, dec)
    assert np.array_equal(ds.nn_hamming.values, brute_hamming(dec, train).min(1))
    np.testing.assert_allclose(ds.qdist.values, [0.5, 0, 0, 0.05], atol=1e-6)
    assert ds.invalid_frac.sel(eps=0.01).item() == 0.5 and ds.invalid_frac.sel(eps=0.2).item() == 0.25
    assert 0.1 in ds.eps.values                                   # the state threshold is always reported
    valid = (dec.reshape(4, 2, 2).sum(2) % 2 == 0)
    assert ds.group_acc.item() == valid.mean() and ds.sample_acc.item() == valid.all(1).mean()
    assert ds.sample_mem.item() == 0.25
    seen = [{tuple(t[2 * g:2 * g + 2]) for t in train} for g in range(2)]
    gm = np.array([[tuple(c[2 * g:2 * g + 2]) in seen[g] for g in range(2)] for c in dec])
    assert ds.group_mem.item() == gm.mean()
    assert ds.combinatorial_novelty.item() == 1.0
    assert ds.state_count.values.tolist() == [1, 1, 1, 1]
    assert ds.subset_count.values.tolist() == [4, 2, 1]
    assert ds.nn_hamming_mean.sel(subset="valid_novel").item() == ds.nn_hamming.values[2]


def test_categorical_rule_without_groups_reports_cell_hamming():
    rule = RowLatin(3)
    rng = np.random.default_rng(0)
    train = rule.sample(20, rng)
    q = rule.sample(30, rng)
    q[:5, 0] = (q[:5, 0] + 1) % 3                                   # some rule errors
    for enc in (OneHotEncoding(3), ScalarEncoding(3)):
        ds = SampleEvaluator(rule, enc, train).evaluate(enc.encode(q))
        assert np.array_equal(ds.nn_hamming.values, brute_hamming(q, train).min(1))   # cells, not bits
        assert np.isnan(ds.group_mem.item()) and np.isnan(ds.combinatorial_novelty.item())
        assert ds.sample_acc.item() == rule.is_valid(q).mean()
        assert set(ds.state.values[:5]) == {1}


# ------------------------------------------------------------------------------ memorization at scale
@pytest.mark.parametrize("d", [7, 36, 64, 100, 216, 300])
def test_train_index_against_brute_force(d, monkeypatch):
    rng = np.random.default_rng(d)
    r = rng.integers(0, 2, (1003, d)).astype(np.uint8)              # N not a multiple of any chunk
    q = rng.integers(0, 2, (91, d)).astype(np.uint8)
    q[:7] = r[:7]                                                    # members
    q[7:12] = q[12:17]                                               # duplicates
    q[20] = r[50]
    q[20, 0] ^= 1                                                    # distance 1
    brute = brute_hamming(q, r)
    idx = TrainIndex(r)
    assert np.array_equal(idx.contains(q), (brute == 0).any(1))
    assert np.array_equal(idx.nn_hamming(q, chunk_elems=777), brute.min(1))
    monkeypatch.setattr(bitsmod, "_THREAD_PAIRS", 1)                 # force the threaded path
    dist, arg = nn_hamming_packed(pack(q), pack(r), chunk_elems=5000, return_index=True, threads=2)
    assert np.array_equal(dist, brute.min(1))
    assert np.array_equal(arg, brute.argmin(1))                      # ties: lowest index


def test_train_index_categorical_against_brute_force():
    rng = np.random.default_rng(1)
    r = rng.integers(0, 5, (300, 12)).astype(np.uint8)
    q = np.concatenate([r[:4], rng.integers(0, 5, (40, 12)).astype(np.uint8)])
    idx = TrainIndex(r, n_symbols=5)
    brute = brute_hamming(q, r)
    assert np.array_equal(idx.nn_hamming(q), brute.min(1))
    assert np.array_equal(idx.contains(q), (brute == 0).any(1))


def test_group_index_against_brute_force():
    rng = np.random.default_rng(2)
    groups = np.array([[0, 5, 2], [7, 1, 3], [4, 6, 8]])            # non-contiguous groups
    train = rng.integers(0, 3, (40, 9)).astype(np.uint8)
    q = rng.integers(0, 3, (60, 9)).astype(np.uint8)
    gi = GroupIndex(train, groups, 3)
    seen = [{tuple(t[g]) for t in train} for g in groups]
    brute = np.array([[tuple(c[g]) in seen[j] for j, g in enumerate(groups)] for c in q])
    assert np.array_equal(gi.contains(q), brute)
    assert gi.distinct.tolist() == [len(s) for s in seen]


def test_baselines_match_monte_carlo():
    """Closed-form baselines against draws of the samplers they describe."""
    rule, enc = GroupParity(4, 4, group=4), BinaryEncoding()
    rng = np.random.default_rng(3)
    train = rule.sample(60, rng)
    ev = SampleEvaluator(rule, enc, train)
    b = ev.baselines()
    valid = rule.sample(40000, rng)
    cube = rng.integers(0, 2, (40000, 16)).astype(np.uint8)
    assert b.chance_sample_acc.item() == 2.0 ** -4
    assert abs(rule.is_valid(cube).mean() - b.chance_sample_acc.item()) < 0.01
    assert abs(rule.constraints(cube).mean() - b.chance_group_acc.item()) < 0.01
    assert abs(ev.gindex.contains(valid).mean() - b.uniform_valid_group_mem.item()) < 0.01
    assert abs(ev.gindex.contains(cube).mean() - b.uniform_cube_group_mem.item()) < 0.01
    assert b.uniform_valid_sample_mem.item() == 60 / 2 ** 12 and b.uniform_cube_sample_mem.item() == 60 / 2 ** 16


# ------------------------------------------------------------------------------ reference denoisers
@pytest.fixture(scope="module")
def ref_run(tmp_path_factory):
    """A run directory without training (references need no checkpoints): 4x4 parity, G=2, N=32."""
    from twoclocks.training.config import TrainConfig
    from twoclocks.training.train import create_run
    path = tmp_path_factory.mktemp("ref") / "run"
    create_run(path, TrainConfig(side=4, group=2, n_train=32, n_heldout=64, n_hypercube=64, n_noise=1024,
                                 model="tiny", device="cpu"), set())
    return path


def test_ideal_rule_samples_are_valid_with_uniform_memorization(ref_run):
    ds = run_samples(ref_run, denoiser="ideal-rule", progress=False)
    assert (ref_run / "probes" / "samples-ideal-rule.zarr").exists()
    assert ds.step.values.tolist() == [-1]
    assert ds.sample_acc.item() == 1.0
    assert set(np.unique(ds.state.values)) <= {2, 3}
    p = 32 / 2 ** 8                                                   # N / |valid|
    assert ds.uniform_valid_sample_mem.item() == p
    assert abs(ds.sample_mem.item() - p) < 4 * np.sqrt(p * (1 - p) / 1024)


def test_memorizing_denoiser_samples_are_all_memorized(ref_run):
    ds = run_samples(ref_run, denoiser="memorize", progress=False)
    assert (ds.state.values == 3).all() and ds.sample_mem.item() == 1.0
    assert (ds.nn_hamming.values == 0).all()


# ------------------------------------------------------------------------------ resume / interrupt
def _copy(tiny_run, dst):
    """A copy of the tiny run whose sampler takes 4 Heun steps (7 network calls: fast)."""
    import json
    shutil.copytree(tiny_run, dst, ignore=shutil.ignore_patterns("probes"))
    meta = json.loads((dst / "config.json").read_text())
    meta["config"]["sampler_steps"] = 4
    (dst / "config.json").write_text(json.dumps(meta))
    return dst


def _counting(run, fail_at=None):
    calls = []
    orig = run.generate

    def gen(src, *a, **kw):
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt
        calls.append(src)
        return orig(src, *a, **kw)
    run.generate = gen
    return calls


def _same(a: xr.Dataset, b: xr.Dataset):
    xr.testing.assert_identical(a.drop_attrs(deep=False), b.drop_attrs(deep=False))


def test_interrupt_and_resume_equals_uninterrupted(tiny_run, tmp_path):
    from twoclocks.run import open_run
    a, b = _copy(tiny_run, tmp_path / "a"), _copy(tiny_run, tmp_path / "b")
    sel = "0,3,60"
    full = run_samples(b, steps=sel, progress=False)

    run = open_run(a)
    calls = _counting(run, fail_at=1)
    with pytest.raises(KeyboardInterrupt):
        run_samples(run, steps=sel, progress=False)
    assert calls == [0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        part = xr.open_zarr(a / "probes" / "samples.zarr")             # a valid cube of the finished steps
    assert part.step.values.tolist() == [0]

    run = open_run(a)
    calls = _counting(run)
    done = run_samples(run, steps=sel, progress=False)
    assert calls == [3, 60]                                           # only the missing steps
    _same(done, full)
    _same(xr.open_zarr(a / "probes" / "samples.zarr").load(), full)
    assert done.attrs["source_steps"] == "[0, 3, 60]" and "run_config" in done.attrs

    calls = _counting(run)
    more = run_samples(run, steps="0:3", progress=False)              # picks up other checkpoints
    assert calls == [1, 2]
    assert more.step.values.tolist() == [0, 1, 2, 3, 60]
    _same(more.sel(step=[0, 3, 60]), full)

    calls = _counting(run)
    run_samples(run, steps="0,3", progress=False)
    assert calls == []                                                # nothing to do
    run_samples(run, steps="60", progress=False, force=True)
    assert calls == [60]
    with pytest.raises(TwoclocksError, match="--force"):
        run_samples(run, steps="0", eps_state=0.2, progress=False)


def test_bad_options_are_one_line_errors(tiny_run, tmp_path):
    from twoclocks.cli import app
    with pytest.raises(TwoclocksError):
        parse_eps("0.1,x")
    with pytest.raises(TwoclocksError):
        parse_eps("0,0.1")
    runner = CliRunner()
    for args in (["samples", str(tmp_path / "missing")],
                 ["samples", str(tiny_run), "--eps", "abc"],
                 ["samples", str(tiny_run), "--steps", "7"],
                 ["samples", str(tiny_run), "--denoiser", "oracle"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert len(res.output.strip().splitlines()) == 1 and res.output.startswith("error:")
    assert not (tiny_run / "probes" / "samples.zarr").exists()


def test_cli_samples_writes_cube(tiny_run, tmp_path):
    from twoclocks.cli import app
    run = _copy(tiny_run, tmp_path / "c")
    res = CliRunner().invoke(app, ["samples", str(run), "--steps", "0,60", "--quiet", "--eps", "0.05,0.3"])
    assert res.exit_code == 0, res.output
    ds = xr.open_zarr(run / "probes" / "samples.zarr")
    assert ds.eps.values.tolist() == [0.05, 0.1, 0.3]
    for name, v in {**ds.data_vars, **ds.coords}.items():
        assert "long_name" in v.attrs, name
        if name in ds.data_vars:
            assert "units" in v.attrs, name
    assert ds.state.dtype == np.int8 and ds["sample"].dtype == np.uint8
    assert ds.sample.dims == ("step", "seed", "cell") and ds.invalid_frac.dims == ("step", "eps")
