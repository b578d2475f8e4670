"""Which runs may share one tau_mem = c N^alpha fit (docs/science.md#sensitivity): the pooling rule.

A fit pools runs whose clocks were read the same way. Two of the arbitrary choices behind a clock are
not config fields that separate fit groups (:data:`twoclocks.probes.clocks.NOT_GROUPING` holds them):
the evaluation density and the noise-bank size. Coarser evaluation moves a sustained onset later (to
the next evaluated step), a smaller bank makes the curves noisier; pooled runs would then differ by
how they were measured. :func:`check_pooling` refuses a group whose runs differ in

- evaluation density: the config's ``saves_per_decade``, or the density actually evaluated in the
  samples cube (:func:`evals_per_decade`, which differ when max / min > :data:`DENSITY_TOLERANCE`);
- bank size: the config's ``n_noise``, or the number of seeds in the cube (``seed`` dim),

unless ``allow_unequal`` (``--pool-unequal``). Kept apart from :mod:`twoclocks.probes.clocks` (which
calls it from ``fit_groups``) so that module need not import the sensitivity study; re-exported by
:mod:`twoclocks.probes.sensitivity`.
"""
from __future__ import annotations

import numpy as np

from twoclocks import TwoclocksError

__all__ = ["check_pooling", "evals_per_decade", "measured_pooling", "DENSITY_TOLERANCE", "POOLING_FLAG"]

#: measured evaluation densities differ when max / min exceeds this (rounding of log-spaced integer
#: steps and the appended final step move the measured density by a few percent)
DENSITY_TOLERANCE = 1.2
POOLING_FLAG = "--pool-unequal (Python: allow_unequal=True)"


def evals_per_decade(steps) -> float:
    """Evaluated steps per decade of training steps actually in a cube: 1 / median of
    log10(s_{i+1} / s_i) over consecutive evaluated steps s > 0 (the median ignores the merged
    small integer steps at the start and the final step appended off the log grid); NaN with fewer
    than 2 positive steps."""
    s = np.unique(np.asarray(steps, float))
    s = s[s > 0]
    if len(s) < 2:
        return np.nan
    return float(1.0 / np.median(np.diff(np.log10(s))))


def measured_pooling(cubes) -> dict:
    """Per run, from its samples cube (xarray Datasets, in run order): ``evals_per_decade``
    (:func:`evals_per_decade` of its ``step`` values) and ``n_seeds`` (the size of its ``seed`` dim;
    NaN when the cube stores no per-seed samples). Arrays for :func:`check_pooling`'s ``measured``."""
    return {"evals_per_decade": np.array([evals_per_decade(ds["step"].values) for ds in cubes], float),
            "n_seeds": np.array([float(ds.sizes["seed"]) if "seed" in ds.sizes else np.nan for ds in cubes])}


def _differing(values, names, tolerance: float | None) -> str:
    """'' when the finite ``values`` agree (exactly, or within the ratio ``tolerance``), else 'V (a, b), W (c)'."""
    v = np.asarray(values, float)
    ok = np.isfinite(v)
    if ok.sum() < 2:
        return ""
    u = v[ok]
    same = (u.max() <= u.min() * tolerance) if tolerance else (u.max() == u.min())
    if same:
        return ""
    shown = np.round(v, 2) if tolerance else v
    parts = []
    for val in sorted(set(shown[ok].tolist())):
        who = [n for n, x, g in zip(names, shown, ok) if g and x == val]
        parts.append(f"{val:g} ({', '.join(who)})")
    return ", ".join(parts)


def check_pooling(cfgs: list[dict], members, label: str = "", names=None, measured: dict | None = None,
                  allow_unequal: bool = False) -> None:
    """Refuse (one-line :class:`TwoclocksError`) a fit group whose runs (``members``, a bool mask over
    ``cfgs``) differ in evaluation density or bank size (module docstring), unless ``allow_unequal``.
    ``names``: the runs' names for the message (default ``#i``); ``measured``: per-run
    ``evals_per_decade`` / ``n_seeds`` arrays (:func:`measured_pooling`; None: the configs only)."""
    if allow_unequal:
        return
    members = np.asarray(members, bool)
    idx = np.flatnonzero(members)
    if len(idx) < 2:
        return
    names = [f"#{i}" for i in range(len(cfgs))] if names is None else [str(n) for n in names]
    who = [names[i] for i in idx]
    measured = measured or {}
    checks = [("saves_per_decade", [cfgs[i].get("saves_per_decade", np.nan) for i in idx], None),
              ("evaluated steps per decade", np.asarray(measured.get("evals_per_decade", np.full(len(cfgs), np.nan)),
                                                        float)[idx], DENSITY_TOLERANCE),
              ("n_noise", [cfgs[i].get("n_noise", np.nan) for i in idx], None),
              ("bank seeds in the cube", np.asarray(measured.get("n_seeds", np.full(len(cfgs), np.nan)),
                                                    float)[idx], None)]
    for what, values, tol in checks:
        diff = _differing([np.nan if v is None else v for v in values], who, tol)
        if diff:
            kind = "evaluation density" if "per_decade" in what or "per decade" in what else "bank size"
            raise TwoclocksError(f"fit group [{label or 'all runs'}] pools runs of different {kind}: {what} "
                                 f"{diff}; fit them apart, or pass {POOLING_FLAG} to pool them anyway")
