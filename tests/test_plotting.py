"""Figures (twoclocks.plotting): every function on small synthetic cubes with the probes' schemas,
then `plot_run` / `twoclocks-probe plot` on the tiny run with only some cubes, then all of them."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks import plotting as P
from twoclocks.plotting import dsm as PD

matplotlib = pytest.importorskip("matplotlib")

STEPS = np.array([0, 1, 3, 10, 30, 100, 300, 1000, 3000])  # spans decades: symlog step axes


# ------------------------------------------------------------------------------------ factories
def make_samples(steps=STEPS, n_seed=48, n_train=16, batch=8, group=2, seed=0) -> xr.Dataset:
    """A samples cube built by the real SampleEvaluator on synthetic model-space samples: each seed
    passes through the four states in order (unquantized -> rule error -> valid novel -> memorized)
    at its own log-uniform times, like a model learning the rule and then memorizing."""
    from twoclocks.data import make_encoding, make_rule
    from twoclocks.probes.samples import SCHEMA, SampleEvaluator
    rng = np.random.default_rng(seed)
    rule, enc = make_rule({"name": "parity", "height": 4, "width": 4, "group": group}), make_encoding("binary", 2)
    pool = np.unique(rule.sample(4 * n_train, rng), axis=0)
    train, novel = pool[:n_train], pool[n_train:]
    ev = SampleEvaluator(rule, enc, train)
    t = np.sort(10 ** rng.uniform(0, np.log10(steps.max() * 2), (n_seed, 3)), axis=1)  # t_quant < t_valid < t_mem
    broken = rule.sample(n_seed, rng)
    broken[:, 0] ^= 1  # first group now odd: rule error
    noise = rng.normal(0, 0.4, (n_seed, rule.D))
    pieces = []
    for s in steps:
        x = np.where((s < t[:, 0])[:, None], noise, enc.encode(broken))
        x = np.where(((s >= t[:, 1]) & (s < t[:, 2]))[:, None], enc.encode(novel[np.arange(n_seed) % len(novel)]), x)
        x = np.where((s >= t[:, 2])[:, None], enc.encode(train[np.arange(n_seed) % n_train]), x)
        ds = ev.evaluate(x.astype(np.float32), seeds=np.arange(n_seed)).expand_dims(step=[int(s)])
        pieces.append(ds)
    ds = xr.concat(pieces, dim="step", data_vars="minimal", coords="minimal", compat="override")
    ds = ds.merge(ev.baselines(), combine_attrs="drop_conflicts")
    ds.attrs.update(eps_state=0.1, run_config=json.dumps({"n_train": n_train, "batch": batch, "group": group}))
    return SCHEMA.apply(ds)  # the attrs a stored cube has: the schema's


def make_markov(samples, windows=((0, 10), (10, 300), (300, 3000))) -> xr.Dataset:
    """The markov cube's window variables from a samples cube (transition_counts / row_normalize)."""
    from twoclocks.probes.markov import row_normalize, transition_counts
    from twoclocks.probes.samples import STATES
    steps = samples["step"].values
    counts = transition_counts(samples["state"].transpose("step", "seed").values)
    member = np.array([(steps[:-1] >= lo) & (steps[1:] <= hi) for lo, hi in windows]).astype(np.int64)
    wc = np.einsum("wp,pij->wij", member, counts)
    lab = {"long_name": "sample state"}
    return xr.Dataset(
        {"window_counts": (("window", "state_from", "state_to"), wc, {"long_name": "transition counts", "units": "1"}),
         "window_prob": (("window", "state_from", "state_to"), row_normalize(wc),
                         {"long_name": "transition probability in the window", "units": "1"})},
        coords={"window": ("window", [f"{lo}:{hi}" for lo, hi in windows]),
                "window_start": ("window", [lo for lo, _ in windows]),
                "window_end": ("window", [hi for _, hi in windows]),
                "state_from": ("state_from", list(STATES), lab), "state_to": ("state_to", list(STATES), lab)})


