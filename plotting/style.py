"""Shared style and helpers of every figure: palettes, state and split colours, labels from a
variable's long_name/units, step axes, colour bars, legends."""
from __future__ import annotations

import contextlib
import functools
import json
import textwrap

import numpy as np
from twoclocks import TwoclocksError

CB = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494", "#ece133",
      "#56b4e9"]  # seaborn "colorblind"
BLUE, ORANGE, GREEN, RED, PURPLE, BROWN, PINK, GREY = CB[:8]
STATES = ("invalid_value", "rule_error", "valid_novel", "valid_memorized")
STATE_COLORS = {"invalid_value": GREY, "rule_error": RED, "valid_novel": BLUE, "valid_memorized": ORANGE}
STATE_NAMES = {"invalid_value": "invalid (not quantized)", "rule_error": "invalid (breaks the rule)",
               "valid_novel": "valid & novel", "valid_memorized": "valid & memorized"}
STATE_SHORT = {"invalid_value": "not quant.", "rule_error": "rule err.", "valid_novel": "novel",
               "valid_memorized": "memorized"}
SPLIT_COLORS = {"train": ORANGE, "heldout": BLUE, "hypercube": GREEN}
SPLIT_NAMES = {"train": "train", "heldout": "held-out valid", "hypercube": "random (hypercube)"}
REFERENCE_STYLES = {"ideal-rule": "--", "memorize": ":", "ideal-cube": "-."}
STEP_LABEL = "training step"


# ------------------------------------------------------------------------------------------ style
@contextlib.contextmanager
def style():
    """The figures' style (seaborn whitegrid, paper context), set only inside the ``with`` block."""
    import matplotlib as mpl
    import seaborn as sns
    rc = {"axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
          "grid.linestyle": ":", "grid.linewidth": 0.6, "image.cmap": "viridis",
          "axes.titlesize": "medium", "figure.titlesize": "large"}
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.15), mpl.rc_context(rc):
        yield


