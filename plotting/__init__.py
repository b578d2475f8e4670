"""Figures over the probe cubes, after the paper's panels (one module per cube family).

Every ``plot_*`` function takes xarray Datasets (a cube, or your own slice of one: select steps,
anchors, sigmas first and pass the result) and returns a :class:`matplotlib.figure.Figure`. Single-panel
functions accept ``ax=`` (draw into your Axes); multi-panel ones accept ``fig=`` (a Figure or SubFigure
to fill). Figures are made without pyplot (no global state, nothing shown); save them with
``fig.savefig``. Styling is seaborn's, applied only while a figure is drawn (no global rcParams change).

Conventions: colour-blind-safe palettes (seaborn ``colorblind``; magma / RdBu_r / Blues for fields);
training-step axes are symlog (linear below 1, so step 0 is shown, log above) when the evaluated steps
span two decades or more, linear otherwise; axis labels come from the variables' ``long_name`` (cut
at its first parenthesis or clause) and ``units``; legends sit outside the panels.

Figures and the cube variables they read:

============================  ===========  ==================================================================
function                      paper        cube variables
============================  ===========  ==================================================================
plot_learning_dynamics        2B, 4A, 1BC  samples: sample_acc, group_acc, sample_mem, group_mem, invalid_frac,
                                           chance_*_acc, uniform_valid_*_mem; [clocks: run_clock_values]
plot_state_raster             3A, 11 top   samples: state (step, seed), [state_count]
plot_transitions              3A, 11 mid   markov: window_prob, window_counts, window_start/end
plot_nn_hamming               12           samples: nn_hamming_mean (step, subset)
plot_dsm_spectrum             3C, 13       dsm_spectrum: loss, loss_se (step, split, sigma), [reference_loss]
plot_dsm_bands                3B, 14       dsm_spectrum: loss; [samples: state_frac for the top panel]
plot_dsm_gap                  15           dsm_spectrum: gap, gap_se (step, sigma) (or loss), [tau_mem_loss]
plot_ce                       4C, 4D       ce: ce_mean (step, split), ce (step, split, position), determined,
                                           [ce_ideal_mean]
plot_plane                    3D, 17-19    plane: score_norm, score_u, score_v, attraction (step, anchor,
                                           sigma, u, v), vertex_u, vertex_v
plot_basin                    3E, 16       basin: {exact_match,hamming,l2}_{mean,lo,hi} (step, sigma,
                                           direction, alpha)
plot_ce_difference            4C-D         ce: ce (step, split, position) of two splits, determined
plot_clock_scaling            2C, 2D, 10   clocks/collect: tau_rule, tau_mem (run), coords group, n_train;
                                           [fit_index, fit_c, fit_alpha, fit_r2, fit_label]
plot_rule_vs_group            2C           clocks/collect: tau_rule, tau_mem, [tau_*_lo/hi]; fit (rule_group_fit)
plot_mem_vs_n                 2D, 10       clocks/collect: tau_mem, tau_mem_censored_at; fits (mem_fits)
plot_memorization_collapse    2H, 8        samples (one per run): sample_mem, uniform_valid_sample_mem and
                                           attrs run_config (or clocks coords batch, n_train, group)
plot_final_vs_group           1B-C         collect: final_{sample,group}_{acc,mem}, coord group
plot_clock_heatmap            4B           clocks/collect: tau_rule, tau_mem, coords group, arch (or model)
plot_clocks_by_rule           21           clocks/collect: tau_rule, tau_mem, [tau_*_lo/hi], coord rule
plot_clocks_vs_hparam         24-27        clocks/collect: tau_rule, tau_mem, [tau_*_lo/hi], coord lr / wd
plot_arch_overlay             4A           curves (run, step): sample_acc, sample_mem, coord arch; [clocks]
plot_seed_spread              28           curves (run, step): sample_acc, sample_mem, coord seed; [clocks]
plot_novel_fraction           23           curves: novel_frac; clocks: tau_novel (or extra_tau tau_novel)
plot_montage                  5-6          montage: cells (panel, sample, row, col), n_symbols
============================  ===========  ==================================================================

The drawing modules only draw. The loading layer, :mod:`twoclocks.plotting.load`, reads directories
and computes what they take: :func:`plot_run` draws every figure whose cube a run has; :func:`plot_runs`
the across-runs ones; :func:`plot_sweep` every figure of :data:`SWEEP_FIGURES` that fits a sweep's
axes; :func:`run_clock_values`, :func:`mem_fits`, :func:`rule_group_fit`, :func:`run_curves` and
:func:`train_montage` build the inputs.
"""

from twoclocks.plotting.ce import plot_ce, plot_ce_difference
from twoclocks.plotting.curves import plot_arch_overlay, plot_novel_fraction, plot_seed_spread
from twoclocks.plotting.data import plot_montage
from twoclocks.plotting.dsm import plot_dsm_bands, plot_dsm_gap, plot_dsm_spectrum
from twoclocks.plotting.figures import PlotResult, parse_formats, save
from twoclocks.plotting.grid import plot_clock_heatmap, plot_clocks_by_rule, plot_clocks_vs_hparam, plot_final_vs_group
from twoclocks.plotting.landscape import plot_basin, plot_plane
from twoclocks.plotting.load import (SWEEP_FIGURES, mem_fits, plot_run, plot_runs, plot_sweep, rule_group_fit,
                                     run_clock_values, run_curves, sweep_figures, train_montage)
from twoclocks.plotting.samples import plot_learning_dynamics, plot_nn_hamming, plot_state_raster, plot_transitions
from twoclocks.plotting.style import SPLIT_COLORS, STATE_COLORS, style
from twoclocks.plotting.sweep import plot_clock_scaling, plot_memorization_collapse, plot_mem_vs_n, plot_rule_vs_group

__all__ = ["plot_learning_dynamics", "plot_state_raster", "plot_transitions", "plot_nn_hamming",
           "plot_dsm_spectrum", "plot_dsm_bands", "plot_dsm_gap", "plot_ce", "plot_ce_difference", "plot_plane",
           "plot_basin", "plot_clock_scaling", "plot_memorization_collapse", "plot_mem_vs_n", "plot_rule_vs_group",
           "plot_final_vs_group", "plot_clock_heatmap", "plot_clocks_by_rule", "plot_clocks_vs_hparam",
           "plot_arch_overlay", "plot_seed_spread", "plot_novel_fraction", "plot_montage",
           "plot_run", "plot_runs", "plot_sweep", "sweep_figures", "SWEEP_FIGURES", "run_clock_values", "mem_fits",
           "rule_group_fit", "run_curves", "train_montage", "PlotResult", "parse_formats", "save", "style",
           "STATE_COLORS", "SPLIT_COLORS"]
