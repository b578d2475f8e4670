"""Build a foreign network and load a foreign checkpoint into it, weights only.

The factory (``MODULE:FUNCTION`` or ``FILE.py:FUNCTION``) is imported only once the user trusts it
(:func:`twoclocks.interop.spec.trusted_factory`). Checkpoint files are read without running code:
``torch.load(weights_only=True)`` or safetensors, checked against a ``FILE.sha256`` sidecar when one
exists. Loader formats:

- ``state_dict``: the file is the state_dict;
- ``key``: the file is a dict, the state_dict under ``loader.key`` (e.g. "model", "ema", "state_dict");
- ``nanogpt``: nanoGPT's ``ckpt.pt``: the factory is called with ``model_args`` (and ``factory_kwargs``),
  the state_dict is ``model`` with torch.compile's ``_orig_mod.`` prefix removed;
- ``safetensors``: a .safetensors file (the state_dict).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import sys
from pathlib import Path

import torch

from twoclocks import TwoclocksError
from twoclocks.interop.conventions import is_diffusion, wrap_network
from twoclocks.interop.spec import ForeignSpec, trusted_factory
from twoclocks.store import DamagedError
from twoclocks.training.files import recorded_digest

__all__ = ["load_factory", "read_checkpoint_file", "state_dict_of", "load_state", "build_foreign_model",
           "convention_problem"]


def load_factory(spec: str, base_dir) -> callable:
    """Import ``spec`` (MODULE:FUNCTION, or FILE.py:FUNCTION with a relative FILE against ``base_dir``)
    and return the function; one-line errors for a missing file, module or function."""
    target, fn_name = spec.rsplit(":", 1)
    try:
        if target.endswith(".py"):
            path = Path(target) if Path(target).is_absolute() else Path(base_dir) / target
            if not path.is_file():
                raise TwoclocksError(f"model factory file {path} does not exist")
            name = f"twoclocks_factory_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"
            module = sys.modules.get(name)
            if module is None:
                mspec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(mspec)
                folder = str(path.resolve().parent)
                sys.path.insert(0, folder)  # the factory's own sibling modules (e.g. nanoGPT's model.py)
                try:
                    mspec.loader.exec_module(module)
                finally:
                    if sys.path and sys.path[0] == folder:
                        sys.path.pop(0)
                sys.modules[name] = module
        else:
            module = importlib.import_module(target)
    except TwoclocksError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code: report it in one line
        raise TwoclocksError(f"model factory {spec}: importing {target} failed "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    obj = module
    for part in fn_name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise TwoclocksError(f"model factory {spec}: {target} has no {fn_name}")
    if not callable(obj):
        raise TwoclocksError(f"model factory {spec}: {fn_name} is not callable")
    return obj


def read_checkpoint_file(path, loader: str, device="cpu"):
    """The object stored in a foreign checkpoint file, weights only (torch.load(weights_only=True) or
    safetensors), checked against ``FILE.sha256`` when present; DamagedError when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise TwoclocksError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    want = recorded_digest(path)
    fix = "copy it again from your trainer's output (the probes skip a step whose file is missing)"
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        reason = "its sha256 does not match its .sha256 file" if want else "its .sha256 file is unreadable"
        raise DamagedError(f"checkpoint {path} is damaged ({reason}); {fix}", path, reason)
    try:
        if loader == "safetensors":
            from safetensors.torch import load as st_load
            obj = st_load(data)
            return {k: v.to(device) for k, v in obj.items()}
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except ImportError:
        raise TwoclocksError("reading .safetensors checkpoints needs the safetensors package: "
                             "pip install 'twoclocks[interop]'") from None
    except Exception as e:  # noqa: BLE001 - truncated, corrupt, or holding non-tensor objects
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise DamagedError(f"checkpoint {path} cannot be read weights-only ({reason}); {fix}", path, reason) from None


def state_dict_of(obj, spec: ForeignSpec, path) -> tuple[dict, dict]:
    """(state_dict, extra factory kwargs) from a loaded checkpoint object, per the loader format."""
    extra = {}
    if spec.loader == "key":
        if not isinstance(obj, dict) or spec.key not in obj:
            keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
            raise TwoclocksError(f"checkpoint {path} has no entry {spec.key!r} (foreign.loader.key); it has {keys}")
        obj = obj[spec.key]
    elif spec.loader == "nanogpt":
        if not isinstance(obj, dict) or "model" not in obj or "model_args" not in obj:
            raise TwoclocksError(f"checkpoint {path} is not a nanoGPT ckpt.pt (needs 'model' and 'model_args')")
        extra = dict(obj["model_args"])
        obj = {(k[len("_orig_mod."):] if k.startswith("_orig_mod.") else k): v for k, v in obj["model"].items()}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TwoclocksError(f"checkpoint {path} is not a state_dict of tensors (foreign.loader.format "
                             f"{spec.loader!r}; a dict holding one needs format 'key' with its key)")
    return obj, extra