def styled(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with style():
            return fn(*args, **kwargs)
    return wrapper


def make_figure(fig=None, size=(6.4, 4.0)):
    """``fig`` or a new constrained-layout Figure (not registered with pyplot)."""
    if fig is not None:
        return fig
    from matplotlib.figure import Figure
    return Figure(figsize=size, layout="constrained")


def root_figure(fig):
    return fig.get_figure(root=True)


def figure_and_ax(ax, size=(6.4, 4.0)):
    if ax is not None:
        return ax.get_figure(root=False), ax
    fig = make_figure(None, size)
    return fig, fig.add_subplot()


# ------------------------------------------------------------------------------------------ labels
def short_name(long_name: str) -> str:
    """A long_name cut to its head: before the first ' (' or clause separator (', ', ': ', '; ')."""
    s = long_name.strip()
    for sep in (" (", ": ", "; ", ", "):
        i = s.find(sep)
        if i > 0:
            s = s[:i]
    return s


def label(da, name: str | None = None, width: int = 38) -> str:
    """Axis label from ``long_name`` (shortened, or ``name``) and ``units`` (omitted when '1')."""
    attrs = getattr(da, "attrs", {})
    text = name or short_name(attrs.get("long_name", getattr(da, "name", "") or ""))
    units = attrs.get("units", "")
    if units and units != "1":
        text = f"{text} [{units}]"
    return textwrap.fill(text, width)


def step_values(ds) -> np.ndarray:
    return np.asarray(ds["step"].values)


def drop_reference(ds):
    """Drop the reference pseudo-step (-1) if present."""
    if "step" in ds.dims and (ds["step"] < 0).any():
        return ds.sel(step=ds["step"] >= 0)
    return ds


def log_steps(steps) -> bool:
    """Steps span two decades or more: use a symlog step axis."""
    pos = np.asarray(steps, float)
    pos = pos[pos > 0]
    return len(pos) >= 2 and pos.max() / pos.min() >= 100


def step_axis(ax, steps, which: str = "x", label_it: bool = True) -> None:
    """Set a step axis: symlog (linthresh 1, so step 0 is shown) when ``steps`` span decades."""
    import matplotlib.ticker as mticker
    axis = ax.xaxis if which == "x" else ax.yaxis
    if log_steps(steps):
        (ax.set_xscale if which == "x" else ax.set_yscale)("symlog", linthresh=1, linscale=0.3)
        axis.set_minor_locator(mticker.SymmetricalLogLocator(linthresh=1, base=10, subs=np.arange(2, 10)))
    if label_it:
        (ax.set_xlabel if which == "x" else ax.set_ylabel)(STEP_LABEL)
    s = np.asarray(steps, float)
    if len(s) > 1 and s.max() > s.min():  # limits: the data plus 2% in the axis's scale (no negative decades)
        tr = axis.get_transform()
        t = tr.transform(np.array([[s.min()], [s.max()]])).ravel()
        pad = 0.02 * (t[1] - t[0])
        lim = tr.inverted().transform(np.array([[t[0] - pad], [t[1] + pad]])).ravel()
        (ax.set_xlim if which == "x" else ax.set_ylim)(*lim)


def cell_edges(axis, centers) -> np.ndarray:
    """Cell edges around ``centers``, midway in the axis's (already set) scale."""
    c = np.asarray(centers, float)
    tr = axis.get_transform()
    t = tr.transform(c.reshape(-1, 1)).ravel()
    if len(t) == 1:
        e = np.array([t[0] - 0.5, t[0] + 0.5])
    else:
        mid = (t[1:] + t[:-1]) / 2
        e = np.concatenate([[2 * t[0] - mid[0]], mid, [2 * t[-1] - mid[-1]]])
    return tr.inverted().transform(e.reshape(-1, 1)).ravel()


def pick(values, n: int) -> np.ndarray:
    """At most ``n`` of ``values``, evenly spaced by index, first and last included."""
    values = np.asarray(values)
    if len(values) <= n:
        return values
    return values[np.unique(np.linspace(0, len(values) - 1, n).round().astype(int))]


def nearest_log(values, targets) -> np.ndarray:
    values = np.asarray(values, float)
    return np.unique([values[np.argmin(np.abs(np.log(values) - np.log(t)))] for t in targets])


def scalar_value(ds, name, default=np.nan) -> float:
    if name in ds.variables and ds[name].size == 1:
        return float(ds[name].values.ravel()[0])
    return default


def memorization_baseline(ds) -> float:
    """The baseline sample memorization N/|support| of a samples cube (``support_sample_mem``; a cube
    written before it existed: ``uniform_valid_sample_mem``, equal for every rule whose sampler covers
    its valid set); NaN when absent."""
    name = "support_sample_mem" if "support_sample_mem" in ds.variables else "uniform_valid_sample_mem"
    return scalar_value(ds, name)


def require_vars(ds, names, what: str):
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise TwoclocksError(f"{what} needs {', '.join(missing)} in the Dataset; pass the cube (or a selection "
                             "of it) written by the probe")


def wrapped_suptitle(fig, text: str, **kw):
    """A figure title wrapped to the figure's width (each given line separately)."""
    width = max(30, int(root_figure(fig).get_figwidth() * 11.5))
    lines = [textwrap.fill(line, width) for line in text.split("\n")]
    return fig.suptitle("\n".join(lines), **{"fontsize": "medium", **kw})


def plain_log_ticks(axis, values=None):
    """Plain-number labels on a log axis: at 1, 2, 5 x 10^k when the data span at most two decades,
    else at the powers of ten (written as numbers while they are short)."""
    import matplotlib.ticker as mticker
    v = np.asarray(values if values is not None else axis.get_view_interval(), float)
    v = v[np.isfinite(v) & (v > 0)]
    narrow = v.size and v.max() / v.min() <= 100
    axis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0) if narrow else (1.0,)))
    axis.set_major_formatter(mticker.FuncFormatter(
        lambda x, _: f"{x:g}" if 1e-3 <= x <= 1e4 else f"$10^{{{int(round(np.log10(x)))}}}$"))
    axis.set_minor_formatter(mticker.NullFormatter())


def log_colorbar_ticks(cb):
    plain_log_ticks(cb.ax.yaxis if cb.orientation == "vertical" else cb.ax.xaxis, [cb.vmin, cb.vmax])


def legend_outside(fig, handles, labels, **kw):
    return fig.legend(handles, labels, loc="outside right center", **kw)


def positive_or_nan(a):
    a = np.asarray(a, float)
    return np.where(a > 0, a, np.nan)

def seq_colors(n: int, cmap: str = "viridis"):
    import matplotlib as mpl
    return [mpl.colormaps[cmap](x) for x in (np.linspace(0.0, 0.78, n) if n > 1 else [0.35])]


# ------------------------------------------------------------------------------------------ across runs
#: the sweep axes a cross-run figure may split its runs by (colour, panel or series), in this order
SWEEP_AXES = ("arch", "model", "depth", "group", "n_train", "lr", "weight_decay", "batch", "rule", "encoding",
              "side", "seed")
AXIS_NAMES = {"n_train": "N", "group": "G", "weight_decay": "wd"}


