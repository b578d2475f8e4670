"""Regenerate the gallery of docs/reproducing.md from the CPU sweep directories.

    python docs/make_gallery.py [SWEEP_ROOT]          # default SWEEP_ROOT: /work/sweeps
    python docs/make_gallery.py --render-only         # the page again from docs/gallery/numbers.json

SWEEP_ROOT holds one sweep directory per spec of examples/paper/cpu/ (named as the spec: n_sweep,
g_sweep, rules, lr_wd, model_size, latin_sudoku, dit_vs_gpt), trained with `sweep` and probed with
`probe-all`. For each one found, through the command line (`python -m twoclocks.cli`):

- `collect DIR` (seed-bootstrap clock intervals; the clock definitions of the sweep's paper figure;
  `--sensitivity-out` where the claim is a scaling law) -> DIR/collect.zarr;
- `fit DIR --y CLOCK --x FIELD --model power|loglinear --out ...` for each headline number;
- `plot DIR` (the cross-run figures its axes allow) and `plot DIR/RUN` for the per-run figures shown.

It reads the numbers back from the written Datasets into docs/gallery/numbers.json, copies the figures
the page shows into docs/gallery/ (downscaled), and rewrites the generated blocks of
docs/reproducing.md (between ``<!-- gallery:NAME -->`` and ``<!-- /gallery:NAME -->``) from
numbers.json alone, so every number on the page comes from the sweeps through the toolkit.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
GALLERY = DOCS / "gallery"
PAGE = DOCS / "reproducing.md"
NUMBERS = GALLERY / "numbers.json"
DEFAULT_ROOT = Path("/work/sweeps")
CPU_SPECS = "examples/paper/cpu"
#: the directory the page's commands use for the sweeps
PAGE_ROOT = "$SWEEPS"
#: a figure copied into docs/gallery/ is downscaled to at most this width (px) and this size (bytes)
MAX_WIDTH, MAX_BYTES = 1100, 150_000


# ------------------------------------------------------------------------------------------ what is run
@dataclass(frozen=True)
class FitSpec:
    """One `fit` call: clock ``y`` against config field ``x``."""
    y: str
    x: str
    model: str = "power"
    where: str | None = None

    @property
    def key(self) -> str:
        k = f"{self.y}~{self.x}"
        return k + (f"[{self.where}]" if self.where else "")

    def args(self) -> list[str]:
        a = ["--y", self.y, "--x", self.x, "--model", self.model]
        return a + (["--where", self.where] if self.where else [])


@dataclass(frozen=True)
class SweepSpec:
    """How one CPU sweep is collected, fitted and drawn."""
    name: str
    collect: tuple[str, ...] = ("--mem-adaptive",)
    sensitivity: bool = False
    fits: tuple[FitSpec, ...] = ()
    runs: tuple[str, ...] = ()          # runs whose per-run figures the page shows
    markov: tuple[str, ...] = ()        # runs given the markov probe (it reads the samples cube only)
    run_figures: tuple[str, ...] = ("learning_dynamics",)   # the per-run figures the page shows
    ce: tuple[str, ...] = ()            # GPT runs given the ce probe (per-position cross-entropy)
    nn: tuple[str, ...] = ()            # runs whose nearest-neighbour distances the page reports
    dsm: tuple[tuple[str, str], ...] = ()   # DiT runs given the dsm-spectrum probe: (run, --steps)
    paper: str = ""

    def collect_args(self, work: Path) -> list[str]:
        a = list(self.collect)
        return a + (["--sensitivity-out", str(work / self.name / "sensitivity.zarr")] if self.sensitivity else [])


SWEEPS = (
    SweepSpec("n_sweep", sensitivity=True, paper="Figs. 2D, 2H, 7-10, 28, Table 4",
              fits=(FitSpec("tau_mem", "n_train"), FitSpec("tau_mem", "n_train", where="n_train>=64")),
              runs=("n_train=256__seed=0",)),
    SweepSpec("g_sweep", sensitivity=True, paper="Figs. 1, 2B-C, 3A, 4B, 11, 12, 20, 28",
              fits=(FitSpec("tau_rule", "group", "loglinear"), FitSpec("tau_mem", "group", "loglinear")),
              runs=("group=3__seed=1",), markov=("group=3__seed=1",),
              run_figures=("learning_dynamics", "state_raster", "transitions", "nn_hamming"), nn=("group=3__seed=1",)),
    SweepSpec("rules", collect=("--clocks", "above-baseline"), paper="Figs. 5, 21"),
    SweepSpec("lr_wd", paper="Figs. 24-27",
              fits=(FitSpec("tau_rule", "lr"), FitSpec("tau_rule", "weight_decay", "loglinear"))),
    SweepSpec("model_size", paper="Figs. 1B-C (depth), 2C (model size)",
              fits=(FitSpec("tau_rule", "depth"), FitSpec("tau_mem", "depth")), runs=("depth=1", "depth=4")),
    SweepSpec("latin_sudoku", collect=("--clocks", "valid-novel"), paper="Figs. 6, 22, 23",
              runs=("rule=latin",)),
    SweepSpec("dit_vs_gpt", paper="Figs. 3B-C, 4A, 4C-D, 13-15, 20", runs=("arch=dit", "arch=gpt"), ce=("arch=gpt",),
              dsm=(("arch=dit", "0,100,200,316,501,708,891,1000,1259,1995,3162,4000"),),
              run_figures=("learning_dynamics", "ce", "ce_difference", "dsm_spectrum", "dsm_gap")),
)
SWEEP_BY_NAME = {s.name: s for s in SWEEPS}


#: the constant config fields a sweep's section states, in this order
CONSTANT_SHOWN = ("arch", "model", "depth", "hidden", "rule", "side", "group", "n_train", "batch", "lr",
                  "weight_decay", "steps", "n_noise")


def cli(args: list[str], log: Path) -> tuple[int, str]:
    """Run ``python -m twoclocks.cli ARGS``; its output (stdout and stderr) goes to ``log`` too."""
    p = subprocess.run([sys.executable, "-m", "twoclocks.cli", *args], capture_output=True, text=True)
    out = p.stdout + (("\n" if p.stdout and not p.stdout.endswith("\n") else "") + p.stderr if p.stderr else "")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"$ twoclocks-probe {' '.join(args)}\n{out}\n[exit {p.returncode}]\n\n")
    return p.returncode, out


# --------------------------------------------------------------------------- reading the Datasets back
def _f(v) -> float | None:
    """A JSON-safe float (None for NaN / inf / missing)."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fit_numbers(fit) -> list[dict]:
    """The fits of a `fit --out` Dataset (dims fit, run) as plain dicts: label, n (runs that reached the
    clock), censored runs, dof, slope / factor with their intervals (least squares and censored ML),
    p(slope = 0), R^2, notes."""
    rows = []
    for j in range(fit.sizes["fit"]):
        g = {k[4:]: fit[k].values[j] for k in fit.data_vars if k.startswith("fit_") and fit[k].dims == ("fit",)}
        row = {"label": str(g.get("label", "")), "model": str(g.get("model", fit.attrs.get("model", ""))),
               "n": int(g.get("n", 0)), "n_runs": int(g.get("n_runs", 0)), "n_censored": int(g.get("n_censored", 0)),
               "dof": _f(g.get("dof")), "r2": _f(g.get("r2")), "notes": str(g.get("notes", "")),
               "level": _f(g.get("level", fit.attrs.get("level"))), "ml_status": str(g.get("ml_status", ""))}
        for est, suf in (("ls", ""), ("ml", "_ml")):
            row[est] = {"slope": _f(g.get("slope" + suf)), "lo": _f(g.get("slope" + suf + "_lo")),
                        "hi": _f(g.get("slope" + suf + "_hi")), "factor": _f(g.get("factor" + suf)),
                        "factor_lo": _f(g.get("factor" + suf + "_lo")), "factor_hi": _f(g.get("factor" + suf + "_hi")),
                        "p_zero": _f(g.get("p_zero" + suf))}
        rows.append(row)
    return rows


def _cfg_value(v):
    v = v.item() if hasattr(v, "item") else v
    return v if isinstance(v, (int, float, str, bool)) else str(v)


def run_numbers(ds) -> list[dict]:
    """Per run of a collect Dataset: its varying config, the clocks with their intervals and grid
    brackets, censoring, status, final accuracy / memorization and passes at tau_mem."""
    const = json.loads(ds.attrs.get("constant_config", "{}"))
    spec = json.loads(ds.attrs.get("sweep_spec", "{}"))
    axes = [a for a in spec.get("grid", {}) if a in ds.coords] or []
    for extra in ("seed",):
        if extra in ds.coords and extra not in axes:
            axes.append(extra)
    out = []
    for i, run in enumerate(ds["run"].values):
        r = {"run": str(run), "config": {a: _cfg_value(ds[a].values[i]) for a in axes},
             "seed": _cfg_value(ds["seed"].values[i]) if "seed" in ds.coords else const.get("seed", 0)}
        for c in ("tau_rule", "tau_mem", "tau_novel", "window"):
            if c not in ds:
                continue
            r[c] = _f(ds[c].values[i])
            for s in ("lo", "hi", "censored_at", "raw"):
                if f"{c}_{s}" in ds:
                    r[f"{c}_{s}"] = _f(ds[f"{c}_{s}"].values[i])
            if f"{c}_status" in ds:
                r[f"{c}_status"] = str(ds[f"{c}_status"].values[i])
        if "extra_tau" in ds:
            for k, name in enumerate(ds["extra_clock"].values):
                r[str(name)] = _f(ds["extra_tau"].values[i, k])
                if "extra_tau_status" in ds:
                    r[f"{name}_status"] = str(ds["extra_tau_status"].values[i, k])
        for v in ("final_sample_acc", "final_sample_mem", "passes_at_tau_mem", "mem_threshold", "last_step"):
            if v in ds:
                r[v] = _f(ds[v].values[i])
        out.append(r)
    return out


