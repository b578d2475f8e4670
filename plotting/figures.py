"""Drawing every figure of a run (or of several runs) into files."""
from __future__ import annotations

from pathlib import Path

from twoclocks import TwoclocksError
from twoclocks.plotting.sweep import plot_clock_scaling, plot_memorization_collapse


# ------------------------------------------------------------------------------------------ drivers
class PlotResult(list):
    """The written figure paths (a list of Path), with ``notes``: one line per figure skipped."""

    def __init__(self, paths=(), notes=()):
        super().__init__(paths)
        self.notes = list(notes)


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


def _figures_of(probe) -> tuple:
    figs = probe.figures() if callable(probe.figures) else probe.figures
    return tuple(figs or ())


def plot_run(run_dir, out=None, formats=("png",), mem_adaptive: bool | None = None, probes=None,
             k: int | None = None, acc_threshold: float | None = None, mem_threshold: float | None = None
             ) -> PlotResult:
    """Draw every figure whose cubes ``run_dir/probes`` holds into ``out`` (default RUN_DIR/figures),
    as each of ``formats``: the figures each registered probe declares (and those of ``probes``, extra
    probes given as Probe objects or MODULE:OBJECT names). Returns the written paths (a list) whose
    ``.notes`` hold one line per cube missing (cubes that do not apply to the run's architecture are
    not mentioned). ``mem_adaptive``, ``mem_threshold``, ``k``, ``acc_threshold``: the clock options of
    the clocks drawn, as `clocks` (None: the package's defaults)."""
    from twoclocks.probes.registry import all_probes, load_probe
    from twoclocks.run import open_run
    from twoclocks.store import open_cube
    run = open_run(run_dir)
    formats = parse_formats(formats)
    out = Path(out) if out is not None else run.path / "figures"
    arch = run.config.arch
    from twoclocks.probes.registry import BUILTIN_MODULES
    chosen = list(all_probes())
    asked = set()  # missing cubes are noted for the built-in probes and those asked for
    for p in probes or ():
        p = load_probe(p) if isinstance(p, str) else p
        asked.add(p.name)
        if p not in chosen:
            chosen.append(p)
    by_cube = {p.cube: p for p in chosen}
    options = {"k": k, "acc_threshold": acc_threshold, "mem_threshold": mem_threshold, "mem_adaptive": mem_adaptive}
    cubes, result = {"mem_adaptive": mem_adaptive, "clock_options": options}, PlotResult()
    for name in by_cube:
        path = run.probe_path(name)
        if path.exists():
            cubes[name] = open_cube(path)
    noted = set()
    for probe in chosen:
        if not probe.applies_to(arch):
            continue
        for fig in _figures_of(probe):
            missing = [n for n in fig.needs if n not in cubes]
            if missing and not (probe.options.__module__ in BUILTIN_MODULES or probe.name in asked):
                continue  # a probe registered in this process but not asked for: only drawn when its cube exists
            if missing:
                for n in missing:
                    if n in noted:
                        continue
                    noted.add(n)
                    maker = by_cube.get(n)
                    first = "".join(f"`twoclocks-probe {need} {run.path}` then " for need in getattr(maker, "needs", ())
                                    if need not in cubes)
                    cmd = maker.name if maker is not None else n
                    result.notes.append(f"skipped {n}: no probes/{n}.zarr; run {first}`twoclocks-probe {cmd} "
                                        f"{run.path}`")
                continue
            result.extend(save(fig.draw(cubes), out, fig.name, formats))
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
