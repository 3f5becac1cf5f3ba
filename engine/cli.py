"""The ``lossatlas`` command line: run pipelines, list plugins, inspect and plot results."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import json
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

import lossatlas

from .errors import ConfigError, DataError, LossAtlasError, PluginError, ShapeError, StoreError
from .options import PointRef, describe_options, suggest
from .plotting import IMAGE_SUFFIXES
from .registry import KINDS, Registry, make_registry
from .runner import RunReport

__all__ = ["main"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


#: Exit status when stdout is a pipe closed by its reader (``lossatlas plugins | head -1``):
#: 128 + SIGPIPE, what a shell reports for a tool killed by SIGPIPE.
EXIT_BROKEN_PIPE = 141

DEBUG_KEY = "lossatlas.debug"


def _under_ci() -> bool:
    """CI is set and stderr is not a terminal: no progress bars (they would flood the log)."""
    return not sys.stderr.isatty() and bool(os.environ.get("CI"))


def _line(message: str) -> str:
    """``message`` on one line (its line breaks joined by "; ")."""
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"lossatlas: error: {_line(message)}", err=True)
    sys.exit(code)


def _warn(message: str) -> None:
    """One line on stderr; the command goes on."""
    click.echo(f"lossatlas: warning: {_line(message)}", err=True)


def _registry() -> Registry:
    """The plugin registry, its warnings (an unknown name to disable ...) printed."""
    registry = make_registry()
    for warning in registry.warnings:
        _warn(warning)
    return registry


def _pipe_closed() -> None:
    """Stdout's reader went away: exit quietly with :data:`EXIT_BROKEN_PIPE`.

    Stdout is pointed at devnull so that Python's final flush does not fail again
    (the idiom of the Python docs, "Note on SIGPIPE").
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (e.g. under CliRunner)
        pass
    sys.exit(EXIT_BROKEN_PIPE)


def _debug_requested() -> bool:
    """``--debug`` was given, before the command (``lossatlas --debug run``) or after it."""
    root = click.get_current_context().find_root()
    return bool(root.params.get("debug") or root.meta.get(DEBUG_KEY))


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().meta[DEBUG_KEY] = True


def debug_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--debug`` on a command: the same as ``lossatlas --debug COMMAND``."""
    return click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        callback=_set_debug,
        help="Show tracebacks instead of one-line errors.",
    )(func)


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn errors into one line and a non-zero exit; a traceback only with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = _debug_requested()
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:
            _pipe_closed()
        except LossAtlasError as exc:
            if debug:
                raise
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", None)  # RunInterrupted: SIGTERM, SIGHUP
            if signum is not None:
                _fail(
                    f"interrupted by {exc.signame}; run the same command again to resume",  # type: ignore[attr-defined]
                    128 + int(signum),
                )
            _fail("interrupted; run the same command again to resume", 130)
        except PermissionError as exc:
            if debug:
                raise
            _fail(f"permission denied: {exc.filename or exc}; choose a writable location")
        except OSError as exc:
            if debug:
                raise
            where = f"'{exc.filename}'" if exc.filename else "a file"
            _fail(f"cannot use {where}: {exc.strerror or exc}")
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if debug:
                raise
            if _damaged_chunk(exc):
                _fail(
                    "a chunk of the store is damaged (it fails its checksum or does not "
                    f"decompress: {type(exc).__name__}: {_line(str(exc))[:120]}); run "
                    "'lossatlas verify STORE' to find it, and 'lossatlas verify STORE "
                    "--repair' so that 'lossatlas run' recomputes it"
                )
            where = getattr(exc, "lossatlas_where", None)  # set by engine.context.blame
            if where:
                first = (str(exc).strip().splitlines() or [""])[0]
                _fail(
                    f"{where} failed: {type(exc).__name__}: {first} (a bug in that plugin "
                    "or its input; rerun with --debug for the traceback)"
                )
            _fail(
                f"internal error ({type(exc).__name__}: {exc}); rerun with --debug for the "
                "traceback and please report it",
                1,
            )

    return wrapper


def _damaged_chunk(exc: BaseException) -> bool:
    """Whether ``exc`` is zarr failing to decode a chunk (checksum, decompression)."""
    text = str(exc).lower()
    return isinstance(exc, ValueError | RuntimeError) and (
        "checksum" in text or "decompress" in text or "zstd" in text
    )


# ------------------------------------------------------------ usage errors


class OneLineError(click.ClickException):
    """A click error (bad option value, unknown option, missing argument ...) shown as
    one ``lossatlas: error: ...`` line instead of click's Usage/Try/Error block."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"lossatlas: error: {self.message}", err=True)


class AtLeast(click.types.IntParamType):
    """An integer option that must be ``minimum`` or more, said as a config key is."""

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        number = int(super().convert(value, param, ctx))
        if number < self.minimum:
            bound = "non-negative" if self.minimum == 0 else f"at least {self.minimum}"
            self.fail(f"must be {bound}, got {number}", param, ctx)
        return number