def collect_fits(ds) -> list[dict]:
    """The tau_mem = c N^alpha fits `collect` wrote (alpha with its t interval, the censored-ML alpha
    with its profile interval, and alpha's spread under the per-run clock intervals)."""
    if "fit" not in ds.dims or not ds.sizes["fit"] or "fit_alpha" not in ds:
        return []
    rows = []
    for j in range(ds.sizes["fit"]):
        g = lambda k: ds[k].values[j] if k in ds else None  # noqa: E731
        rows.append({"label": str(g("fit_label")), "n": int(g("fit_n")), "dof": _f(g("fit_dof")),
                     "alpha": _f(g("fit_alpha")), "lo": _f(g("fit_alpha_lo")), "hi": _f(g("fit_alpha_hi")),
                     "alpha_ml": _f(g("fit_alpha_ml")), "ml_lo": _f(g("fit_alpha_ml_lo")),
                     "ml_hi": _f(g("fit_alpha_ml_hi")), "c": _f(g("fit_c")), "r2": _f(g("fit_r2")),
                     "clock_lo": _f(g("fit_clock_alpha_lo")), "clock_hi": _f(g("fit_clock_alpha_hi"))})
    return rows


def sensitivity_numbers(sens) -> dict:
    """The spread of each clock and of alpha across the one-at-a-time variants of --sensitivity."""
    out = {"variants": [str(v) for v in sens["variant"].values]}
    if "fit_alpha" in sens and sens.sizes.get("fit", 0):
        a = sens["fit_alpha"].values[:, 0].astype(float)
        out["alpha_default"] = _f(a[0])
        out["alpha_min"], out["alpha_max"] = _f(min(x for x in a if x == x)), _f(max(x for x in a if x == x))
        worst = [str(sens["variant"].values[i]) for i in range(len(a)) if a[i] == a[i] and a[i] in
                 (min(x for x in a if x == x), max(x for x in a if x == x))]
        out["alpha_extremes"] = sorted(set(worst))
        if "fit_alpha_ml" in sens:
            m = sens["fit_alpha_ml"].values[:, 0].astype(float)
            out["alpha_ml_min"], out["alpha_ml_max"] = _f(min(x for x in m if x == x)), _f(max(x for x in m if x == x))
    for c in ("tau_rule", "tau_mem"):
        if c in sens:
            v = sens[c].values.astype(float)
            d = v[0]
            # the largest factor by which any variant moves any run's clock (runs that reached it in both)
            both = (d == d) & (v == v) & (d > 0)
            ratio = [abs(math.log(v[i, j] / d[j])) for i in range(v.shape[0]) for j in range(v.shape[1]) if both[i, j]]
            out[f"{c}_max_factor"] = _f(math.exp(max(ratio))) if ratio else None
    return out


def markov_numbers(m) -> dict:
    """Per window of a markov cube: for each state, the probability of staying in it from one checkpoint
    to the next and the number of moves out of it, with the window's steps."""
    out = {}
    for w, win in enumerate(m["window"].values):
        states = {}
        for i, st in enumerate(m["state_from"].values):
            n = int(m["window_counts"].values[w, i].sum())
            states[str(st)] = {"stay": _f(m["window_prob"].values[w, i, i]) if n else None, "n": n}
        out[str(win)] = {"start": int(m["window_start"].values[w]), "end": int(m["window_end"].values[w]),
                         "states": states}
    return out


def _at_clock(steps, clock, before: bool = False):
    """The evaluated step at a clock (the clock itself is an evaluated step), or with ``before`` the last
    evaluated step before it; None when the clock is missing."""
    if clock is None:
        return None
    steps = [int(x) for x in steps]
    cand = [x for x in steps if (x < clock if before else x >= clock)]
    return (max(cand) if before else min(cand)) if cand else None


def ce_numbers(ce, run: dict) -> dict:
    """Cross-entropy gaps of a ce cube at the run's clocks: hypercube - train and heldout - train, at the
    determined positions (the last bit of each group) and at the free ones, at tau_rule, at tau_mem and at
    the last step."""
    steps = ce["step"].values
    at = {"tau_rule": _at_clock(steps, run.get("tau_rule")), "tau_mem": _at_clock(steps, run.get("tau_mem")),
          "last": int(steps.max())}
    out = {"steps": {k: v for k, v in at.items() if v is not None}}
    for k, st in out["steps"].items():
        d = ce.sel(step=st)
        g = {}
        for other in ("hypercube", "heldout"):
            for part in ("determined", "free"):
                v = d[f"ce_{part}"]
                g[f"{other}-train {part}"] = _f(v.sel(split=other) - v.sel(split="train"))
        out[k] = g
    return out


def dsm_numbers(dsm) -> dict:
    """The loss-based clocks of a dsm_spectrum cube (the hypercube - train gap, tau_rule_loss; the held-out -
    train gap, tau_mem_loss; NaN: not reached), the criterion they use and the evaluated steps."""
    a = dsm.attrs
    return {"tau_rule_loss": _f(dsm["tau_rule_loss"].values), "tau_mem_loss": _f(dsm["tau_mem_loss"].values),
            "steps": [int(x) for x in dsm["step"].values],
            "band": json.loads(a["criterion_band_rule"]) if isinstance(a.get("criterion_band_rule"), str)
            else [_f(x) for x in a.get("criterion_band_rule", [])],
            "threshold": _f(a.get("criterion_threshold_rule")), "z": _f(a.get("criterion_z"))}


def nn_numbers(nn, run: dict) -> dict:
    """Mean nearest-neighbour Hamming distance to the train set per subset (all, valid, valid_novel) at
    tau_rule and at the last evaluated step before tau_mem (or the last step)."""
    steps = nn["step"].values
    a = _at_clock(steps, run.get("tau_rule"))
    b = _at_clock(steps, run.get("tau_mem"), before=True) if run.get("tau_mem") else int(steps.max())
    out = {"steps": [a, b]}
    for sub in nn["subset"].values:
        out[str(sub)] = [_f(nn.sel(step=x, subset=sub)) if x is not None else None for x in (a, b)]
    return out


def parse_times(path: Path) -> dict:
    """times.txt lines 'NAME train_s=S probe_s=S ...' -> {NAME: {train_s, probe_s}}."""
    out = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        m = re.match(r"(\S+) train_s=(\d+) probe_s=(\d+)", line)
        if m:
            out[m.group(1)] = {"train_s": int(m.group(2)), "probe_s": int(m.group(3))}
    return out


# ------------------------------------------------------------------------------------------- figures
def shrink_png(src: Path, dst: Path, max_width: int = MAX_WIDTH, max_bytes: int = MAX_BYTES) -> int:
    """Copy a PNG, downscaled to ``max_width`` and palette-quantized while it is over ``max_bytes``;
    returns the written size."""
    from PIL import Image
    img = Image.open(src).convert("RGB")
    width = min(max_width, img.width)
    while True:
        im = img if width == img.width else img.resize((width, round(img.height * width / img.width)),
                                                           Image.LANCZOS)
        im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
        size = dst.stat().st_size
        if size <= max_bytes or width < 500:
            return size
        width = int(width * 0.85)