def make_dsm(steps=STEPS, n_sigma=14) -> xr.Dataset:
    """A DSM spectrum cube: losses of the shape s^2/(1+s^2), with a held-out minus train gap that opens
    near sigma = 1 late in training; the derived variables come from the real add_derived."""
    from twoclocks.probes.dsm import LOSS_UNITS, add_derived
    sig = np.geomspace(0.002, 80, n_sigma)
    base = sig ** 2 / (1 + sig ** 2)
    bump = np.exp(-np.log(sig) ** 2)
    t = np.log1p(steps)[:, None] / np.log1p(steps.max())
    loss = np.stack([base * (1 - 0.5 * t ** 3 * bump), base * (1 - 0.2 * t * bump), base * (1 + 0 * t)], 1)
    ref = np.stack([np.stack([base * 0.6, base * 0.6, base]), np.stack([base * 0.01, base, base])])
    attrs = {"long_name": "unweighted DSM loss (1/P)||D(x + s n; s) - x||^2, mean over the fixed subset",
             "units": LOSS_UNITS}
    ds = xr.Dataset(
        {"loss": (("step", "split", "sigma"), loss, attrs),
         "loss_se": (("step", "split", "sigma"), 0.01 * loss, {"long_name": "standard error", "units": LOSS_UNITS}),
         "loss_weighted": (("step", "split", "sigma"), loss * 5, {"long_name": "EDM-weighted", "units": LOSS_UNITS}),
         "reference_loss": (("reference", "split", "sigma"), ref, attrs),
         "reference_loss_weighted": (("reference", "split", "sigma"), ref * 5, attrs)},
        coords={"step": ("step", steps, {"long_name": "training step", "units": "steps"}),
                "split": ["train", "heldout", "hypercube"], "reference": ["ideal-rule", "memorize"],
                "sigma": ("sigma", sig, {"long_name": "noise level s (log grid)", "units": "model-space units"})})
    return add_derived(ds)


def make_ce(steps=STEPS, D=8, G=2) -> xr.Dataset:
    """A GPT ce cube: determined positions (last bit of each group) collapse to 0 nats, free ones to ln 2."""
    pos = np.arange(D)
    det = (pos % G) == G - 1
    t = np.log1p(steps)[:, None] / np.log1p(steps.max())
    per = np.where(det, 0.7 * (1 - t), 0.7 - 0.02 * t)
    ce = np.stack([per * 0.95, per, per * (1 + 2 * t * det)], 1)
    ideal = np.stack([np.where(det, 0, np.log(2))] * 2 + [np.where(det, np.inf, np.log(2))])
    nat = lambda n: {"long_name": n, "units": "nats"}  # noqa: E731
    ds = xr.Dataset({"ce": (("step", "split", "position"), ce, nat("per-position next-token cross-entropy")),
                     "ce_ideal": (("split", "position"), ideal, nat("ideal rule model's cross-entropy"))},
                    coords={"step": steps, "split": ["train", "heldout", "hypercube"],
                            "position": ("position", pos, {"long_name": "cell index t", "units": "1"}),
                            "determined": ("position", det)})
    ds["ce_mean"] = ds["ce"].mean("position").assign_attrs(nat("cross-entropy averaged over positions"))
    ds["ce_ideal_mean"] = ds["ce_ideal"].mean("position").assign_attrs(nat("ideal mean"))
    return ds