def run_values(ds, name):
    """A per-run config value of a clocks / collect Dataset: the coord, or (collect drops constant ones)
    attrs['constant_config']; None when neither has it."""
    if name in ds.variables:
        return np.asarray(ds[name].values)
    try:
        const = json.loads(ds.attrs.get("constant_config", "{}"))
    except (TypeError, ValueError):
        const = {}
    if name in const and "run" in ds.sizes:
        return np.full(ds.sizes["run"], const[name])
    return None


def varies(ds, name) -> bool:
    """The config value ``name`` takes more than one value over the runs of ``ds``."""
    v = run_values(ds, name)
    return v is not None and len(np.unique(v.astype(str))) > 1


def palette(n):
    """``n`` colour-blind-safe colours (husl beyond 10)."""
    import seaborn as sns
    return sns.color_palette("colorblind", n) if n <= 10 else sns.color_palette("husl", n)


def log_if_positive(ax, which, values):
    """A log scale on axis ``which`` ('x' / 'y') when any of ``values`` is positive."""
    v = np.asarray(values, float)
    if (np.isfinite(v) & (v > 0)).any():
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")


def run_floats(clocks, name):
    """A per-run variable as floats (all NaN when absent)."""
    return clocks[name].values.astype(float) if name in clocks else np.full(clocks.sizes["run"], np.nan)


def censored_at(clocks, clock: str = "tau_mem") -> np.ndarray:
    """Per run, the step ``clock`` is known to exceed where it was not reached (NaN where reached):
    ``tau_mem_censored_at`` when the Dataset has it (tau_mem), else the last evaluated step."""
    tm = run_floats(clocks, clock)
    own = f"{clock}_censored_at"
    cen = run_floats(clocks, own) if own in clocks else run_floats(clocks, "last_step")
    return np.where(np.isfinite(tm), np.nan, cen)


def axis_text(name: str, value) -> str:
    """'N = 64', 'G = 3', 'lr = 0.001', 'arch = gpt'."""
    return f"{AXIS_NAMES.get(name, name)} = {value}"


def run_series(clocks, exclude: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """(series index per run, label per series) over the config values that vary between runs,
    other than ``exclude``."""
    n_run = clocks.sizes["run"]
    cols = []
    for name in SWEEP_AXES:
        if name in exclude:
            continue
        v = run_values(clocks, name)
        if v is not None and len(np.unique(v.astype(str))) > 1:
            cols.append((name, v.astype(str)))
    keys = [", ".join(axis_text(k, v[i]) for k, v in cols) for i in range(n_run)]
    labels = list(dict.fromkeys(keys))
    return np.array([labels.index(k) for k in keys], dtype=int), labels


def constant_text(clocks, exclude: tuple[str, ...] = ()) -> str:
    """'arch gpt, model tiny, N = 1024, ...': the config values shared by every run (coords with one
    value, or attrs['constant_config']), for a figure's subtitle."""
    parts = []
    for name in ("arch", "model", "rule", "group", "n_train", "batch", "lr"):
        if name in exclude:
            continue
        v = run_values(clocks, name)
        if v is not None and len(v) and len(np.unique(v.astype(str))) == 1:
            val = v[0].item() if hasattr(v[0], "item") else v[0]
            parts.append({"n_train": f"N = {val}", "group": f"G = {val}"}.get(name, f"{name} {val}"))
    return ", ".join(parts)


def interval_bars(ax, x, clocks, clock: str, color, **kw) -> int:
    """Vertical bars of the clock's interval [``CLOCK_lo``, ``CLOCK_hi``] (the clocks cube's
    seed-bootstrap interval) at ``x`` where both ends are finite and the clock was reached; an end at
    +inf (beyond the last evaluated step) is drawn to the last step with an arrow head. Returns the
    number of bars drawn (0 when the Dataset carries no interval)."""
    lo_name, hi_name = f"{clock}_lo", f"{clock}_hi"
    if lo_name not in clocks or hi_name not in clocks:
        return 0
    tau, lo, hi = run_floats(clocks, clock), run_floats(clocks, lo_name), run_floats(clocks, hi_name)
    last = run_floats(clocks, "last_step")
    open_hi = np.isposinf(hi)
    hi = np.where(open_hi, last, hi)
    ok = np.isfinite(tau) & np.isfinite(lo) & np.isfinite(hi)
    x = np.asarray(x, float)
    if ok.any():
        ax.vlines(x[ok], lo[ok], hi[ok], color=color, lw=kw.get("lw", 1.4), alpha=kw.get("alpha", 0.8),
                  gid=f"{clock}_interval")
        up = ok & open_hi
        if up.any():
            ax.plot(x[up], hi[up], ls="none", marker="^", ms=4, color=color)
    return int(ok.sum())