# ---------------------------------------------------------------------------------------- gathering
def gather_sweep(spec: SweepSpec, root: Path, work: Path) -> dict:
    """Run collect, fit and plot on one sweep directory and read their outputs back (numbers.json's entry)."""
    import xarray as xr
    d = root / spec.name
    w = work / spec.name
    if w.exists():
        shutil.rmtree(w)
    w.mkdir(parents=True)
    log = w / "commands.log"
    entry = {"name": spec.name, "paper": spec.paper, "spec": f"{CPU_SPECS}/{spec.name}.toml", "commands": []}

    def run(args, page_args=None):
        rc, out = cli(args, log)
        entry["commands"].append({"args": page_args if page_args is not None else args, "rc": rc})
        return rc, out

    pd = f"{PAGE_ROOT}/{spec.name}"
    sens_page = ["--sensitivity"] if spec.sensitivity else []
    rc, out = run(["collect", str(d), *spec.collect_args(work)], ["collect", pd, *spec.collect, *sens_page])
    if rc:
        raise RuntimeError(f"collect failed (exit {rc}): {(out.strip().splitlines() or [''])[-1]}")
    ds = xr.open_zarr(d / "collect.zarr").load()
    entry["runs"] = run_numbers(ds)
    entry["collect_fits"] = collect_fits(ds)
    entry["clock_defs"] = str(ds.attrs.get("clock_defs_text", ""))
    entry["clock_preset"] = str(ds.attrs.get("clock_preset", ""))
    entry["clock_level"] = _f(ds.attrs.get("clock_uncertainty_level"))
    entry["version"] = str(ds.attrs.get("twoclocks_version", ""))
    cfg = json.loads(ds.attrs.get("constant_config", "{}"))
    entry["constant"] = {k: cfg[k] for k in CONSTANT_SHOWN if k in cfg}
    seeds = sorted({r["seed"] for r in entry["runs"]})
    entry["seeds"] = seeds
    if spec.sensitivity:
        entry["sensitivity"] = sensitivity_numbers(xr.open_zarr(work / spec.name / "sensitivity.zarr").load())
    entry["fits"] = {}
    for f in spec.fits:
        out_zarr = w / f"fit_{f.y}_{f.x}{'_where' if f.where else ''}.zarr"
        rc, out = run(["fit", str(d), *f.args(), "--out", str(out_zarr)], ["fit", pd, *f.args()])
        if rc == 0:
            entry["fits"][f.key] = {"spec": f.__dict__, "fits": fit_numbers(xr.open_zarr(out_zarr).load())}
        else:
            entry["fits"][f.key] = {"spec": f.__dict__,
                                    "error": out.strip().splitlines()[-1].removeprefix("error: ")}
    rc, out = run(["plot", str(d), "--out", str(w / "figures")], ["plot", pd])
    entry["figures"] = sorted(p.stem for p in (w / "figures").glob("*.png"))
    entry["plot_notes"] = [ln for ln in out.splitlines() if ln.startswith("skipped")]
    entry["markov"] = {}
    for r in spec.markov:
        rc, out = run(["markov", str(d / r)], ["markov", f"{pd}/{r}"])
        if rc == 0:
            entry["markov"][r] = markov_numbers(xr.open_zarr(d / r / "probes" / "markov.zarr").load())
    by_run = {x["run"]: x for x in entry["runs"]}
    entry["ce"] = {}
    for r in spec.ce:
        rc, out = run(["ce", str(d / r)], ["ce", f"{pd}/{r}"])
        if rc == 0:
            entry["ce"][r] = ce_numbers(xr.open_zarr(d / r / "probes" / "ce.zarr").load(), by_run.get(r, {}))
    entry["dsm"] = {}
    for r, steps in spec.dsm:
        rc, out = run(["dsm-spectrum", str(d / r), "--steps", steps, "--quiet"],
                      ["dsm-spectrum", f"{pd}/{r}", "--steps", steps])
        if rc == 0:
            entry["dsm"][r] = dsm_numbers(xr.open_zarr(d / r / "probes" / "dsm_spectrum.zarr").load())
    entry["nn"] = {}
    for r in spec.nn:
        cube = xr.open_zarr(d / r / "probes" / "samples.zarr")
        entry["nn"][r] = nn_numbers(cube["nn_hamming_mean"].load(), by_run.get(r, {}))
    entry["run_figures"] = {}
    for r in spec.runs:
        rc, out = run(["plot", str(d / r), "--out", str(w / "runs" / r)], ["plot", f"{pd}/{r}"])
        entry["run_figures"][r] = sorted(p.stem for p in (w / "runs" / r).glob("*.png"))
    return entry


def gather(root: Path, work: Path, only=None) -> dict:
    old = json.loads(NUMBERS.read_text()) if NUMBERS.exists() else {"sweeps": {}}
    times = parse_times(root / "times.txt")
    sweeps = dict(old.get("sweeps", {}))
    for spec in SWEEPS:
        if only and spec.name not in only:
            continue
        if not (root / spec.name / "sweep.json").exists():
            print(f"{spec.name}: no sweep directory at {root / spec.name}; its rows say 'not run'")
            sweeps.pop(spec.name, None)
            continue
        print(f"{spec.name}: collect, fit, plot ...", flush=True)
        try:
            e = gather_sweep(spec, root, work)
        except RuntimeError as err:
            print(f"{spec.name}: {err}; its rows say 'not run' (see {work / spec.name / 'commands.log'})")
            sweeps.pop(spec.name, None)
            continue
        e["wall"] = times.get(spec.name)
        sweeps[spec.name] = e
    return {"sweeps": sweeps}


def copy_figures(numbers: dict, work: Path) -> list[str]:
    """Copy the figures the page shows into docs/gallery/ as SWEEP__NAME.png (per-run: SWEEP__RUN__NAME.png)."""
    GALLERY.mkdir(exist_ok=True)
    wanted = set(page_images(numbers))
    for old in GALLERY.glob("*.png"):
        if old.name not in wanted:
            old.unlink()
    written = []
    for name in sorted(wanted):
        sweep, *run, fig = name[:-4].split("__")       # run names hold '__' themselves
        src = work / sweep / ("runs/" + "__".join(run) if run else "figures") / f"{fig}.png"
        if src.exists():
            shrink_png(src, GALLERY / name)
            written.append(name)
    return written


# ------------------------------------------------------------------------------------------ formatting
def fmt(v, digits: int = 3) -> str:
    """A number for the page: '-' for missing, integers as integers, else ``digits`` significant digits."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if float(v) == int(float(v)) and abs(v) >= 1:
        return str(int(v))
    return f"{float(v):.{digits}g}"


def fmt_iv(v, lo, hi, digits: int = 3) -> str:
    """'v [lo, hi]'."""
    return f"{fmt(v, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def compare(lo, hi, claims) -> str:
    """Where an interval [lo, hi] lies against the paper's value(s): 'all' inside, 'some', 'none'
    ('below' / 'above' when every claim lies beyond one end)."""
    if lo is None or hi is None:
        return "none"
    inside = [lo <= c <= hi for c in claims]
    if all(inside):
        return "all"
    if any(inside):
        return "some"
    return "below" if hi < min(claims) else ("above" if lo > max(claims) else "none")


def scaling_verdict(lo, hi, claims, p_zero, sign: int = 1) -> tuple[str, str]:
    """Verdict on a scaling exponent / slope with interval [lo, hi] against the paper's value(s)
    ``claims``: reproduces (interval contains a claimed value), partly (the clock moves in the claimed
    direction, p(slope = 0) < 0.05, but the interval excludes every claimed value), does not (no
    significant slope of the claimed sign)."""
    where = compare(lo, hi, claims)
    if where in ("all", "some"):
        which = "the paper's value" if len(claims) == 1 else f"{where} of the paper's values"
        return "reproduces", "the interval contains " + which
    significant = p_zero is not None and p_zero < 0.05 and lo is not None and hi is not None and (
        lo > 0 if sign > 0 else hi < 0)
    if significant:
        return "partly", ("same direction (p(slope = 0) = " + fmt(p_zero, 2) + "), but the interval lies "
                          + ("below" if where == "below" else "above" if where == "above" else "away from")
                          + " the paper's value" + ("s" if len(claims) > 1 else ""))
    return "does not", "no significant slope of the paper's sign (p(slope = 0) = " + fmt(p_zero, 2) + ")"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table; '|' inside a cell is escaped."""
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    """Replace what lies between ``<!-- gallery:NAME -->`` and ``<!-- /gallery:NAME -->`` with ``body``;
    a page without the markers is refused (the hand-written prose around them is kept)."""
    start, end = f"<!-- gallery:{name} -->", f"<!-- /gallery:{name} -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"{PAGE.name}: no '{start}' ... '{end}' block")
    return text[:i + len(start)] + "\n" + body.strip("\n") + "\n" + text[j:]


def command_line(args: list[str]) -> str:
    return "twoclocks-probe " + " ".join(f"'{a}'" if any(ch in a for ch in "<>=*") and not a.startswith("$")
                                         and "/" not in a else a for a in args)


def clock_cell(r: dict, c: str) -> str:
    """'v [lo, hi]' for a reached clock, '> S' for a censored one, 'discarded (raw R)' for tau_rule after tau_mem."""
    v = r.get(c)
    if v is not None:
        lo, hi = r.get(f"{c}_lo"), r.get(f"{c}_hi")
        if lo is None and hi is None:
            return fmt(v)
        top = fmt(hi) if hi is not None else (f"> {fmt(r['last_step'])}" if r.get("last_step") else "-")
        return fmt(v) + f" [{fmt(lo)}, {top}]"
    if r.get(f"{c}_raw") is not None and c == "tau_rule":
        return f"discarded (after tau_mem; raw {fmt(r[f'{c}_raw'])})"
    cen = r.get(f"{c}_censored_at") or r.get("last_step")
    return f"> {fmt(cen)}" if cen else "-"


# -------------------------------------------------------------------------------- the sweep sections
def _fit(e: dict, key: str, i: int = 0) -> dict | None:
    f = (e or {}).get("fits", {}).get(key)
    return f["fits"][i] if f and "fits" in f and len(f["fits"]) > i else None


def fit_sentence(f: dict | None, err: str | None = None, per_unit: bool = False) -> str:
    """One line of a `fit` result: least squares and censored ML, with intervals."""
    if f is None:
        return f"no fit ({err})" if err else "no fit"
    if f["ls"]["slope"] is None and f["ml"]["slope"] is None:
        return f"no fit: none of the {f['n_runs']} runs reached the clock ({f['n_censored']} censored)"
    lv = f"{round(100 * (f.get('level') or 0.95))}%"
    if per_unit:
        ls = f"x{fmt_iv(f['ls']['factor'], f['ls']['factor_lo'], f['ls']['factor_hi'])} per unit"
        ml = f"x{fmt_iv(f['ml']['factor'], f['ml']['factor_lo'], f['ml']['factor_hi'])}"
    else:
        ls = f"slope {fmt_iv(f['ls']['slope'], f['ls']['lo'], f['ls']['hi'])}"
        ml = f"slope {fmt_iv(f['ml']['slope'], f['ml']['lo'], f['ml']['hi'])}"
    s = (f"least squares {ls} ({lv} t; {f['n']} of {f['n_runs']} runs reached the clock, dof {fmt(f['dof'])}, "
         f"p(slope = 0) = {fmt(f['ls']['p_zero'], 2)})")
    if f["n_censored"]:
        s += f"; censored ML (the {f['n_censored']} censored runs included) {ml} ({lv} profile)"
    return s


