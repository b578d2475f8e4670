"""A run's data in plain formats for other trainers, and run directories without training.

:func:`export_run` writes ``OUT/``:

- ``data.npz``: per split (train, heldout, hypercube) ``SPLIT_cells`` (n, D) uint8 symbols,
  ``SPLIT_x`` (n, P) float32 in the run's encoding (cell-major: x[:, d * C + c] is channel c of cell
  d), ``SPLIT_images`` (n, C, H, W) float32 (the same values as images), ``SPLIT_tokens`` (n, D + 1)
  int64 (the start token K, then the cells: the sequences the toolkit's autoregressive models read);
  plus ``noise`` (dit) or ``uniforms`` (gpt), the fixed sampling bank;
- ``encoding.json``: the rule, the encoding and its symbol codes, the shapes, the token layout, the
  run's config and the data digest;
- ``montage.png``: the first 64 train samples.

:func:`create_data_run` writes a run directory with config.json, data.zarr and an empty checkpoints/
that an external trainer fills (its checkpoints described by a ``foreign`` section,
:mod:`twoclocks.interop.spec`).
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

import twoclocks
from twoclocks import TwoclocksError
from twoclocks.data import make_encoding, make_rule
from twoclocks.interop.conventions import is_diffusion
from twoclocks.interop.spec import foreign_spec
from twoclocks.rundir import CHECKPOINT_DIR, CKPT_RE, CONFIG_FILE, read_meta
from twoclocks.store import disk_full, is_disk_full
from twoclocks.training.config import TrainConfig
from twoclocks.training.files import load_data, read_config, write_json_atomic
from twoclocks.training.train import prepare_run_dir

__all__ = ["export_run", "create_data_run", "set_foreign", "SPLITS"]

SPLITS = ("train", "heldout", "hypercube")


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(path, "free space, then export again") from None
        raise


def _montage(rule, cells: np.ndarray) -> bytes:
    """PNG of up to 64 samples as a grid of side x side images (symbol value as grey level)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    n = min(len(cells), 64)
    cols = min(8, max(n, 1))
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(cols * 0.8, rows * 0.8 + 0.3))
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_axis_off()
        if i < n:
            ax.imshow(cells[i].reshape(rule.height, rule.width), cmap="gray_r", vmin=0,
                      vmax=rule.n_symbols - 1, interpolation="nearest")
    fig.suptitle(f"{rule!r}: first {n} train samples", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def export_run(run_dir, out) -> list[Path]:
    """Write the run's splits in plain formats to ``out`` (module docstring); returns the files."""
    run_dir, out = Path(run_dir), Path(out)
    if not run_dir.is_dir():
        raise TwoclocksError(f"run directory {run_dir} does not exist")
    cfg, meta = read_config(run_dir)  # the run as twoclocks.run.Run reads it, without its models
    rule = make_rule(cfg.rule_spec())
    enc = make_encoding(cfg.encoding, rule.n_symbols, **cfg.encoding_params)
    data = load_data(run_dir, cfg, meta)
    if out.exists() and not out.is_dir():
        raise TwoclocksError(f"export target {out} is a file; give a directory")
    h, w, c = rule.height, rule.width, enc.channels
    arrays = {}
    for split in SPLITS:
        cells = data[split].values.astype(np.uint8)
        x = enc.encode(cells).astype(np.float32)
        arrays[f"{split}_cells"] = cells
        arrays[f"{split}_x"] = x
        arrays[f"{split}_images"] = x.reshape(len(x), h, w, c).transpose(0, 3, 1, 2).copy()
        arrays[f"{split}_tokens"] = np.concatenate([np.full((len(cells), 1), rule.n_symbols, np.int64),
                                                    cells.astype(np.int64)], axis=1)
    bank = "noise" if cfg.arch == "dit" else "uniforms"
    arrays[bank] = data[bank].values
    description = {
        "twoclocks_version": twoclocks.__version__, "run_dir": str(run_dir.resolve()),
        "run_config": meta["config"], "data_sha256": meta.get("data_sha256"),
        "rule": rule.to_dict(), "encoding": enc.to_dict(), "n_symbols": rule.n_symbols,
        "codes": enc.codes.tolist(),
        "shape": {"D": rule.D, "height": h, "width": w, "channels": c, "P": rule.D * c},
        "layout": "x[:, d * channels + c] is channel c of cell d = row * width + column; SPLIT_images is "
                  "x as (n, channels, height, width)",
        "tokens": {"start": rule.n_symbols, "vocab": rule.n_symbols + 1,
                   "layout": "SPLIT_tokens[:, 0] is the start token, then the D cells (symbols 0..K-1)"},
        "splits": {s: int(len(arrays[f"{s}_cells"])) for s in SPLITS},
        "bank": {"name": bank, "shape": list(arrays[bank].shape)},
        "files": {"data.npz": sorted(arrays), "montage.png": "first 64 train samples"},
    }
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _write_bytes_atomic(out / "data.npz", buf.getvalue())
    write_json_atomic(out / "encoding.json", description)
    _write_bytes_atomic(out / "montage.png", _montage(rule, arrays["train_cells"]))
    return [out / "data.npz", out / "encoding.json", out / "montage.png"]


def _read_foreign_file(path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise TwoclocksError(f"--foreign {path} cannot be read ({e.strerror or e})") from None
    try:
        if path.suffix == ".toml":
            import tomllib
            d = tomllib.loads(text)
        else:
            d = json.loads(text)
    except Exception as e:  # noqa: BLE001 - a syntax error in the user's file
        raise TwoclocksError(f"--foreign {path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'} "
                             f"({str(e).splitlines()[0]})") from None
    return d.get("foreign", d) if isinstance(d, dict) else d


def set_foreign(run_dir, foreign) -> dict:
    """Set (or replace) a run's ``foreign`` section from a dict or a JSON / TOML file (validated
    first: nothing is written on a bad one). Refused for a run with checkpoints this package trained."""
    run_dir = Path(run_dir)
    section = _read_foreign_file(foreign) if isinstance(foreign, (str, Path)) else foreign
    spec = foreign_spec(section, str(foreign) if isinstance(foreign, (str, Path)) else "foreign")
    meta = read_meta(run_dir)
    want = "dit" if is_diffusion(spec.convention) else "gpt"
    if meta["config"]["arch"] != want:
        raise TwoclocksError(f"convention {spec.convention['type']!r} is for {want} runs; {run_dir} was created with "
                             f"--arch {meta['config']['arch']} (create it again with --arch {want})")
    d = run_dir / CHECKPOINT_DIR
    native = [p.name for p in d.iterdir() if CKPT_RE.match(p.name)] if d.is_dir() else []
    if native and meta.get("foreign") is None:
        raise TwoclocksError(f"{run_dir} holds checkpoints this package trained ({native[0]}, ...); a foreign section "
                             "would hide them: use a new data-only run (`twoclocks-probe data NEW_DIR ...`)")
    meta["foreign"] = spec.to_dict()
    write_json_atomic(run_dir / CONFIG_FILE, meta)
    return meta["foreign"]


def create_data_run(run_dir, overrides: dict, foreign=None, force: bool = False) -> Path:
    """A run directory without training (config.json, data.zarr, empty checkpoints/), with a
    ``foreign`` section when ``foreign`` (dict or JSON / TOML file) is given. On an existing data-only
    run with only ``foreign`` given, sets its foreign section."""
    run_dir = Path(run_dir)
    section = _read_foreign_file(foreign) if isinstance(foreign, (str, Path)) else foreign
    if section is not None:
        foreign_spec(section, str(foreign) if isinstance(foreign, (str, Path)) else "foreign")  # fail early
    if (run_dir / CONFIG_FILE).is_file() and not force:
        if overrides:
            raise TwoclocksError(f"{run_dir} is already a run; give only --foreign to describe its checkpoints, or "
                                 "--force to create it again")
        if section is None:
            raise TwoclocksError(f"{run_dir} is already a run; give --foreign FILE to describe its checkpoints")
        set_foreign(run_dir, section)
        return run_dir
    TrainConfig(**overrides)  # a bad option fails before anything is written
    if section is not None:
        arch = overrides.get("arch", "dit")
        if ("dit" if is_diffusion(section["convention"]) else "gpt") != arch:
            raise TwoclocksError(f"convention {section['convention']['type']!r} does not fit --arch {arch} "
                                 "(diffusion conventions: --arch dit; logits: --arch gpt)")
    prepare_run_dir(run_dir, dict(overrides), resume=False, force=force)
    if section is not None:
        set_foreign(run_dir, section)
    return run_dir