def _usage_message(exc: click.ClickException, command: str) -> str:
    """``--dtype: 'float16' is not one of 'float32', 'float64' (see lossatlas run --help)``.

    ``command`` is the command path the help is on, for errors click raises without a
    context (an option that lacks its value).
    """
    if isinstance(exc, click.NoSuchOption):
        # click's candidates, judged without the dashes they all share
        bare = {opt.lstrip("-"): opt for opt in exc.possibilities or []}
        close = difflib.get_close_matches(exc.option_name.lstrip("-"), list(bare), n=1)
        text = f"no such option '{exc.option_name}'"
        if close:
            text += f" (did you mean '{bare[close[0]]}'?)"
    elif isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        param, hint = exc.param, exc.param_hint
        if isinstance(hint, str):
            name = hint
        elif isinstance(param, click.Option):
            name = max(param.opts, key=len)  # --output rather than -o
        elif param is not None:
            name = param.human_readable_name
        else:
            name = ""
        text = f"{name}: {exc.message}" if name else exc.message
    else:
        text = exc.format_message()
    text = _line(text).rstrip(".")
    if len(text) > 1 and text[0].isupper() and text[1].islower():  # "Missing argument ..."
        text = text[0].lower() + text[1:]
    if isinstance(exc, click.UsageError):
        ctx = exc.ctx
        text += f" (see {ctx.command_path if ctx is not None else command} --help)"
    return text


@contextlib.contextmanager
def _one_line_usage_errors(command: str) -> Iterator[None]:
    try:
        yield
    except (click.exceptions.NoArgsIsHelpError, OneLineError):
        raise  # bare 'lossatlas' shows its help
    except click.ClickException as exc:
        raise OneLineError(_usage_message(exc, command), exc.exit_code) from None


def _command_path(info_name: str | None, parent: click.Context | None) -> str:
    name = info_name or "lossatlas"
    return f"{parent.command_path} {name}" if parent is not None else name