def _short(keys, n: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_state(net: torch.nn.Module, sd: dict, path, factory: str) -> None:
    """Load a state_dict strictly; a mismatch is one line naming missing / unexpected keys or the
    first tensor of another shape."""
    own = net.state_dict()
    missing, unexpected = set(own) - set(sd), set(sd) - set(own)
    if missing or unexpected:
        parts = ([f"missing keys {_short(missing)}"] if missing else []) + \
                ([f"unexpected keys {_short(unexpected)}"] if unexpected else [])
        raise TwoclocksError(f"checkpoint {path} does not match the model from factory {factory}: "
                             f"{'; '.join(parts)}")
    for k, v in sd.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise TwoclocksError(f"checkpoint {path} does not match the model from factory {factory}: {k} has "
                                 f"shape {tuple(v.shape)} in the checkpoint, {tuple(own[k].shape)} in the model")
    net.load_state_dict(sd, strict=True)


def build_foreign_model(run, spec: ForeignSpec, path, device="cpu", model_factory=None, trust_code=None):
    """The toolkit-facing module (D(x, s) or logits) of one foreign checkpoint, in eval mode."""
    factory, base = trusted_factory(spec, run.path, model_factory, trust_code)
    fn = load_factory(factory, base)
    obj = read_checkpoint_file(path, spec.loader, "cpu")
    sd, extra = state_dict_of(obj, spec, path)
    try:
        net = fn(**{**spec.factory_kwargs, **extra})
    except TwoclocksError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code
        raise TwoclocksError(f"model factory {factory} failed ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(net, torch.nn.Module):
        raise TwoclocksError(f"model factory {factory} returned {type(net).__name__}, not a torch.nn.Module")
    load_state(net, sd, path, factory)
    return wrap_network(net, spec.convention, run.rule, run.encoding).to(device).eval()


@torch.inference_mode()
def convention_problem(run, D, step: int, device="cpu", n: int = 64) -> str | None:
    """A sanity check of a diffusion convention on train samples x = x0 + s n at two noise levels
    (docs/your_own_checkpoints.md#checks), V the spread of the data around their mean (the error of
    the best constant denoiser):

    - s = 2 sigma_min: every working parameterization gives D ~ x (eps, v and EDM even untrained:
      D = x - s eps_hat), so a mean squared error above V / 2 means the output is not a denoised image:
      typically an eps or v network declared as x0 (D = eps_hat);
    - s = 5: the error of D is s^2 times the error of the implied noise (x - D) / s, about 1 when D is
      x - s x0_hat, far less for a denoiser (a constant one: V / s^2); above s^2 / 2 it is typically an
      x0 network declared as eps, or a wrong data_scale.

    eps and v agree as s -> 0 (v -> eps) and cannot be told apart here. Returns why the convention
    looks wrong, or None."""
    x0 = torch.as_tensor(run.x("train")[:n]).double()
    V = float(((x0 - x0.mean(0)) ** 2).mean())
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    kind = run.foreign.convention.get("type")
    lo, mid = 2 * run.config.sigma_min, 5.0
    for sigma, bound, hint in ((lo, 0.5 * V, "an eps or v network declared as x0?"),
                               (mid, 0.5 * mid ** 2, "an x0 network declared as eps, or a wrong data_scale?")):
        x = (x0 + sigma * noise).float()
        d = D(x.to(device), sigma).double().cpu()
        err = float(((d - x0) ** 2).mean())
        if not err <= bound:  # NaN included
            return (f"at step {step} the network does not denoise under the declared convention {kind!r}: at "
                    f"sigma = {sigma:g} its mean squared error on train samples is {err:.3g}, above {bound:.3g} "
                    f"({hint}); check foreign.convention in config.json (type, data_scale, schedule), or set "
                    "\"check\": false in the foreign section to skip this check")
    return None


def is_foreign_diffusion(spec: ForeignSpec) -> bool:
    return is_diffusion(spec.convention)
