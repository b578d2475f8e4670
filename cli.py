"""`twoclocks-probe`: a thin command line over the Python API (typer).

Every command turns a :class:`twoclocks.TwoclocksError` (bad input, a damaged file, an error in the
user's own probe module) and a full disk into one line on stderr and exit code 2; exit code 1 is left
for bugs.
"""
from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import List, Optional

import typer

from twoclocks import TwoclocksError
from twoclocks.demo import run_demo
from twoclocks.interop.export import create_data_run, export_run
from twoclocks.probes.clocks import compute_clocks, format_clocks_table
from twoclocks.probes.fits import fit_clocks, format_clock_fits
from twoclocks.probes.registry import COMMON_OPTIONS as COMMON_HELP
from twoclocks.probes.registry import all_probes, debug_enabled, get_probe, load_probe
from twoclocks.probes.sensitivity import clock_sensitivity, format_sensitivity, parse_grid_options
from twoclocks.run import open_run, verify_run
from twoclocks.rundir import cube_names, pending_cubes, probe_path
from twoclocks.store import disk_full, fix_hint, is_disk_full, metadata_problem, open_cube, stale_steps
from twoclocks.sweep import collect as run_collect
from twoclocks.sweep import load_spec, read_sweep, run_sweep, spec_from_options
from twoclocks.sweep import probe_all as run_probe_all
from twoclocks.sweep.spec import parse_value
from twoclocks.training.train import train as train_run

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Find out when a generative model learns a rule and when it memorizes: "
                       "train on rule datasets, then probe the checkpoints.")


