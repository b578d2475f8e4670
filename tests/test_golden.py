"""Golden fixtures (tests/fixtures/golden-VERSION, written by tests/fixtures/make_golden.py): the cubes of
every built-in probe as each version wrote them open with the current code, read back the same numbers
and give the same clocks. A change here is a change of numbers: CHANGELOG lists it and the expected
values move with it."""
from __future__ import annotations

import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from zarr.errors import UnstableSpecificationWarning

from twoclocks.probes.registry import get_probe
from twoclocks.store import open_cube, stale_steps

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOLDEN = sorted(p for p in FIXTURES.glob("golden-*") if p.is_dir())
_spec = importlib.util.spec_from_file_location("make_golden", FIXTURES / "make_golden.py")
make_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_golden)


def test_there_is_a_golden_fixture_and_it_is_small():
    assert GOLDEN, "no tests/fixtures/golden-*: run python tests/fixtures/make_golden.py"
    for g in GOLDEN:
        size = sum(p.stat().st_size for p in g.rglob("*") if p.is_file())
        assert size < 3 << 20, (g.name, size)
        cubes = {c.name for c in g.glob("*/probes/*.zarr")}
        assert {"samples.zarr", "dsm_spectrum.zarr", "markov.zarr", "plane.zarr", "basin.zarr", "ce.zarr"} <= cubes


@pytest.fixture(params=GOLDEN, ids=[g.name for g in GOLDEN])
def golden(request, tmp_path):
    work = tmp_path / request.param.name
    shutil.copytree(request.param, work)   # readers may finish what a writer left; the fixture stays as it is
    return work


def test_golden_cubes_read_back_the_same_numbers(golden):
    expected = json.loads((golden / "expected.json").read_text())
    assert expected["cubes"]
    for key, want in expected["cubes"].items():
        run, cube = key.split("/")
        with warnings.catch_warnings():
            warnings.simplefilter("error", UnstableSpecificationWarning)
            ds = open_cube(golden / run / "probes" / cube)
        got = make_golden.cube_digest(ds)
        for name, (total, n_bad) in want.items():
            assert name in got, f"{key}: {name} is gone"
            assert got[name][1] == n_bad, (key, name)
            assert got[name][0] == pytest.approx(total, rel=1e-12, abs=1e-12), (key, name)
        probe = get_probe(cube[:-len(".zarr")].split("-")[0])
        probe.schema.check(ds)                                    # still a valid cube of its probe
        assert stale_steps(ds, probe.version) == []               # no fix since changed its numbers
        for label in ("split", "direction", "subset", "state_label", "reference", "vertex"):
            if label in ds.coords:
                assert ds[label].dtype.kind == "U"
                ds.sel({label: ds[label].values[0]})               # selection by label


def test_golden_runs_give_the_same_clocks(golden):
    expected = json.loads((golden / "expected.json").read_text())["clocks"]
    got = make_golden.clock_values([golden / name for name in expected])
    for run, clocks in expected.items():
        for k, v in clocks.items():
            if v is None:
                assert got[run][k] is None, (run, k, got[run][k])
            else:
                assert got[run][k] == pytest.approx(v, rel=1e-12), (run, k)
    assert any(v is not None for v in expected.get("planted", {"tau_mem": None}).values())


def test_golden_samples_cube_reports_the_baseline_computed_when_read(golden):
    """A stored baseline is never what the toolkit reports: clocks and the samples probe's reading
    (``with_baselines``, applied to every cube the probe returns) compute it from the run's rule and
    train set (here on a copy whose stored value is wrong, as a frozen baseline of an older version)."""
    import zarr
    from twoclocks.data.rules import support_baseline
    from twoclocks.probes.samples import with_baselines
    from twoclocks.run import open_run
    expected = json.loads((golden / "expected.json").read_text())["clocks"]["planted"]
    path = golden / "planted" / "probes" / "samples.zarr"
    zarr.open_array(str(path / "support_sample_mem"), mode="r+")[...] = 0.5
    zarr.consolidate_metadata(str(path))
    run = open_run(golden / "planted")
    assert float(open_cube(path)["support_sample_mem"]) == 0.5
    right = support_baseline(run.rule, run.config.n_train)
    assert float(with_baselines(open_cube(path), run)["support_sample_mem"]) == pytest.approx(right)
    assert make_golden.clock_values([golden / "planted"])["planted"]["mem_baseline"] == pytest.approx(
        expected["mem_baseline"]) == pytest.approx(right)