def make_plane(steps=(0, 100, 3000), anchors=(0, 1), sigmas=(0.5, 1.0), grid=17) -> xr.Dataset:
    """A plane cube: the field of the ideal denoiser of the four face vertices (a softmax over them),
    with x_a gaining weight over training (its basin grows)."""
    r2 = np.sqrt(2)
    vert = np.array([[-r2, 0], [r2, 0], [0, r2], [0, -r2]])
    u = np.linspace(-2, 2, grid)
    X = np.stack(np.meshgrid(u, u, indexing="ij"), -1)  # (u, v, 2)
    out = np.zeros((4, len(steps), len(anchors), len(sigmas), grid, grid))
    for i, st in enumerate(steps):
        w = np.array([1 + np.log1p(st), 1.0, 0.3, 0.3])
        for k, s in enumerate(sigmas):
            logit = -((X[..., None, :] - vert) ** 2).sum(-1) / (2 * s ** 2) + np.log(w)
            p = np.exp(logit - logit.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            D = p @ vert
            score = (D - X) / s ** 2
            out[:, i, :, k] = np.stack([np.hypot(score[..., 0], score[..., 1]), score[..., 0], score[..., 1],
                                        D[..., 0]])[:, None]
    dims = ("step", "anchor", "sigma", "u", "v")
    unit = {"units": "model-space unit"}
    data = {n: (dims, out[j].astype(np.float32), {"long_name": n, "units": "1 / model-space unit"})
            for j, n in enumerate(("score_norm", "score_u", "score_v", "attraction"))}
    na = len(anchors)
    return xr.Dataset(data, coords={
        "step": list(steps), "anchor": list(anchors), "sigma": ("sigma", list(sigmas), {"long_name": "noise level s"}),
        "u": ("u", u, {"long_name": "plane coordinate along unit(x_b - x_a)", **unit}),
        "v": ("v", u, {"long_name": "plane coordinate toward x_c", **unit}), "vertex": ["a", "b", "c", "d"],
        "vertex_u": (("anchor", "vertex"), np.tile(vert[:, 0], (na, 1))),
        "vertex_v": (("anchor", "vertex"), np.tile(vert[:, 1], (na, 1)))})


def make_basin(steps=(0, 100, 3000), n_anchor=6, sigmas=(0.5, 1.0), n_alpha=11) -> xr.Dataset:
    """A basin cube: per-anchor step profiles whose radius grows with training, summarized by the real
    basin.summarize (bootstrap intervals, basin radius)."""
    from twoclocks.landscape.basin import DIRECTIONS, alpha_grid, summarize
    rng = np.random.default_rng(1)
    alpha = alpha_grid(n_alpha)
    radius = 0.3 + 0.15 * np.log10(1 + np.asarray(steps))[:, None, None, None, None] \
        + 0.05 * rng.standard_normal((len(steps), n_anchor, len(sigmas), len(DIRECTIONS), 1))
    inside = alpha < radius
    ham = np.where(inside, 0, np.array([1, 2, 4])[:, None]).astype(np.int32)
    l2 = np.where(inside, 0.5, 2.0) + 0.1 * alpha
    dims = ("step", "anchor", "sigma", "direction", "alpha")
    ds = xr.Dataset({"exact_match": (dims, ham == 0, {"long_name": "exact match", "units": "1"}),
                     "hamming": (dims, ham, {"long_name": "Hamming distance", "units": "pixels"}),
                     "l2": (dims, l2.astype(np.float32), {"long_name": "||D - x_a||", "units": "model-space unit"})},
                    coords={"step": list(steps), "anchor": np.arange(n_anchor), "sigma": list(sigmas),
                            "direction": list(DIRECTIONS),
                            "alpha": ("alpha", alpha, {"long_name": "position on the line", "units": "1"})})
    return summarize(ds, n_resamples=50)


def make_clocks(groups=(2, 3), ns=(16, 32, 64), c=3.0, alpha=1.1) -> xr.Dataset:
    """A clocks Dataset (dim run, config coords) with tau_mem = c N^alpha exactly and the fits of the
    real fit_power_law per G; one run never reaches tau_mem."""
    from twoclocks.probes.clocks import fit_power_law
    g, n = (a.ravel() for a in np.meshgrid(groups, ns, indexing="ij"))
    tau_mem = c * n.astype(float) ** alpha * g
    tau_mem[-1] = np.nan
    tau_rule = 10.0 ** g
    fits = [fit_power_law(n[g == gv], tau_mem[g == gv]) for gv in groups]
    step = {"units": "steps"}
    return xr.Dataset(
        {"tau_rule": ("run", tau_rule, {"long_name": "rule clock", **step}),
         "tau_mem": ("run", tau_mem, {"long_name": "memorization clock", **step}),
         "mem_threshold": ("run", np.full(len(g), 0.1)),
         "fit_index": ("run", np.searchsorted(groups, g)),
         "fit_label": ("fit", [f"group={gv}" for gv in groups]),
         **{f"fit_{k}": ("fit", [f[k] for f in fits]) for k in ("c", "alpha", "r2", "n")}},
        coords={"run": [f"r{i}" for i in range(len(g))], "group": ("run", g, {"long_name": "config: group"}),
                "n_train": ("run", n, {"long_name": "config: n_train"}), "batch": ("run", np.full(len(g), 8)),
                "fit": np.arange(len(groups))})


def make_collect(groups=(2, 3), ns=(16, 32, 64)) -> xr.Dataset:
    """The sweep's collect schema: fits per G and pooled over G (fit_member / fit_pooled_over, no
    fit_index); config values constant over the sweep dropped from the coords into attrs."""
    from twoclocks.probes.clocks import fit_power_law
    ck = make_clocks(groups, ns).drop_vars([v for v in make_clocks(groups, ns).variables if str(v).startswith("fit")])
    g, n, tau = ck.group.values, ck.n_train.values, ck.tau_mem.values
    members = [g == gv for gv in groups] + [np.ones(len(g), bool)]
    fits = [fit_power_law(n[m], tau[m]) for m in members]
    ck = ck.assign_coords(fit=np.arange(len(fits)))
    ck["fit_member"] = (("fit", "run"), np.array(members))
    ck["fit_pooled_over"] = ("fit", [""] * len(groups) + ["group"])
    ck["fit_label"] = ("fit", [f"group={gv}" for gv in groups] + ["all runs (pooled over group)"])
    for k in ("c", "alpha", "r2", "n"):
        ck[f"fit_{k}"] = ("fit", [f[k] for f in fits])
    if len(groups) == 1:
        ck = ck.drop_vars("group").assign_attrs(constant_config=json.dumps({"group": groups[0], "batch": 8}))
    return ck


# ------------------------------------------------------------------------------------ checks
def render(fig):
    """Draw the figure (Agg) with every warning an error (layout, log axes, NaN handling...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        canvas.draw()
    return canvas.get_renderer()


def is_colorbar(ax) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def assert_readable(fig, n_axes):
    """n_axes axes; outer axes labelled, colorbars labelled; legends cover no axes; no warnings."""
    from matplotlib.figure import Figure
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes, [a.get_label() for a in fig.axes]
    r = render(fig)
    for ax in fig.axes:
        if is_colorbar(ax):
            assert ax._colorbar.ax.get_ylabel() or ax._colorbar.ax.get_xlabel(), "unlabelled colorbar"
            continue
        spec = ax.get_subplotspec()
        if spec.is_last_row():
            assert ax.get_xlabel(), f"no x label on {ax.get_title()!r}"
        if spec.is_first_col():
            assert ax.get_ylabel(), f"no y label on {ax.get_title()!r}"
    legends = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend() is not None]
    for leg in legends:
        box = leg.get_window_extent(r)
        for ax in fig.axes:
            if not is_colorbar(ax):
                assert not box.overlaps(ax.get_window_extent(r)), f"legend covers panel {ax.get_title()!r}"
        if fig._suptitle is not None:
            assert not box.overlaps(fig._suptitle.get_window_extent(r)), "legend covers the title"


def call_quietly(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kw)


@pytest.fixture(scope="module")
def samples():
    return make_samples()


# ------------------------------------------------------------------------------------ tests
def test_learning_dynamics(samples):
    from twoclocks.plotting.load import run_clock_values
    from twoclocks.probes.clocks import clocks_from_curves
    bare = call_quietly(P.plot_learning_dynamics, samples)       # no clocks given: none drawn, none computed
    assert bare._suptitle.get_text() == "Learning dynamics"
    assert not [p for p in bare.axes[0].patches if p.get_width() != 0]
    fig = call_quietly(P.plot_learning_dynamics, samples, clocks=run_clock_values(samples))
    assert_readable(fig, 2)
    ax = fig.axes[0]
    assert ax.get_xscale() == "symlog"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), samples["sample_acc"].values)
    np.testing.assert_allclose(fig.axes[1].lines[1].get_ydata(), samples["group_mem"].values)
    # the loading layer's clocks: computed from the curves as `clocks` does, named in the title
    c = clocks_from_curves(samples.step.values, samples.sample_acc.values, samples.sample_mem.values,
                           float(samples.uniform_valid_sample_mem))
    assert np.isfinite(c["tau_mem"]) and f"tau_mem = {c['tau_mem']:g}" in fig._suptitle.get_text()
    hlines = [line.get_ydata()[0] for line in ax.lines if len(set(line.get_ydata())) == 1]
    b = float(samples.uniform_valid_sample_mem)
    # the package's one policy (adaptive, as `clocks`), drawn and named in the title
    assert c["mem_threshold"] == pytest.approx(b + 0.1 * (1 - b)) and c["mem_threshold"] in hlines
    assert f"adaptive threshold {b + 0.1 * (1 - b):.3g}" in fig._suptitle.get_text()
    fig_f = call_quietly(P.plot_learning_dynamics, samples, clocks=run_clock_values(samples, mem_adaptive=False))
    assert "fixed threshold 0.1" in fig_f._suptitle.get_text()
    # a user's slice: linear step axis when steps do not span decades; explicit clocks
    fig2 = call_quietly(P.plot_learning_dynamics, samples.isel(step=slice(2, 5)), clocks={"tau_rule": 3, "tau_mem": 10})
    assert_readable(fig2, 2)
    assert fig2.axes[0].get_xscale() == "linear"
    assert "tau_rule = 3" in fig2._suptitle.get_text()
    span = [p for p in fig2.axes[0].patches if p.get_width() != 0][0]  # the innovation window [3, 10]
    assert (span.get_x(), span.get_x() + span.get_width()) == pytest.approx((3, 10))


def test_state_raster_sorted_by_first_memorized_step(samples):
    fig = call_quietly(P.plot_state_raster, samples)
    assert_readable(fig, 2)
    mesh = fig.axes[1].collections[0]
    st = np.asarray(mesh.get_array()).reshape(samples.sizes["seed"], samples.sizes["step"])
    first_mem = np.where((st == 3).any(1), (st == 3).argmax(1), st.shape[1])
    assert np.all(np.diff(first_mem) >= 0)
    assert sorted(st.ravel().tolist()) == sorted(samples.state.values.ravel().tolist())  # a permutation of seeds
    bars = fig.axes[0].patches  # stacked state counts: the columns of a step add up to n_seed
    tops = {}
    for r in bars:
        tops[round(r.get_x(), 9)] = max(tops.get(round(r.get_x(), 9), 0), r.get_y() + r.get_height())
    assert len(tops) == samples.sizes["step"] and set(tops.values()) == {samples.sizes["seed"]}


def test_transitions(samples):
    mk = make_markov(samples)
    fig = call_quietly(P.plot_transitions, mk)
    assert_readable(fig, mk.sizes["window"] + 1)
    img = fig.axes[1].images[0].get_array()
    np.testing.assert_allclose(np.ma.filled(img, np.nan), mk.window_prob.values[1], equal_nan=True)


def test_nn_hamming(samples):
    fig = call_quietly(P.plot_nn_hamming, samples)
    assert_readable(fig, 1)
    lines = {l.get_label(): l for l in fig.axes[0].lines}
    np.testing.assert_allclose(lines["all samples"].get_ydata(), samples.nn_hamming_mean.sel(subset="all").values)
    assert "cells" in fig.axes[0].get_ylabel()  # units from the cube
    from matplotlib.figure import Figure  # drawing into the user's Axes / SubFigure
    user = Figure(figsize=(16, 4), layout="constrained")
    left, right = user.subfigures(1, 2)
    ax = left.subplots()
    assert call_quietly(P.plot_nn_hamming, samples, ax=ax) is user and ax.lines
    assert call_quietly(P.plot_transitions, make_markov(samples), fig=right) is user
    assert len(user.axes) == 1 + 3 + 1
    render(user)


def test_dsm_figures(samples):
    dsm = make_dsm()
    fig = call_quietly(P.plot_dsm_spectrum, dsm)
    assert_readable(fig, 4)
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"
    fig = call_quietly(P.plot_dsm_spectrum, dsm, steps=[0, 3000], weighted=True)
    assert_readable(fig, 2)
    fig = call_quietly(P.plot_dsm_bands, dsm)
    bands = PD._default_bands(dsm.sigma.values)
    assert_readable(fig, len(bands))
    fig = call_quietly(P.plot_dsm_bands, dsm, samples, bands=[(0.2, 2.0)])
    assert_readable(fig, 2)
    sel = dsm.sigma.values[(dsm.sigma.values >= 0.2) & (dsm.sigma.values <= 2.0)]
    want = dsm.loss.sel(split="train", sigma=sel).mean("sigma").values
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), want)
    fig = call_quietly(P.plot_dsm_gap, dsm)
    assert_readable(fig, 3)
    mesh = fig.axes[0].collections[0]
    keep = (dsm.sigma >= 0.1) & (dsm.sigma <= 5.0)
    np.testing.assert_allclose(np.asarray(mesh.get_array()).ravel(),
                               dsm.gap.sel(sigma=keep).transpose("sigma", "step").values.ravel())
    lo, hi = mesh.get_clim()
    assert lo == -hi and hi > 0  # diverging scale centred on 0


def test_ce():
    ce = make_ce()
    fig = call_quietly(P.plot_ce, ce)
    assert_readable(fig, 3)
    markers = [l for l in fig.axes[1].lines if l.get_marker() == ">"]
    np.testing.assert_array_equal(markers[0].get_ydata(), ce.position.values[ce.determined.values])


def test_plane():
    pl = make_plane()
    fig = call_quietly(P.plot_plane, pl)
    n_panels = 2 * pl.sizes["step"] * pl.sizes["sigma"]
    assert_readable(fig, n_panels + 2 * pl.sizes["step"])
    ax = fig.axes[0]
    xs = sorted(round(float(l.get_xdata()[0]), 6) for l in ax.lines)
    assert xs == sorted(round(float(x), 6) for x in pl.vertex_u.isel(anchor=0).values)
    assert ax.collections[0].cmap.name == "magma" and fig.axes[pl.sizes["sigma"]].collections[0].cmap.name == "RdBu_r"
    fig = call_quietly(P.plot_plane, pl, anchor="mean", steps=[3000], sigmas=[1.0])
    assert_readable(fig, 2 + 2)


def test_basin():
    b = make_basin()
    fig = call_quietly(P.plot_basin, b, sigma=0.5)
    assert_readable(fig, 9)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(),
                               b.exact_match_mean.sel(step=0, sigma=0.5, direction="h1_invalid").values)


def test_clock_scaling_fit_lines_pass_through_exact_power_laws():
    ck = make_clocks()
    fig = call_quietly(P.plot_clock_scaling, ck)
    assert_readable(fig, 2)
    ax = fig.axes[1]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    dashed = [l for l in ax.lines if l.get_linestyle() == "--"]
    assert len(dashed) == 2
    for line, gv in zip(dashed, (2, 3)):
        x, y = line.get_xdata(), line.get_ydata()
        np.testing.assert_allclose(y, 3.0 * gv * x ** 1.1, rtol=1e-9)  # tau_mem = c G N^1.1 by construction
    assert "1 of 6 runs without tau_mem" in ax.get_title()
    assert_readable(call_quietly(P.plot_clock_scaling, ck.drop_vars("group")), 1)


def test_clock_scaling_on_the_collect_schema():
    ck = make_collect()
    fig = call_quietly(P.plot_clock_scaling, ck)
    assert_readable(fig, 2)
    ax = fig.axes[1]
    pooled = [l for l in ax.lines if l.get_linestyle() == "-."]
    assert len(pooled) == 1 and len([l for l in ax.lines if l.get_linestyle() == "--"]) == 2
    f = ck.isel(fit=2)
    x = pooled[0].get_xdata()
    np.testing.assert_allclose(pooled[0].get_ydata(), float(f.fit_c) * x ** float(f.fit_alpha))
    one_g = make_collect(groups=(3,))  # G constant over the sweep: read from attrs
    assert "group" not in one_g.variables
    fig = call_quietly(P.plot_clock_scaling, one_g)
    assert_readable(fig, 2)
    xs = np.concatenate([line.get_xdata() for line in fig.axes[0].lines])
    assert len(xs) == 2 * 3 and set(xs) == {3}  # tau_rule and tau_mem of the 3 runs, all at G = 3


def test_memorization_collapse():
    runs = [make_samples(n_train=n, batch=8, seed=i) for i, n in enumerate((16, 32))]
    ck = make_clocks(groups=(2,), ns=(16, 32))
    fig = call_quietly(P.plot_memorization_collapse, ck, runs)
    assert_readable(fig, 2)
    right = [l for l in fig.axes[1].lines if l.get_linestyle() == "-" and len(l.get_xdata()) > 2]
    np.testing.assert_allclose(right[1].get_xdata(), (runs[1].step.values + 1) * 8 / 32)
    no_cfg = [r.drop_attrs() for r in runs]
    assert_readable(call_quietly(P.plot_memorization_collapse, ck, no_cfg), 2)  # N, batch from the clocks coords
    with pytest.raises(TwoclocksError, match="N and batch"):
        P.plot_memorization_collapse(None, no_cfg)


def test_missing_variable_is_a_clear_error(samples):
    with pytest.raises(TwoclocksError, match="sample_acc"):
        P.plot_learning_dynamics(samples.drop_vars("sample_acc"))
    with pytest.raises(TwoclocksError, match="--format"):
        P.parse_formats("png,nope")


def test_style_is_local():
    import matplotlib as mpl
    before = dict(mpl.rcParams)
    P.plot_ce(make_ce())
    assert dict(mpl.rcParams) == before


# ------------------------------------------------------------------------------------ real run
def test_plot_run_on_tiny_run(tiny_run, tmp_path):
    """Real probes on the tiny run: with only the samples cube, `plot_run` draws its figures and notes
    each missing cube in one line; with all cubes, `twoclocks-probe plot` draws everything."""
    from typer.testing import CliRunner

    from twoclocks.cli import app
    from twoclocks.landscape.basin import run_basin
    from twoclocks.landscape.plane import run_plane
    from twoclocks.probes.dsm import run_dsm_spectrum
    from twoclocks.probes.markov import compute_markov
    from twoclocks.probes.samples import run_samples
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    run_samples(run, steps="0,60", device="cpu", progress=False)  # 2 steps: the fewest markov takes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = P.plot_run(run)
    assert sorted(p.name for p in res) == ["learning_dynamics.png", "nn_hamming.png", "state_raster.png"]
    assert all(p.is_file() and p.parent == run / "figures" for p in res)
    assert len(res.notes) == 4 and all("\n" not in n for n in res.notes)
    for cube, cmd in (("markov", "markov"), ("dsm_spectrum", "dsm-spectrum"), ("plane", "plane"), ("basin", "basin")):
        assert any(n.startswith(f"skipped {cube}: no probes/{cube}.zarr") and f"twoclocks-probe {cmd} " in n
                   for n in res.notes), res.notes

    compute_markov(run, windows="0:60")
    run_dsm_spectrum(run, steps="0,60", n_sigma=8, n_subset=16, device="cpu", progress=False)
    run_plane(run, [0], (1.0,), steps="60", grid=9, device="cpu", progress=False)
    run_basin(run, [0, 1], (1.0,), steps="0,60", n_alpha=5, n_resamples=20, device="cpu", progress=False)
    out = tmp_path / "figs"
    r = CliRunner().invoke(app, ["plot", str(run), "--out", str(out), "--format", "png,pdf", "--mem-adaptive"])
    assert r.exit_code == 0, r.output
    names = {"learning_dynamics", "state_raster", "nn_hamming", "transitions", "dsm_spectrum", "dsm_bands", "dsm_gap",
             "plane", "basin"}
    assert {p.name for p in out.iterdir()} == {f"{n}.{f}" for n in names for f in ("png", "pdf")}
    assert "skipped" not in r.output and r.output.count(str(out)) == 2 * len(names)

    across = P.plot_runs([run], tmp_path / "across")
    assert [p.name for p in across] == ["clock_scaling.png", "memorization_collapse.png"]

    bad = CliRunner().invoke(app, ["plot", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "does not exist" in bad.output and "Traceback" not in bad.output