def sweep_section(e: dict) -> str:
    """The generated block of one sweep: design, seeds, wall time, commands, per-run clocks, fits, figures."""
    spec = SWEEP_BY_NAME[e["name"]]
    c = e["constant"]
    lines = [f"Spec [`{e['spec']}`](../{e['spec']}) ({e['paper']}): "
             + ", ".join(f"{k} {c[k]}" for k in CONSTANT_SHOWN if k in c) + "; "
             + f"{len(e['runs'])} runs, seeds {', '.join(str(s) for s in e['seeds'])}."]
    if e.get("wall"):
        w = e["wall"]
        lines.append(f"Wall time on 2 shared cores (`--max-parallel 2`, `OMP_NUM_THREADS=1`): "
                     f"{fmt(w['train_s'] / 60, 2)} min of training and {fmt(w['probe_s'] / 60, 2)} min of probes.")
    lines.append("Clock definitions: " + e["clock_defs"] + ".")
    cmds = [f"twoclocks-probe sweep {e['spec']} --dir {PAGE_ROOT}/{e['name']} --executor local --max-parallel 2",
            f"twoclocks-probe probe-all {PAGE_ROOT}/{e['name']} --executor local --max-parallel 2"]
    cmds += [command_line(cm["args"]) for cm in e["commands"]]
    lines += ["", "```bash", "export OMP_NUM_THREADS=1", *cmds, "```", ""]
    clocks = [k for k in ("tau_rule", "tau_novel", "tau_mem") if any(k in r for r in e["runs"])]
    rows = [[r["run"], *[clock_cell(r, k) for k in clocks], fmt(r.get("final_sample_acc")),
             fmt(r.get("final_sample_mem"))] for r in e["runs"]]
    lv = f"{round(100 * e['clock_level'])}% " if e.get("clock_level") else ""
    lines.append(md_table(["run", *[f"{k} [{lv}interval]" for k in clocks], "final sample acc",
                           "final sample mem"], rows))
    lines.append("")
    lv = f"{round(100 * e['clock_level'])}%" if e.get("clock_level") else ""
    lines.append(f"Clock intervals: seed-bootstrap {lv} joined with the checkpoint-grid bracket; '> S': not "
                 "reached by the last evaluated step S (censored).")
    for cf in e.get("collect_fits", []):
        lines.append(f"\n`collect`'s fit tau_mem = c N^alpha [{cf['label']}]: alpha = "
                     f"{fmt_iv(cf['alpha'], cf['lo'], cf['hi'])} (95% t, n = {cf['n']}, dof {fmt(cf['dof'])}, "
                     f"R^2 = {fmt(cf['r2'])}); censored ML {fmt_iv(cf['alpha_ml'], cf['ml_lo'], cf['ml_hi'])}; "
                     f"alpha under the per-run clock intervals alone: [{fmt(cf['clock_lo'])}, {fmt(cf['clock_hi'])}].")
    fits = e.get("fits", {})
    for key in [f.key for f in spec.fits if f.key in fits]:
        f = fits[key]
        fs = f["spec"]
        if "error" in f:
            lines.append(f"\n`fit --y {fs['y']} --x {fs['x']}`: {f['error']}")
            continue
        for g in f["fits"]:
            lines.append(f"\n`fit --y {fs['y']} --x {fs['x']} --model {fs['model']}"
                         + (f" --where '{fs['where']}'" if fs["where"] else "") + f"` [{g['label']}]: "
                         + fit_sentence(g, per_unit=fs["model"] == "loglinear"))
    s = e.get("sensitivity")
    if s and s.get("alpha_min") is not None:
        lines.append(f"\n`--sensitivity` (threshold, policy, k, evaluation density, bank size, one at a time): "
                     f"least-squares alpha {fmt(s['alpha_min'])}-{fmt(s['alpha_max'])} (extremes at "
                     f"{', '.join(s['alpha_extremes'])}); censored-ML alpha {fmt(s.get('alpha_ml_min'))}-"
                     f"{fmt(s.get('alpha_ml_max'))}.")
    elif s:
        lines.append(f"\n`--sensitivity`: the choices move a run's tau_rule by up to "
                     f"x{fmt(s.get('tau_rule_max_factor'))} and its tau_mem by up to "
                     f"x{fmt(s.get('tau_mem_max_factor'))}.")
    figs = [(f"{e['name']}__{n}.png", n) for n in e["figures"]]
    figs += [(f"{e['name']}__{r}__{n}.png", f"{n} ({r})") for r in spec.runs for n in e["run_figures"].get(r, [])
             if n in spec.run_figures]
    lines.append("")
    for path, title in figs:
        lines.append(f"![{e['name']}: {title}](gallery/{path})")
    return "\n".join(lines)


def page_images(numbers: dict) -> list[str]:
    out = []
    for name, e in numbers["sweeps"].items():
        out += [f"{name}__{n}.png" for n in e["figures"]]
        out += [f"{name}__{r}__{n}.png" for r in SWEEP_BY_NAME[name].runs for n in e["run_figures"].get(r, [])
                if n in SWEEP_BY_NAME[name].run_figures]
    return out


# ------------------------------------------------------------------------------- the figure table
@dataclass
class Row:
    paper: str
    what: str
    figure: str           # the package's figure: function (registry name) and PNG link
    command: str
    cpu: str              # the CPU-scale result with intervals
    claim: str            # the paper's claim, quoted
    verdict: str
    why: str = ""


def _img(name: str, numbers: dict, label: str | None = None) -> str:
    sweep = name.split("__")[0]
    e = numbers["sweeps"].get(sweep)
    return f"[{label or name.split('__')[-1][:-4]}](gallery/{name})" if e and name in page_images(numbers) else ""


def _runs(e, **where):
    return [r for r in (e or {}).get("runs", []) if all(r["config"].get(k) == v for k, v in where.items())]


def _median(v):
    v = sorted(x for x in v if x is not None)
    return None if not v else (v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2)


NOT_RUN = "not run (no sweep directory)"
CLUSTER = "twoclocks-probe sweep examples/paper/{spec} --dir DIR --executor slurm"
PLANTED = ("on samples cubes with planted clocks the same estimators recover a planted {what} within their "
           "intervals at about the nominal coverage (docs/science.md#planted, tests/test_planted.py), so the clock "
           "and fit code is not the cause; those checks do not test the trainer or the sampler")