class _OneLineParsing(click.Command):
    """Errors in a command's (or the group's) options and arguments as one line."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _one_line_usage_errors(_command_path(info_name, parent)):
            return super().make_context(info_name, args, parent, **extra)


class LossAtlasCommand(_OneLineParsing):
    """A ``lossatlas`` command: errors in its options and arguments as one line."""


class LossAtlasGroup(_OneLineParsing, click.Group):
    """The ``lossatlas`` group: click's errors, for every command, as one line.

    The group's options are parsed in :meth:`make_context`, a command's in its own
    (:class:`LossAtlasCommand`); the command's body runs inside :meth:`invoke`.
    """

    command_class = LossAtlasCommand

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_usage_errors(ctx.command_path):
            return super().invoke(ctx)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.NoSuchOption:
            raise
        except click.UsageError:  # "No such command 'x'.": say which there are
            name = click.utils.make_str(args[0]) if args else ""
            commands = self.list_commands(ctx)
            raise click.UsageError(
                f"no such command '{name}'{suggest(name, commands)}; commands: "
                + ", ".join(commands),
                ctx,
            ) from None


@click.group("lossatlas", cls=LossAtlasGroup, context_settings=CONTEXT)
@click.version_option(lossatlas.__version__, prog_name="lossatlas")
@click.option(
    "--debug",
    is_flag=True,
    help="Show tracebacks instead of one-line errors (also accepted after COMMAND).",
)
def cli(debug: bool) -> None:
    """lossatlas: loss-landscape experiments on your own models and data.

    A config file (TOML) names a model, a data set and a list of steps; each step
    runs a probe (train, interpolate, Hessian directions, Goldilocks, DSS ...) and
    stores a labelled result in a Zarr store that xarray opens directly.

    \b
    Start with:
      lossatlas run examples/quickstart.toml      run a pipeline into ./atlas.zarr
      lossatlas inspect atlas.zarr                what is in a store
      lossatlas plot atlas.zarr quickstart/line -o line.png
      lossatlas report atlas.zarr -o report.html  every figure on one page
      lossatlas plugins                           models, data sets, probes available

    Run 'lossatlas COMMAND --help' for a command's options.
    """


# --------------------------------------------------------------------------- run


@cli.command(context_settings=CONTEXT, short_help="Run a pipeline config into a store.")
@click.argument("config_file", metavar="CONFIG.toml", type=click.Path(dir_okay=False))
@click.option(
    "--store",
    "store",
    default="atlas.zarr",
    show_default=True,
    metavar="PATH",
    help="Zarr store to write into (created if missing; shared by many runs).",
)
@click.option(
    "--name",
    default=None,
    metavar="NAME",
    help="Run name (the store group); default: the config's.",
)
@click.option(
    "--device", default=None, metavar="DEVICE", help="cpu, cuda or cuda:N (overrides the config)."
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float64"]),
    default=None,
    help="Floating-point precision (overrides the config).",
)
@click.option(
    "--seed",
    type=AtLeast(0),
    default=None,
    metavar="N",
    help="Run seed, 0 or more (overrides the config).",
)
@click.option(
    "--executor", default=None, metavar="NAME", help="Executor plugin: local (default) or dask."
)
@click.option(
    "--address",
    default=None,
    metavar="URL",
    help="Dask scheduler address tcp://HOST:PORT (with --executor dask).",
)
@click.option(
    "--workers",
    type=AtLeast(1),
    default=None,
    metavar="N",
    help="Dask LocalCluster workers (with --executor dask and no --address).",
)
@click.option(
    "--step",
    "steps",
    multiple=True,
    metavar="STEP",
    help="Run only this step (repeatable); the earlier steps it uses must be in the store.",
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Resume an unfinished run of the same name (with --no-resume, refuse).",
)
@click.option(
    "--rerun",
    default=None,
    metavar="STEP",
    help="Recompute STEP and every step after it (their stored results are removed first).",
)
@click.option(
    "--wait",
    is_flag=True,
    help="If another process is running this run, wait for it instead of stopping.",
)
@click.option(
    "--allow-plugin-change",
    is_flag=True,
    help="Resume a step although a plugin it uses changed version (recorded in provenance).",
)
@click.option(
    "--max-memory",
    default=None,
    metavar="SIZE",
    help="Refuse a step needing more memory per cell (e.g. 8GiB); default: memory available.",
)
@click.option(
    "--max-store",
    default=None,
    metavar="SIZE",
    help="Refuse a step whose result is larger (e.g. 50GB); default: free disk at the store.",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress bar, no per-step lines; at the end one line: where the results are.",
)
@debug_option
@friendly
def run(
    config_file: str,
    store: str,
    name: str | None,
    device: str | None,
    dtype: str | None,
    seed: int | None,
    executor: str | None,
    address: str | None,
    workers: int | None,
    steps: tuple[str, ...],
    resume: bool,
    rerun: str | None,
    wait: bool,
    allow_plugin_change: bool,
    max_memory: str | None,
    max_store: str | None,
    quiet: bool,
) -> None:
    """Run the pipeline in CONFIG.toml and store its results.

    Everything is checked before the store is touched (plugins, options, point
    references, shapes). Each step's result goes to the group RUN/STEP of the store.
    Steps already complete in the store are skipped; an interrupted run continues
    where it stopped when the same command is run again.

    --step runs only the steps named; the earlier steps whose results they use (a
    point such as at = "train") must already be in the store under the same run
    name, or be named with --step too, else the run stops before it starts.

    Each step prints a line when it ends ("step line: 123 cell(s) computed in
    4.5 s"). On a terminal a progress bar shows the step's cells and, below it, what
    runs inside the current cell (a training's steps and epochs, an eigen-solver's
    HVPs, DSS beads), each with an ETA; in a log (stderr not a terminal) a line
    every few seconds says the same (LOSSATLAS_PROGRESS_SECONDS, default 5).
    --quiet turns all of it off, and of the closing lines (how to open the results)
    keeps only the first, where the results are.

    An error in the config, or in what it names (plugins, options, checkpoints),
    starts with the config file's name.

    Before anything is written, each step's size is estimated (cells, evaluations,
    bytes in the store, memory per cell; 'lossatlas check' prints them) and a step
    over --max-memory or --max-store is refused with what to lower.

    One process runs a run at a time: a second one on the same run stops with the
    holder's pid and host (or waits, with --wait). SIGTERM and SIGHUP stop a run
    as Ctrl-C does (status interrupted; the same command resumes it).

    The config format is in docs/config.md; examples/ holds a config for each
    probe; 'lossatlas plugins' lists the models, data sets, probes ... a config
    can name, and 'lossatlas plugins NAME' one's options.

    \b
    Examples:
      lossatlas run examples/quickstart.toml
      lossatlas run my.toml --store results.zarr --name wide --device cuda
      lossatlas run my.toml --executor dask --workers 4
      lossatlas run my.toml --step line --debug
      lossatlas run my.toml --rerun line
    """
    from .config import load_config
    from .progress import ConsoleProgress
    from .runner import run_pipeline
    from .sizes import Limits, parse_size
    from .store import Store

    with _naming_config(str(Path(config_file))):
        config = load_config(config_file)
        config = config.with_overrides(
            name=name, device=device, dtype=dtype, seed=seed, executor=executor
        )
        opts = dict(config.executor_options)
        if address:
            opts["address"] = address
        if workers is not None:
            opts["workers"] = workers
        if (address or workers is not None) and config.executor == "local":
            raise click.UsageError("--address and --workers need --executor dask")
        config.executor_options = opts
        if not resume and Store(store).exists() and config.name in Store(store).runs():
            raise StoreError(f"run '{config.name}' exists in '{store}' and --no-resume was given")
        registry = _registry()
        if steps:
            _check_earlier_steps(config, registry, store, steps)
        progress = ConsoleProgress(bar=False if quiet else None, lines=not quiet, log=not quiet)
        limits = Limits.machine(
            store,
            memory=parse_size(max_memory, "--max-memory") if max_memory else None,
            store=parse_size(max_store, "--max-store") if max_store else None,
        )
        try:
            report: RunReport = run_pipeline(
                config,
                store,
                registry,
                progress=progress,
                steps=list(steps) or None,
                rerun=rerun,
                wait=wait,
                allow_plugin_change=allow_plugin_change,
                limits=limits,
            )
        except StoreError as exc:
            raise StoreError(_explain_missing_step(str(exc), config, store, steps)) from None
    if quiet:
        click.echo(f"Results of run '{report.run}' are in {report.store}")
        return
    click.echo(f"\nResults of run '{report.run}' are in {report.store}")
    click.echo("Open them with:")
    click.echo("  import xarray as xr")
    click.echo(f"  tree = xr.open_datatree({report.store!r}, engine='zarr')")
    for s in report.steps:
        click.echo(f"  tree['{report.run}/{s.name}'].to_dataset()   # probe {s.probe}")
    first = report.steps[0].name if report.steps else ""
    click.echo(f"or draw one: lossatlas plot {report.store} {report.run}/{first} -o plot.png")
    click.echo(f"or all of them on one page: lossatlas report {report.store} -o report.html")


#: Errors about what a config says (not about the store); ``run`` starts them with the
#: config file's name.
CONFIG_ERRORS = (ConfigError, PluginError, DataError, ShapeError)


@contextlib.contextmanager
def _naming_config(source: str) -> Iterator[None]:
    """Start a config error's message with ``source:`` unless it names the file already."""
    try:
        yield
    except CONFIG_ERRORS as exc:
        message = str(exc)
        if not message.startswith(f"{source}:") and f"'{source}'" not in message:
            exc.args = (f"{source}: {message}",)
        raise


