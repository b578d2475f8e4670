"""Clock definitions as data: presets against the sustained-onset primitive, user definitions from a
TOML spec and from Python, the span rule against a brute-force loop, Fig. 23's two-condition clock,
the bootstrap under the same definitions, one-line errors, the recorded attrs, the table's intervals
and the alpha spread under clock uncertainty against scipy's linregress."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tomllib
from scipy.stats import linregress
from typer.testing import CliRunner

from twoclocks import TwoclocksError
from twoclocks.cli import app
from twoclocks.probes.clockdefs import (PRESETS, ClockDef, ClockSet, Condition, Sustain, clocks_from_curves,
                                        clockset_from_options, sustained_onset)
from twoclocks.probes.clocks import alpha_spread, compute_clocks, format_clocks_table
from twoclocks.probes.samples import run_samples
from twoclocks.probes.uncertainty import bootstrap_clocks, bootstrap_indices, run_clock_uncertainty
from twoclocks.sweep import spec_from_dict

runner = CliRunner()


def curves(seed=0, T=60):
    rng = np.random.default_rng(seed)
    steps = np.arange(1, T + 1) * 10
    acc = np.clip(np.linspace(-0.2, 1.2, T) + rng.normal(0, 0.15, T), 0, 1)
    mem = np.clip(np.linspace(-0.5, 0.8, T) + rng.normal(0, 0.1, T), 0, 1)
    return steps, acc, mem


def hand(steps, acc, mem, acc_thr, mem_thr, k=3):
    rule = sustained_onset(steps, acc, acc_thr, k)[0]
    tm = sustained_onset(steps, mem, mem_thr, k, strict=True)[0]
    return (np.nan if np.isfinite(rule) and np.isfinite(tm) and rule > tm else rule), tm


@pytest.mark.parametrize("seed", range(6))
def test_presets_reproduce_the_sustained_onset(seed):
    steps, acc, mem = curves(seed)
    b = 0.2
    for preset, thr in (("adaptive", b + 0.1 * (1 - b)), ("fixed", 0.1), ("above-baseline", b)):
        c = clocks_from_curves(steps, acc, mem, b, clocks=preset)
        assert (c["tau_rule"], c["tau_mem"]) == pytest.approx(hand(steps, acc, mem, 0.9, thr), nan_ok=True)
    default = clocks_from_curves(steps, acc, mem, b)
    old_fixed = clocks_from_curves(steps, acc, mem, b, k=3, acc_threshold=0.9, mem_adaptive=False)
    assert default["clock_set"] == PRESETS["adaptive"][0] and old_fixed["clock_set"] == PRESETS["fixed"][0]


def test_user_definition_from_toml_and_from_python():
    steps, acc, mem = curves(1)
    spec = spec_from_dict(tomllib.loads("""