def figure_rows(numbers: dict) -> list[Row]:
    """One row per paper figure / panel group and table (every figure 1-28 and table 1-4 appears)."""
    S = numbers["sweeps"]
    n, g, ru, lw, ms, ls, dg = (S.get(k) for k in ("n_sweep", "g_sweep", "rules", "lr_wd", "model_size",
                                                     "latin_sudoku", "dit_vs_gpt"))
    rows = []

    # -- Fig. 1
    if g:
        acc = {G: [r["final_sample_acc"] for r in _runs(g, group=G)] for G in (2, 3, 4)}
        mem = {G: [r["final_sample_mem"] for r in _runs(g, group=G)] for G in (2, 3, 4)}
        cpu = "final sample accuracy (median over seeds) " + ", ".join(
            f"G = {G}: {fmt(_median(acc[G]))} (seeds {', '.join(fmt(a) for a in acc[G])})" for G in acc)
        cpu += "; final sample memorization " + ", ".join(f"G = {G}: {fmt(_median(mem[G]))}" for G in mem)
        falls = _median(acc[4]) is not None and _median(acc[4]) < min(_median(acc[2]), _median(acc[3])) - 0.1
        verdict = "partly" if falls else "does not"
        why = ("accuracy falls at G = 4 as in the paper; one model size (GPT-tiny) and G <= 4 only, so "
               "'larger models extend the learnable range' is not tested") if falls else "accuracy does not fall with G"
    else:
        cpu, verdict, why = NOT_RUN, "not run", ""
    rows.append(Row("Fig. 1A-C", "group parity data; end-of-training accuracy / memorization vs G",
                    "`plot_final_vs_group` (`final_vs_group`) " + _img("g_sweep__final_vs_group.png", numbers)
                    + " " + _img("g_sweep__train_montage.png", numbers, "montage"),
                    "`plot $SWEEPS/g_sweep`", cpu,
                    "\"all models achieve near-perfect rule accuracy for easy rules [G], but the accuracy deteriorates "
                    "as [G] increases; larger models extend this learnable regime\" (Sec. 2)", verdict, why))
    rows.append(Row("Fig. 2A", "schematic of the two clocks", "- (schematic; the data are Figs. 2C-D)", "-",
                    "-", "schematic", "n/a", "no data"))
    # -- Fig. 2B / 20: one run's clocks
    if g:
        r = next((r for r in g["runs"] if r["run"] == "group=3__seed=1"), None)
        ok = [x for x in g["runs"] if x.get("tau_rule") and x.get("tau_mem")]
        cpu = (f"GPT-tiny, G = 3, N = {g['constant'].get('n_train')}, seed 1: tau_rule {clock_cell(r, 'tau_rule')}, "
               f"tau_mem {clock_cell(r, 'tau_mem')}" if r else "") + (
            f"; tau_rule < tau_mem in every run that reached both ({len(ok)} of {len(g['runs'])})")
        verdict = "reproduces" if ok and all(x["tau_rule"] < x["tau_mem"] for x in ok) else "does not"
        ratio = min(x["tau_mem"] / x["tau_rule"] for x in ok) if ok else None
        why = (f"tau_mem comes at least x{fmt(ratio)} later than tau_rule in those runs (a GPT, not the paper's "
               "DiT-mini)")
    else:
        cpu, verdict, why = NOT_RUN, "not run", ""
    rows.append(Row("Fig. 2B, Fig. 20", "one run's two clocks (DiT-mini in 2B; GPT in 20)",
                    "`plot_learning_dynamics` " + _img("g_sweep__group=3__seed=1__learning_dynamics.png", numbers),
                    "`plot $SWEEPS/g_sweep/group=3__seed=1`", cpu,
                    "\"Memorization remains near baseline level at this point and starts climbing around the much "
                    "later [tau_mem]\" (Sec. 3)", verdict, why))
    # -- Fig. 2C: tau_rule per unit G
    f, fm = _fit(g, "tau_rule~group"), _fit(g, "tau_mem~group")
    if f:
        lo, hi = (f["ml"]["factor_lo"], f["ml"]["factor_hi"]) if f["n_censored"] else (f["ls"]["factor_lo"],
                                                                                         f["ls"]["factor_hi"])
        v, why = scaling_verdict(math.log(lo), math.log(hi), [math.log(10)], f["ml"]["p_zero"] if f["n_censored"]
                                 else f["ls"]["p_zero"])
        cpu = ("tau_rule per unit of G: " + fit_sentence(f, per_unit=True) + "; tau_mem vs G: "
               + (fit_sentence(fm, per_unit=True) if fm else "no fit"))
        ls_where = compare(f["ls"]["factor_lo"], f["ls"]["factor_hi"], [10])
        why = (f"censored ML: {why}; " if f["n_censored"] else why + "; ") + (
            f"the least-squares interval, which drops the censored runs, lies {ls_where} 10; "
            if f["n_censored"] and ls_where in ("below", "above") else "") + PLANTED.format(what="per-unit-G factor")
        if v == "reproduces" and f["n_censored"] and ls_where in ("below", "above"):
            v = "partly"
    else:
        cpu, v, why = NOT_RUN if not g else "no fit", "not run" if not g else "does not", ""
    rows.append(Row("Fig. 2C", "tau_rule (and tau_mem) vs G", "`plot_rule_vs_group` (`rule_vs_group`) "
                    + _img("g_sweep__rule_vs_group.png", numbers),
                    "`fit $SWEEPS/g_sweep --y tau_rule --x group --model loglinear`", cpu,
                    "\"each unit increase in [G] delays rule learning by roughly an order of magnitude\"; tau_mem "
                    "\"is approximately invariant to the rule complexity\" (Sec. 3)", v, why))
    # -- Fig. 2D, 10, Table 4: alpha
    if n and n.get("collect_fits"):
        cf = n["collect_fits"][0]
        fw = _fit(n, "tau_mem~n_train[n_train>=64]")
        v, why = scaling_verdict(cf["lo"], cf["hi"], [0.97, 1.06, 1.14], None if cf["lo"] is None else
                                 (_fit(n, "tau_mem~n_train") or {"ls": {"p_zero": None}})["ls"]["p_zero"])
        s = n.get("sensitivity") or {}
        cpu = (f"alpha = {fmt_iv(cf['alpha'], cf['lo'], cf['hi'])} (95% t, N = "
               f"{min(r['config']['n_train'] for r in n['runs'])}-{max(r['config']['n_train'] for r in n['runs'])}, "
               f"{cf['n']} runs, {len(n['seeds'])} seeds per N); {fmt(s.get('alpha_min'))}-{fmt(s.get('alpha_max'))} "
               f"across the arbitrary choices" + (f"; N >= 64 only: {fit_sentence(fw)}" if fw else ""))
        if fw and compare(fw["ls"]["lo"], fw["ls"]["hi"], [0.97, 1.06, 1.14]) in ("all", "some"):
            why += (f"; on N >= 64 alone the slope, {fmt_iv(fw['ls']['slope'], fw['ls']['lo'], fw['ls']['hi'])}, "
                    "contains them: at this scale the local exponent grows with N")
        why += "; " + PLANTED.format(what="alpha")
    else:
        cpu, v, why = NOT_RUN, "not run", ""
    rows.append(Row("Fig. 2D, Fig. 10, Table 4", "tau_mem = c N^alpha", "`plot_mem_vs_n` (`mem_vs_n`) "
                    + _img("n_sweep__mem_vs_n.png", numbers), "`collect $SWEEPS/n_sweep --mem-adaptive --sensitivity`",
                    cpu, "alpha = 1.14 (DiT-mini), 0.97 (GPT-mini), 1.06 (GPT-B), all G pooled (Table 4); "
                    "\"increasing [N] shifts [tau_mem] nearly linearly\" (Sec. 3)", v, why))
    rows.append(Row("Fig. 2E-G", "tau_rule vs N; clocks per model size", "`plot_clock_scaling` (`clock_scaling`, "
                    "needs G and N both varying)", "`sweep examples/paper/n_sweep_dit_mini.toml` (cluster)",
                    _tau_rule_vs_n(n), "\"[tau_rule] is only mildly modulated by dataset size\" (Sec. 3)",
                    *(_tau_rule_vs_n_verdict(n))))
    # -- Fig. 2H, 8-9: collapse
    if n:
        steps = [r["tau_mem"] for r in n["runs"] if r.get("tau_mem")]
        passes = [r["passes_at_tau_mem"] for r in n["runs"] if r.get("passes_at_tau_mem")]
        fs, fp = max(steps) / min(steps), max(passes) / min(passes)
        cpu = (f"tau_mem spans x{fmt(fs)} in steps ({fmt(min(steps))}-{fmt(max(steps))}) but x{fmt(fp)} in passes "
               f"per train sample ({fmt(min(passes))}-{fmt(max(passes))})")
        v = "partly" if fp < fs / 3 else "does not"
        why = ("the curves come much closer against steps x batch / N; a full collapse is alpha = 1, and alpha is "
               "below 1 here, so passes at onset fall with N") if v == "partly" else "no collapse"
    else:
        cpu, v, why = NOT_RUN, "not run", ""
    rows.append(Row("Fig. 2H, Figs. 8-9", "memorization vs steps per example across N",
                    "`plot_memorization_collapse` (`memorization_collapse`) "
                    + _img("n_sweep__memorization_collapse.png", numbers), "`plot $SWEEPS/n_sweep`", cpu,
                    "\"when plotted against steps per training example ... the memorization trajectories across [N] "
                    "collapse onto a common curve\" (Sec. 3)", v, why))
    # -- Fig. 3 and its appendix figures: probes not run on the CPU sweeps
    rows.append(Row("Fig. 3A, Fig. 11", "per-sample state raster; Markov transitions", "`plot_state_raster` "
                    + _img("g_sweep__group=3__seed=1__state_raster.png", numbers) + "; `plot_transitions` "
                    + _img("g_sweep__group=3__seed=1__transitions.png", numbers),
                    "`plot $SWEEPS/g_sweep/group=3__seed=1`; `markov RUN`", _markov_cpu(g),
                    "\"the rule-violating state is non-attractive ... while the valid-memorized state is sticky\" "
                    "(Sec. 4.1)", *_markov_verdict(g)))
    rows.append(Row("Fig. 12", "nearest-neighbour Hamming distance to the train set", "`plot_nn_hamming` "
                    + _img("g_sweep__group=3__seed=1__nn_hamming.png", numbers),
                    "`plot $SWEEPS/g_sweep/group=3__seed=1`", _nn_cpu(g),
                    "\"generated samples continue to move closer to the training set in nearest-neighbor Hamming "
                    "distance, even before [tau_mem] and even when restricted to rule-valid, non-memorized "
                    "generations\" (Sec. 4.1)", *_nn_verdict(g)))
    dit_mem = (_runs(dg, arch="dit") or [{}])[0].get("tau_mem") if dg else None
    dit_reason = ("the CPU DiT (dit_vs_gpt, arch=dit) does not reach tau_mem by its last step, so the claims at "
                  "and after tau_mem cannot be tested on 2 cores" if dg and dit_mem is None else
                  "the DSM / landscape probes were not run on the CPU sweeps")
    rows.append(Row("Fig. 3B-C, Figs. 13-15", "DSM loss by noise level; train / held-out / hypercube gaps",
                    "`plot_dsm_spectrum`, `plot_dsm_bands`, `plot_dsm_gap` "
                    + _img("dit_vs_gpt__arch=dit__dsm_spectrum.png", numbers, "dsm_spectrum") + " "
                    + _img("dit_vs_gpt__arch=dit__dsm_gap.png", numbers, "dsm_gap"),
                    "`dsm-spectrum $SWEEPS/dit_vs_gpt/arch=dit --steps ...`", _dsm_cpu(dg),
                    "\"After [tau_rule], the DSM loss on training samples becomes lower than the hypercube\"; \"after "
                    "[tau_mem], the DSM loss separates between training and held-out samples only over an intermediate "
                    "range of noise scales\" (Sec. 4.2)", *_dsm_verdict(dg, dit_reason)))
    for paper, what, fn, claim, probe in (
            ("Fig. 3D, Figs. 17-19", "vector field on a hypercube face", "`plot_plane`",
             "\"the basin of the training sample continues to expand and invades the basin of [x_b]\" (Sec. 4.3)",
             "plane"),
            ("Fig. 3E, Fig. 16", "1D basin profiles", "`plot_basin`",
             "\"This attractor basin of [x_a] keeps growing and eventually devours the odd-parity samples\" "
             "(Sec. 4.3)", "basin")):
        rows.append(Row(paper, what, fn, f"`probe-all DIR --probes {probe}` then `plot DIR/RUN`",
                        "not run at CPU scale", claim, "cannot run on 2 cores",
                        dit_reason + "; cluster: `" + CLUSTER.format(spec="g_sweep.toml") + "` (its probes include "
                        + probe + ")"))
    # -- Fig. 4
    if dg:
        d, gp = (_runs(dg, arch="dit") or [{}])[0], (_runs(dg, arch="gpt") or [{}])[0]
        cpu = (f"G = {dg['constant'].get('group')}, N = {dg['constant'].get('n_train')}: DiT-tiny tau_rule "
               f"{clock_cell(d, 'tau_rule')}, tau_mem {clock_cell(d, 'tau_mem')}; GPT-tiny tau_rule "
               f"{clock_cell(gp, 'tau_rule')}, tau_mem {clock_cell(gp, 'tau_mem')}")
        faster_rule = d.get("tau_rule") and gp.get("tau_rule") and (gp.get("tau_rule_hi") or gp["tau_rule"]) < (
            d.get("tau_rule_lo") or d["tau_rule"])
        faster_mem = gp.get("tau_mem") and (d.get("tau_mem") is None or gp["tau_mem"] < d["tau_mem"])
        v = "reproduces" if faster_rule and faster_mem else ("partly" if faster_rule or faster_mem else "does not")
        why = ("GPT's tau_rule interval lies below the DiT's, and GPT memorizes while the DiT does not within the "
               "run, so GPT's window is the shorter; one seed, a 2-layer width-64 pair" if v == "reproduces" else "")
    else:
        cpu, v, why = NOT_RUN, "not run", ""
    rows.append(Row("Fig. 4A", "DiT vs GPT dynamics", "`plot_arch_overlay` (`arch_overlay`) "
                    + _img("dit_vs_gpt__arch_overlay.png", numbers), "`plot $SWEEPS/dit_vs_gpt`", cpu,
                    "\"GPT learns and memorizes faster than DiT of a matching size, leading to a shorter “innovation "
                    "window”\" (Sec. 5.1)", v, why))
    rows.append(Row("Fig. 4B", "clocks across G per architecture", "`plot_clock_heatmap` (`clock_heatmap`, G and arch "
                    "vary); GPT row: `plot_rule_vs_group`", "`sweep examples/paper/dit_vs_gpt.toml` (cluster)",
                    "GPT row: as Fig. 2C (g_sweep)" if g else NOT_RUN,
                    "\"for GPT [tau_rule] is delayed by rule complexity [G], while [tau_mem] is relatively consistent "
                    "across [G]\" (Sec. 5.1)", "partly" if g else "not run",
                    "the GPT row only (Fig. 2C's verdict applies); a DiT that learns G >= 3 does not fit 2 cores "
                    "(see the header of examples/paper/cpu/g_sweep.toml); cluster: `"
                    + CLUSTER.format(spec="dit_vs_gpt.toml") + "`"))
    rows.append(Row("Fig. 4C-D", "GPT cross-entropy by split and position", "`plot_ce`, `plot_ce_difference` "
                    + _img("dit_vs_gpt__arch=gpt__ce.png", numbers, "ce") + " "
                    + _img("dit_vs_gpt__arch=gpt__ce_difference.png", numbers, "ce_difference"),
                    "`ce $SWEEPS/dit_vs_gpt/arch=gpt`", _ce_cpu(dg),
                    "\"For rule learning, the hypercube vs training losses diverge at the last bit in each group\"; "
                    "\"the training and held-out samples losses diverge at the memorization onset time\" (Sec. 5.1)",
                    *_ce_verdict(dg)))
    # -- Figs. 5-6 montages
    rows.append(Row("Fig. 5", "training-sample montage, binary rules", "`plot_montage` (`train_montage`) "
                    + _img("rules__train_montage.png", numbers), "`plot $SWEEPS/rules`",
                    "drawn from the runs' data.zarr" if ru else NOT_RUN, "montage (no claim)", "n/a",
                    "the generators' rule validity is tested (tests/test_correctness_rules.py)"))
    rows.append(Row("Fig. 6", "training-sample montage, Latin square / Sudoku", "`plot_montage` (`train_montage`) "
                    + _img("latin_sudoku__train_montage.png", numbers), "`plot $SWEEPS/latin_sudoku`",
                    "drawn from the runs' data.zarr" if ls else NOT_RUN, "montage (no claim)", "n/a",
                    "the generators' rule validity is tested (tests/test_correctness_rules.py)"))
    # -- Fig. 7
    if n:
        by = {}
        for r in n["runs"]:
            by.setdefault(r["config"]["n_train"], []).append(r["final_sample_mem"])
        cpu = "final sample memorization (median over seeds) " + ", ".join(f"N = {k}: {fmt(_median(v))}"
                                                                          for k, v in sorted(by.items()))
        lost = [r for r in n["runs"] if r.get("tau_mem") and (r.get("final_sample_mem") or 0) < 0.1]
        why = (f"end-of-training values are not monotone in N: {len(lost)} of {len(n['runs'])} runs reach tau_mem "
               f"and end below 0.1 memorization (training at lr {n['constant'].get('lr')} is not stable late in "
               "these runs; see the per-run curves); the clocks, which are onsets, are unaffected")
    else:
        cpu, why = NOT_RUN, ""
    rows.append(Row("Fig. 7", "group / sample memorization vs accuracy across N", "`plot_final_vs_group` "
                    "(G varies); per run `plot_learning_dynamics`", "`collect $SWEEPS/n_sweep`", cpu,
                    "memorization overlaid on accuracy across G and N (caption, paraphrased)", "not scored", why))
    # -- Fig. 21 rules
    rows.append(Row("Fig. 21", "clocks by rule family", "`plot_clocks_by_rule` (`clocks_by_rule`) "
                    + _img("rules__clocks_by_rule.png", numbers),
                    "`collect $SWEEPS/rules --clocks above-baseline`", _rules_cpu(ru),
                    "\"the count based rules are much faster to learn than the parity rules\"; tau_mem \"relatively "
                    "insensitive to the specific rule\" (App. C.6)", *_rules_verdict(ru)))
    # -- Figs. 22-23
    rows.append(Row("Figs. 22-23", "Latin square, row-only, Sudoku: onsets", "`plot_novel_fraction` "
                    "(`novel_fraction`) " + _img("latin_sudoku__novel_fraction.png", numbers)
                    + " " + _img("latin_sudoku__clocks_by_rule.png", numbers, "clocks_by_rule"),
                    "`collect $SWEEPS/latin_sudoku --clocks valid-novel`", _latin_cpu(ls),
                    "\"RowOnly is learned rapidly ... Latin Square and Sudoku are delayed\" (App. C.6)",
                    *_latin_verdict(ls)))
    # -- Figs. 24-27
    for fig, what, spec in (("Fig. 24", "DiT learning-rate sweep (G = 6)", "lr_dit.toml"),
                            ("Fig. 25", "DiT weight-decay sweep (G = 6)", "wd_dit.toml")):
        rows.append(Row(fig, what, "`plot_clocks_vs_hparam`", CLUSTER.format(spec=spec), "not run at CPU scale",
                        "\"lr = 10^-4 producing the earliest reliable rule-learning transition\" (Fig. 24)"
                        if fig == "Fig. 24" else "\"We didn't find strong effect of weight decay on [tau_rule] or "
                        "[tau_mem] in the range we explored\" (App. C.7)",
                        "cannot run on 2 cores", "a DiT that learns G = 6 does not fit 2 cores; the CPU lr / wd "
                        "sweep is a GPT at G = 3 (Figs. 26-27)"))
    rows.append(Row("Fig. 26", "GPT learning-rate sweep", "`plot_clocks_vs_hparam` (`clocks_vs_lr`) "
                    + _img("lr_wd__clocks_vs_lr.png", numbers), "`collect $SWEEPS/lr_wd`", _lr_cpu(lw),
                    "\"intermediate learning rates, especially lr = 10^-4 and 3x10^-4, reach high rule accuracy "
                    "rapidly, "
                    "whereas larger learning rates fail to learn the rule\" (Fig. 26)", *_lr_verdict(lw)))
    rows.append(Row("Fig. 27", "GPT weight-decay sweep", "`plot_clocks_vs_hparam` (`clocks_vs_weight_decay`) "
                    + _img("lr_wd__clocks_vs_weight_decay.png", numbers),
                    "`fit $SWEEPS/lr_wd --y tau_rule --x weight_decay --model loglinear`", _wd_cpu(lw),
                    "\"generally increasing the weight decay delays the memorization time\"; \"a moderate weight "
                    "decay ... maximizes the temporal gap\" (App. C.7)", *_wd_verdict(lw, n)))
    # -- Fig. 28 seeds
    rows.append(Row("Fig. 28", "seed-to-seed consistency", "`plot_seed_spread` (`seed_spread`) "
                    + _img("g_sweep__seed_spread.png", numbers, "G sweep") + " "
                    + _img("n_sweep__seed_spread.png", numbers, "N sweep"),
                    "`plot $SWEEPS/g_sweep`", _seed_cpu(n, g),
                    "cross-run consistency \"near the parity learnability frontier\" (Fig. 28)", *_seed_verdict(g)))
    # -- model size (Fig. 2C model comparison) and tables
    rows.append(Row("Fig. 2C (model size), Tables 1, 3", "clocks vs depth", "per run `plot_learning_dynamics` "
                    + _img("model_size__depth=4__learning_dynamics.png", numbers, "depth 4"),
                    "`fit $SWEEPS/model_size --y tau_rule --x depth`", _depth_cpu(ms),
                    "\"larger DiTs have an earlier rule transition\"; \"increasing model capacity also accelerates "
                    "tau_mem\" (Sec. 3)", *_depth_verdict(ms)))
    rows.append(Row("Table 2", "compute", "-", "each spec's `# Cost:` line; `examples/paper/estimate_cost.py`",
                    _compute_cpu(numbers), "GPU hours per model family (lost in our copy)", "n/a",
                    "CPU wall times are measured; GPU hours are estimates only"))
    return rows


