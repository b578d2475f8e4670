"""The schema of the generic clock-fit cube (`twoclocks-probe fit --out`), written through
:func:`twoclocks.store.write_derived`, which checks it against these declarations."""
from __future__ import annotations

from twoclocks.probes.linefit import LINE_FIT_KEYS, LINE_FIT_STR_KEYS
from twoclocks.schema import CubeSchema, Var, coord
from twoclocks.training.config import TrainConfig

__all__ = ["CLOCK_FIT_SCHEMA", "CLOCK_FIT_VARS"]

_R, _F = ("run",), ("fit",)


def _is_config_field(name: str) -> bool:
    return name in TrainConfig.__dataclass_fields__


def _key_var(key: str, long: str) -> Var:
    if key in ("censored_at", "censored_x"):
        return Var(_F, "str", long + " (JSON list)", None)
    if key in LINE_FIT_STR_KEYS:
        return Var(_F, "str", long, None)
    if key in ("n", "n_runs", "n_censored"):
        return Var(_F, "int64", long)
    return Var(_F, "float64", long, "steps" if key in ("c", "c_ml") else "1")


CLOCK_FIT_VARS = {
    "axis_value": Var(_R, "float64", "the run's value of the fitted config field (attrs x)"),
    "clock_value": Var(_R, "float64", "the run's fitted clock (attrs y; NaN: not reached)", "steps"),
    "clock_censored_at": Var(_R, "float64", "clock not reached: the step it is known to exceed (NaN: reached or "
                                            "unknown)", "steps"),
    "run_role": Var(_R, "str", "reached, censored, or why the run is left out of the fits", None),
    "run_selected": Var(_R, "bool", "run selected by --where (all when not given)"),
    "fit_label": Var(_F, "str", "the group's runs (the config values that tell the groups apart)", None),
    "fit_pooled_over": Var(_F, "str", "config fields pooled over (empty: none)", None),
    "fit_member": Var(("fit", "run"), "bool", "run is in the fit group"),
    **{f"fit_{key}": _key_var(key, long) for key, long in LINE_FIT_KEYS.items()},
}

CLOCK_FIT_SCHEMA = CubeSchema(
    "clock_fit", doc="A clock against a numeric config field across runs (`twoclocks-probe fit`): per group of runs "
                     "equal in every config field but the axis, seeds and bookkeeping (and the pooled fields), the "
                     "least-squares line of ln clock on ln axis (power) or on the axis (loglinear) with its t interval "
                     "and t-test of a zero slope, and the right-censored maximum-likelihood line with its "
                     "t-calibrated profile-likelihood interval and likelihood-ratio test (docs/science.md#generic-fit). "
                     "attrs y, x, model, level name the fit. Every config field is a coordinate on `run`.",
    coords={"run": coord("run"), "fit": Var(_F, "int64", "fit group")},
    data_vars=CLOCK_FIT_VARS, extra_coords=_is_config_field)