def _point_refs(value: Any) -> list[str]:
    """Every :class:`PointRef` in an options value (nested in lists and tables)."""
    if isinstance(value, PointRef):
        return [str(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = vars(value)
    if isinstance(value, dict):
        return [r for v in value.values() for r in _point_refs(v)]
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in _point_refs(v)]
    return []


def _missing_earlier(config: Any, store: str, steps: tuple[str, ...]) -> list[str]:
    """The config's steps left out by --step that have no result in ``store``."""
    from .store import Store

    st = Store(store)
    have = st.runs() if st.exists() else []
    ready = set(st.steps(config.name)) if config.name in have else set()
    ready = {s for s in ready if st.step_ready(config.name, s)}
    return [s.name for s in config.steps if s.name not in steps and s.name not in ready]


def _needs_hint(config: Any, store: str, steps: tuple[str, ...], needed: str) -> str:
    names = [s.name for s in config.steps]
    wanted = [n for n in names if n in steps or n == needed]
    again = " ".join(f"--step {n}" for n in wanted)
    return (
        f"name it with --step too (lossatlas run {config.source or 'CONFIG.toml'} "
        f"--store {store} {again}), or run the whole config without --step"
    )


def _check_earlier_steps(config: Any, registry: Any, store: str, steps: tuple[str, ...]) -> None:
    """Refuse ``--step`` when a step named uses a point of an earlier step not in the store."""
    from .context import StepContext

    missing = set(_missing_earlier(config, store, steps))
    if not missing:
        return
    for step in config.steps:
        if step.name not in steps:
            continue
        ctx = StepContext(registry, config, step)
        for ref in _point_refs(ctx.options):
            run, needed, _var = StepContext.parse_ref(ref)
            needed = needed.split("@", 1)[0]  # STEP@N: a snapshot of a train step
            if run is None and needed in missing:
                raise StoreError(
                    f"--step {step.name}: it uses point '{ref}' of step '{needed}', which has "
                    f"no result in store '{store}' for run '{config.name}'; "
                    + _needs_hint(config, store, steps, needed)
                )


def _explain_missing_step(message: str, config: Any, store: str, steps: tuple[str, ...]) -> str:
    """Add to a store error about a step left out by --step how to get its result."""
    if not steps:
        return message
    for needed in _missing_earlier(config, store, steps):
        if f"step '{needed}' of run '{config.name}'" in message:
            return f"{message} (left out by --step); " + _needs_hint(config, store, steps, needed)
    return message


# ----------------------------------------------------------------------- plugins


@cli.command(context_settings=CONTEXT, short_help="List the installed plugins.")
@click.argument("name", required=False, metavar="[NAME]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@debug_option
@friendly
def plugins(name: str | None, as_json: bool) -> None:
    """List every plugin, its distribution and what it registers; broken ones marked.

    The names shown are what a config uses: [model] plugin = NAME,
    [dataset] plugin = NAME, [loss] plugin = NAME, probe = NAME in [[steps]],
    subspace tables {plugin = NAME}, executor = NAME. Set
    LOSSATLAS_DISABLE_PLUGINS=a,b to switch plugins off by name.

    With NAME, show the options of the model, data set, loss, subspace, probe or
    executor of that name (each of them if several kinds use the name): each
    option's TOML key, type, default and what it does.

    \b
    Examples:
      lossatlas plugins
      lossatlas plugins random-line
    """
    registry = _registry()
    if name is not None:
        _show_component(registry, name, as_json)
        return
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in registry.records], indent=2))
        return
    for r in registry.records:
        mark = {"ok": "", "failed": "  [FAILED]", "disabled": "  [disabled]"}[r.status]
        click.echo(f"{r.name}  ({r.distribution} {r.version}){mark}")
        if r.error:
            click.echo(f"    error: {r.error}")
        for kind, names in r.registered.items():
            for n in names:
                comp = registry.components[kind].get(n)
                summary = comp[0].summary if comp else ""
                click.echo(f"    {kind:<9} {n:<22} {summary}")


#: kind -> how a config names a component of that kind (for ``lossatlas plugins NAME``).
USED_AS = {
    "model": '[model] plugin = "{name}"',
    "dataset": '[dataset] plugin = "{name}"',
    "loss": '[loss] plugin = "{name}"',
    "subspace": 'a subspace table {{plugin = "{name}", ...}}',
    "probe": '[[steps]] probe = "{name}"',
    "executor": 'executor = "{name}", options in [executor_options]',
}


