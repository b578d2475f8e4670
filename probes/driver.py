"""The one driver of every probe: open the run, check the options, find what is missing, compute it
with a progress bar, prefetch the next checkpoint and write pieces in the background, assemble the
cube with provenance, and return it.

Resume: every finished piece is on disk (atomic) before the next one starts, so an interrupt (Ctrl-C,
kill -9, a SLURM timeout) loses at most the piece in flight; the next call merges what is there and
computes only what is missing. ``force`` recomputes everything; ``update_stale`` recomputes the steps
an older version of the probe computed (each step records its ``probe_version``).

Overlap: on a GPU a helper thread loads the next checkpoint and writes the finished piece while the
current one is computed, so a checkpoint costs about its network calls. On a CPU the cores are the
bottleneck and a second thread only competes for them, so everything runs in line (``overlap``
overrides the choice).
"""
from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.environment import bf16_measured_ok, device_name, environment
from twoclocks.probes.common import resolve_sources, step_key
from twoclocks.progress import track
from twoclocks.run import Run, open_run, resolve_device
from twoclocks.store import CubeStore, concat_steps, keyed_merge, load_checked, stale_steps, write_derived

__all__ = ["Context", "run_probe", "run_derived", "resolve_precision", "PRECISIONS", "COMPACT_EVERY", "COMPACT_SECONDS"]

PRECISIONS = ("fp32", "bf16", "auto")
COMPACT_EVERY = 64        # pieces between compactions of a long call (bounds the pending pieces on disk)
COMPACT_SECONDS = 600.0   # ... or seconds


def resolve_precision(precision: str, device: torch.device, probe=None, arch: str | None = None,
                      measurements=None) -> str:
    """fp32, bf16, or auto: bf16 only on a CUDA device with bf16 support whose name has recorded
    measurements (twoclocks.environment: the package's precision_measurements.json, written by
    ``benchmarks/gpu_check.py --record``, and the user's file) showing that bf16 meets the probe's
    ``bf16_target`` on this architecture; fp32 everywhere else, the CPU included. ``measurements``
    overrides the recorded ones (tests)."""
    if precision not in PRECISIONS:
        raise TwoclocksError(f"unknown --precision {precision!r}; choose fp32, bf16 or auto")
    if precision == "auto":
        if probe is None or device.type != "cuda" or not torch.cuda.is_bf16_supported():
            return "fp32"
        ok = bf16_measured_ok(device_name(device), probe.name, arch, probe.bf16_target, measurements)
        return "bf16" if ok else "fp32"
    return precision


@dataclass
class Context:
    """What a probe's functions get besides their own state: the run, the options, the device and
    precision of network calls, the reference (if any) and the evaluated steps."""
    run: object
    opts: object
    device: torch.device
    precision: str = "fp32"
    denoiser: str | None = None
    steps: tuple = ()

    def D(self, source):
        """D(x, sigma) of a checkpoint step or a reference name, on this call's device and precision."""
        return self.run.denoiser(source, self.device, precision=self.precision)

    def model(self, step: int):
        return self.run.model(step, self.device)

    def generate(self, source, **kw):
        return self.run.generate(source, self.device, precision=self.precision, **kw)


def _now(fn, *args) -> Future:
    f = Future()
    f.set_result(fn(*args))
    return f


def _as_run(run):
    return run if isinstance(run, Run) else open_run(run)


def run_derived(probe, run, write: bool = True, **options) -> xr.Dataset:
    """A per-run derived probe's Dataset (:class:`twoclocks.probes.registry.DerivedProbe`) from the cubes
    it needs: its schema's attrs and the provenance of every cube, written to ``RUN/probes/CUBE.zarr``
    unless ``write`` is False."""
    run = _as_run(run)
    opts = probe.make_options(**options)
    for need in probe.needs:
        if not run.probe_path(need).exists():
            raise TwoclocksError(f"{probe.name} needs probes/{need}.zarr; run `twoclocks-probe {need} {run.path}` first")
    ds = probe.derive(run, opts).assign_attrs(probe.provenance_attrs())
    return write_derived(ds, run.probe_path(probe.cube) if write else None, schema=probe.schema, run=run,
                         name=probe.cube, params=probe.identity(opts))