def _wrap_errors(fn):
    """``fn`` with TwoclocksErrors turned into a one-line message and exit code 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TwoclocksError as e:
            if getattr(e, "detail", None) and debug_enabled():  # the user's own traceback, asked for
                typer.echo(e.detail, err=True)
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        except OSError as e:
            if not is_disk_full(e):
                raise
            typer.echo(f"error: {disk_full(e.filename or 'a file')}", err=True)
            raise typer.Exit(2)
        except KeyboardInterrupt as e:
            if hasattr(e, "exit_code"):  # training.train.Preempted: state saved at a step boundary
                typer.echo(str(e), err=True)  # "preempted by SIGTERM at step N: state saved; resume with --resume"
                raise typer.Exit(e.exit_code)  # 128 + signal: 143 SIGTERM, 140 SIGUSR2, 130 Ctrl-C
            typer.echo("interrupted: finished work is saved; run the same command again to resume", err=True)
            raise typer.Exit(130)
    return wrapper


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="On an error raised by your own code (a probe "
                                        "module), also show its traceback (or set TWOCLOCKS_DEBUG=1)."),
             model_factory: Optional[str] = typer.Option(
                 None, "--model-factory", help="Runs of checkpoints from your own code: the model factory you trust, "
                 "MODULE:FUNCTION or FILE.py:FUNCTION (or set TWOCLOCKS_MODEL_FACTORY); without it, or "
                 "--trust-code, the factory a run's config.json names is never imported."),
             trust_code: bool = typer.Option(False, "--trust-code", help="Import the model factory each run's "
                                             "config.json names (or set TWOCLOCKS_TRUST_CODE=1): only for runs "
                                             "you made or trust.")):
    if debug:
        os.environ["TWOCLOCKS_DEBUG"] = "1"
    if model_factory:  # the environment carries it to probe-all's worker processes
        target, sep, fn = model_factory.strip().rpartition(":")
        if sep and target.endswith(".py") and not Path(target).is_absolute():
            model_factory = f"{Path(target).resolve()}:{fn}"
        os.environ["TWOCLOCKS_MODEL_FACTORY"] = model_factory.strip()
    if trust_code:
        os.environ["TWOCLOCKS_TRUST_CODE"] = "1"


def command(fn):
    """Register a command whose TwoclocksErrors become a one-line message and exit code 2."""
    return app.command()(_wrap_errors(fn))


RUN_DIR_ARG = typer.Argument(Path("."), help="Run directory (default: the current directory).")


MEM_THRESHOLD_OPT = typer.Option(None, "--mem-threshold", help="t of the memorization threshold: adaptive b + t (1 - b) "
                                 "above the baseline b = N/|support| (a perfect model of the training distribution), or fixed t. [default: 0.1]")
MEM_ADAPTIVE_OPT = typer.Option(None, "--mem-adaptive/--mem-fixed", help="Adaptive memorization threshold (the "
                                "default, as the paper's Table 4 fits) or the fixed t.")

WHERE_OPT = typer.Option(None, "--where", help="Fit only the runs where FIELD OP VALUE holds, e.g. 'n_train>=64' "
                         "(OP: ==, !=, >=, <=, >, <; a config field; numbers compared as numbers, else as text; "
                         "repeatable or comma-joined, all must hold). The table marks the runs not fitted.")
K_OPT = typer.Option(None, "--k", help="Consecutive evaluations a clock threshold must hold for (default 3).")
ACC_THRESHOLD_OPT = typer.Option(None, "--acc-threshold", help="tau_rule accuracy threshold (default 0.9).")
CLOCKS_OPT = typer.Option(None, "--clocks", help="Clock definitions: a preset, adaptive (default; Table 4), fixed "
                          "(Fig. 4), above-baseline (Fig. 21), valid-novel (Fig. 23); the other clock options change it "
                          "(docs/science.md#clocks).")
SUSTAIN_STEPS_OPT = typer.Option(None, "--sustain-steps", help="Sustain by a span instead of --k: the conditions "
                                 "hold at every evaluation from the onset through the first one >= onset + STEPS.")
SUSTAIN_FACTOR_OPT = typer.Option(None, "--sustain-factor", help="Sustain by a span relative to the step: through "
                                  "the first evaluation >= onset x FACTOR (> 1).")
N_BOOT_OPT = typer.Option(1000, "--n-boot", help="Seed-bootstrap replicates of each run's clock interval (0: none).")
LEVEL_OPT = typer.Option(0.9, "--level", help="Level of the clock intervals and of the alpha spread.")
POOL_UNEQUAL_OPT = typer.Option(False, "--pool-unequal", help="Fit runs together even when their evaluation density "
                                "(saves_per_decade, or evaluated steps per decade) or bank size (n_noise, or seeds in "
                                "the cube) differ; refused otherwise.")
SENSITIVITY_OPT = typer.Option(False, "--sensitivity", help="Also print how each clock and alpha move when the "
                               "arbitrary choices vary one at a time (memorization threshold and policy, accuracy "
                               "threshold, k, evaluation density, bank size; docs/science.md#sensitivity).")
SENSITIVITY_OUT_OPT = typer.Option(None, "--sensitivity-out", help="Write the sensitivity Dataset to FILE.zarr "
                                   "(implies --sensitivity).")
SENSITIVITY_GRID_OPT = typer.Option(None, "--sensitivity-grid", help="CHOICE=V1,V2,... replacing a default grid, "
                                    "e.g. k=2,3,5, thin=1,2,4, bank=1,2,4, mem_threshold=0.05,0.1, "
                                    "mem_policy=adaptive,fixed, acc_threshold=0.8,0.9 ('bank=' leaves it out; "
                                    "repeatable; implies --sensitivity).")


def _echo_sensitivity(run_dirs, grids: dict, out, **options) -> None:
    """The sensitivity table of ``run_dirs`` (written to ``out`` when given) with the clock options."""
    sens = clock_sensitivity(run_dirs, grids=grids, out=out,
                             **{key: v for key, v in options.items() if v is not None})  # None: the default
    typer.echo("")
    typer.echo("sensitivity to the arbitrary choices (one at a time around the defaults):")
    typer.echo(format_sensitivity(sens))
    if out is not None:
        typer.echo(f"wrote {out}")

# ------------------------------------------------------------------------------------ probe commands
def _cli_type(f):
    """The command-line type of an options field: metadata cli_type, else from its default."""
    if "cli_type" in f.metadata:
        return f.metadata["cli_type"]
    d = f.default
    for t in (bool, int, float, str):
        if isinstance(d, t):
            return t
    return Optional[str]


def probe_command(probe):
    """A typer command for a registered probe: RUN_DIR, the common options the probe takes, and one
    option per field of its options dataclass (name, default and help from the declaration)."""
    import dataclasses
    import inspect
    P = inspect.Parameter
    params = [P("run_dir", P.POSITIONAL_OR_KEYWORD, default=typer.Argument(Path("."), help=RUN_DIR_ARG.help),
                annotation=Path)]
    common = probe.common_options()
    if "steps" in common:
        params.append(P("steps", P.KEYWORD_ONLY, default=typer.Option(None, "--steps", help=COMMON_HELP["steps"]),
                        annotation=Optional[str]))
    if "denoiser" in common:
        params.append(P("denoiser", P.KEYWORD_ONLY, annotation=Optional[str], default=typer.Option(
            None, "--denoiser", help=f"A reference instead of checkpoints: {', '.join(probe.references)} "
                                     f"(-> {probe.cube}-DENOISER.zarr, step -1).")))
    fields = [f for f in probe.option_fields() if f.metadata.get("cli", True)]
    for f in fields:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, tuple):
            default = ",".join(str(v) for v in default)
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        flags = (flag,) if isinstance(flag, str) else tuple(flag)
        params.append(P(f.name, P.KEYWORD_ONLY, annotation=_cli_type(f),
                        default=typer.Option(default, *flags, help=f.metadata.get("help", ""))))
    if "device" in common:
        params.append(P("device", P.KEYWORD_ONLY, default=typer.Option("auto", "--device", help=COMMON_HELP["device"]),
                        annotation=str))
    if "precision" in common:
        params.append(P("precision", P.KEYWORD_ONLY, annotation=str, default=typer.Option(
            "auto", "--precision", help=COMMON_HELP["precision"])))
    if "force" in common:
        params.append(P("force", P.KEYWORD_ONLY, default=typer.Option(False, "--force", help=COMMON_HELP["force"]),
                        annotation=bool))
    if "update_stale" in common:
        params.append(P("update_stale", P.KEYWORD_ONLY, annotation=bool, default=typer.Option(
            False, "--update-stale", help=COMMON_HELP["update_stale"])))
    if "progress" in common:
        params.append(P("quiet", P.KEYWORD_ONLY, default=typer.Option(False, "--quiet", help="No progress bar."),
                        annotation=bool))

    def run_command(run_dir, **kw):
        if "quiet" in kw:
            kw["progress"] = not kw.pop("quiet")
        for f in fields:  # an empty text option means "not given" for optional fields
            if kw.get(f.name) is None and f.default is not dataclasses.MISSING:
                kw[f.name] = f.default
        ds = probe(run_dir, **kw)
        path = open_run(run_dir).probe_path(probe.cube_name(kw.get("denoiser")))
        sizes = ", ".join(f"{k} {v}" for k, v in ds.sizes.items())
        typer.echo(f"wrote {path} ({sizes})")
        text = probe.summary(ds)
        if text:
            typer.echo(text)

    run_command.__signature__ = inspect.Signature(params)
    run_command.__annotations__ = {p.name: p.annotation for p in params}
    run_command.__name__ = probe.name.replace("-", "_")
    run_command.__doc__ = probe.help
    return run_command


@command
def probe(
    spec: str = typer.Argument(..., help="A probe: a registered name or MODULE:OBJECT (a twoclocks.probes.Probe "
                               "of your own, e.g. examples.custom_probe:PROBE)."),
    run_dir: Path = RUN_DIR_ARG,
    option: Optional[List[str]] = typer.Option(None, "--option", "-o", help="KEY=VALUE, an option of the probe "
                                               "(TOML value; repeatable), e.g. -o n_items=256."),
    steps: Optional[str] = typer.Option(None, "--steps", help=COMMON_HELP["steps"]),
    denoiser: Optional[str] = typer.Option(None, "--denoiser", help=COMMON_HELP["denoiser"]),
    device: str = typer.Option("auto", "--device", help=COMMON_HELP["device"]),
    precision: str = typer.Option("auto", "--precision", help=COMMON_HELP["precision"]),
    force: bool = typer.Option(False, "--force", help=COMMON_HELP["force"]),
    update_stale: bool = typer.Option(False, "--update-stale", help=COMMON_HELP["update_stale"]),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
):
    """Run any probe, including one of your own (MODULE:OBJECT), with resume, provenance and progress."""
    p = load_probe(spec)
    if p.cross_run:
        raise TwoclocksError(f"{p.name} works across runs; use `twoclocks-probe {p.name} ...` (see --help)")
    kw = {}
    for item in option or ():
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise TwoclocksError(f"--option {item!r}: write KEY=VALUE, e.g. n_items=256")
        kw[key.strip()] = parse_value(value)
    common = {"steps": steps, "denoiser": denoiser, "device": device, "precision": precision, "force": force,
              "update_stale": update_stale, "progress": not quiet}
    kw.update({k: v for k, v in common.items() if k in p.common_options() and v is not None})
    ds = p(run_dir, **kw)
    typer.echo(f"wrote {open_run(run_dir).probe_path(p.cube_name(denoiser))} "
               f"({', '.join(f'{k} {v}' for k, v in ds.sizes.items())})")
    text = p.summary(ds)
    if text:
        typer.echo(text)


def commands_markdown() -> str:
    """The README's command table, from the commands themselves (probe rows from the registry):
    ``python -c 'from twoclocks.cli import commands_markdown as c; print(c())'``."""
    import typer.main
    probes = {p.name: p for p in all_probes() if p.builtin}
    group = typer.main.get_command(app)
    rows = ["| command | writes | what |", "|---|---|---|"]
    for name, cmd in group.commands.items():
        args = " ".join(p.name.upper() if p.required else f"[{p.name.upper()}]"
                        for p in cmd.params if p.param_type_name == "argument")
        what = (cmd.help or "").strip().split("\n\n")[0].replace("\n", " ")
        p = probes.get(name)
        writes = f"`probes/{p.cube}.zarr`" if p else ""
        what = re.sub(r",? -> probes/\S+\.zarr", "", what).replace("|", "/")
        rows.append(f"| `{f'{name} {args}'.strip()}` | {writes} | {what} |")
    return "\n".join(rows) + "\n"


def _register_probe_commands() -> None:
    for probe in all_probes():
        fn = probe_command(probe)
        app.command(probe.name, help=probe.help)(_wrap_errors(fn))



@command
def train(
    run_dir: Path = typer.Argument(..., help="Directory of the run to create (or resume)."),
    arch: Optional[str] = typer.Option(None, help="Architecture: dit (diffusion) or gpt (autoregressive). [default: dit]"),
    rule: Optional[str] = typer.Option(None, help="Rule family: parity (--group), exact-k (--k), row-k (--k), "
                                      "row-var-k (--ks), global-k (--ks) on bits; latin, row-latin, sudoku on "
                                      "side x side symbols. [default: parity]"),
    side: Optional[int] = typer.Option(None, help="Image side (images are side x side). [default: 6]"),
    group: Optional[int] = typer.Option(None, help="Parity group size G (must divide side^2). [default: 3]"),
    k: Optional[int] = typer.Option(None, "--k", help="K for the count rules (exact-k, row-k)."),
    ks: Optional[str] = typer.Option(None, "--ks", help="Allowed counts for row-var-k / global-k, e.g. '2,3,4'."),
    encoding: Optional[str] = typer.Option(None, help="Encoding of the cells: binary (bits as -1/+1; bit rules "
                                          "only, their default), scalar (symbols evenly spaced in [-1, 1]; "
                                          "default for latin, row-latin, sudoku) or onehot (one channel per "
                                          "symbol)."),
    n_train: Optional[int] = typer.Option(None, help="Number of unique train samples N. [default: 4096]"),
    n_heldout: Optional[int] = typer.Option(None, help="Size of the held-out valid-novel split. [default: 4096]"),
    n_noise: Optional[int] = typer.Option(None, help="Size of the fixed sampling bank. [default: 2048]"),
    model: Optional[str] = typer.Option(None, help="Preset: tiny, nano, mini, S, B. [default: mini]"),
    steps: Optional[int] = typer.Option(None, help="Optimizer steps in total. [default: 500000]"),
    batch: Optional[int] = typer.Option(None, help="Batch size (drawn with replacement). [default: 256]"),
    lr: Optional[float] = typer.Option(None, help="Learning rate (constant). [default: dit 1e-4, gpt 3e-4]"),
    weight_decay: Optional[float] = typer.Option(None, help="Weight decay (AdamW when > 0; gpt always AdamW, decaying matrices and embeddings). [default: dit 0, gpt 0.1]"),
    saves_per_decade: Optional[int] = typer.Option(None, help="Checkpoints per factor of 10 in steps. [default: 20]"),
    seed: Optional[int] = typer.Option(None, help="Seed for data, initialisation and training. [default: 0]"),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda. [default: auto]"),
    compile: Optional[str] = typer.Option(None, "--compile", help="torch.compile the training step: auto (off: "
                                          "opt-in until measured on a GPU), off, on, graphs (CUDA graphs). [default: auto]"),
    zero_mean: bool = typer.Option(False, "--zero-mean", help="One-hot encoding with zero-mean codes (the paper's "
                                   "row-K and Sudoku runs)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in RUN_DIR from its last saved state."),
    force: bool = typer.Option(False, "--force", help="Delete the run in RUN_DIR and start over."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
):
    """Train a model on a rule dataset, writing a run directory (config, data, checkpoints)."""
    overrides = {k_: v for k_, v in dict(arch=arch, rule=rule, side=side, group=group, encoding=encoding,
                 n_train=n_train, n_heldout=n_heldout, n_noise=n_noise, model=model, steps=steps, batch=batch,
                 lr=lr, weight_decay=weight_decay, saves_per_decade=saves_per_decade, seed=seed,
                 device=device, compile=compile).items() if v is not None}
    if zero_mean:
        if encoding not in (None, "onehot"):
            raise TwoclocksError(f"--zero-mean is for the one-hot encoding, not --encoding {encoding}")
        overrides["encoding"], overrides["encoding_params"] = "onehot", {"zero_mean": True}
    rule_params = {}
    if k is not None:
        rule_params["k"] = k
    if ks is not None:
        try:
            rule_params["ks"] = [int(v) for v in ks.split(",")]
        except ValueError:
            raise TwoclocksError(f"--ks must be a comma-separated list of integers, got {ks!r}") from None
    if rule_params:
        overrides["rule_params"] = rule_params
    if resume and force:
        raise TwoclocksError("--resume and --force contradict each other; pick one")
    train_run(run_dir, overrides, resume=resume, force=force, progress=not quiet)
    typer.echo(f"trained: {run_dir}")


@command
def info(run_dir: Path = RUN_DIR_ARG,
         verify: bool = typer.Option(False, "--verify", help="Read every file of the run (config, data, "
                                     "checkpoints against their sha256, cubes chunk by chunk against their "
                                     "checksums) and report each damaged one with what to do; exit 2 if any.")):
    """Summarize a run: config, splits, checkpoint steps and the probes present."""
    if verify:
        return _verify(run_dir)
    run = open_run(run_dir)
    c = run.config
    typer.echo(f"run        {run.path.resolve()}")
    typer.echo(f"rule       {run.rule!r}  |valid| = {run.rule.valid_set_size}  encoding = {c.encoding}")
    if run.foreign is not None:
        f = run.foreign
        typer.echo(f"model      {c.arch}, checkpoints from your own code: factory {f.factory} "
                   f"(imported only with --model-factory / --trust-code), loader {f.loader}, "
                   f"convention {f.convention.get('type')}, files checkpoints/{f.pattern}")
    else:
        typer.echo(f"model      {c.arch} {c.model} (depth {c.depth}, hidden {c.hidden}, heads {c.heads})")
        typer.echo(f"training   {c.steps} steps, batch {c.batch}, lr {c.lr}, weight decay {c.weight_decay}, "
                   f"seed {c.seed}")
    sizes = {s: int(run.data.sizes[f'{s}_index']) for s in ("train", "heldout", "hypercube")}
    typer.echo("splits     " + ", ".join(f"{k} {v}" for k, v in sizes.items()) + f", bank {run.n_seeds} seeds")
    st = run.steps
    typer.echo(f"checkpoints {len(st)}" + (f": {st[0]} .. {st[-1]}" if st else ""))
    probes = [probe_path(run.path, n) for n in cube_names(run.path)]
    typer.echo(f"probes     {', '.join(p.name for p in probes) if probes else 'none'}")
    old = [p.name for p in probes if (p / ".zgroup").exists() or (p / ".zmetadata").exists()]
    pending = [n for n in pending_cubes(run.path) if f"{n}.zarr" not in old]  # also cubes not assembled yet
    if old:
        typer.echo(f"old format {', '.join(old)}: zarr 2 from twoclocks 0.1, readable as is; running the probe "
                   "again (same options) rewrites it as zarr 3 and compacts its .parts")
    if pending:
        typer.echo(f"unfinished {', '.join(pending)}: pieces of an interrupted probe; run it again to complete")
    for line in _stale_lines(probes):
        typer.echo(line)
    assumed = [k for k, v in run.meta.get("status", {}).items() if v == "assumed"]
    typer.echo(f"assumed    {', '.join(assumed)}")
    damaged = [(p, why) for p in probes if (why := metadata_problem(p))]
    if damaged:
        p, why = damaged[0]
        more = f" (and {len(damaged) - 1} more: `info --verify` lists them)" if len(damaged) > 1 else ""
        raise TwoclocksError(f"{p} is damaged ({why}){more}; {fix_hint(p)}")


def _stale_lines(cubes) -> list[str]:
    """One line per cube holding steps computed by an older version of its probe (store.stale_steps)."""
    lines = []
    for path in cubes:
        name = path.name[:-len(".zarr")]
        try:
            probe = get_probe(name.split("-")[0])
            stale = stale_steps(open_cube(path, chunks={}), probe.version)
        except TwoclocksError:
            continue
        if stale:
            shown = ", ".join(map(str, stale[:8])) + (f" (+{len(stale) - 8} more)" if len(stale) > 8 else "")
            lines.append(f"stale      {path.name}: steps {shown} computed by an older {probe.name} (now version "
                         f"{probe.version}); `twoclocks-probe {probe.name} RUN --update-stale` recomputes them")
    return lines


def _verify(run_dir: Path) -> None:
    """info --verify: one line per damaged file with what to do; exit 2 if any."""
    report = verify_run(run_dir)
    for path, problem, fix in report["damaged"]:
        typer.echo(f"damaged   {path}: {problem}; {fix}")
    for path in report["unchecked"]:
        typer.echo(f"no digest {path}: read back fine, but written without a sha256 (an older twoclocks)")
    for path in report["aside"]:
        typer.echo(f"aside     {path}: a damaged store moved aside when healed; delete it when not needed")
    n = len(report["damaged"])
    if n:
        raise TwoclocksError(f"{n} damaged file(s) in {run_dir}, first {report['damaged'][0][0]} (each listed "
                             "above with what to do)")
    typer.echo(f"verified  {len(report['checked'])} files in {run_dir}: intact")



# ------------------------------------------------------------------ checkpoints trained by other code
@command
def data(
    run_dir: Path = typer.Argument(..., help="Directory of the data-only run to create."),
    arch: Optional[str] = typer.Option(None, help="dit (diffusion: a noise bank) or gpt (autoregressive: a uniform "
                                       "bank). [default: dit]"),
    rule: Optional[str] = typer.Option(None, help="Rule family, as `train --rule`. [default: parity]"),
    side: Optional[int] = typer.Option(None, help="Image side. [default: 6]"),
    group: Optional[int] = typer.Option(None, help="Parity group size G. [default: 3]"),
    k: Optional[int] = typer.Option(None, "--k", help="K for the count rules."),
    ks: Optional[str] = typer.Option(None, "--ks", help="Allowed counts for row-var-k / global-k, e.g. '2,3,4'."),
    encoding: Optional[str] = typer.Option(None, help="binary, scalar or onehot, as `train --encoding`."),
    n_train: Optional[int] = typer.Option(None, help="Number of unique train samples N. [default: 4096]"),
    n_heldout: Optional[int] = typer.Option(None, help="Size of the held-out split. [default: 4096]"),
    n_hypercube: Optional[int] = typer.Option(None, help="Size of the hypercube split. [default: 4096]"),
    n_noise: Optional[int] = typer.Option(None, help="Size of the fixed sampling bank. [default: 2048]"),
    seed: Optional[int] = typer.Option(None, help="Seed of the data. [default: 0]"),
    foreign: Optional[Path] = typer.Option(None, "--foreign", help="JSON or TOML file with the run's 'foreign' "
                                           "section: factory, loader, checkpoints, convention "
                                           "(docs/your_own_checkpoints.md); on an existing run, sets it."),
    force: bool = typer.Option(False, "--force", help="Delete the run in RUN_DIR and create it again."),
):
    """Create a run directory without training (config, data, empty checkpoints/) for checkpoints your own
    code trains; `export` writes its data for your trainer."""
    overrides = {k_: v for k_, v in dict(arch=arch, rule=rule, side=side, group=group, encoding=encoding,
                 n_train=n_train, n_heldout=n_heldout, n_hypercube=n_hypercube, n_noise=n_noise,
                 seed=seed).items() if v is not None}
    rule_params = {}
    if k is not None:
        rule_params["k"] = k
    if ks is not None:
        try:
            rule_params["ks"] = [int(v) for v in ks.split(",")]
        except ValueError:
            raise TwoclocksError(f"--ks must be a comma-separated list of integers, got {ks!r}") from None
    if rule_params:
        overrides["rule_params"] = rule_params
    create_data_run(run_dir, overrides, foreign=foreign, force=force)
    typer.echo(f"data run: {run_dir} (put your checkpoints in {run_dir / 'checkpoints'})")


@command
def export(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    out: Path = typer.Argument(..., help="Directory for data.npz, encoding.json and montage.png."),
):
    """Write a run's splits in plain formats for other trainers: data.npz (cells, encoded arrays, images and
    token sequences per split, the sampling bank), encoding.json and montage.png."""
    for path in export_run(run_dir, out):
        typer.echo(str(path))


@command
def demo(
    out_dir: Path = typer.Argument(Path("twoclocks-demo"), help="Where the demo run goes."),
    arch: str = typer.Option("dit", help="dit or gpt."),
    steps: Optional[int] = typer.Option(None, help="Training steps. [default: 2000 for dit, 1000 for gpt]"),
    figures: bool = typer.Option(True, help="Draw the figures at the end."),
):
    """Train a tiny model on a small parity task on the CPU, probe it, and print what it found.

    Re-running continues where it stopped (training and probes are resumable)."""
    if arch not in ("dit", "gpt"):
        raise TwoclocksError(f"--arch must be dit or gpt, got {arch!r}")
    run_demo(out_dir, arch=arch, steps=steps, figures=figures)


@command
def clocks(
    run_dirs: List[Path] = typer.Argument(..., help="Run directories (each with probes/samples.zarr)."),
    k: Optional[int] = K_OPT,
    acc_threshold: Optional[float] = ACC_THRESHOLD_OPT,
    mem_threshold: Optional[float] = MEM_THRESHOLD_OPT,
    mem_adaptive: Optional[bool] = MEM_ADAPTIVE_OPT,
    pool: Optional[str] = typer.Option(None, "--pool", help="Config fields to pool over in the tau_mem ~ N "
                                       "fits, e.g. 'group'."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the clocks Dataset to FILE.zarr."),
    where: Optional[List[str]] = WHERE_OPT,
    clocks_preset: Optional[str] = CLOCKS_OPT,
    sustain_steps: Optional[float] = SUSTAIN_STEPS_OPT,
    sustain_factor: Optional[float] = SUSTAIN_FACTOR_OPT,
    n_boot: int = N_BOOT_OPT,
    level: float = LEVEL_OPT,
    pool_unequal: bool = POOL_UNEQUAL_OPT,
    sensitivity: bool = SENSITIVITY_OPT,
    sensitivity_out: Optional[Path] = SENSITIVITY_OUT_OPT,
    sensitivity_grid: Optional[List[str]] = SENSITIVITY_GRID_OPT,
):
    """tau_rule, tau_mem and the innovation window per run; tau_mem = c N^alpha across runs.

    Per run also the memorization baseline N/|support|, the threshold, the passes over each train sample
    at tau_mem (tau_mem x batch / N), the censored clocks and the residual from the fit, each clock's
    seed-bootstrap interval and grid bracket; per fit the spread of alpha under those intervals; per grid
    point with several seeds, each clock's mean +- sd over the seeds. --sensitivity adds how they move
    with the arbitrary choices."""
    pools = tuple(p.strip() for p in pool.split(",") if p.strip()) if pool else ()
    grids = parse_grid_options(sensitivity_grid)  # a bad grid fails before any work
    ds = compute_clocks([str(d) for d in run_dirs], k=k, acc_threshold=acc_threshold, mem_threshold=mem_threshold,
                        mem_adaptive=mem_adaptive, pool=pools, out=out, where=where, clocks=clocks_preset,
                        sustain_steps=sustain_steps, sustain_factor=sustain_factor, n_boot=n_boot, level=level,
                        allow_unequal=pool_unequal)
    typer.echo(format_clocks_table(ds))
    if out is not None:
        typer.echo(f"wrote {out}")
    if sensitivity or sensitivity_out is not None or sensitivity_grid:
        _echo_sensitivity([str(d) for d in run_dirs], grids, sensitivity_out, k=k, acc_threshold=acc_threshold,
                          mem_threshold=mem_threshold, mem_adaptive=mem_adaptive, pool=pools, where=where,
                          allow_unequal=pool_unequal)


EXECUTOR_OPT = typer.Option("local", "--executor", help="local: subprocesses on this machine (waits); debug: one "
                            "after the other in this process; slurm: one job array (returns after submitting).")
MAX_PARALLEL_OPT = typer.Option(None, "--max-parallel", help="Jobs at a time (slurm: the array's %K cap) "
                                "(default: local one per GPU or 1; slurm the spec's max_parallel, else all).")
DRY_RUN_OPT = typer.Option(False, "--dry-run", help="Only show each run's status and what would happen "
                           "(and the sbatch script for slurm).")


@command
def sweep(
    target: Path = typer.Argument(..., help="A sweep spec (.toml; see examples/sweep_tiny.toml) or a sweep "
                                  "directory (re-run its sweep.json, or a new sweep from --grid/--base)."),
    sweep_dir: Optional[Path] = typer.Option(None, "--dir", help="The sweep directory for a spec "
                                             "(default: the spec's path without .toml)."),
    base: Optional[List[str]] = typer.Option(None, "--base", help="KEY=VALUE for every run, e.g. model=tiny or "
                                             "rule_params.k=3 (repeatable; overrides the spec's base table)."),
    grid: Optional[List[str]] = typer.Option(None, "--grid", help="A grid axis KEY=V1,V2,..., e.g. n_train=16,32,64 "
                                             "(repeatable; TOML values; replaces the spec's axis)."),
    slurm: Optional[List[str]] = typer.Option(None, "--slurm", help="A SLURM setting KEY=VALUE: partition, "
                                              "time_min, gpus_per_node, mem_gb, cpus_per_task, account, qos, ..."),
    executor: str = EXECUTOR_OPT,
    max_parallel: Optional[int] = MAX_PARALLEL_OPT,
    dry_run: bool = DRY_RUN_OPT,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
):
    """Train a grid of runs (one run directory per point under the sweep directory). Re-running skips
    finished runs and resumes unfinished ones."""
    if target.suffix == ".toml" or target.is_file():
        spec, sweep_dir = load_spec(target), sweep_dir or target.with_suffix("")
    else:
        if sweep_dir is not None:
            raise TwoclocksError(f"--dir is for a spec file; {target} is taken as the sweep directory itself")
        sweep_dir = target
        spec = read_sweep(target)[0] if (target / "sweep.json").is_file() else None
        if spec is None and not (grid or base):
            raise TwoclocksError(f"{target} has no sweep.json: give a spec file, or --grid / --base options")
    spec = spec_from_options(spec, base or (), grid or (), slurm or ())
    report = run_sweep(spec, sweep_dir, executor=executor, max_parallel=max_parallel, dry_run=dry_run,
                       progress=not quiet)
    _print_report(report, dry_run, "resume")


@command
def probe_all(
    sweep_dir: Path = typer.Argument(..., help="A sweep directory (with sweep.json)."),
    probes: Optional[str] = typer.Option(None, "--probes", help="Comma-separated probes in order, e.g. "
                                         "samples,dsm-spectrum: samples, dsm-spectrum, ce, basin, plane, markov "
                                         "(default: the spec's probes tables)."),
    option: Optional[List[str]] = typer.Option(None, "--option", help="PROBE.KEY=VALUE, a probe option, e.g. "
                                               "samples.steps=last (repeatable)."),
    runs: Optional[str] = typer.Option(None, "--runs", help="Only these runs (comma-separated names)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (default: each probe's own)."),
    executor: str = EXECUTOR_OPT,
    max_parallel: Optional[int] = MAX_PARALLEL_OPT,
    dry_run: bool = DRY_RUN_OPT,
    update_stale: bool = typer.Option(False, "--update-stale", help="Also recompute the steps an older version of "
                                      "each probe computed (the plan lists them as stale)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
):
    """Run per-run probes over every trained run of a sweep (one job per run, its single writer).
    Re-running completes what is missing; finished pieces are kept."""
    spec = read_sweep(sweep_dir)[0]
    names = [p.strip() for p in probes.split(",") if p.strip()] if probes else list(spec.probes)
    opts = spec_from_options(None, probes=option or ()).probes if option else {}
    chosen = {p: {**spec.probes.get(p, {}), **opts.get(p, {})} for p in names}
    if update_stale:
        for p, o in chosen.items():
            if "update_stale" in load_probe(p).common_options():
                o.setdefault("update_stale", True)
    extra = sorted(set(opts) - set(chosen))
    if extra:
        raise TwoclocksError(f"--option for {', '.join(extra)}, which is not in --probes")
    report = run_probe_all(sweep_dir, chosen or None, executor=executor, max_parallel=max_parallel, device=device,
                           runs=[r.strip() for r in runs.split(",")] if runs else None, dry_run=dry_run,
                           progress=not quiet)
    _print_report(report, dry_run, "complete")


@command
def collect(
    sweep_dir: Path = typer.Argument(..., help="A sweep directory whose runs have probes/samples.zarr."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the Dataset (.zarr) "
                                       "(default: SWEEP_DIR/collect.zarr)."),
    pool: str = typer.Option("group", "--pool", help="Config fields to pool over for the extra pooled tau_mem "
                             "fits (paper's Table 4: group); '' for none."),
    k: Optional[int] = K_OPT,
    acc_threshold: Optional[float] = ACC_THRESHOLD_OPT,
    mem_threshold: Optional[float] = MEM_THRESHOLD_OPT,
    mem_adaptive: Optional[bool] = MEM_ADAPTIVE_OPT,
    where: Optional[List[str]] = WHERE_OPT,
    clocks_preset: Optional[str] = CLOCKS_OPT,
    sustain_steps: Optional[float] = SUSTAIN_STEPS_OPT,
    sustain_factor: Optional[float] = SUSTAIN_FACTOR_OPT,
    n_boot: int = N_BOOT_OPT,
    level: float = LEVEL_OPT,
    pool_unequal: bool = POOL_UNEQUAL_OPT,
    sensitivity: bool = SENSITIVITY_OPT,
    sensitivity_out: Optional[Path] = SENSITIVITY_OUT_OPT,
    sensitivity_grid: Optional[List[str]] = SENSITIVITY_GRID_OPT,
):
    """One Dataset over a sweep's runs: clocks, window, final accuracy / memorization, and the
    tau_mem = c N^alpha fits per group and pooled.

    The table has the columns of `clocks` (baseline, threshold, passes at tau_mem, censored clocks, fit
    residuals, clock intervals and grid brackets; mean +- sd over seeds per grid point). The clock
    definitions: the sweep spec's [clocks] table, if any, with these options on top. --sensitivity adds how they move
    with the arbitrary choices."""
    pools = tuple(p.strip() for p in pool.split(",") if p.strip())
    grids = parse_grid_options(sensitivity_grid)  # a bad grid fails before any work
    ds = run_collect(sweep_dir, out=out, pool=pools, k=k, acc_threshold=acc_threshold, mem_threshold=mem_threshold,
                     mem_adaptive=mem_adaptive, where=where, clocks=clocks_preset, sustain_steps=sustain_steps,
                     sustain_factor=sustain_factor, n_boot=n_boot, level=level,
                     allow_unequal=pool_unequal)
    typer.echo(format_collect(ds))
    typer.echo(f"wrote {out or Path(sweep_dir) / 'collect.zarr'} ({ds.sizes['run']} runs, {ds.sizes['fit']} fits)")
    if sensitivity or sensitivity_out is not None or sensitivity_grid:
        clock_opts = {key: v for key, v in (("k", k), ("acc_threshold", acc_threshold)) if v is not None}
        _echo_sensitivity([str(d) for d in ds["run_dir"].values], grids, sensitivity_out,
                          mem_threshold=mem_threshold, mem_adaptive=mem_adaptive,
                          pools=[()] + ([pools] if pools else []), where=where, allow_unequal=pool_unequal,
                          **clock_opts)


@command
def plot(
    run_dir: Path = typer.Argument(Path("."), help="A run directory, or a sweep directory (with sweep.json).",
                                   metavar="RUN_OR_SWEEP_DIR"),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for the figures (default: DIR/figures)."),
    fmt: str = typer.Option("png", "--format", help="File formats, comma-separated, e.g. png,pdf."),
    probe: Optional[List[str]] = typer.Option(None, "--probe", help="Also the figures of a probe of your own, "
                                              "MODULE:OBJECT (repeatable)."),
    k: Optional[int] = K_OPT,
    acc_threshold: Optional[float] = ACC_THRESHOLD_OPT,
    mem_threshold: Optional[float] = MEM_THRESHOLD_OPT,
    mem_adaptive: Optional[bool] = MEM_ADAPTIVE_OPT,
    pool: str = typer.Option("group", "--pool", help="Sweep directory: config fields to pool over for the extra "
                             "pooled tau_mem fits, as `collect` (default group; '' for none)."),
    where: Optional[List[str]] = typer.Option(None, "--where", help="Sweep directory: fit only the runs where "
                                              "FIELD OP VALUE holds, as `collect --where` (e.g. 'n_train>=64')."),
    clocks_preset: Optional[str] = typer.Option(None, "--clocks", help="Sweep directory: clock definitions, a "
                                                "preset as `collect --clocks` (default: the spec's [clocks])."),
    sustain_steps: Optional[float] = SUSTAIN_STEPS_OPT,
    sustain_factor: Optional[float] = SUSTAIN_FACTOR_OPT,
    pool_unequal: bool = POOL_UNEQUAL_OPT,
):
    """Draw the figures of every probe cube the run has (paths printed; one line per cube missing); for a sweep
    directory, every cross-run figure its varying axes allow (G, N, arch, rule, lr, weight decay, seed ...).

    The clock options (--k, --acc-threshold, --mem-threshold, --mem-adaptive/--mem-fixed, --pool, --where) are
    those of `clocks` / `collect`, so the clocks drawn are the ones those tables print."""
    if (run_dir / "sweep.json").is_file():
        from twoclocks.plotting.load import plot_sweep
        pools = tuple(p.strip() for p in pool.split(",") if p.strip())
        clocks = run_collect(run_dir, write=False, pool=pools, k=k, acc_threshold=acc_threshold,
                             mem_threshold=mem_threshold, mem_adaptive=mem_adaptive, where=where,
                             clocks=clocks_preset, sustain_steps=sustain_steps, sustain_factor=sustain_factor,
                             n_boot=0, allow_unequal=pool_unequal)  # fresh: as `collect` prints now (the figures draw no intervals)
        res = plot_sweep(run_dir, out=out, formats=fmt, clocks=clocks)
    else:
        from twoclocks.plotting import plot_run
        if where:
            raise TwoclocksError(f"--where selects the runs of a sweep to fit; {run_dir} is one run (no sweep.json)")
        if clocks_preset or sustain_steps or sustain_factor:
            raise TwoclocksError(f"--clocks / --sustain-*: for a sweep directory; {run_dir} is one run (use --k, "
                                 "--acc-threshold, --mem-threshold, --mem-adaptive/--mem-fixed)")
        res = plot_run(run_dir, out=out, formats=fmt, mem_adaptive=mem_adaptive, probes=probe or (),
                       k=k, acc_threshold=acc_threshold, mem_threshold=mem_threshold)
    for p in res:
        typer.echo(str(p))
    for note in res.notes:
        typer.echo(note)


@command
def fit(
    sources: List[Path] = typer.Argument(..., help="A sweep directory, run directories (each with "
                                         "probes/samples.zarr), or a written clocks / collect Dataset (.zarr).",
                                         metavar="SWEEP_DIR_OR_RUNS..."),
    y: str = typer.Option("tau_mem", "--y", help="The clock: tau_rule, tau_mem, window, a loss clock, ..."),
    x: str = typer.Option("n_train", "--x", help="A numeric config field: n_train, group, lr, weight_decay, ..."),
    model: str = typer.Option("power", "--model", help="power: clock = c x^slope (ln clock on ln x); loglinear: "
                              "clock = c exp(slope x) (ln clock on x; per-unit factor exp(slope))."),
    where: Optional[List[str]] = WHERE_OPT,
    pool: Optional[str] = typer.Option(None, "--pool", help="Config fields to pool over in extra fits beside "
                                       "the per-group ones, e.g. 'model'."),
    level: float = typer.Option(0.95, "--level", help="Confidence level of the intervals."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the fit Dataset to FILE.zarr."),
    k: Optional[int] = K_OPT,
    acc_threshold: Optional[float] = ACC_THRESHOLD_OPT,
    mem_threshold: Optional[float] = MEM_THRESHOLD_OPT,
    mem_adaptive: Optional[bool] = MEM_ADAPTIVE_OPT,
):
    """Fit any clock against any numeric config field across runs, per group, with intervals and a zero-slope test.

    Per group of runs equal in every config field but --x, seeds and bookkeeping: least squares of ln clock
    (t interval, t-test of slope = 0) and right-censored maximum likelihood (profile-likelihood interval,
    likelihood-ratio test), the per-unit factor (loglinear) or exponent (power), R^2 and the censored runs."""
    source = sources[0] if len(sources) == 1 else sources
    ds = fit_clocks(source, y=y, x=x, model=model, where=where, pool=pool, level=level, out=out, k=k,
                    acc_threshold=acc_threshold, mem_threshold=mem_threshold, mem_adaptive=mem_adaptive)
    typer.echo(format_clock_fits(ds))
    if out is not None:
        typer.echo(f"wrote {out}")


def _print_report(report: dict, dry_run: bool, verb: str) -> None:
    """Print a sweep / probe-all plan and outcomes; failed runs make a one-line error."""
    typer.echo(format_plan(report))
    if dry_run:
        if report["script"]:
            typer.echo("\n# sbatch script that would be submitted:\n" + report["script"])
        failed = [p for p in report["plan"] if p["status"] == "failed"]  # SLURM jobs that failed
        if failed:
            raise TwoclocksError(f"{len(failed)} run(s) failed on the cluster (first: {failed[0]['name']}: "
                                 f"{failed[0]['detail']}); fix the cause, then run the same command without "
                                 "--dry-run to submit them again")
        return
    typer.echo(format_outcomes(report))
    failed = [o for o in report["outcomes"] if o["state"] == "failed"]
    if failed:
        raise TwoclocksError(f"{len(failed)} run(s) failed (first: {failed[0]['run']}: {failed[0]['info']}); "
                             f"finished runs are kept: fix the cause, then run the same command again to {verb} them")


# -------------------------------------------------------------------------------------- formatting
def format_plan(report: dict) -> str:
    rows = [(p["name"], p["status"], p.get("detail", "")) for p in report["plan"]]
    w = max([len(r[0]) for r in rows] + [3])
    lines = [f"{n.ljust(w)}  {s:<11} {d}".rstrip() for n, s, d in rows]
    counts = {}
    for _, s, _ in rows:
        counts[s] = counts.get(s, 0) + 1
    lines.append(f"{len(rows)} runs in {report['sweep_dir']}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return "\n".join(lines)


def format_outcomes(report: dict) -> str:
    outs = report["outcomes"]
    if not outs:
        return "nothing to do"
    lines = [f"{o['run']}: {o['state']}" + (f" ({o['info']})" if o["info"] else "") for o in outs
             if o["state"] != "done"]
    counts = {}
    for o in outs:
        counts[o["state"]] = counts.get(o["state"], 0) + 1
    lines.append(", ".join(f"{v} {k}" for k, v in counts.items()) + f" ({report['executor']} executor)")
    return "\n".join(lines)


def format_collect(ds) -> str:
    lines = [format_clocks_table(ds), "", f"{'run':<30} {'final_step':>10} {'sample_acc':>10} {'sample_mem':>10} "
             f"{'loss':>8}"]
    for i in range(ds.sizes["run"]):
        d = ds.isel(run=i)
        lines.append(f"{str(d.run.item()):<30} {float(d.final_step):>10g} {float(d.final_sample_acc):>10.3f} "
                     f"{float(d.final_sample_mem):>10.3f} {float(d.final_loss):>8.4f}")
    missing = json.loads(ds.attrs.get("missing_samples", "[]"))
    if missing:
        lines.append(f"{len(missing)} run(s) without probes/samples.zarr left out: {', '.join(missing[:5])}")
    return "\n".join(lines)


def main():  # console-script entry point
    app()


_register_probe_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