def _show_component(registry: Any, name: str, as_json: bool) -> None:
    """Print the options of every component called ``name``, or fail with a suggestion."""
    found = [
        (kind, *registry.components[kind][name])
        for kind in KINDS
        if name in registry.components[kind]
    ]
    if not found:
        for kind in KINDS:  # a component of a plugin that failed to load or is disabled
            try:
                registry.get(kind, name)
            except PluginError as exc:
                if not str(exc).startswith("unknown "):
                    raise
        every = sorted({n for table in registry.components.values() for n in table})
        raise PluginError(
            f"no model, dataset, loss, subspace, probe or executor is named '{name}'"
            f"{suggest(name, every)}; 'lossatlas plugins' lists them"
        )
    rows = []
    for kind, comp, record in found:
        options = [
            {"name": n, "type": t, "default": d, "doc": doc}
            for n, t, d, doc in describe_options(comp.Options)
        ]
        rows.append(
            {
                "kind": kind,
                "name": name,
                "summary": comp.summary,
                "plugin": record.name,
                "distribution": record.distribution,
                "version": record.version,
                "options": options,
            }
        )
        if kind == "probe":
            from .components import PlotOptions

            rows[-1]["plot_options"] = [
                {"name": n, "type": t, "default": d, "doc": doc}
                for n, t, d, doc in describe_options(getattr(comp, "PlotOptions", PlotOptions))
            ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for i, row in enumerate(rows):
        if i:
            click.echo("")
        click.echo(
            f"{row['kind']} '{name}'  (plugin {row['plugin']}, "
            f"{row['distribution']} {row['version']})"
        )
        if row["summary"]:
            click.echo(f"  {row['summary']}")
        click.echo(f"  used as: {USED_AS[row['kind']].format(name=name)}")
        sections = [("options", row["options"])]
        if "plot_options" in row:
            sections.append(("plot options (lossatlas plot -O KEY=VALUE)", row["plot_options"]))
        for title, opts in sections:
            if not opts:
                click.echo(f"  {title}: none")
                continue
            click.echo(f"  {title}:")
            for opt in opts:
                default = (
                    "required" if opt["default"] == "required" else f"default {opt['default']}"
                )
                click.echo(f"    {opt['name']}  ({opt['type']}; {default})")
                if opt["doc"]:
                    wrapped = textwrap.fill(
                        opt["doc"], width=96, initial_indent=" " * 8, subsequent_indent=" " * 8
                    )
                    click.echo(wrapped)


# ----------------------------------------------------------------------- inspect


@cli.command(context_settings=CONTEXT, short_help="Show what a store holds.")
@click.argument("store", type=click.Path())
@click.option("--run", "run_name", default=None, metavar="RUN", help="Only this run.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one JSON list).")
@debug_option
@friendly
def inspect(store: str, run_name: str | None, as_json: bool) -> None:
    """Show the runs and steps in STORE: dims, completion and provenance.

    For each run: its state, times, versions, device, dtype and seed; for each
    step: its probe, how many cells are computed, its dims and variables.

    \b
    A run's state is one of:
      running      a live process holds it (its pid, host and last heartbeat shown)
      stale        it says running, but its process is gone (killed, crashed)
      interrupted  stopped by Ctrl-C, SIGTERM or SIGHUP
      failed       stopped by an error (shown)
      partial      finished with a step not complete
      complete     every step complete
    A stale, interrupted, failed or partial run resumes with the same 'lossatlas run'.

    \b
    Example:
      lossatlas inspect atlas.zarr --run quickstart
      lossatlas inspect atlas.zarr --json
    """
    from .store.summary import store_summary

    st = _store_to_read(store)
    runs = st.runs()
    if run_name:
        _check_run(st, store, run_name)
        runs = [run_name]
    summary = store_summary(st, runs)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    if not runs:
        click.echo(f"{store}: no runs yet")
    for entry in summary:
        r = entry["run"]
        prov = entry["provenance"]
        state = entry["state"]
        click.echo(
            f"run {r}  [{state}]  started {entry.get('started', '?')}"
            f"  finished {entry.get('finished', '-')}"
        )
        click.echo(
            f"  config: {entry.get('config_source', '?')}; lossatlas "
            f"{prov.get('lossatlas_version')}, torch {prov.get('torch_version')}, "
            f"python {prov.get('python_version')}; device {prov.get('device')}, "
            f"dtype {prov.get('dtype')}, seed {prov.get('seed')}"
        )
        lease = entry.get("lease")
        if state == "running" and lease:
            click.echo(f"  running now: {lease['description']}")
        elif state == "stale":
            was = f" (was {lease['description']})" if lease else ""
            click.echo(
                f"  stale: it says running but no process is running it{was}; it was "
                "killed or crashed; run the same command again to resume"
            )
        if entry.get("error"):
            click.echo(f"  stopped {entry.get('stopped', '?')}: {entry['error']}")
            click.echo("  (run the same command again to resume)")
        for step in entry["steps"]:
            s = step["step"]
            if not step["template_complete"]:
                click.echo(f"  step {s}: incomplete template (will be rewritten on resume)")
                continue
            cells = step["cells"]
            if "error" in cells:
                count = f"cells unreadable ({cells['error']}); run 'lossatlas verify'"
            else:
                bad = cells["nonfinite"]
                count = f"cells {cells['done']}/{cells['total']}" + (
                    f" ({bad} with NaN/inf)" if bad else ""
                )
            click.echo(f"  step {s}  probe {step['probe']}  [{step['status']}] {count}")
            if step.get("error"):
                click.echo(f"    error: {step['error']}")
            dims = ", ".join(f"{d}={n}" for d, n in step["dims"].items())
            click.echo(f"    dims: {dims}")
            click.echo(f"    variables: {', '.join(step['variables'])}")


# ------------------------------------------------------------ store commands


@cli.command(context_settings=CONTEXT, short_help="Validate a config; write nothing.")
@click.argument("config_file", metavar="CONFIG.toml", type=click.Path(dir_okay=False))
@click.option(
    "--store",
    "store",
    default=None,
    metavar="PATH",
    help="A store whose runs the config refers to (RUN/STEP points); only read.",
)
@click.option("--name", default=None, metavar="NAME", help="Run name, as for 'run'.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@debug_option
@friendly
def check(config_file: str, store: str | None, name: str | None, as_json: bool) -> None:
    """Check CONFIG.toml as 'run' would, and print it resolved; write nothing.

    Every plugin, option, point reference and shape is checked (the model and data
    are built). Printed: the config with every default filled in (each component's
    and step's options as the plugin reads them) and each step's estimate: cells,
    loss evaluations, Hessian-vector products, bytes in the store and memory per
    cell, against this machine's limits.

    \b
    Example:
      lossatlas check examples/quickstart.toml
    """
    from .config import load_config
    from .resolve import resolve_config

    with _naming_config(str(Path(config_file))):
        config = load_config(config_file).with_overrides(name=name)
        resolved = resolve_config(config, _registry(), store)
    if as_json:
        click.echo(json.dumps(resolved, indent=2, default=str))
        return
    click.echo(f"{config_file}: OK (run '{config.name}', {len(config.steps)} step(s))")
    click.echo("")
    click.echo(resolved["toml"])
    click.echo("estimates:")
    for step, est in resolved["estimates"].items():
        click.echo(f"  {step}: {est['text']}")
    limits = resolved["limits"]
    click.echo(f"limits: {limits['memory']} of memory per cell, {limits['store']} in the store")


@cli.command(context_settings=CONTEXT, short_help="Remove a run or step from a store.")
@click.argument("store", type=click.Path())
@click.argument("target", metavar="RUN[/STEP]")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@debug_option
@friendly
def rm(store: str, target: str, yes: bool) -> None:
    """Remove the run RUN (all its steps) or the step RUN/STEP from STORE.

    Asks before removing unless --yes is given. A run that a live process is running
    is refused. The store's consolidated metadata is rewritten, so xarray and
    'lossatlas inspect' see the change at once. A removed step is recomputed by the
    next 'lossatlas run' of its config.

    \b
    Examples:
      lossatlas rm atlas.zarr quickstart/line
      lossatlas rm atlas.zarr old-run --yes
    """
    from .store import lease_state

    st = _store_to_read(store)
    run_name, _, step = target.partition("/")
    _check_run(st, store, run_name)
    if step and step not in st.steps(run_name):
        steps = st.steps(run_name)
        raise StoreError(
            f"run '{run_name}' has no step '{step}'{suggest(step, steps)}; steps: "
            f"{', '.join(steps) or 'none'}"
        )
    state, holder = lease_state(st, run_name)
    if state == "live" and holder is not None:
        raise StoreError(f"run '{run_name}' is being run by {holder.describe()}; stop it first")
    what = f"step '{step}' of run '{run_name}'" if step else f"run '{run_name}' and all its steps"
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"rm: removing {what} needs confirmation; add --yes")
        click.confirm(f"Remove {what} from {store}?", abort=True)
    st.remove(run_name, step or None)
    click.echo(f"removed {what} from {store}")


@cli.command(context_settings=CONTEXT, short_help="Read every chunk; find damaged cells.")
@click.argument("store", type=click.Path())
@click.option("--run", "runs", multiple=True, metavar="RUN", help="Only this run (repeatable).")
@click.option(
    "--repair",
    is_flag=True,
    help="Mark damaged or inconsistent cells not run, so that 'lossatlas run' recomputes them.",
)
@debug_option
@friendly
def verify(store: str, runs: tuple[str, ...], repair: bool) -> None:
    """Read every chunk of STORE and check each cell's status against its data.

    Each chunk carries a crc32c checksum: a chunk changed on disk (a bad disk, a
    partial copy, an edit) fails to read. A cell marked done must hold finite values
    where its probe promised them. Exit 0 when all is well; 1 naming each damaged or
    inconsistent cell. With --repair those cells are marked not run and their steps
    'partial': the same 'lossatlas run' then recomputes exactly them (and the step's
    summary). Damaged coordinates or static arrays cannot be repaired in place:
    remove the step ('lossatlas rm') and run again.

    \b
    Examples:
      lossatlas verify atlas.zarr
      lossatlas verify atlas.zarr --repair
    """
    from .store.verify import repair as do_repair
    from .store.verify import verify as do_verify

    st = _store_to_read(store)
    for r in runs:
        _check_run(st, store, r)
    problems, checked = do_verify(st, list(runs) or None)
    if not problems:
        click.echo(f"{store}: {checked} step(s) read, every chunk and status consistent")
        return
    for p in problems:
        click.echo(f"{store}: {p.describe()}")
    if not repair:
        _fail(
            f"{len(problems)} problem(s) in {store}; 'lossatlas verify {store} --repair' "
            "marks the damaged cells for recomputing",
            1,
        )
    marked, left = do_repair(st, problems)
    click.echo(
        f"marked {marked} cell(s) not run; 'lossatlas run' with the same config recomputes them"
    )
    if left:
        _fail(
            f"{len(left)} problem(s) cannot be repaired in place ("
            + "; ".join(p.describe() for p in left)
            + "); remove those steps with 'lossatlas rm' and run again",
            1,
        )


@cli.command(context_settings=CONTEXT, short_help="Write a stored result as netCDF, CSV or VTK.")
@click.argument("store", type=click.Path())
@click.argument("group", metavar="RUN/STEP")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["netcdf", "csv", "vtk"]),
    required=True,
    help="netcdf: netCDF-4 with CF attributes (pip install 'lossatlas[netcdf]'); "
    "csv: one tidy table; vtk: a VTK XML structured grid (.vts) of the step's 2-D maps, "
    "for ParaView.",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="File.")