def run_probe(probe, run, *, steps=None, denoiser: str | None = None, device: str = "auto",
              precision: str = "auto", force: bool = False, update_stale: bool = False, progress: bool = True,
              overlap: bool | None = None, **options) -> xr.Dataset:
    """Compute (or complete) ``probe``'s cube on ``run`` and return it (module docstring)."""

    run = _as_run(run)
    opts = probe.make_options(**options)
    arch = run.config.arch
    if denoiser is not None and denoiser not in probe.references:
        allowed = ", ".join(probe.references) if probe.references else "none"
        raise TwoclocksError(f"{probe.name} has no reference {denoiser!r}; --denoiser choices: {allowed}")
    if denoiser is None and not probe.applies_to(arch):
        kinds = " or ".join({"dit": "diffusion (dit)", "gpt": "GPT"}.get(a, a) for a in probe.archs)
        raise TwoclocksError(f"{run.path} is a {arch} run; {probe.name} needs a {kinds} run"
                             + (" (or --denoiser for a reference)" if probe.references else ""))
    if isinstance(steps, (list, tuple)):
        steps = ",".join(str(int(s)) for s in steps)
    name, sources = resolve_sources(run, probe.cube, steps, denoiser)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev, probe, arch)
    ctx = Context(run, opts, dev, prec, denoiser, tuple(s for s, _ in sources))
    if probe.resolve is not None:
        ctx.opts = opts = probe.resolve(opts, ctx)
    params = probe.identity(opts, ctx)
    if probe.uses_network:
        params["precision"] = prec
    run.data  # read and checked (a damaged copy healed or refused) before anything stored is touched
    if probe.uses_network and denoiser is None and sources:
        run.preflight(sources[-1][1], dev)  # checkpoints from your own code: trusted, matching, sane
    store = CubeStore(run, name, params, force=force, schema=probe.schema, keys=probe.keys, version=probe.version)
    merge = keyed_merge(probe.schema, probe.keys) if probe.keys and probe.merge is concat_steps else probe.merge
    finalize = (lambda ds: probe.finalize(ds, ctx)) if probe.finalize is not None else None
    attrs = {"precision": prec} if probe.uses_network else {}
    attrs.update(probe.provenance_attrs())
    attrs["environment"] = json.dumps(environment(dev, prec if probe.uses_network else None))

    def assemble():
        return store.compact(merge, finalize=finalize, schema=probe.schema, attrs=attrs)

    existing = assemble()  # merge pieces an interrupted call left behind (what is done: the steps and masks)
    todo_fn = probe.todo or _default_todo
    stale = set(stale_steps(existing, probe.version)) if update_stale and existing is not None else set()
    work = [(s, src, t) for s, src in sources
            if (t := todo_fn(None if int(s) in stale else existing, s, ctx)) is not None]
    extra = probe.extra_pieces is not None and (existing is None or not _has_extra(existing, probe))
    if work or extra:
        state = probe.setup(ctx) if probe.setup is not None else None
        overlap = dev.type == "cuda" if overlap is None else overlap
        pool = ThreadPoolExecutor(1)
        submit = pool.submit if overlap else _now
        writes, prefetch, since, last = [], None, 0, time.monotonic()
        try:
            if extra:
                for key, piece in probe.extra_pieces(ctx, state).items():
                    store.write_piece(key, piece)
            net = [src for _, src, _ in work if not isinstance(src, str)]
            for i, (s, src, todo) in enumerate(track(work, f"{probe.name} {run.path.name}", total=len(work),
                                                     enabled=progress and bool(work))):
                if prefetch is not None:
                    prefetch.result()
                if overlap and not isinstance(src, str):
                    k = net.index(src)
                    if k + 1 < len(net):
                        prefetch = pool.submit(run.model, net[k + 1], dev)
                piece = probe.compute(ctx, state, src, s, todo)
                writes.append(submit(store.write_piece, step_key(s), piece))
                since += 1
                if since >= COMPACT_EVERY or time.monotonic() - last > COMPACT_SECONDS:
                    for w in writes:
                        w.result()
                    writes, since, last = [], 0, time.monotonic()
                    assemble()
        finally:
            pool.shutdown(wait=True)  # finished pieces are on disk before the cube is assembled
            ds = assemble()
        for w in writes:
            w.result()  # re-raise a failed write
    else:
        ds = existing
    if ds is None:
        raise TwoclocksError(f"{probe.name}: nothing was computed for {run.path}")
    ds = load_checked(ds, store.path)  # every value read and its checksum checked (a damaged chunk: a one-line error)
    if probe.select is not None:
        ds = probe.select(ds, ctx)
    return probe.schema.apply(ds) if probe.schema is not None else ds  # the schema's attrs, whatever was stored


def _has_extra(existing, probe) -> bool:
    return probe.extra_done is not None and bool(probe.extra_done(existing))


def _default_todo(existing, step: int, ctx):
    """A per-checkpoint piece is done when the stored cube has its step."""
    if existing is None or "step" not in existing.coords:
        return True
    return None if int(step) in set(int(v) for v in existing["step"].values) else True

