"""Drawing every figure of a run (or of several runs) into files."""
from __future__ import annotations

from pathlib import Path

from twoclocks import TwoclocksError
from twoclocks.plotting.ce import plot_ce
from twoclocks.plotting.dsm import plot_dsm_bands, plot_dsm_gap, plot_dsm_spectrum
from twoclocks.plotting.landscape import plot_basin, plot_plane
from twoclocks.plotting.samples import (
    plot_learning_dynamics,
    plot_nn_hamming,
    plot_state_raster,
    plot_transitions,
)
from twoclocks.plotting.sweep import plot_clock_scaling, plot_memorization_collapse


# ------------------------------------------------------------------------------------------ drivers
class PlotResult(list):
    """The written figure paths (a list of Path), with ``notes``: one line per figure skipped."""

    def __init__(self, paths=(), notes=()):
        super().__init__(paths)
        self.notes = list(notes)


#: (figure name, cubes it needs, architectures the cubes exist for, drawing function)
RUN_FIGURES = [
    ("learning_dynamics", ("samples",), ("dit", "gpt"),
     lambda c: plot_learning_dynamics(c["samples"], mem_adaptive=c.get("mem_adaptive"))),
    ("state_raster", ("samples",), ("dit", "gpt"), lambda c: plot_state_raster(c["samples"])),
    ("nn_hamming", ("samples",), ("dit", "gpt"), lambda c: plot_nn_hamming(c["samples"])),
    ("transitions", ("markov",), ("dit", "gpt"), lambda c: plot_transitions(c["markov"])),
    ("dsm_spectrum", ("dsm_spectrum",), ("dit",), lambda c: plot_dsm_spectrum(c["dsm_spectrum"])),
    ("dsm_bands", ("dsm_spectrum",), ("dit",), lambda c: plot_dsm_bands(c["dsm_spectrum"], c.get("samples"))),
    ("dsm_gap", ("dsm_spectrum",), ("dit",), lambda c: plot_dsm_gap(c["dsm_spectrum"])),
    ("ce", ("ce",), ("gpt",), lambda c: plot_ce(c["ce"])),
    ("plane", ("plane",), ("dit",), lambda c: plot_plane(c["plane"])),
    ("basin", ("basin",), ("dit",), lambda c: plot_basin(c["basin"])),
]
PROBE_COMMAND = {"samples": "samples", "markov": "markov", "dsm_spectrum": "dsm-spectrum", "ce": "ce",
                 "plane": "plane", "basin": "basin"}


def parse_formats(formats) -> tuple[str, ...]:
    """'png,pdf' or a sequence -> ('png', 'pdf'); only formats matplotlib can write."""
    from matplotlib.figure import Figure
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in items if f.strip()))
    known = Figure().canvas.get_supported_filetypes()
    bad = [f for f in out if f not in known]
    if not out or bad:
        raise TwoclocksError(f"--format {','.join(bad) or formats!r}: choose from {', '.join(sorted(known))} "
                             "(comma-separated, e.g. png,pdf)")
    return out


def save(fig, out: Path, name: str, formats) -> list[Path]:
    """Write ``fig`` as out/name.FORMAT for each format; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in formats:
        p = out / f"{name}.{f}"
        fig.savefig(p, dpi=150, bbox_inches="tight", pad_inches=0.08)
        paths.append(p)
    return paths


def plot_run(run_dir, out=None, formats=("png",), mem_adaptive: bool | None = None) -> PlotResult:
    """Draw every figure whose cube ``run_dir/probes`` holds into ``out`` (default RUN_DIR/figures),
    as each of ``formats``. Returns the written paths (a list) whose ``.notes`` hold one line per
    cube missing (cubes that do not apply to the run's architecture are not mentioned).
    ``mem_adaptive``: the memorization threshold of the clocks drawn (see plot_learning_dynamics)."""
    from twoclocks.run import open_run
    from twoclocks.store import open_cube
    run = open_run(run_dir)
    formats = parse_formats(formats)
    out = Path(out) if out is not None else run.path / "figures"
    arch = run.config.arch
    cubes, result = {"mem_adaptive": mem_adaptive}, PlotResult()
    for name in PROBE_COMMAND:
        p = run.probe_path(name)
        if p.exists():
            cubes[name] = open_cube(p)
    noted = set()
    for fig_name, needs, archs, draw in RUN_FIGURES:
        if arch not in archs:
            continue
        missing = [n for n in needs if n not in cubes]
        if missing:
            for n in missing:
                if n not in noted:
                    noted.add(n)
                    pre = [f"`twoclocks-probe samples {run.path}` then "] if n == "markov" and "samples" not in cubes \
                        else [""]
                    result.notes.append(f"skipped {n}: no probes/{n}.zarr; run {pre[0]}`twoclocks-probe "
                                        f"{PROBE_COMMAND[n]} {run.path}`")
            continue
        fig = draw(cubes)
        result.extend(save(fig, out, fig_name, formats))
    return result


def plot_runs(run_dirs, out, formats=("png",), **clock_options) -> PlotResult:
    """The across-runs figures (clock scaling and the memorization collapse) of several runs with
    samples cubes, into ``out``. ``clock_options`` go to :func:`twoclocks.probes.clocks.compute_clocks`."""
    from twoclocks.probes.clocks import compute_clocks
    from twoclocks.run import open_run
    from twoclocks.store import open_cube
    formats = parse_formats(formats)
    clocks = compute_clocks([str(d) for d in run_dirs], **clock_options)
    samples = [open_cube(open_run(d).probe_path("samples")) for d in run_dirs]
    out = Path(out)
    res = PlotResult()
    res.extend(save(plot_clock_scaling(clocks), out, "clock_scaling", formats))
    res.extend(save(plot_memorization_collapse(clocks, samples), out, "memorization_collapse", formats))
    return res
