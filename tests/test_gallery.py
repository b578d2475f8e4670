"""docs/make_gallery.py's pure parts (the script itself needs the sweep directories and does not run here):
fit Datasets read back into numbers, the scaling verdicts on synthetic power laws with known exponents,
number formatting, the generated blocks of docs/reproducing.md, and the page against the committed
docs/gallery/numbers.json (the page is what the script renders from it, so it cannot drift)."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from twoclocks.probes.fits import fit_clocks

DOCS = Path(__file__).resolve().parents[1] / "docs"
STEPS = {"units": "steps"}


@pytest.fixture(scope="module")
def mg():
    spec = importlib.util.spec_from_file_location("make_gallery", DOCS / "make_gallery.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_gallery"] = mod  # dataclasses resolve their annotations through sys.modules
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("make_gallery", None)


def power_ds(alpha, c=10.0, sigma=0.1, censor_last=None, seed=0):
    """tau_mem = c N^alpha e (e log-normal), N = 8 ... 256, 3 seeds; the largest N censored at
    ``censor_last`` when given."""
    rng = np.random.default_rng(seed)
    n = np.repeat([8, 16, 32, 64, 128, 256], 3)
    tm = c * n ** alpha * np.exp(sigma * rng.standard_normal(n.size))
    cen = np.full(n.size, np.nan)
    if censor_last is not None:
        big = n == 256
        tm[big], cen[big] = np.nan, censor_last
    return xr.Dataset({"tau_mem": ("run", tm, STEPS), "tau_mem_censored_at": ("run", cen, STEPS)},
                      coords={"run": [f"r{i}" for i in range(n.size)], "n_train": ("run", n),
                              "seed": ("run", np.tile([0, 1, 2], 6)), "group": ("run", np.full(n.size, 3))})


def test_fit_numbers_read_the_fit_dataset(mg):
    fit = fit_clocks(power_ds(1.0), y="tau_mem", x="n_train", model="power")
    (row,) = mg.fit_numbers(fit)
    assert row["n"] == row["n_runs"] == 18 and row["n_censored"] == 0 and row["dof"] == 16
    assert row["ls"]["slope"] == pytest.approx(float(fit["fit_slope"][0]))
    assert row["ls"]["lo"] < row["ls"]["slope"] < row["ls"]["hi"] and row["ls"]["hi"] - row["ls"]["lo"] < 0.2
    assert abs(row["ls"]["slope"] - 1.0) < 0.1
    assert row["ls"]["p_zero"] < 1e-6
    # no censoring: the censored-ML line is the least-squares one
    assert row["ml"]["slope"] == pytest.approx(row["ls"]["slope"], rel=1e-6)
    json.dumps(row)  # JSON-safe (numbers.json)


def test_fit_numbers_loglinear_factor_and_censoring(mg):
    ds = power_ds(1.0, censor_last=1500.0)
    fit = fit_clocks(ds, y="tau_mem", x="n_train", model="loglinear")
    (row,) = mg.fit_numbers(fit)
    assert row["n_censored"] == 3 and row["n"] == 15
    f = row["ls"]
    assert f["factor"] == pytest.approx(np.exp(f["slope"])) and f["factor_lo"] < f["factor"] < f["factor_hi"]
    line = mg.fit_sentence(row, per_unit=True)
    assert "per unit" in line and "censored ML (the 3 censored runs included)" in line


@pytest.mark.parametrize("alpha, verdict", [(1.05, "reproduces"), (0.5, "partly"), (0.0, "does not")])
def test_scaling_verdict_on_planted_exponents(mg, alpha, verdict):
    (row,) = mg.fit_numbers(fit_clocks(power_ds(alpha, sigma=0.1, seed=3), y="tau_mem", x="n_train"))
    got, why = mg.scaling_verdict(row["ls"]["lo"], row["ls"]["hi"], [0.97, 1.06, 1.14], row["ls"]["p_zero"])
    assert got == verdict, (row["ls"], why)
    if verdict == "partly":
        assert "below" in why


def test_compare_and_format(mg):
    assert mg.compare(0.66, 0.86, [0.97, 1.06, 1.14]) == "below"
    assert mg.compare(0.9, 1.1, [0.97, 1.06, 1.14]) == "some"
    assert mg.compare(0.9, 1.2, [0.97, 1.06, 1.14]) == "all"
    assert mg.compare(1.2, 1.3, [0.97, 1.06]) == "above"
    assert mg.fmt(1778.0) == "1778" and mg.fmt(0.75981) == "0.76" and mg.fmt(None) == "-"
    assert mg.fmt(float("nan")) == "-" and mg.fmt_iv(0.76, 0.663, 0.857) == "0.76 [0.663, 0.857]"
    assert mg.clock_cell({"tau_mem": 1413.0, "tau_mem_lo": 1413.0, "tau_mem_hi": 1585.0}, "tau_mem") == \
        "1413 [1413, 1585]"
    assert mg.clock_cell({"tau_mem": None, "tau_mem_censored_at": 4000.0}, "tau_mem") == "> 4000"
    assert mg.clock_cell({"tau_rule": None, "tau_rule_raw": 224.0}, "tau_rule").startswith("discarded")
    table = mg.md_table(["a", "b"], [["x|y", "1"]])
    assert table.splitlines()[2] == "| x\\|y | 1 |"


def test_replace_block_keeps_the_prose(mg):
    page = "intro\n<!-- gallery:x -->\nold\n<!-- /gallery:x -->\noutro\n"
    new = mg.replace_block(page, "x", "new 1\nnew 2")
    assert new == "intro\n<!-- gallery:x -->\nnew 1\nnew 2\n<!-- /gallery:x -->\noutro\n"
    assert mg.replace_block(new, "x", "new 1\nnew 2") == new
    with pytest.raises(ValueError, match="gallery:y"):
        mg.replace_block(page, "y", "z")


def test_parse_times(mg, tmp_path):
    p = tmp_path / "times.txt"
    p.write_text("n_sweep train_s=2550 probe_s=316 rc_done=22:38\nALLDONE\n")
    assert mg.parse_times(p) == {"n_sweep": {"train_s": 2550, "probe_s": 316}}


def test_shrink_png(mg, tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    src, dst = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(rng.integers(0, 255, (400, 2400, 3), dtype=np.uint8)).save(src)
    size = mg.shrink_png(src, dst, max_width=1000, max_bytes=10 ** 9)
    assert Image.open(dst).size == (1000, 167) and size == dst.stat().st_size


def test_page_is_rendered_from_numbers(mg):
    """docs/reproducing.md is what make_gallery renders from docs/gallery/numbers.json; every figure and
    table of the paper has a row; every image it shows is in docs/gallery/ and small."""
    numbers = json.loads((DOCS / "gallery" / "numbers.json").read_text())
    page = (DOCS / "reproducing.md").read_text()
    assert mg.render(page, numbers) == page, "run `python docs/make_gallery.py --render-only`"
    figs, tabs = mg.covered_figures(mg.figure_rows(numbers))
    assert set(range(1, 29)) <= figs, sorted(set(range(1, 29)) - figs)
    assert set(range(1, 5)) <= tabs, sorted(set(range(1, 5)) - tabs)
    rows = mg.figure_rows(numbers)
    assert all(r.verdict in mg.VERDICT_ORDER for r in rows)
    imgs = mg.page_images(numbers)
    assert imgs
    for name in imgs:
        assert f"gallery/{name}" in page
        p = DOCS / "gallery" / name
        assert p.exists() and p.stat().st_size <= mg.MAX_BYTES, name
    assert sum((DOCS / "gallery" / n).stat().st_size for n in imgs) < 2_000_000


def test_at_clock(mg):
    steps = np.array([0, 10, 20, 30])
    assert mg._at_clock(steps, 20.0) == 20 and mg._at_clock(steps, 15.0) == 20
    assert mg._at_clock(steps, 20.0, before=True) == 10 and mg._at_clock(steps, 0.0, before=True) is None
    assert mg._at_clock(steps, None) is None and mg._at_clock(steps, 31.0) is None


def test_ce_numbers_gaps_at_the_clocks(mg):
    steps, splits = [0, 10, 20, 40], ["train", "heldout", "hypercube"]
    det = np.array([[0.7, 0.7, 0.7], [0.01, 0.01, 2.0], [0.0, 0.0, 3.0], [0.0, 0.0, 4.0]])
    free = np.array([[0.7, 0.7, 0.7], [0.69, 0.7, 0.7], [0.5, 1.0, 1.1], [0.3, 2.0, 2.1]])
    ce = xr.Dataset({"ce_determined": (("step", "split"), det), "ce_free": (("step", "split"), free)},
                    coords={"step": steps, "split": splits})
    out = mg.ce_numbers(ce, {"tau_rule": 10.0, "tau_mem": 20.0})
    assert out["steps"] == {"tau_rule": 10, "tau_mem": 20, "last": 40}
    assert out["tau_rule"]["hypercube-train determined"] == pytest.approx(1.99)
    assert out["tau_rule"]["hypercube-train free"] == pytest.approx(0.01)
    assert out["tau_mem"]["heldout-train free"] == pytest.approx(0.5)
    assert out["last"]["heldout-train determined"] == pytest.approx(0.0)
    # the verdict reads those gaps: the determined positions first, the held-out gap at tau_mem
    v, _ = mg._ce_verdict({"ce": {"arch=gpt": out}, "constant": {"group": 2}})
    assert v == "reproduces"
    flat = {k: {g: 0.0 for g in out["tau_rule"]} for k in ("tau_rule", "tau_mem")}
    assert mg._ce_verdict({"ce": {"arch=gpt": {"steps": out["steps"], **flat}}})[0] == "does not"


def test_markov_and_nn_numbers(mg):
    states = ["invalid_value", "rule_error", "valid_novel", "valid_memorized"]
    counts = np.zeros((1, 4, 4), int)
    counts[0, 1] = [0, 2, 8, 0]        # rule_error: 2 of 10 moves stay
    counts[0, 3] = [0, 0, 3, 9]        # memorized: 9 of 12 stay
    prob = counts / np.maximum(counts.sum(-1, keepdims=True), 1)
    m = xr.Dataset({"window_counts": (("window", "state_from", "state_to"), counts),
                    "window_prob": (("window", "state_from", "state_to"), prob)},
                   coords={"window": ["after_tau_mem"], "state_from": states, "state_to": states,
                           "window_start": ("window", [100]), "window_end": ("window", [200])})
    out = mg.markov_numbers(m)["after_tau_mem"]
    assert out["states"]["rule_error"] == {"stay": pytest.approx(0.2), "n": 10}
    assert out["states"]["valid_memorized"]["stay"] == pytest.approx(0.75)
    assert out["states"]["invalid_value"] == {"stay": None, "n": 0}
    g = {"markov": {"group=3__seed=1": {"after_tau_mem": out}}}
    assert mg._markov_verdict(g)[0] == "reproduces"
    nn = xr.DataArray(np.array([[8.0, 8.0, 8.0], [7.9, 7.9, 7.95], [7.0, 7.0, 7.5], [4.0, 4.0, 7.4]]),
                      dims=("step", "subset"), coords={"step": [10, 20, 40, 80], "subset": ["all", "valid",
                                                                                          "valid_novel"]})
    got = mg.nn_numbers(nn, {"tau_rule": 20.0, "tau_mem": 80.0})
    assert got["steps"] == [20, 40] and got["valid_novel"] == [pytest.approx(7.95), pytest.approx(7.5)]
    assert mg._nn_verdict({"nn": {"group=3__seed=1": got}})[0] == "reproduces"
    flat = {**got, "valid_novel": [7.95, 7.9]}
    assert mg._nn_verdict({"nn": {"group=3__seed=1": flat}})[0] == "does not"


def test_dsm_numbers_and_verdict(mg):
    dsm = xr.Dataset({"tau_rule_loss": ((), 708.0), "tau_mem_loss": ((), np.nan)}, coords={"step": [0, 708, 1000]},
                     attrs={"criterion_band_rule": "[0.2, 2.0]", "criterion_threshold_rule": 0.1, "criterion_z": 3.0})
    x = mg.dsm_numbers(dsm)
    assert x == {"tau_rule_loss": 708.0, "tau_mem_loss": None, "steps": [0, 708, 1000], "band": [0.2, 2.0],
                 "threshold": 0.1, "z": 3.0}
    dg = {"dsm": {"arch=dit": x}, "constant": {"group": 2},
          "runs": [{"run": "arch=dit", "config": {"arch": "dit"}, "tau_rule": 1000.0, "tau_mem": None,
                    "tau_mem_censored_at": 4000.0}]}
    assert mg._dsm_verdict(dg, "")[0] == "partly"
    assert "708" in mg._dsm_cpu(dg) and "> 4000" in mg._dsm_cpu(dg)
    late = {**dg, "dsm": {"arch=dit": {**x, "tau_rule_loss": 3000.0}}}
    assert mg._dsm_verdict(late, "")[0] == "does not"


def test_fit_sentence_of_a_group_that_never_reached_the_clock(mg):
    row = {"n": 0, "n_runs": 3, "n_censored": 3, "dof": None, "level": 0.95,
           "ls": dict.fromkeys(("slope", "lo", "hi", "factor", "factor_lo", "factor_hi", "p_zero")),
           "ml": dict.fromkeys(("slope", "lo", "hi", "factor", "factor_lo", "factor_hi", "p_zero"))}
    assert mg.fit_sentence(row, per_unit=True) == "no fit: none of the 3 runs reached the clock (3 censored)"
