"""Writing figures into files: the formats matplotlib can write, one file per format, and the list of
written paths with notes (the loading layer, :mod:`twoclocks.plotting.load`, draws runs and sweeps)."""
from __future__ import annotations

from pathlib import Path

from twoclocks import TwoclocksError


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
