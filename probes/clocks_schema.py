"""The schemas of the derived cross-run cubes: ``clocks`` (`twoclocks-probe clocks --out`, declared as a
cross-run probe in :mod:`twoclocks.probes.clocks`), ``collect`` (`twoclocks-probe collect`,
SWEEP_DIR/collect.zarr) and ``sensitivity``, with the keys and meanings of the clocks' fits. Each is
written through :func:`twoclocks.store.write_derived`, which checks it against these declarations."""
from __future__ import annotations

from twoclocks.schema import CubeSchema, Var, coord
from twoclocks.training.config import TrainConfig

__all__ = ["LOSS_CLOCKS", "FIT_KEYS", "FIT_STR_KEYS", "FIT_CLOCK_KEYS", "CLOCKS_SCHEMA", "COLLECT_SCHEMA",
           "SENSITIVITY_SCHEMA", "CLOCK_VARS", "FIT_VARS", "SEED_VARS", "UNCERTAINTY_VARS", "FIT_CLOCK_VARS"]

#: the loss-based clocks of the DSM probe (:func:`twoclocks.probes.clocks.loss_clocks`)
LOSS_CLOCKS = ("tau_rule_loss", "tau_mem_loss")
#: the keys of :func:`twoclocks.probes.clocks.fit_power_law`'s result, with their meaning (one output format
#: for every caller)
FIT_KEYS = {
    "c": "prefactor c of tau_mem = c N^alpha, least squares of ln tau on ln N over the runs that reached tau_mem",
    "alpha": "exponent alpha, least squares over the runs that reached tau_mem (censored runs dropped)",
    "alpha_lo": "lower end of the t confidence interval of alpha (slope standard error, n - 2 dof; NaN if n < 3)",
    "alpha_hi": "upper end of the t confidence interval of alpha (slope standard error, n - 2 dof; NaN if n < 3)",
    "r2": "R^2 of that least-squares line",
    "n": "number of runs with a finite tau_mem (the points of the least-squares line)",
    "dof": "degrees of freedom of both intervals: n - 2 (n runs that reached tau_mem; NaN if n < 3)",
    "interval_method": "method of [alpha_lo, alpha_hi] ('t': Student t with dof; empty: no interval)",
    "n_runs": "number of runs in the group",
    "n_censored": "runs that never reached tau_mem: right-censored at their censoring step",
    "censored_at": "censoring steps of the censored runs (tau_mem > this), ascending",
    "censored_n": "N of the censored runs, in the order of censored_at",
    "c_ml": "prefactor c, right-censored maximum likelihood (Tobit on ln tau_mem)",
    "alpha_ml": "exponent alpha, right-censored maximum likelihood (Tobit on ln tau_mem)",
    "alpha_ml_lo": "lower end of the confidence interval of alpha_ml (method: interval_method_ml)",
    "alpha_ml_hi": "upper end of the confidence interval of alpha_ml (method: interval_method_ml)",
    "sigma_ml": "residual standard deviation of ln tau_mem in the Tobit model",
    "level": "confidence level of [alpha_lo, alpha_hi] and [alpha_ml_lo, alpha_ml_hi]",
    "interval_method_ml": "method of [alpha_ml_lo, alpha_ml_hi] (profile likelihood cut at the t-calibrated "
                          "n ln(1 + t^2/dof); empty: no interval)",
    "ml_status": "'ok', or why the censored fit is NaN",
    "notes": "warnings on the fit (e.g. a weak fit on fewer than 4 runs); empty: none",
}
#: the string-valued keys of :data:`FIT_KEYS` (the rest are numbers; censored_* are tuples)
FIT_STR_KEYS = ("interval_method", "interval_method_ml", "ml_status", "notes")
#: the per-fit-group spread of alpha under per-run clock uncertainty (:func:`twoclocks.probes.clocks.alpha_spread`)
FIT_CLOCK_KEYS = {
    "alpha_lo": "lower end of the least-squares alpha over bootstrap replicates of every run's tau_mem (level: "
                "attrs clock_uncertainty_level)",
    "alpha_hi": "upper end of the least-squares alpha over bootstrap replicates of every run's tau_mem",
    "alpha_median": "median of the least-squares alpha over bootstrap replicates of every run's tau_mem",
    "n_valid": "bootstrap replicates with a least-squares alpha (>= 2 distinct N reached)",
}


def _is_config_field(name: str) -> bool:
    return name in TrainConfig.__dataclass_fields__


