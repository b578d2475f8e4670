"""The memorization baseline of the training distribution (docs/science.md#samples, #clocks): rules whose
sampler draws from part of the valid set (Latin squares, Sudoku) use N/|support|, not N/|valid|, for the
baseline, the adaptive threshold and the ideal-rule reference; per-family validity of permutation rules."""
from __future__ import annotations

import itertools
from math import factorial, gcd

import numpy as np
import pytest

from twoclocks.data import make_rule
from twoclocks.data.encodings import make_encoding
from twoclocks.data.latin import LatinSquare, Sudoku, cyclic_isotopic
from twoclocks.data.rules import restricted_support, support_baseline
from twoclocks.data.splits import make_splits
from twoclocks.probes.clocks import MemThreshold, clocks_from_curves
from twoclocks.probes.samples import SampleEvaluator

from conftest import TINY

# every sampled family, small enough that N is a sizeable part of the support
FAMILIES = [
    ({"name": "parity", "height": 4, "width": 4, "group": 2}, 64),
    ({"name": "exact-k", "height": 4, "width": 4, "k": 3}, 128),
    ({"name": "row-k", "height": 4, "width": 4, "k": 2}, 256),
    ({"name": "row-var-k", "height": 3, "width": 3, "ks": [1, 2]}, 128),
    ({"name": "global-k", "height": 4, "width": 4, "ks": [1, 2]}, 256),
    ({"name": "row-latin", "n": 3}, 64),
    ({"name": "latin", "n": 5}, 4096),
    ({"name": "latin", "n": 4}, 128),
    ({"name": "sudoku", "n": 4, "block_rows": 2, "block_cols": 2}, 64),
]


def _orbit_size(n):
    phi = sum(gcd(a, n) == 1 for a in range(1, n + 1))
    return factorial(n) ** 3 // (n * n * phi)


@pytest.mark.parametrize("n", [3, 4, 5])
def test_support_enumeration_and_membership(n):
    rule = LatinSquare(n)
    support = rule.enumerate_support()
    assert len(support) == _orbit_size(n) == rule.sampler_support_size     # orbit-stabilizer closed form
    assert rule.is_valid(support).all()
    valid = rule.enumerate_valid()
    member = set(map(bytes, support))
    brute = np.array([bytes(v) in member for v in valid])
    assert np.array_equal(rule.in_support(valid), brute)                   # isotopy test == set membership
    draws = rule.sample(2000, np.random.default_rng(0))
    assert rule.in_support(draws).all()
    assert restricted_support(rule) == (n >= 4)  # the class type is what matters, not n
    # sudoku 4x4: the Latin support filtered by blocks
    sud = Sudoku(4, 2, 2)
    assert len(sud.enumerate_support()) == sud.sampler_support_size == 192


def test_isotopy_test_rejects_a_non_cyclic_square():
    """The Cayley table of S3 (a 6x6 Latin square of a non-cyclic group) is not isotopic to Z6."""
    perms = list(itertools.permutations(range(3)))
    index = {p: i for i, p in enumerate(perms)}
    table = np.array([[index[tuple(a[b[k]] for k in range(3))] for b in perms] for a in perms], np.uint8)
    cyclic = (np.arange(6)[:, None] + np.arange(6)[None]) % 6
    squares = np.stack([table.ravel(), cyclic.ravel()])
    assert LatinSquare(6).is_valid(squares).all()
    assert cyclic_isotopic(squares).tolist() == [False, True]
    rng = np.random.default_rng(1)                       # row/column/symbol permutations keep the class
    r, c, s = rng.permutation(6), rng.permutation(6), rng.permutation(6)
    shuffled = s[table[r][:, c]].ravel()[None]
    assert cyclic_isotopic(shuffled).tolist() == [False]


@pytest.mark.parametrize("spec,n_train", FAMILIES, ids=lambda v: v["name"] if isinstance(v, dict) else str(v))
def test_perfect_model_of_the_data_stays_below_the_threshold(spec, n_train):
    """A generator that draws from the training distribution (never copies on purpose) memorizes N/|support|
    of its samples by chance; the adaptive threshold sits above it for every sampled family."""
    rule = make_rule(spec)
    enc = make_encoding(rule.default_encoding, rule.n_symbols)
    train = make_splits(rule, n_train, 0, 0, seed=3)["train"]
    ev = SampleEvaluator(rule, enc, train)
    m = 8192
    draws = rule.sample(m, np.random.default_rng(11))
    res = ev.evaluate(enc.encode(draws))
    b = support_baseline(rule, n_train)
    thr = MemThreshold().value(b)
    mem = float(res["sample_mem"])
    assert abs(mem - b) < 4.5 * np.sqrt(b * (1 - b) / m) + 1e-9    # the baseline is the expected value
    assert mem < thr
    base = ev.baselines()
    assert float(base["support_sample_mem"]) == pytest.approx(b)
    assert float(base["support_size"]) == rule.sampler_support_size
    assert float(base["valid_set_size"]) == rule.valid_set_size
    # sustained over a run of such checkpoints, tau_mem is never reached
    steps = np.arange(10)
    clk = clocks_from_curves(steps, np.ones(10), np.full(10, mem), b)
    assert clk["tau_mem_status"] == "never"
    if restricted_support(rule):
        assert float(res["support_frac"]) == 1.0
        assert rule.sampler_support_size < rule.valid_set_size


