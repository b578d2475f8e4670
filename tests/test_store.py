"""The one store (twoclocks.store): string labels in zarr's specified data type, pieces checked when
written, derived arrays recomputed by the store, growth by regions with a journal that survives kill -9,
keyed cubes, and the probe version recorded per step."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.errors import UnstableSpecificationWarning

from twoclocks import store
from twoclocks.schema import CubeSchema, SchemaError, Var, coord
from twoclocks.store import CubeStore, concat_steps, open_cube, stale_steps

ROOT = Path(__file__).resolve().parents[1]

SCHEMA = CubeSchema("toy", coords={"step": coord("step"), "seed": coord("seed"), "split": coord("split")}, data_vars={
    "x": Var(("step", "seed"), "float64", "a per-seed value"),
    "n": Var(("step", "split"), "int64", "a count per split"),
    "base": Var((), "float64", "a value without step"),
    "total": Var(("step",), "float64", "running sum of x over seeds and steps so far", derived=True),
    "last": Var((), "float64", "x summed at the last step", derived=True),
})


class FakeRun:
    def __init__(self, path: Path):
        self.path = Path(path)

    def probe_path(self, name):
        return self.path / "probes" / f"{name}.zarr"

    def provenance(self):
        return {"run_dir": str(self.path)}


def piece(step: int, seeds: int = 6, value: float | None = None) -> xr.Dataset:
    rng = np.random.default_rng(step)
    x = rng.random((1, seeds)) if value is None else np.full((1, seeds), value)
    return xr.Dataset({"x": (("step", "seed"), x), "n": (("step", "split"), rng.integers(0, 9, (1, 3)))},
                      coords={"step": [step], "seed": np.arange(seeds), "split": ["train", "heldout", "hypercube"]})


def finalize(ds):
    per = ds["x"].sum("seed")
    ds = ds.assign(total=per.cumsum("step"), last=per.isel(step=-1, drop=True))
    return ds


def expected(steps, base=None):
    ds = concat_steps([piece(s) for s in steps])
    if base is not None:
        ds["base"] = base
    return finalize(ds)


def compact(st):
    return store.load_checked(st.compact(concat_steps, finalize=finalize), st.path)


def make(tmp_path, version=1, **kw):
    return CubeStore(FakeRun(tmp_path / "run"), "toy", {"a": 1}, schema=SCHEMA, version=version, **kw)


def same(a: xr.Dataset, b: xr.Dataset, skip=("probe_version",)):
    names = sorted(set(a.variables) - set(skip))
    assert names == sorted(set(b.variables) - set(skip))
    for n in names:
        x, y = np.asarray(a[n].values), np.asarray(b[n].values)
        if x.dtype.kind == "f":   # derived sums may be computed chunk by chunk: rounding only
            np.testing.assert_allclose(x, y, rtol=1e-12, err_msg=n)
        else:
            np.testing.assert_array_equal(x, y, err_msg=n)


def test_labels_are_zarr_v3_strings_and_select_by_label(tmp_path):
    """Text coordinates are stored as zarr v3 'string' (no data type zarr flags as unspecified) and
    read back as <U, so .sel(split='train') works, through open_cube and through plain xarray."""
    st = make(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnstableSpecificationWarning)
        st.write_piece("s0", piece(0))
        ds = compact(st)
    assert ds["split"].dtype.kind == "U"
    assert int(ds["n"].sel(split="train", step=0)) == int(piece(0)["n"].sel(split="train", step=0))
    for name in ("split",):
        assert str(zarr.open_array(str(st.path / name)).metadata.data_type).startswith("VariableLengthUTF8")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnstableSpecificationWarning)
        plain = xr.open_zarr(st.path)
        assert float(plain["n"].sel(split="heldout").sum()) == float(ds["n"].sel(split="heldout").sum())


def test_no_stored_array_uses_an_unspecified_zarr_data_type(tmp_path):
    """Every array of a written cube has a data type of the zarr v3 specification (the fixed-length
    string type zarr-python warns about is never written)."""
    st = make(tmp_path)
    st.write_piece("s0", piece(0))
    compact(st)
    g = zarr.open_group(str(st.path), mode="r")
    kinds = {name: str(arr.metadata.data_type) for name, arr in g.arrays()}
    assert kinds and not [n for n, k in kinds.items() if "FixedLength" in k], kinds


def test_wrong_piece_is_refused_at_the_first_write_and_leaves_nothing(tmp_path):
    st = make(tmp_path)
    bad = piece(0).assign(x=(("step", "seed", "extra"), np.zeros((1, 6, 2))))
    with pytest.raises(SchemaError) as e:
        st.write_piece("s0", bad)
    msg = str(e.value)
    assert "\n" not in msg and "'x'" in msg and "dims" in msg and "nothing was written" in msg
    assert not st.parts.exists() and not st.path.exists()
    with pytest.raises(SchemaError, match="undeclared variable 'y'"):
        st.write_piece("s0", piece(0).assign(y=(("step",), [1.0])))
    with pytest.raises(SchemaError, match="'x' has dtype"):
        st.write_piece("s0", piece(0).assign(x=piece(0)["x"].astype(bool)))
    assert not st.parts.exists()
    st.write_piece("s0", piece(0))                          # the next, correct call is not blocked
    same(compact(st), expected([0]))
    with pytest.raises(SchemaError, match="variable 'x' has seed of length 5, the cube has 6"):
        st.write_piece("s1", piece(1, seeds=5))             # a piece that would not fit the stored cube
    assert st.piece_keys() == []


def test_derived_arrays_are_dropped_and_recomputed_by_the_store(tmp_path):
    st = make(tmp_path)
    p = piece(0).assign(total=(("step",), [123.0]))        # a derived array in a piece: dropped
    st.write_piece("s0", p)
    assert "total" not in open_cube(st.parts / "s0.zarr")
    st.write_piece("s1", piece(10))
    got = compact(st)
    same(got, expected([0, 10]))
    assert SCHEMA.derived() == ("total", "last")


def _no_full_rewrite(monkeypatch):
    real = store.write_dataset

    def refuse(ds, path, *a, **k):
        if Path(path).parent.name.endswith((".parts", ".journal")):
            return real(ds, path, *a, **k)               # pieces (and the journal's small copy) as before
        raise AssertionError("the cube was rewritten whole")
    monkeypatch.setattr(store, "write_dataset", refuse)


def test_adding_steps_writes_regions_not_the_whole_cube(tmp_path, monkeypatch):
    st = make(tmp_path)
    for s in (0, 10, 20):
        st.write_piece(f"s{s}", piece(s))
    compact(st)
    chunk0 = sorted((st.path / "x" / "c").rglob("*"))
    st = make(tmp_path)
    with monkeypatch.context() as m:
        _no_full_rewrite(m)
        st.write_piece("s30", piece(30))
        st.write_piece("s40", piece(40))
        got = compact(st)
    same(got, expected([0, 10, 20, 30, 40]))
    assert list(got["probe_version"].values) == [1] * 5
    assert sorted((st.path / "x" / "c").rglob("*"))[:1] == chunk0[:1]
    # a step computed again: its region overwritten in place; derived arrays follow
    st = make(tmp_path)
    with monkeypatch.context() as m:
        _no_full_rewrite(m)
        st.write_piece("s10", piece(10, value=2.0))
        got = compact(st)
    want = concat_steps([piece(s) for s in (0, 20, 30, 40)] + [piece(10, value=2.0)])
    same(got, finalize(want))
    assert float(got["last"]) == float(piece(40)["x"].sum())
    # a step before the last stored one does not fit the layout: the cube is rewritten whole, same result
    st = make(tmp_path)
    st.write_piece("s5", piece(5))
    got = compact(st)
    same(got, finalize(concat_steps([want, piece(5)])))
    assert not store._journal(st.path).exists()


def test_arrays_without_step_from_a_later_piece_are_added(tmp_path, monkeypatch):
    st = make(tmp_path)
    st.write_piece("s0", piece(0))
    compact(st)
    st = make(tmp_path)
    with monkeypatch.context() as m:
        _no_full_rewrite(m)
        st.write_piece("base", xr.Dataset({"base": ((), 7.5)}))
        st.write_piece("s1", piece(1))
        got = compact(st)
    same(got, expected([0, 1], base=7.5))


_KILLER = r"""
import os, signal, sys
import numpy as np, xarray as xr
sys.path.insert(0, {tests!r})
from test_store import FakeRun, make, piece, finalize
from twoclocks import store
from twoclocks.store import concat_steps
import zarr
real = zarr.consolidate_metadata
def die(store_, *a, **k):
    if isinstance(store_, str) and store_.endswith("toy.zarr"):
        os.kill(os.getpid(), signal.SIGKILL)     # kill -9 after the arrays grew, before the metadata
    return real(store_, *a, **k)