_R = ("run",)
CLOCK_VARS = {
    "tau_rule": Var(_R, "float64", "rule clock: first step with sample accuracy >= acc_threshold for k evaluations "
                                   "(NaN: see tau_rule_status)", "steps"),
    "tau_mem": Var(_R, "float64", "memorization clock: first step with sample memorization > the threshold for k "
                                  "evaluations (NaN: see tau_mem_status)", "steps"),
    "tau_mem_censored_at": Var(_R, "float64", "tau_mem not reached: the step it is known to exceed "
                                              "(right-censoring point; NaN when reached)", "steps"),
    "window": Var(_R, "float64", "innovation window length tau_mem - tau_rule", "steps"),
    "tau_rule_raw": Var(_R, "float64", "tau_rule before discarding it when after tau_mem", "steps"),
    "tau_rule_status": Var(_R, "str", "tau_rule status", None),
    "tau_mem_status": Var(_R, "str", "tau_mem status", None),
    "window_status": Var(_R, "str", "innovation window status", None),
    "mem_threshold": Var(_R, "float64", "sample memorization threshold used (attrs mem_threshold_policy)"),
    "mem_baseline": Var(_R, "float64", "baseline sample memorization N/|support| (perfect model of the training distribution)"),
    "passes_at_tau_mem": Var(_R, "float64", "passes over each train sample at tau_mem, tau_mem x batch / n_train "
                                            "(NaN: tau_mem not reached)"),
    "last_step": Var(_R, "float64", "last evaluated step", "steps"),
    "n_evals": Var(_R, "int64", "number of evaluated checkpoints"),
    "notes": Var(_R, "str", "notes on the clocks", None),
    **{name: Var(_R, "float64", f"loss-based {name[:-5]} from the DSM probe", "steps") for name in LOSS_CLOCKS},
}


#: per-run clock uncertainty (docs/science.md#clock-uncertainty) and the clocks besides tau_rule / tau_mem
UNCERTAINTY_VARS = {
    **{f"{c}_{end}": Var(_R, "float64", f"{c} seed-bootstrap interval, {end}er end at attrs clock_uncertainty_level "
                                        "(+inf: beyond the last evaluated step; NaN: no bootstrap)", "steps")
       for c in ("tau_rule", "tau_mem") for end in ("lo", "hi")},
    **{f"{c}_reached": Var(_R, "float64", f"fraction of bootstrap replicates reaching {c} (NaN: no bootstrap)")
       for c in ("tau_rule", "tau_mem")},
    **{f"{c}_bracket_lo": Var(_R, "float64", f"{c} grid bracket (lo, hi]: the evaluated step before it (-inf: "
                                             "the first step; NaN: not reached)", "steps") for c in ("tau_rule", "tau_mem")},
    **{f"{c}_bracket_hi": Var(_R, "float64", f"{c} grid bracket (lo, hi]: the clock itself (NaN: not reached)", "steps")
       for c in ("tau_rule", "tau_mem")},
    "extra_tau": Var(("run", "extra_clock"), "float64", "further clocks of the definitions (attrs clock_defs)",
                       "steps"),
    "extra_tau_status": Var(("run", "extra_clock"), "str", "status of the further clocks", None),
}
#: per fit group, the spread of the least-squares alpha under per-run clock uncertainty (attrs fit_clock_method)
FIT_CLOCK_VARS = {f"fit_clock_{key}": Var(("fit",), "int64" if key == "n_valid" else "float64", long)
                  for key, long in FIT_CLOCK_KEYS.items()}


def _fit_var(key: str, long: str) -> Var:
    if key in ("censored_at", "censored_n") or key in FIT_STR_KEYS:
        return Var(("fit",), "str", long + (" (JSON list)" if key not in FIT_STR_KEYS else ""), None)
    if key in ("n", "n_runs", "n_censored"):
        return Var(("fit",), "int64", long)
    return Var(("fit",), "float64", long, "steps" if key.startswith("c") else "1")


FIT_VARS = {
    "fit_index": Var(_R, "int64", "index of the run's first power-law fit group (-1: none)"),
    "fit_label": Var(("fit",), "str", "the group's runs", None),
    "fit_pooled_over": Var(("fit",), "str", "config fields pooled over (empty: none)", None),
    "fit_member": Var(("fit", "run"), "bool", "run is in the fit group"),
    "fit_selected": Var(_R, "bool", "run selected for the fits (--where; all when not given)"),
    "fit_residual": Var(_R, "float64", "ln tau_mem minus the least-squares line ln c + alpha ln N of the run's first "
                                       "fit group (NaN: not fitted)"),
    **{f"fit_{key}": _fit_var(key, long) for key, long in FIT_KEYS.items()},
}
#: the seed summary: per grid point (runs equal except their seeds) and clock, over the point's seeds
SEED_VARS = {
    "point_index": Var(_R, "int64", "index of the run's grid point (dim point)"),
    "point_n_seeds": Var(("point",), "int64", "runs (seeds) at the grid point"),
    "seed_mean": Var(("point", "clock"), "float64", "mean over the point's seeds that reached the clock", "steps"),
    "seed_sd": Var(("point", "clock"), "float64", "sample standard deviation (ddof 1) over the point's seeds that "
                                                  "reached the clock", "steps"),
    "seed_n": Var(("point", "clock"), "int64", "seeds of the point that reached the clock"),
}
_COORDS = {"run": coord("run"), "fit": Var(("fit",), "int64", "power-law fit group"),
           "point": Var(("point",), "str", "grid point: runs equal except their seeds", None),
           "clock": Var(("clock",), "str", "clock", None),
           "extra_clock": Var(("extra_clock",), "str", "further clock of the definitions", None)}

