"""Coverage of the tau_mem = c N^alpha intervals (docs/science.md#scaling) by simulation.

    python benchmarks/fit_coverage.py [--reps R] [--seed S] [--level 0.95] [--sigma 0.3]

For n = 3..10 runs with N log-spaced over 1.5 decades (500 .. 15811) it simulates
ln tau = ln 35 + alpha ln N + e, e ~ Normal(0, sigma^2), alpha = 1, ``reps`` times, and fits each
sample with :func:`twoclocks.probes.clocks.fit_power_law`, in two designs:

- no censoring: every run reaches tau_mem;
- censoring: the round(n / 4) largest N (at least one) stop at the fixed step c N^alpha exp(-sigma),
  one sigma below their median tau_mem, so each is right-censored there with probability 0.84 (a run
  whose tau_mem falls below its last step is observed).

It prints a markdown table of the coverage of every interval the toolkit prints, the least-squares
t interval [alpha_lo, alpha_hi] and the censored-ML interval [alpha_ml_lo, alpha_ml_hi], each with
its Monte-Carlo standard error sqrt(p (1 - p) / fits), over the fits that gave that interval (a
censored-ML fit needs 3 runs that reached tau_mem, so with n = 3 and censoring only the samples where
no run was censored count; "(k)": k samples of the row gave the interval). ``dof`` is n - 2, the
degrees of freedom of both intervals without censoring (with censoring: runs that reached tau_mem
minus 2). The last column is the least-squares interval under censoring, which drops the censored
runs.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from twoclocks.probes.clocks import fit_power_law

ALPHA, C = 1.0, 35.0


def design(n: int, sigma: float, censor: bool):
    """(N, last step per run: inf where the run is not censored) of one design."""
    big_n = np.geomspace(500.0, 500.0 * 10 ** 1.5, n)
    last = np.full(n, np.inf)
    if censor:
        m = max(1, int(round(n / 4)))
        last[-m:] = C * big_n[-m:] ** ALPHA * np.exp(-sigma)
    return big_n, last


def simulate(n: int, reps: int, rng, sigma: float = 0.3, censor: bool = False, level: float = 0.95) -> dict:
    """Counts over ``reps`` simulated groups of ``n`` runs: for the least-squares t interval and the
    censored-ML interval, the fits that gave the interval and those whose interval held alpha; plus the
    mean number of censored runs."""
    big_n, last = design(n, sigma, censor)
    out = {"ls_fits": 0, "ls_hits": 0, "ml_fits": 0, "ml_hits": 0, "censored": 0}
    for _ in range(reps):
        tau = C * big_n ** ALPHA * np.exp(sigma * rng.standard_normal(n))
        cen = tau > last
        fit = fit_power_law(big_n, np.where(cen, np.nan, tau), np.where(cen, last, np.nan), level=level)
        out["censored"] += int(cen.sum())
        for key, lo, hi in (("ls", "alpha_lo", "alpha_hi"), ("ml", "alpha_ml_lo", "alpha_ml_hi")):
            if np.isfinite(fit[lo]) or np.isfinite(fit[hi]):
                out[f"{key}_fits"] += 1
                out[f"{key}_hits"] += bool(fit[lo] <= ALPHA <= fit[hi])
    return out


def cell(hits: int, fits: int) -> str:
    if not fits:
        return "-"
    p = hits / fits
    return f"{p:.3f} ± {np.sqrt(p * (1 - p) / fits):.3f}" + ("" if fits == REPS else f" ({fits})")


def main(argv=None):
    global REPS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--sigma", type=float, default=0.3)
    args = ap.parse_args(argv)
    REPS = args.reps
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    print(f"coverage of the {args.level:.0%} intervals for alpha, {args.reps} samples per row, sigma = {args.sigma}, "
          f"alpha = {ALPHA}; ± Monte-Carlo standard error; (k): only k samples gave that interval\n")
    print("| n | dof | least squares, t | censored ML | censored ML, censoring | censored runs (mean) "
          "| least squares, censoring |")
    print("|---|---|---|---|---|---|---|")
    for n in range(3, 11):
        plain = simulate(n, args.reps, rng, args.sigma, False, args.level)
        cens = simulate(n, args.reps, rng, args.sigma, True, args.level)
        print(f"| {n} | {n - 2} | {cell(plain['ls_hits'], plain['ls_fits'])} | "
              f"{cell(plain['ml_hits'], plain['ml_fits'])} | {cell(cens['ml_hits'], cens['ml_fits'])} | "
              f"{cens['censored'] / args.reps:.2f} | {cell(cens['ls_hits'], cens['ls_fits'])} |", flush=True)
    print(f"\n({time.time() - t0:.0f} s)")


REPS = 0

if __name__ == "__main__":
    main()