@click.option("--var", "variables", multiple=True, metavar="NAME", help="Only this variable.")
@click.option(
    "--axes",
    default=None,
    metavar="A,B",
    help="vtk: the two dims of the map, where a result has maps over several pairs.",
)
@click.option(
    "--height",
    default=None,
    metavar="MAP",
    help="vtk: lift the grid by this map (e.g. train_loss[map=hessian]); default flat.",
)
@debug_option
@friendly
def export(
    store: str,
    group: str,
    fmt: str,
    output: str,
    variables: tuple[str, ...],
    axes: str | None,
    height: str | None,
) -> None:
    """Write the stored result RUN/STEP of STORE to one file another tool reads.

    netCDF keeps every variable, coordinate and attribute (CF-1.11, attributes made
    netCDF-safe: lists and tables as JSON text); CSV is one tidy table with a row
    per value: variable, each dim's coordinate, value, units. --var keeps only the
    variables named. VTK writes every 2-D map of the step (each float variable over
    the map's two axes, one array per index of any other dim, e.g.
    train_loss[map=hessian]) as point arrays of one structured grid: open it in
    ParaView, colour by an array, and use Warp By Scalar for a 3-D surface.

    \b
    Examples:
      lossatlas export atlas.zarr quickstart/line --format netcdf -o line.nc
      lossatlas export atlas.zarr quickstart/line --format csv -o line.csv --var train_loss
      lossatlas export atlas.zarr maps/maps --format vtk -o maps.vts
    """
    from .store.export import export as do_export

    st = _store_to_read(store)
    if "/" not in group:
        raise ConfigError(f"group '{group}' must be RUN/STEP")
    run_name, step = group.split("/", 1)
    _check_run(st, store, run_name)
    if not st.step_ready(run_name, step):
        ready = _results(st, run_name)
        raise StoreError(
            f"store '{store}' has no result for step '{step}' of run '{run_name}'"
            f"{suggest(step, ready)}; steps with results: {', '.join(ready) or 'none yet'}"
        )
    options = {k: v for k, v in (("axes", axes), ("height", height)) if v is not None}
    path = do_export(st.open_step(run_name, step), fmt, output, list(variables) or None, **options)
    click.echo(f"wrote {path}")