def _tau_rule_vs_n(n):
    if not n:
        return NOT_RUN
    by = {}
    for r in n["runs"]:
        by.setdefault(r["config"]["n_train"], []).append(r)
    parts = []
    for k, rs in sorted(by.items()):
        kept = [r["tau_rule"] for r in rs if r.get("tau_rule")]
        parts.append(f"N = {k}: " + (f"{', '.join(fmt(x) for x in kept)}" if kept else
                                      f"discarded in {len(rs)} of {len(rs)} (after tau_mem)"))
    return "tau_rule " + "; ".join(parts)


def _tau_rule_vs_n_verdict(n):
    if not n:
        return "not run", ""
    small = [r for r in n["runs"] if not r.get("tau_rule") and r.get("tau_rule_raw")]
    kept = [r["tau_rule"] for r in n["runs"] if r.get("tau_rule")]
    spread = f"x{fmt(max(kept) / min(kept))}" if kept else "-"
    return ("partly", f"in {len(small)} runs (the small N) the raw rule onset comes after tau_mem and is discarded, "
            "as in the paper's Fig. 2D(i), where a rule \"is not learned at [small N] as memorization happens "
            f"first\"; where kept, tau_rule spans {spread}; one G only")


MARKOV_STATES = ("invalid_value", "rule_error", "valid_novel", "valid_memorized")


