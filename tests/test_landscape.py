"""Landscape probes: face geometry, 2D planes and 1D basins (docs/science.md#landscape).

Oracles: closed-form geometry (face side 2, diagonal 2 sqrt 2, vertices at (+-sqrt2, 0), (0, +-sqrt2)),
brute-force pair search, the exact ideal denoisers (hypercube: sign(D) = sign(x), so every vertex's
basin ends at alpha = 0.5; group parity: symmetric under the swap-and-negate of bits i, j, so the
attraction is antisymmetric across the perpendicular bisector of x_a x_b), the memorizing denoiser
(x_b is not a train sample, so x_a stays the nearest train sample along the whole segment).
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from twoclocks import TwoclocksError
from twoclocks.data import make_encoding
from twoclocks.data.count_rules import ExactK, RowK
from twoclocks.data.rules import GroupParity
from twoclocks.landscape.basin import (DIRECTIONS, alpha_grid, basin_radius, bootstrap_mean,
                                       nearest_other_train, run_basin, summarize)
from twoclocks.landscape.geometry import face_geometry, faces_from_cells, parse_anchors, parse_sigmas
from twoclocks.landscape.plane import plane_grid, run_plane
from twoclocks.run import open_run
from conftest import count_network_calls

SQ2 = np.sqrt(2.0)


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    """A writable copy of the tiny run (4x4 parity, G=2, N=32)."""
    path = tmp_path_factory.mktemp("landscape") / "tiny"
    shutil.copytree(tiny_run, path)
    return open_run(path)


def _fresh(run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(run.path, path, ignore=shutil.ignore_patterns("probes", ".*.parts"))
    return open_run(path)


# ----------------------------------------------------------------------------- geometry
def _first_pair_bruteforce(rule, train, k):
    """The first (group, i, j) by a plain loop: x_b valid and not in train, x_c and x_d invalid."""
    a = train[k]
    for g, grp in enumerate(rule.groups):
        for p in range(len(grp)):
            for q in range(p + 1, len(grp)):
                i, j = grp[p], grp[q]
                b, c, d = a.copy(), a.copy(), a.copy()
                b[[i, j]] ^= 1
                c[i] ^= 1
                d[j] ^= 1
                if (rule.is_valid(b[None])[0] and not rule.is_valid(c[None])[0] and not rule.is_valid(d[None])[0]
                        and not (train == b).all(1).any()):
                    return g, i, j
    return None


def test_face_geometry_on_the_run(run):
    train = run.cells("train")
    anchors = np.arange(len(train))
    f = face_geometry(run, anchors)
    dec = run.encoding.decode
    assert np.allclose(np.linalg.norm(f.x_b - f.x_a, axis=1), 2 * SQ2)
    assert np.allclose(np.linalg.norm(f.x_c - f.x_a, axis=1), 2)
    assert np.allclose(np.linalg.norm(f.x_d - f.x_a, axis=1), 2)
    assert np.array_equal(dec(f.x_a), train)
    assert run.rule.is_valid(dec(f.x_b)).all()
    assert not run.rule.is_valid(dec(f.x_c)).any() and not run.rule.is_valid(dec(f.x_d)).any()
    assert not (dec(f.x_b)[:, None, :] == train[None]).all(2).any()          # novel: in no train row
    for k in anchors:                                                         # deterministic first pair
        assert _first_pair_bruteforce(run.rule, train, k) == (f.group[k], f.bit_i[k], f.bit_j[k])
        assert {f.bit_i[k], f.bit_j[k]} <= set(run.rule.groups[f.group[k]])
    basis = np.stack([f.e_u, f.e_v], 1)                                       # (n, 2, P)
    assert np.allclose(basis @ basis.transpose(0, 2, 1), np.eye(2))           # orthonormal
    uv = f.coords(f.vertices)                                                 # the stated coordinates
    assert np.allclose(uv, [[-SQ2, 0], [SQ2, 0], [0, SQ2], [0, -SQ2]])
    back = f.origin[:, None] + uv[..., :1] * f.e_u[:, None] + uv[..., 1:] * f.e_v[:, None]
    assert np.allclose(back, f.vertices)                                      # the vertices lie in the plane


def test_pair_choice_skips_train_neighbours_and_reports_none():
    rule, enc = GroupParity(2, 2, group=2), make_encoding("binary", 2)
    a = np.array([0, 0, 1, 1], np.uint8)
    train = np.stack([a, a ^ np.array([1, 1, 0, 0], np.uint8)])               # x_b of group 0 is a train sample
    f = faces_from_cells(rule, enc, train, [0])
    assert (f.group[0], f.bit_i[0], f.bit_j[0]) == (1, 2, 3)
    full = rule.sample(256, np.random.default_rng(0))
    full = np.unique(full, axis=0)                                            # the whole valid set (4)
    with pytest.raises(TwoclocksError, match="no pair"):
        faces_from_cells(rule, enc, full, [0])


def test_geometry_generalises_to_grouped_binary_rules():
    rule, enc = RowK(4, 4, k=2), make_encoding("binary", 2)
    train = rule.sample(20, np.random.default_rng(1))
    train = train[np.unique(train, axis=0, return_index=True)[1]]
    f = faces_from_cells(rule, enc, train, np.arange(len(train)))
    assert rule.is_valid(enc.decode(f.x_b)).all() and not rule.is_valid(enc.decode(f.x_c)).any()
    with pytest.raises(TwoclocksError, match="bit groups"):
        class R:  # a run whose rule has no groups
            rule, encoding = ExactK(4, 4, k=8), enc
        face_geometry(R, [0])


def test_anchor_and_sigma_options():
    assert parse_anchors(100, anchors="0:4,17") == [0, 1, 2, 3, 17]
    assert parse_anchors(100, n_anchors=3) == [0, 1, 2]
    assert parse_anchors(10, n_anchors=64) == list(range(10))
    for bad in (dict(anchor=100), dict(anchors="98:102"), dict(anchor=-1)):
        with pytest.raises(TwoclocksError, match=r"0\.\.99"):
            parse_anchors(100, **bad)
    with pytest.raises(TwoclocksError, match="only one"):
        parse_anchors(100, anchor=1, n_anchors=2)
    assert parse_sigmas(["0.5,0.2", "1"], (9,)) == [0.2, 0.5, 1.0]
    with pytest.raises(TwoclocksError):
        parse_sigmas(["0"], (1,))


# ----------------------------------------------------------------------------- basin
def test_basin_hypercube_every_vertex_attracts(run):
    """Ideal hypercube: sign(D) = sign(x), so exact match holds for alpha < 0.5 and fails from 0.5 on;
    hamming and l2 equal their closed forms."""
    sig = [0.05, 0.3]
    ds = run_basin(run, anchors=range(8), sigmas=sig, denoiser="ideal-cube", progress=False)
    em = ds["exact_match"].sel(direction="h1_invalid")
    a = ds["alpha"]
    assert bool(em.where(a < 0.5).fillna(True).all()) and not bool(em.where(a >= 0.5).fillna(False).any())
    assert np.allclose(ds["basin_radius"].values, 0.5)                         # every direction, every sigma
    f = face_geometry(run, ds["anchor"].values)
    xa = f.x_a[:, None, None, None, :]
    ends = np.stack([f.x_c, f.x_b, run.x("train")[ds["nearest_index"].values]], 1)[:, None, :, None, :]
    al = a.values[None, None, None, :, None]
    s = np.asarray(sig)[None, :, None, None, None]
    x = xa + al * (ends - xa)
    D = np.tanh(x / s ** 2)
    assert np.array_equal(ds["hamming"].values[0], (np.sign(D) != xa).sum(-1))
    assert np.allclose(ds["l2"].values[0], np.linalg.norm(D - xa, axis=-1), atol=1e-4)


def test_basin_memorize_extends_past_midpoint(run):
    ds = run_basin(run, anchors=range(16), sigmas=[0.3, 0.5], denoiser="memorize", progress=False)
    r = ds["basin_radius"].sel(direction="h2_valid_novel")
    assert (r > 0.5).all()                                                      # the train basin invades x_b
    assert (ds["exact_match"].sel(direction="h2_valid_novel", alpha=0.75).all())
    cube = run_basin(run, anchors=range(16), sigmas=[0.3, 0.5], denoiser="ideal-cube", progress=False)
    assert np.allclose(cube["basin_radius"].sel(direction="h2_valid_novel"), 0.5)   # the contrast


def test_nearest_other_train_bruteforce(run):
    train = run.cells("train")
    idx, d = nearest_other_train(train, np.arange(len(train)), chunk=5)
    for k in range(len(train)):
        h = (train != train[k]).sum(1)
        h[k] = 10 ** 6
        assert d[k] == h.min() and idx[k] == np.flatnonzero(h == h.min())[0]


def test_summaries_and_radius():
    al = alpha_grid()
    assert al[10] == 0.0 and al[20] == 0.5 and len(al) == 41
    m = xr.DataArray(np.where(al < 0.7, 1.0, 0.2), coords={"alpha": al}, dims="alpha")
    m[0] = 0.0                                                                  # negative alphas are ignored
    assert float(basin_radius(m)) == pytest.approx(0.7)
    assert np.isnan(float(basin_radius(xr.ones_like(m))))
    rng = np.random.default_rng(0)
    ds = xr.Dataset({"exact_match": (("anchor", "alpha"), rng.random((20, 41)) < 0.6),
                     "hamming": (("anchor", "alpha"), np.zeros((20, 41), np.int32)),
                     "l2": (("anchor", "alpha"), rng.random((20, 41)))}, coords={"alpha": al})
    out = summarize(ds, n_resamples=200)
    for k in ("exact_match", "hamming", "l2"):
        assert (out[f"{k}_lo"] <= out[f"{k}_mean"] + 1e-12).all() and (out[f"{k}_mean"] <= out[f"{k}_hi"] + 1e-12).all()
    assert (out["hamming_lo"] == 0).all() and (out["hamming_hi"] == 0).all()   # constant data: degenerate
    assert (out["l2_hi"] - out["l2_lo"] > 0.05).all()
    m, lo, hi = bootstrap_mean(ds["l2"].values.T, 300, 0.9, seed=5)          # == plain scipy, same seed
    ref = stats.bootstrap((ds["l2"].values.T,), np.mean, vectorized=True, axis=-1, n_resamples=300,
                          confidence_level=0.9, method="percentile", rng=np.random.default_rng(5))
    assert np.allclose(lo, ref.confidence_interval.low) and np.allclose(hi, ref.confidence_interval.high)
    assert np.allclose(m, ds["l2"].mean("anchor"))
    one = summarize(ds.isel(anchor=[3]))
    assert np.array_equal(one["l2_lo"], one["l2_mean"]) and np.array_equal(one["l2_hi"], one["l2_mean"])


# ----------------------------------------------------------------------------- plane
def test_plane_ideal_rule_attraction_is_antisymmetric(run):
    ds = run_plane(run, anchors=[0, 5], sigmas=[0.3, 1.0], grid=21, denoiser="ideal-rule", progress=False)
    flip = ds.isel(u=slice(None, None, -1))
    assert np.array_equal(ds["u"].values, -flip["u"].values)
    att = ds["attraction"].values
    assert np.abs(att).max() > 0.1
    assert np.allclose(att, -flip["attraction"].values, atol=1e-4)
    assert np.allclose(ds["score_u"].values, -flip["score_u"].values, rtol=1e-4, atol=1e-3)
    assert np.allclose(ds["score_v"].values, flip["score_v"].values, rtol=1e-4, atol=1e-3)
    mem = run_plane(run, anchors=[0, 5], sigmas=[0.3, 1.0], grid=21, denoiser="memorize", progress=False)
    m = mem["attraction"].values                                               # x_a is a train sample, x_b not
    assert np.abs(m + mem["attraction"].isel(u=slice(None, None, -1)).values).max() > 0.1
    assert float(mem["attraction"].sel(u=0, v=0, sigma=0.3).max()) < 0                # pulled toward x_a


def test_plane_values_match_closed_form(run):
    sig = [0.4, 2.0]
    ds = run_plane(run, anchors=[2], sigmas=sig, grid=7, extent=1.5, denoiser="ideal-cube", progress=False)
    f = face_geometry(run, [2])
    u = plane_grid(7, 1.5)
    x = f.origin[0] + u[:, None, None] * f.e_u[0] + u[None, :, None] * f.e_v[0]        # (u, v, P)
    for k, s in enumerate(sig):
        D = np.tanh(x / s ** 2)
        score = (D - x) / s ** 2
        got = ds.isel(step=0, anchor=0, sigma=k)
        assert np.allclose(got["score_norm"], np.linalg.norm(score, axis=-1), rtol=1e-4, atol=1e-5)
        assert np.allclose(got["score_u"], score @ f.e_u[0], rtol=1e-4, atol=1e-4)
        assert np.allclose(got["score_v"], score @ f.e_v[0], rtol=1e-4, atol=1e-4)
        assert np.allclose(got["attraction"], (D - f.origin[0]) @ f.e_u[0], atol=1e-5)
    assert np.allclose(ds["vertex_u"].sel(anchor=2), [-SQ2, SQ2, 0, 0])
    assert np.allclose(ds["vertex_v"].sel(anchor=2), [0, 0, SQ2, -SQ2])


# ----------------------------------------------------------------------------- store, resume, checkpoints


def test_plane_keyed_resume_and_params(run, tmp_path):
    r = _fresh(run, tmp_path)
    calls = count_network_calls(r)
    kw = dict(steps="56,60", grid=9, progress=False)
    ds = run_plane(r, anchors=[1], sigmas=[0.5], **kw)
    assert len(calls) == 2 and ds.sizes["step"] == 2
    calls.clear()
    again = run_plane(r, anchors=[1], sigmas=[0.5], **kw)
    assert calls == []                                                          # nothing new
    xr.testing.assert_equal(again["attraction"], ds["attraction"])
    more = run_plane(r, anchors=[1, 4], sigmas=[0.5, 1.0], **kw)                # a new anchor and sigma
    assert sum(n for _, n in calls) == 2 * 3 * 81                               # (4, .5), (1, 1), (4, 1) per step
    assert more.sizes["anchor"] == 2 and more.sizes["sigma"] == 2
    xr.testing.assert_allclose(more["attraction"].sel(anchor=[1], sigma=[0.5]), ds["attraction"])
    assert dict(xr.open_zarr(r.probe_path("plane")).sizes) == dict(more.sizes)   # the cube is the request
    with pytest.raises(TwoclocksError, match="grid"):
        run_plane(r, anchors=[1], sigmas=[0.5], steps="60", grid=11, progress=False)
    calls.clear()
    assert run_plane(r, anchors=[1], sigmas=[0.5], steps="60", grid=11, force=True, progress=False).sizes["u"] == 11
    assert len(calls) == 1


def test_basin_interrupt_leaves_valid_cube_and_resumes(run, tmp_path):
    r = _fresh(run, tmp_path)
    orig = r.denoiser

    def dies_at_60(source, device="cpu", **kw):
        if source == 60:
            raise KeyboardInterrupt
        return orig(source, device, **kw)
    r.denoiser = dies_at_60
    with pytest.raises(KeyboardInterrupt):
        run_basin(r, anchors=[0, 3], sigmas=[0.5], steps="56,60", progress=False)
    part = xr.open_zarr(r.probe_path("basin")).load()                           # the next call replaces the store
    assert part["step"].values.tolist() == [56]                                 # the finished step only
    r.denoiser = orig
    calls = count_network_calls(r)
    full = run_basin(r, anchors=[0, 3], sigmas=[0.5], steps="56,60", progress=False)
    assert [s for s, _ in calls] == [60]                                        # only the missing step
    assert full["step"].values.tolist() == [56, 60]
    xr.testing.assert_equal(full["l2"].sel(step=[56]), part["l2"].load())
    calls.clear()
    grown = run_basin(r, anchors=[0, 3, 5], sigmas=[0.5], steps="56,60", progress=False)
    assert sum(n for _, n in calls) == 2 * len(DIRECTIONS) * 41                # only anchor 5, at both steps
    xr.testing.assert_identical(grown["exact_match"].sel(anchor=[0, 3]), full["exact_match"])
    assert grown["nearest_index"].values.tolist() == nearest_other_train(r.cells("train"), [0, 3, 5])[0].tolist()


def test_cubes_on_tiny_run_are_finite(run):
    p = run_plane(run, anchors=[7], sigmas=[0.2, 1.0], steps="last", grid=11, progress=False)
    b = run_basin(run, anchors=range(6), sigmas=[0.2, 1.0], steps="last", progress=False)
    for name in ("plane", "basin"):
        ds = xr.open_zarr(run.probe_path(name))
        for k, v in ds.data_vars.items():
            assert v.attrs.get("long_name") and "units" in v.attrs, k
            if k != "basin_radius":                                             # NaN there: never dropped
                assert np.isfinite(v.values.astype(float)).all(), (name, k)
        assert "source_steps" in ds.attrs and "run_config" in ds.attrs
    assert p.sizes.keys() >= {"step", "anchor", "sigma", "u", "v"}
    assert b["exact_match"].dims == ("step", "anchor", "sigma", "direction", "alpha")
    assert list(b["direction"].values) == list(DIRECTIONS)


# ----------------------------------------------------------------------------- CLI
def test_cli_basin_from_run_dir_and_bad_anchor(run, tmp_path, monkeypatch):
    from typer.testing import CliRunner
    from twoclocks.cli import app
    run = _fresh(run, tmp_path)
    monkeypatch.chdir(run.path)
    res = CliRunner().invoke(app, ["basin", "--anchor", "32", "--denoiser", "ideal-cube"])
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0 and "0..31" in res.stderr
    res = CliRunner().invoke(app, ["basin", "--anchor", "17", "--denoiser", "ideal-cube", "--sigma", "0.5",
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    assert "basin radius toward h2_valid_novel" in res.stdout
    assert xr.open_zarr(run.probe_path("basin-ideal-cube"))["anchor"].values.tolist() == [17]
    res = CliRunner().invoke(app, ["plane", "--anchor", "17", "--denoiser", "ideal-cube", "--grid", "5",
                                   "--sigma", "0.5", "--quiet"])
    assert res.exit_code == 0, res.output