def _store_to_read(store: str) -> Any:
    """The :class:`~lossatlas.engine.store.Store` at ``store`` for a command that only
    reads it (inspect, plot, report): a path that is not a lossatlas store is refused
    with what to give instead (the store's own checks speak of writing into it)."""
    import zarr

    from .store import MARKER, Store

    st = Store(store)
    path = st.path
    hint = "give the path of a store written by lossatlas run"
    if path.exists() and not path.is_dir():
        raise StoreError(f"'{store}' is a file, not a lossatlas store; {hint}")
    if path.is_dir() and not (path / "zarr.json").exists() and not (path / ".zgroup").exists():
        empty = "" if any(path.iterdir()) else "; the folder is empty"
        raise StoreError(f"'{store}' is not a lossatlas store (no Zarr metadata{empty}); {hint}")
    if path.is_dir():
        try:
            marker = zarr.open_group(str(path), mode="r").attrs.get(MARKER)
        except Exception:  # unreadable: the store's own check says how
            return st
        if marker != 1:
            raise StoreError(f"'{store}' is a Zarr store that lossatlas did not make; {hint}")
    return st


def _check_run(st: Any, store: str, run_name: str) -> None:
    """Refuse a run the store does not hold, listing the runs it does."""
    runs = st.runs()
    if run_name not in runs:
        raise StoreError(
            f"store '{store}' has no run '{run_name}'{suggest(run_name, runs)}; "
            f"runs: {', '.join(runs) or 'none yet'}"
        )


def _results(st: Any, run_name: str) -> list[str]:
    """The steps of ``run_name`` that have a result (``lossatlas inspect`` lists them)."""
    return [s for s in st.steps(run_name) if st.step_ready(run_name, s)]


# -------------------------------------------------------------------------- plot


@cli.command(context_settings=CONTEXT, short_help="Draw stored results to an image.")
@click.argument("store", type=click.Path())
@click.argument("groups", metavar="RUN/STEP [RUN/STEP ...]", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help=f"Image file; the format follows the suffix ({', '.join(IMAGE_SUFFIXES)}).",
)
@click.option("--logy", is_flag=True, help="Logarithmic loss axis (on maps: colour scale).")
@click.option(
    "-O",
    "--plot-option",
    "plot_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A plot option of the probe (repeatable), e.g. -O metric=accuracy; "
    "'lossatlas plugins PROBE' lists them.",
)
@click.option(
    "--surface",
    is_flag=True,
    help="Draw the step's 2-D maps as 3-D surfaces instead of the probe's figure.",
)
@click.option(
    "--style",
    default=None,
    metavar="NAME|FILE",
    help="Matplotlib style over lossatlas's: a name (seaborn-v0_8-paper, ggplot ...) or an "
    ".mplstyle file; default: the run config's 'style', else lossatlas.",
)
@click.option("--no-title", is_flag=True, help="No figure title (RUN/STEP nor the probe's).")
@click.option(
    "--dpi",
    type=int,
    default=150,
    show_default=True,
    help="Resolution of raster images (.png, .jpg, .jpeg), 10 to 1200.",
)
@debug_option
@friendly
def plot(
    store: str,
    groups: tuple[str, ...],
    output: str,
    logy: bool,
    plot_options: tuple[str, ...],
    surface: bool,
    style: str | None,
    no_title: bool,
    dpi: int,
) -> None:
    """Draw the stored result RUN/STEP of STORE with its probe's plot.

    RUN/STEP names a run and one of its steps, as 'lossatlas inspect STORE' lists
    them. The figure is the probe's picture of the paper it implements, drawn from
    the stored result alone (nothing is recomputed). Several RUN/STEP of one probe
    go on one figure where the probe compares results (goldilocks: seed 000 Fig. 4;
    radial-profile: Fig. 5a), each labelled by its RUN/STEP.

    Steps of different probes that hold paths between two points (interpolation,
    align, curve, neb, dss) go on one figure comparing the paths: the loss along each,
    its barrier and its normalised length. --surface draws a step's 2-D maps (any
    probe's: hessian-directions, trajectory ...) as 3-D surfaces.

    Figures are drawn in the lossatlas style (TrueType fonts in PDF and EPS, readable
    sizes, a colour-blind-safe palette); --style puts another on top of it. -O sets
    a plot option of the probe (checked: an unknown key or a wrong type is an error).

    A step that is not complete (its run was interrupted, failed or is still
    running) is drawn from the cells done so far, with a warning and
    "(partial: N/M cells)" in the title.

    \b
    Examples:
      lossatlas plot atlas.zarr quickstart/line -o line.png --logy
      lossatlas plot hd.zarr run/maps -o maps.pdf -O metric=accuracy --no-title
      lossatlas plot atlas.zarr fig4/relu-100 fig4/tanh-100 fig4/cnn -o fig4.png
      lossatlas plot atlas.zarr paths/lines paths/curve paths/neb -o paths.png
      lossatlas plot atlas.zarr maps/maps --surface -o surface.png
      lossatlas plot atlas.zarr quickstart/line -o line.pdf --style paper.mplstyle
    """
    from .plotting import parse_option_pairs

    path = draw(
        store,
        groups,
        output,
        options=parse_option_pairs(plot_options),
        logy=logy,
        surface=surface,
        dpi=dpi,
        style=style,
        title=not no_title,
    )
    click.echo(f"wrote {path}")


