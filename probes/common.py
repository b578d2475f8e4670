"""What every probe shares: which sources to evaluate (checkpoint steps or a reference denoiser)."""
from __future__ import annotations

from twoclocks import TwoclocksError
from twoclocks.ideal import REFERENCES
from twoclocks.rundir import REFERENCE_STEP, step_key

__all__ = ["resolve_sources", "step_key", "REFERENCE_STEP"]


def resolve_sources(run, name: str, steps: str | None = None, denoiser: str | None = None):
    """The cube name and the list of (step coordinate, source) a probe evaluates.

    With ``denoiser`` (a reference: ideal-rule, ideal-cube, memorize) the probe runs once on that
    denoiser and writes ``probes/NAME-DENOISER.zarr`` with step = -1; otherwise it runs on the chosen
    checkpoints and writes ``probes/NAME.zarr``."""
    if denoiser is not None:
        if denoiser not in REFERENCES:
            raise TwoclocksError(f"unknown --denoiser {denoiser!r}; choose one of {', '.join(REFERENCES)}")
        if steps is not None:
            raise TwoclocksError("--steps and --denoiser exclude each other: a reference has no steps")
        return f"{name}-{denoiser}", [(REFERENCE_STEP, denoiser)]
    return name, [(s, s) for s in run.select_steps(steps)]