def test_latin5_n4096_numbers():
    """The case that timed rule learning as memorization with the valid-set baseline."""
    rule = LatinSquare(5)
    b, b_valid = support_baseline(rule, 4096), 4096 / 161280
    assert b == pytest.approx(4096 / 17280)
    assert MemThreshold().value(b) == pytest.approx(b + 0.1 * (1 - b))
    assert MemThreshold().value(b_valid) < b        # the old threshold lay below the perfect model's memorization


def test_family_valid_fractions_match_brute_force():
    rule = LatinSquare(4)
    enc = make_encoding("scalar", 4)
    rng = np.random.default_rng(5)
    cells = rng.integers(0, 4, (300, 16)).astype(np.uint8)
    cells[:100] = rule.sample(100, rng)
    cells[100:150, :4] = [0, 1, 2, 3]                      # some valid rows
    ev = SampleEvaluator(rule, enc, rule.sample(20, rng))
    res = ev.evaluate(enc.encode(cells))
    g = cells.reshape(-1, 4, 4)
    perm = lambda a: np.array([[sorted(line) == [0, 1, 2, 3] for line in grid] for grid in a])  # noqa: E731
    rows, cols = perm(g), perm(g.transpose(0, 2, 1))
    assert list(res["family"].values) == ["row", "col"]
    np.testing.assert_allclose(res["line_valid_frac"].values, [rows.mean(), cols.mean()])
    np.testing.assert_allclose(res["family_valid_frac"].values, [rows.all(1).mean(), cols.all(1).mean()])
    assert float(res["support_frac"]) == pytest.approx(np.mean([rule.in_support(c[None])[0] for c in cells]))


def test_samples_cube_of_a_latin_run_through_the_probe(tmp_path):
    """End to end on a GPT run: the ideal-rule reference is the training distribution (samples it
    exactly), the cube records both set sizes and the support baseline, and stays below the threshold."""
    from twoclocks.probes.samples import run_samples
    from twoclocks.training.train import train
    cfg = {**TINY, "arch": "gpt", "rule": "latin", "side": 4, "group": None, "n_train": 64, "steps": 2,
           "saves_per_decade": 1, "n_noise": 512}
    cfg.pop("group")
    run = tmp_path / "latin"
    train(run, cfg, progress=False)
    ds = run_samples(run, denoiser="ideal-rule", progress=False)
    assert float(ds["support_size"]) == 432 and float(ds["valid_set_size"]) == 576
    assert float(ds["support_sample_mem"]) == pytest.approx(64 / 432)
    assert float(ds["support_frac"].squeeze()) == 1.0              # the reference draws from the support only
    np.testing.assert_allclose(ds["family_valid_frac"].squeeze().values, 1.0)
    mem = float(ds["sample_mem"].squeeze())
    assert abs(mem - 64 / 432) < 4.5 * np.sqrt((64 / 432) * (1 - 64 / 432) / 512)
    assert mem < MemThreshold().value(64 / 432)
    trained = run_samples(run, progress=False)                      # the trained steps carry the same variables
    assert "family_valid_frac" in trained and trained["family_valid_frac"].dims == ("step", "family")
    # a cube whose stored baseline is the one 0.2 froze (N/|valid| = 64/576) reports the corrected one
    # when read, without --force and without recomputing a step
    import zarr
    from twoclocks.probes.clocks import compute_clocks
    path = run / "probes" / "samples.zarr"
    zarr.open_array(str(path / "support_sample_mem"), mode="r+")[...] = 64 / 576
    zarr.consolidate_metadata(str(path))
    again = run_samples(run, progress=False)
    assert float(again["support_sample_mem"]) == pytest.approx(64 / 432)
    assert float(compute_clocks([str(run)])["mem_baseline"].squeeze()) == pytest.approx(64 / 432)