def _open_result(st: Any, store: str, group: str) -> Any:
    """The stored result ``RUN/STEP`` of ``st`` (lazily), or a clear error naming the
    results there are."""
    if "/" not in group:
        results = [f"{r}/{s}" for r in st.runs() for s in _results(st, r)]
        raise ConfigError(
            f"group '{group}' must be RUN/STEP{suggest(group, results)}; results in "
            f"'{store}': {', '.join(results) or 'none yet'}"
        )
    run_name, step = group.split("/", 1)
    _check_run(st, store, run_name)
    if not st.step_ready(run_name, step):
        ready = _results(st, run_name)
        started = " (it has not started or its template is incomplete; resume the run)"
        raise StoreError(
            f"store '{store}' has no result for step '{step}' of run '{run_name}'"
            + (started if step in st.steps(run_name) else suggest(step, ready))
            + f"; steps of run '{run_name}' with results: {', '.join(ready) or 'none yet'}"
        )
    return st.open_step(run_name, step)


def draw(store: str, groups: str | tuple[str, ...], output: str, **kwargs: Any) -> Path:
    """Render ``RUN/STEP`` (one or several) of ``store`` to ``output``; ``kwargs`` go to
    :func:`lossatlas.engine.plotting.draw_results`."""
    from .plotting import check_output, draw_results

    groups = (groups,) if isinstance(groups, str) else tuple(groups)
    check_output(output)
    st = _store_to_read(store)
    results = {group: _open_result(st, store, group) for group in groups}
    return draw_results(results, output, registry=_registry(), warn=_warn, **kwargs)


# ------------------------------------------------------------------------ report


class RichReportProgress:
    """A rich progress bar over the figures of a report (nothing when quiet)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None

    def start(self, total: int) -> None:
        if self.quiet or total == 0:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RP

        self.bar = RP(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("drawing figures", total=total)

    def advance(self, label: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=f"drew {label}")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


@cli.command(context_settings=CONTEXT, short_help="Write an HTML report of a store.")
@click.argument("store", type=click.Path())
@click.option(
    "-o",
    "--output",
    default="report.html",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The HTML file to write (one self-contained page; no server needed).",
)
@click.option(
    "--run",
    "runs",
    multiple=True,
    metavar="RUN",
    help="Only this run (repeatable); default: every run in the store.",
)
@click.option("--logy", is_flag=True, help="Logarithmic loss axes, where a plot has one.")
@click.option(
    "--style",
    default=None,
    metavar="NAME|FILE",
    help="Matplotlib style over lossatlas's for every figure; default: each run's 'style'.",
)
@click.option(
    "--dpi",
    type=int,
    default=150,
    show_default=True,
    help="Resolution of a figure embedded as PNG (maps too large for SVG), 10 to 1200.",
)
@click.option(
    "--strict", is_flag=True, help="Exit 1 if any figure (or run, or step) could not be drawn."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@debug_option
@friendly
def report(
    store: str,
    output: str,
    runs: tuple[str, ...],
    logy: bool,
    style: str | None,
    dpi: int,
    strict: bool,
    quiet: bool,
) -> None:
    """Write one HTML page with every figure, config and provenance in STORE.

    \b
    A table of contents links every run (newest first) and step. For each run: its
    status, the versions, device, dtype, seed and times it ran with (shown in the
    reader's time zone), its config, and for each step the probe, how many cells are
    computed, the probe's figure (inline SVG; PNG for a map too large for SVG) and
    the probe's own section. Runs and steps fold away. Everything is embedded, so the
    page opens in a browser from disk and can be mailed as one file. A figure that
    cannot be drawn shows its error in place of the picture (--strict: exit 1 then).

    \b
    Example:
      lossatlas report atlas.zarr -o report.html
      lossatlas report atlas.zarr --run quickstart -o quickstart.html
    """
    import matplotlib

    matplotlib.use("Agg")
    from .report import write_report

    quiet = quiet or _under_ci()
    _store_to_read(store)
    summary = write_report(
        store,
        output,
        list(runs) or None,
        registry=_registry(),
        dpi=dpi,
        style=style,
        progress=RichReportProgress(quiet),
        plot_kwargs={"logy": True} if logy else None,
    )
    failed = (
        f"; {len(summary.failed)} could not be drawn: {', '.join(summary.failed)}"
        if summary.failed
        else ""
    )
    click.echo(f"wrote {output}: {len(summary.runs)} run(s), {summary.figures} figure(s){failed}")
    if strict and summary.failed:
        _fail(f"--strict: {len(summary.failed)} part(s) of the report could not be drawn", 1)


def main() -> None:
    try:
        cli(prog_name="lossatlas")
    finally:
        try:  # a reader that closed the pipe after the last write: exit quietly too
            sys.stdout.flush()
        except BrokenPipeError:
            _pipe_closed()


if __name__ == "__main__":
    main()