def _markov_late(g):
    mk = (g or {}).get("markov", {}).get("group=3__seed=1", {})
    return mk.get("after_tau_mem")


def _markov_cpu(g):
    if not g:
        return NOT_RUN
    late = _markov_late(g)
    if not late:
        return "state raster drawn; no markov window after tau_mem (the run does not memorize)"
    st = late["states"]
    return (f"G = 3 seed 1, steps {late['start']}-{late['end']} (after tau_mem): P(stay) per checkpoint "
            + ", ".join(f"{k} {fmt(st[k]['stay'])} (n = {st[k]['n']})" for k in MARKOV_STATES
                        if st.get(k, {}).get("n")))


def _markov_verdict(g):
    late = _markov_late(g)
    if not late:
        return ("not run", "")
    st = late["states"]
    mem, err = st.get("valid_memorized", {}), st.get("rule_error", {})
    if mem.get("stay") is None or err.get("stay") is None:
        return "inconclusive", "a state is not visited after tau_mem"
    if mem["stay"] > err["stay"]:
        return "reproduces", (f"memorized samples stay ({fmt(mem['stay'])}) far more than rule-violating ones "
                              f"({fmt(err['stay'])}); one run, {err['n']} moves out of the rule-violating state")
    return "does not", "the rule-violating state is as sticky as the memorized one"


def _dsm_cpu(dg):
    x = (dg or {}).get("dsm", {}).get("arch=dit")
    if not x:
        return "not run at CPU scale"
    d = (_runs(dg, arch="dit") or [{}])[0]
    band = "-".join(fmt(b) for b in x["band"])
    return (f"DiT-tiny, G = {dg['constant'].get('group')}, {len(x['steps'])} checkpoints "
            f"({x['steps'][0]}-{x['steps'][-1]}), sigma band {band}: hypercube - train gap opens (tau_rule_loss) at "
            f"{fmt(x['tau_rule_loss']) if x['tau_rule_loss'] else 'no step'}, sample tau_rule "
            f"{clock_cell(d, 'tau_rule')}; held-out - train gap (tau_mem_loss) "
            f"{fmt(x['tau_mem_loss']) if x['tau_mem_loss'] else 'not reached'}, sample tau_mem "
            f"{clock_cell(d, 'tau_mem')}")


def _dsm_verdict(dg, reason):
    x = (dg or {}).get("dsm", {}).get("arch=dit")
    if not x:
        return "cannot run on 2 cores", reason
    d = (_runs(dg, arch="dit") or [{}])[0]
    rule_ok = x["tau_rule_loss"] is not None and d.get("tau_rule") is not None and (
        x["tau_rule_loss"] <= (d.get("tau_rule_hi") or d["tau_rule"]))
    if rule_ok and d.get("tau_mem") is None:
        return "partly", ("the hypercube - train gap opens by the rule transition, as in Fig. 3B; train and held-out "
                          "stay together, as they should in a run that does not memorize, so the memorization half "
                          "cannot be tested on 2 cores; cluster: `" + CLUSTER.format(spec="g_sweep.toml") + "`")
    if rule_ok:
        return "partly", "the rule half holds; see the held-out - train gap for the memorization half"
    return "does not", "the hypercube - train gap does not open by the rule transition"


def _ce_late(dg):
    return (dg or {}).get("ce", {}).get("arch=gpt")


def _ce_cpu(dg):
    c = _ce_late(dg)
    if not c:
        return "not run at CPU scale" if not dg else "ce probe not run"
    parts = []
    for k in ("tau_rule", "tau_mem", "last"):
        if k in c:
            g = c[k]
            parts.append(f"step {c['steps'][k]} ({k}): hypercube - train CE {fmt(g['hypercube-train determined'])} "
                         f"at determined positions vs {fmt(g['hypercube-train free'])} at free ones; heldout - train "
                         f"{fmt(g['heldout-train determined'])} / {fmt(g['heldout-train free'])}")
    return f"GPT-tiny, G = {dg['constant'].get('group')}: " + "; ".join(parts)


def _ce_verdict(dg):
    c = _ce_late(dg)
    if not c or "tau_rule" not in c:
        return ("not run", "a GPT-tiny ce probe fits 2 cores: `twoclocks-probe ce $SWEEPS/dit_vs_gpt/arch=gpt`")
    r = c["tau_rule"]
    det_first = r["hypercube-train determined"] > 10 * max(abs(r["hypercube-train free"]), 0.01)
    mem = c.get("tau_mem")
    split_at_mem = mem and mem["heldout-train free"] > 10 * max(abs(r["heldout-train free"]), 0.01)
    v = "reproduces" if det_first and split_at_mem else ("partly" if det_first or split_at_mem else "does not")
    return v, ("at tau_rule the hypercube - train gap sits at the determined positions only; the held-out - train "
               "gap, near zero at tau_rule, has opened at tau_mem (one run, G = 2)" if v == "reproduces" else
               "only part of the positional pattern is seen")


def _nn_cpu(g):
    nn = (g or {}).get("nn", {}).get("group=3__seed=1")
    if not nn:
        return NOT_RUN
    a, b = nn["steps"]
    return (f"G = 3 seed 1, mean distance at step {a} (tau_rule) -> step {b} (last evaluation before tau_mem): "
            + ", ".join(f"{k} {fmt(nn[k][0])} -> {fmt(nn[k][1])}" for k in ("all", "valid", "valid_novel") if k in nn))


def _nn_verdict(g):
    nn = (g or {}).get("nn", {}).get("group=3__seed=1")
    if not nn or None in nn.get("valid_novel", [None]):
        return "not run", ""
    a, b = nn["valid_novel"]
    if a - b > 0.2:
        return "reproduces", (f"the valid-novel samples' mean distance falls by {fmt(a - b, 2)} bits before tau_mem "
                              "(a fall of more than 0.2 bits counts); one run, no interval computed")
    return "does not", "the valid-novel samples' mean distance falls by 0.2 bits or less before tau_mem"


def _rules_cpu(ru):
    if not ru:
        return NOT_RUN
    return "; ".join(f"{r['config']['rule']}: tau_rule {clock_cell(r, 'tau_rule')}, tau_mem {clock_cell(r, 'tau_mem')}"
                     for r in ru["runs"])


def _rules_verdict(ru):
    if not ru:
        return "not run", ""
    par = next((r for r in ru["runs"] if r["config"]["rule"] == "parity"), None)
    faster = [r["config"]["rule"] for r in ru["runs"] if r["config"]["rule"] != "parity" and r.get("tau_rule")
              and par and par.get("tau_rule") and r["tau_rule"] < par["tau_rule"]]
    slower = [r["config"]["rule"] for r in ru["runs"] if r["config"]["rule"] != "parity" and r not in faster
              and r["config"]["rule"] not in faster]
    mems = [r["tau_mem"] for r in ru["runs"] if r.get("tau_mem")]
    spread = (f"; tau_mem within x{fmt(max(mems) / min(mems))} across the {len(mems)} rules that reached it"
              if len(mems) > 1 else "")
    v = "partly" if faster else "does not"
    return v, (f"{', '.join(faster) or 'no count rule'} learned before G = 3 parity; {', '.join(slower)} not "
               f"within the run{spread}; one seed, N = {ru['constant'].get('n_train')}, "
               f"{ru['constant'].get('steps')} steps")


def _latin_cpu(ls):
    if not ls:
        return NOT_RUN
    return "; ".join(f"{r['config']['rule']}: tau_rule (acc >= 0.85) {clock_cell(r, 'tau_rule')}, tau_novel "
                     f"{clock_cell(r, 'tau_novel')}, tau_mem {clock_cell(r, 'tau_mem')}, final acc "
                     f"{fmt(r.get('final_sample_acc'))}" for r in ls["runs"])


