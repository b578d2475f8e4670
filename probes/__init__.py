"""Probes over checkpoints; each writes an xarray Dataset to RUN_DIR/probes/NAME.zarr.

The framework: :mod:`twoclocks.probes.registry` (declare a probe once), :mod:`twoclocks.probes.driver`
(the one driver), :mod:`twoclocks.schema` (cube schemas) and :mod:`twoclocks.store` (the one writer).
A probe of your own: ``examples/custom_probe.py``.
"""
from twoclocks.probes.registry import FigureSpec, Probe, all_probes, get_probe, load_probe, option, register

__all__ = ["Probe", "FigureSpec", "option", "register", "get_probe", "load_probe", "all_probes"]