[grid]
n_train = [16, 32]
[clocks]
preset = "fixed"
[clocks.tau_mem]
conditions = [{var = "sample_mem", op = ">=", threshold = 0.3}, {var = "sample_acc", op = ">", threshold = 0.5}]
k = 2
"""))
    cs = spec.clock_set()
    py = ClockDef("tau_mem", (Condition("sample_mem", ">=", 0.3), Condition("sample_acc", ">", 0.5)), Sustain(2))
    assert cs == clockset_from_options("fixed").replace_clock(py)
    by_hand = sustained_onset(steps, (mem >= 0.3) & (acc > 0.5), None, 2)[0]
    for defs in (cs, [py]):
        c = clocks_from_curves(steps, acc, mem, 0.05, clocks=defs)
        assert c["tau_mem"] == pytest.approx(by_hand, nan_ok=True)
    assert spec_from_dict(spec.to_dict()).clock_set() == cs            # sweep.json round trip


def brute_span(steps, holds, span):
    for i in range(len(steps)):
        later = [j for j in range(i, len(steps)) if steps[j] >= steps[i] + span - 1e-9]
        if later and all(holds[i:later[0] + 1]):
            return float(steps[i])
    return np.nan


def test_span_rule_uniform_and_thinned_grid():
    rng = np.random.default_rng(3)
    steps = np.arange(0, 400, 4.0)
    for _ in range(30):
        v = rng.random(len(steps))
        k = int(rng.integers(1, 6))
        cs = {"k": ClockSet((ClockDef("tau_rule", (Condition("sample_acc", ">=", 0.3),), Sustain(k)),
                             ClockDef("tau_mem", (Condition("sample_mem", ">", 2.0),))))}
        by_k = clocks_from_curves(steps, v, v, clocks=cs["k"])["tau_rule"]
        by_span = clocks_from_curves(steps, v, v, clocks=cs["k"], sustain_steps=4.0 * (k - 1) or None, k=k)
        if k > 1:
            assert by_span["tau_rule"] == pytest.approx(by_k, nan_ok=True)
        thin = np.sort(rng.choice(len(steps), 40, replace=False))      # thinned grid: spans differ from k
        s2, v2 = steps[thin], v[thin]
        got = clocks_from_curves(s2, v2, v2, clocks=cs["k"], sustain_steps=12.0)["tau_rule"]
        assert got == pytest.approx(brute_span(s2, v2 >= 0.3, 12.0), nan_ok=True)
    s = np.array([10.0, 20, 30, 80, 90])                                # by design: k=3 vs a span of 20 steps
    v = np.array([0.0, 1, 1, 1, 0])
    assert clocks_from_curves(s, v, v * 0, clocks=cs["k"], k=3)["tau_rule"] == 20.0
    r = clocks_from_curves(s, v, v * 0, clocks=cs["k"], sustain_steps=70)
    assert np.isnan(r["tau_rule"]) and r["tau_rule_status"] == "never"
    factor = clocks_from_curves(s, v, v * 0, clocks=cs["k"], sustain_factor=1.5)
    assert factor["tau_rule"] == 20.0                                   # 20 -> 30 covers 1.5 x 20


def test_fig23_two_condition_clock():
    steps, acc, mem = curves(4)
    novel = np.clip(acc - mem, 0, 1)
    c = clocks_from_curves(steps, acc, mem, 0.1, clocks="valid-novel", curves={"state_frac[valid_novel]": novel})
    assert c["tau_novel"] == pytest.approx(sustained_onset(steps, (acc >= 0.85) & (novel >= 0.5), None, 3)[0],
                                           nan_ok=True)
    assert c["tau_rule"] == pytest.approx(hand(steps, acc, mem, 0.85, 0.1 + 0.1 * 0.9)[0], nan_ok=True)


def test_bootstrap_uses_the_same_definition():
    rng = np.random.default_rng(0)
    steps = np.arange(1, 41) * 5
    p = np.linspace(0, 1, 40)[:, None]
    valid, memorized = rng.random((40, 50)) < p, rng.random((40, 50)) < p ** 3
    odd = clockset_from_options("fixed").replace_clock(ClockDef(
        "tau_mem", (Condition("sample_mem", ">=", 0.05, "baseline"), Condition("sample_acc", "<", 0.97)),
        Sustain(span=20)))
    r = bootstrap_clocks(steps, valid, memorized, 0.1, n_boot=25, clocks=odd)
    point = clocks_from_curves(steps, valid.mean(1), memorized.mean(1), 0.1, clocks=odd)
    assert (r["tau_mem"], r["tau_rule"]) == pytest.approx((point["tau_mem"], point["tau_rule"]), nan_ok=True)
    for b, idx in enumerate(bootstrap_indices(50, 25, 0)):             # every replicate by the same rule
        one = clocks_from_curves(steps, valid[:, idx].mean(1), memorized[:, idx].mean(1), 0.1, clocks=odd)
        assert r["tau_mem_boot"][b] == pytest.approx(one["tau_mem"], nan_ok=True)


@pytest.mark.parametrize("bad, match", [
    (lambda: Condition("sample_mem", "=>", 0.1), "op"),
    (lambda: Condition("sample_mem", ">", 1.5, "adaptive"), r"\[0, 1\)"),
    (lambda: Sustain(3, span=10, factor=2), "not both"),
    (lambda: Sustain(factor=0.5), "> 1"),
    (lambda: ClockSet((ClockDef("tau_rule", (Condition("sample_acc", ">=", 0.9),)),)), "lack tau_mem"),
    (lambda: clockset_from_options("nope"), "unknown preset"),
    (lambda: spec_from_dict({"clocks": {"tau_mem": {"conditions": [{"var": "sample_mem"}]}}}), "missing op"),
])
def test_bad_definitions_are_one_line_errors(bad, match):
    with pytest.raises(TwoclocksError, match=match) as e:
        bad()
    assert "\n" not in str(e.value)


def test_cli_bad_preset_exit_2(tmp_path):
    res = runner.invoke(app, ["clocks", str(tmp_path), "--clocks", "nope"])
    assert res.exit_code == 2 and "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_attr_round_trips():
    for name, (cs, section) in PRESETS.items():
        attrs = cs.attrs()
        assert ClockSet.from_dict(json.loads(attrs["clock_defs"])) == cs and attrs["clock_preset"] == name
        assert section
    custom = clockset_from_options("fixed", sustain_factor=1.6)
    assert ClockSet.from_dict(custom.attrs()["clock_defs"]) == custom and custom.preset == "custom"


def test_alpha_spread_equals_linregress_loop():
    rng = np.random.default_rng(1)
    n = np.repeat([16.0, 32, 64, 128], 2)
    tau = 20 * n[:, None] ** 1.1 * np.exp(rng.normal(0, 0.2, (8, 300)))
    tau[rng.random(tau.shape) < 0.15] = np.nan
    got = alpha_spread(n, tau, 0.9)
    slopes = []
    for b in range(tau.shape[1]):
        ok = np.isfinite(tau[:, b])
        slopes.append(linregress(np.log(n[ok]), np.log(tau[ok, b])).slope if len(np.unique(n[ok])) >= 2 else np.nan)
    slopes = np.array(slopes)
    np.testing.assert_allclose(got["slopes"], slopes, rtol=1e-9, atol=1e-12)
    fin = slopes[np.isfinite(slopes)]
    assert (got["lo"], got["hi"]) == pytest.approx((np.quantile(fin, 0.05), np.quantile(fin, 0.95)))


@pytest.fixture(scope="module")
def sampled(tiny_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("defs") / "run"
    shutil.copytree(tiny_run, path)
    run_samples(path, steps="0,6,32,60", progress=False)
    return path


def test_table_intervals_equal_run_clock_uncertainty(sampled):
    ds = compute_clocks([sampled], n_boot=200, level=0.8, mem_adaptive=False, acc_threshold=0.3)
    u = run_clock_uncertainty(sampled, n_boot=200, level=0.8, mem_adaptive=False, acc_threshold=0.3)
    for c in ("tau_rule", "tau_mem"):
        for end in ("lo", "hi", "bracket_lo", "bracket_hi"):
            assert float(ds[f"{c}_{end}"][0]) == pytest.approx(float(u[f"{c}_{end}"]), nan_ok=True)
    table = format_clocks_table(ds)
    head, row = table.splitlines()[:2]
    cell = row.split()[head.split().index("mem_ci")]
    lo, hi = float(u.tau_mem_lo), float(u.tau_mem_hi)
    assert cell == ("-" if np.isnan(lo) else f"[{lo:g},{hi:g}]")
    assert ds.attrs["clock_preset"] == "custom" and json.loads(ds.attrs["clock_defs"])["clocks"][0]["name"] == "tau_rule"