def _latin_verdict(ls):
    if not ls:
        return "not run", ""
    row = next((r for r in ls["runs"] if r["config"]["rule"] == "row-latin"), None)
    others = [r for r in ls["runs"] if r is not row]
    if row and row.get("tau_rule") and all(not o.get("tau_rule") or o["tau_rule"] > row["tau_rule"] for o in others):
        return "reproduces", "the row-only square reaches the accuracy threshold first"
    if not any(r.get("tau_rule") for r in ls["runs"]):
        acc = [r["final_sample_acc"] for r in ls["runs"] if r.get("final_sample_acc") is not None]
        mem = [r["tau_mem"] for r in ls["runs"] if r.get("tau_mem")]
        return "does not", (f"no family reaches 85% sample accuracy within the run (final {fmt(min(acc))}-"
                            f"{fmt(max(acc))}), while {len(mem)} of {len(ls['runs'])} memorize from step "
                            f"{fmt(min(mem)) if mem else '-'} (GPT-tiny, N = {ls['constant'].get('n_train')}, "
                            "one seed)")
    return "partly", "the order of the onsets differs from the paper's"


def _lr_cpu(lw):
    if not lw:
        return NOT_RUN
    by = {}
    for r in lw["runs"]:
        by.setdefault(r["config"]["lr"], []).append(r)
    return "tau_rule over the weight decays: " + "; ".join(
        f"lr {k}: " + ", ".join(clock_cell(r, "tau_rule") for r in rs) for k, rs in sorted(by.items()))


def _lr_verdict(lw):
    if not lw:
        return "not run", ""
    by = {}
    for r in lw["runs"]:
        by.setdefault(r["config"]["lr"], []).append(r.get("tau_rule"))
    lrs = sorted(by)
    fails_top = all(x is None for x in by[lrs[-1]])
    med = {k: _median(v) for k, v in by.items() if all(x is not None for x in v)}
    best = min(med, key=med.get) if med else None
    return ("partly" if fails_top else "does not",
            f"the largest lr ({lrs[-1]}) does not learn the rule, as in the paper; the fastest here is lr {best}, "
            "above the paper's 1e-4 - 3e-4 (a 2-layer width-64 model; the paper's grid has no 1e-2)")


def _wd_cpu(lw):
    if not lw:
        return NOT_RUN
    f = [x for x in (lw.get("fits", {}).get("tau_rule~weight_decay", {}).get("fits") or []) if x["n"] >= 3]
    mem = [r for r in lw["runs"] if r.get("tau_mem")]
    return ("tau_rule per unit of weight decay: " + "; ".join(f"[{x['label']}] " + fit_sentence(x, per_unit=True)
                                                               for x in f)
            + f"; tau_mem reached in {len(mem)} of {len(lw['runs'])} runs (last step {lw['constant'].get('steps')})")


def _wd_verdict(lw, n=None):
    if not lw:
        return "not run", ""
    mem = [r for r in lw["runs"] if r.get("tau_mem")]
    if not mem:
        nt = lw["constant"].get("n_train")
        ref = [r["tau_mem"] for r in (n or {}).get("runs", []) if r["config"].get("n_train") == nt and r.get("tau_mem")]
        where = (f" (in the N sweep, N = {nt} at lr {n['constant'].get('lr')} memorizes at steps "
                 f"{fmt(min(ref))}-{fmt(max(ref))})" if ref else "")
        return ("inconclusive", f"the claim is about tau_mem, which no run reaches by step "
                f"{lw['constant'].get('steps')}{where}; rerun with a longer `--base steps=`")
    return "partly", "tau_mem reached in some runs only"


def _seed_cpu(n, g):
    parts = []
    if n:
        by = {}
        for r in n["runs"]:
            by.setdefault(r["config"]["n_train"], []).append(r.get("tau_mem"))
        parts.append("tau_mem max/min over 3 seeds per N: " + ", ".join(
            f"N = {k}: x{fmt(max(v) / min(v))}" for k, v in sorted(by.items()) if all(v)))
    if g:
        by = {}
        for r in g["runs"]:
            by.setdefault(r["config"]["group"], []).append(r)
        parts.append("runs that learned the rule per G: " + ", ".join(
            f"G = {k}: {sum(1 for r in rs if r.get('tau_rule'))} of {len(rs)}" for k, rs in sorted(by.items())))
    return "; ".join(parts) or NOT_RUN


def _seed_verdict(g):
    if not g:
        return "not run", ""
    by = {}
    for r in g["runs"]:
        by.setdefault(r["config"]["group"], []).append(bool(r.get("tau_rule")))
    split = [k for k, v in by.items() if any(v) and not all(v)]
    return ("reproduces" if split else "partly",
            f"away from the frontier the seeds agree; at G = {', '.join(map(str, split))} (the frontier here) seeds "
            "differ in whether the rule is learned at all" if split else "seeds agree everywhere")


def _depth_cpu(ms):
    if not ms:
        return NOT_RUN
    s = "; ".join(f"depth {r['config']['depth']}: tau_rule {clock_cell(r, 'tau_rule')}, tau_mem "
                  f"{clock_cell(r, 'tau_mem')}" for r in ms["runs"])
    for key in ("tau_rule~depth", "tau_mem~depth"):
        f = ms.get("fits", {}).get(key)
        if f:
            s += f"; `fit --y {f['spec']['y']} --x depth`: " + (fit_sentence(f["fits"][0]) if "fits" in f
                                                                  else f["error"])
    return s


def _depth_verdict(ms):
    if not ms:
        return "not run", ""
    d = {r["config"]["depth"]: r for r in ms["runs"]}
    mem_earlier = d.get(4, {}).get("tau_mem") and d.get(2, {}).get("tau_mem") and d[4]["tau_mem"] < d[2]["tau_mem"]
    return ("partly" if mem_earlier else "does not",
            "the deepest model memorizes first (as the paper's larger models); tau_rule is not monotone in depth "
            "(one seed per depth, 3 depths: no fit with a usable interval)" if mem_earlier else
            "no ordering by depth")


def _compute_cpu(numbers):
    parts = [f"{k}: {fmt(e['wall']['train_s'] / 60, 2)} + {fmt(e['wall']['probe_s'] / 60, 2)} min"
             for k, e in numbers["sweeps"].items() if e.get("wall")]
    return "CPU wall time (training + probes): " + "; ".join(parts) if parts else NOT_RUN


VERDICT_ORDER = ("reproduces", "partly", "does not", "inconclusive", "cannot run on 2 cores", "not run",
                 "not scored", "n/a")


def figure_table(numbers: dict) -> str:
    rows = figure_rows(numbers)
    body = md_table(["paper", "what", "package figure", "command", "CPU result", "paper's claim", "verdict"],
                    [[r.paper, r.what, r.figure, r.command, r.cpu, r.claim,
                      f"**{r.verdict}**" + (f": {r.why}" if r.why else "")] for r in rows])
    counts = {}
    for r in rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    tally = ", ".join(f"{v}: {counts[v]}" for v in VERDICT_ORDER if v in counts)
    return body + f"\n\nVerdicts over the {len(rows)} rows: {tally}."


def covered_figures(rows: list[Row]) -> tuple[set[int], set[int]]:
    """The paper figure and table numbers the rows name (ranges like 'Figs. 13-15' expanded)."""
    figs, tabs = set(), set()
    for r in rows:
        kind = None
        for part in r.paper.split(","):
            m = re.search(r"(Fig|Table)", part)
            kind = m.group(1) if m else kind
            num = re.search(r"(\d+)[A-H]?(?:\s*-\s*(\d+)(?![A-H]))?", part)
            if kind and num:
                a, b = int(num.group(1)), int(num.group(2) or num.group(1))
                (figs if kind == "Fig" else tabs).update(range(a, b + 1))
    return figs, tabs


def render(text: str, numbers: dict) -> str:
    """The page with its generated blocks rewritten from ``numbers``."""
    text = replace_block(text, "table", figure_table(numbers))
    for spec in SWEEPS:
        e = numbers["sweeps"].get(spec.name)
        body = sweep_section(e) if e else (f"Not run: no sweep directory. Run it with the commands in "
                                           f"[`{CPU_SPECS}/{spec.name}.toml`](../{CPU_SPECS}/{spec.name}.toml).")
        text = replace_block(text, spec.name, body)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", nargs="?", type=Path, default=DEFAULT_ROOT, help="the sweep root (default /work/sweeps)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/twoclocks_gallery"), help="scratch directory")
    ap.add_argument("--only", default="", help="comma-separated sweeps to redo (the others keep numbers.json's)")
    ap.add_argument("--render-only", action="store_true", help="only rewrite the page from docs/gallery/numbers.json")
    a = ap.parse_args(argv)
    if a.render_only:
        numbers = json.loads(NUMBERS.read_text())
    else:
        if not a.root.is_dir():
            print(f"error: sweep root {a.root} is not a directory; give the directory holding n_sweep, g_sweep, ...",
                  file=sys.stderr)
            return 2
        numbers = gather(a.root, a.work, [s for s in a.only.split(",") if s])
        GALLERY.mkdir(exist_ok=True)
        copy_figures(numbers, a.work)
        NUMBERS.write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
        numbers = json.loads(NUMBERS.read_text())      # render from what is written, as --render-only does
    PAGE.write_text(render(PAGE.read_text(), numbers))
    imgs = sorted(GALLERY.glob("*.png"))
    print(f"wrote {PAGE} and {len(imgs)} figures ({sum(p.stat().st_size for p in imgs) / 1e6:.2f} MB) in {GALLERY}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