from pathlib import Path
st = make(Path({tmp!r}))
st.write_piece("s30", piece(30))
zarr.consolidate_metadata = die
st.compact(concat_steps, finalize=finalize)
"""


def test_kill_9_mid_growth_is_rolled_back_and_redone(tmp_path):
    st = make(tmp_path)
    for s in (0, 10, 20):
        st.write_piece(f"s{s}", piece(s))
    compact(st)
    code = _KILLER.format(tests=str(Path(__file__).parent), tmp=str(tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT.parent), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert (store._journal(st.path) / "journal.json").exists()
    assert zarr.open_array(str(st.path / "x")).shape[0] == 4             # the arrays had grown
    # a reader in between sees the cube as it was (the half-done growth is rolled back)
    same(open_cube(st.path), expected([0, 10, 20]))
    assert not store._journal(st.path).exists()
    st = make(tmp_path)
    assert st.piece_keys() == ["s30"]                          # the piece of the growth is still pending
    same(compact(st), expected([0, 10, 20, 30]))


def test_probe_version_per_step_and_stale_steps(tmp_path):
    st = make(tmp_path, version=1)
    for s in (0, 10):
        st.write_piece(f"s{s}", piece(s))
    got = compact(st)
    assert stale_steps(got, 1) == [] and stale_steps(got, 2) == [0, 10]
    st = make(tmp_path, version=2)
    st.write_piece("s10", piece(10))
    st.write_piece("s20", piece(20))
    got = compact(st)
    assert store.step_versions(got) == {0: 1, 10: 2, 20: 2}
    assert stale_steps(got, 2) == [0]
    legacy = got.drop_vars("probe_version")                 # a cube stored before versions were recorded
    assert stale_steps(legacy, 1) == [] and stale_steps(legacy, 2) == [0, 10, 20]


def test_keyed_store_overlays_cells_and_selects():
    keys = ("step", "anchor", "sigma")
    schema = CubeSchema("k", coords={"step": coord("step"), "anchor": coord("anchor"), "sigma": coord("sigma")},
                        data_vars={"v": Var(keys, "int64", "value"), "computed": Var(keys, "bool", "mask")})
    want = {"anchor": (3, 5, 9), "sigma": (0.5, 1.0)}
    todo = store.keyed_todo(None, 0, want, keys)
    assert todo == {0.5: [0, 1, 2], 1.0: [0, 1, 2]}
    vals = np.array([10 * p + int(s * 2) for p, s in store.jobs({0.5: [0, 2]})])
    a = store.keyed_piece(0, np.array(want["anchor"]), {0.5: [0, 2]}, {"v": vals}, {}, schema, keys)
    merged = store.keyed_merge(schema, keys)([a])
    assert store.keyed_todo(merged, 0, want, keys) == {0.5: [1], 1.0: [0, 1, 2]}
    rest = {0.5: [1], 1.0: [0, 1, 2]}
    vals2 = np.array([10 * p + int(s * 2) for p, s in store.jobs(rest)])
    b = store.keyed_piece(0, np.array(want["anchor"]), rest, {"v": vals2}, {}, schema, keys)
    full = store.keyed_merge(schema, keys)([merged, b])
    assert store.keyed_todo(full, 0, want, keys) is None
    sel = store.keyed_select(full, [0], want)
    assert sel["v"].dtype == np.int64 and "computed" not in sel
    np.testing.assert_array_equal(sel["v"].values[0], [[1, 2], [11, 12], [21, 22]])
    assert list(store.complete_along(merged, keys)) == [3, 9]     # computed at every sigma the cube has (0.5)
    assert list(store.complete_along(full, keys)) == [3, 5, 9]


def test_update_stale_recomputes_only_the_steps_of_an_older_version(tiny_run, tmp_path):
    """A probe that raised its version: a plain call computes only missing steps; --update-stale also
    the steps the older version computed, and the cube records the new version for them."""
    import dataclasses
    import shutil
    from twoclocks.probes.registry import get_probe
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("probes"))
    v1 = get_probe("samples")
    v1(run, steps="0,1", device="cpu", progress=False)
    seen = []

    def compute(ctx, state, source, step, todo):
        seen.append(int(step))
        return v1.compute(ctx, state, source, step, todo)
    v2 = dataclasses.replace(v1, version=2, compute=compute)
    ds = v2(run, steps="0,1,2", device="cpu", progress=False)
    assert seen == [2] and stale_steps(ds, 2) == [0, 1]
    seen.clear()
    ds = v2(run, steps="0,1,2", device="cpu", progress=False, update_stale=True)
    assert seen == [0, 1] and stale_steps(ds, 2) == [] and list(ds["probe_version"].values) == [2, 2, 2]
    seen.clear()
    v2(run, steps="0,1,2", device="cpu", progress=False, update_stale=True)
    assert seen == []


def test_growth_writes_every_chunk_and_keeps_the_completeness_marker(tmp_path):
    """A cube grown by regions stays 'every chunk written', so a chunk deleted afterwards is damage."""
    st = make(tmp_path)
    for s in (0, 10):
        st.write_piece(f"s{s}", piece(s, value=np.nan))  # all fill values: still written
    compact(st)
    st = make(tmp_path)
    st.write_piece("s20", piece(20, value=np.nan))
    grown = compact(st)
    assert list(grown["step"].values) == [0, 10, 20]
    assert zarr.open_group(str(st.path), mode="r").attrs[store.COMPLETE_ATTR] == 1
    assert all(store.missing_chunks(st.path, n) == [] for n in ("x", "n", "total"))
    chunk = next(p for p in sorted((st.path / "x").rglob("*")) if p.is_file() and p.name != "zarr.json")
    chunk.unlink()
    with pytest.raises(store.DamagedError, match="is missing"):
        open_cube(st.path)