CLOCKS_SCHEMA = CubeSchema(
    "clocks", doc="The two clocks and the innovation window per run, and the tau_mem = c N^alpha fits over runs "
                  "equal in everything but N (plain log-log and right-censored maximum likelihood; "
                  "docs/science.md#clocks). Every config field is a coordinate on `run`.",
    coords=_COORDS, data_vars={**CLOCK_VARS, **UNCERTAINTY_VARS, **FIT_VARS, **FIT_CLOCK_VARS, **SEED_VARS}, extra_coords=_is_config_field)

COLLECT_SCHEMA = CubeSchema(
    "collect", doc="One Dataset over the runs of a sweep: the clocks cube's variables plus the final metrics and "
                   "fit membership; the grid axes are coordinates on `run`.",
    coords={**_COORDS, "run_dir": Var(_R, "str", "run directory", None)},
    data_vars={**CLOCK_VARS, **UNCERTAINTY_VARS, **FIT_VARS, **FIT_CLOCK_VARS, **SEED_VARS,
               "final_step": Var(_R, "float64", "last evaluated checkpoint step", "steps"),
               "final_sample_acc": Var(_R, "float64", "sample accuracy at the last evaluated step"),
               "final_sample_mem": Var(_R, "float64", "sample memorization at the last evaluated step"),
               "final_group_acc": Var(_R, "float64", "group accuracy at the last evaluated step"),
               "final_group_mem": Var(_R, "float64", "group memorization at the last evaluated step"),
               "final_loss": Var(_R, "float64", "training loss at the last log interval (EDM loss for dit, "
                                                "cross-entropy for gpt)")},
    extra_coords=_is_config_field)

#: the sensitivity study (`clocks --sensitivity-out`, twoclocks.probes.sensitivity.clock_sensitivity)
_VR, _VF, _V = ("variant", "run"), ("variant", "fit"), ("variant",)
SENSITIVITY_SCHEMA = CubeSchema(
    "sensitivity", doc="The clocks per run and alpha per fit group over the arbitrary choices (memorization "
                       "threshold and policy, accuracy threshold, k, evaluation density, bank size), varied one at "
                       "a time around the defaults; the variant `default` equals the clocks cube "
                       "(docs/science.md#sensitivity).",
    coords={"variant": Var(_V, "str", "the choice and its value (e.g. k=2); 'default': every choice at its default",
                           None),
            "choice": Var(_V, "str", "the choice varied (default, mem_threshold, acc_threshold, k, thin, bank)", None),
            "value": Var(_V, "str", "its value", None),
            "run": coord("run"), "n_train": Var(_R, "int64", "config: n_train"),
            "fit": Var(("fit",), "int64", "power-law fit group")},
    data_vars={
        "tau_rule": Var(_VR, "float64", "rule clock under the variant (NaN: see tau_rule_status)", "steps"),
        "tau_mem": Var(_VR, "float64", "memorization clock under the variant (NaN: see tau_mem_status)", "steps"),
        "window": Var(_VR, "float64", "innovation window length tau_mem - tau_rule under the variant", "steps"),
        "tau_mem_censored_at": Var(_VR, "float64", "tau_mem not reached: the step it is known to exceed", "steps"),
        "tau_rule_status": Var(_VR, "str", "tau_rule status", None),
        "tau_mem_status": Var(_VR, "str", "tau_mem status", None),
        "mem_threshold": Var(_VR, "float64", "sample memorization threshold used"),
        "n_evals": Var(_VR, "int64", "evaluated checkpoints used"),
        "n_seeds": Var(_VR, "float64", "noise-bank seeds the curves average (NaN: unknown)"),
        **{f"fit_{key}": Var(_VF, "int64" if key in ("n", "n_censored") else "float64", FIT_KEYS[key],
                             "steps" if key.startswith("c") and key != "n_censored" else "1")
           for key in ("alpha", "alpha_lo", "alpha_hi", "alpha_ml", "alpha_ml_lo", "alpha_ml_hi", "c", "c_ml", "n",
                       "n_censored")},
        "fit_label": Var(("fit",), "str", "the group's runs", None),
        "fit_member": Var(("fit", "run"), "bool", "run is in the fit group"),
        "is_default": Var(_V, "bool", "every choice at its default"),
        "mem_policy": Var(_V, "str", "memorization threshold policy of the variant", None),
        "mem_t": Var(_V, "float64", "memorization threshold t of the variant"),
        "acc_threshold": Var(_V, "float64", "accuracy threshold of tau_rule of the variant"),
        "k": Var(_V, "int64", "evaluations a criterion must hold for"),
        "thin_factor": Var(_V, "int64", "thinning factor: every thin-th evaluated step kept, counted back from the last"),
        "bank_factor": Var(_V, "int64", "bank factor: n_seeds // bank seeds kept"),
    })

