"""Probes over checkpoints; each writes an xarray Dataset to RUN_DIR/probes/NAME.zarr."""
