"""What every ``lossatlas`` command shares: the click group, one-line errors, ``--debug``,
warnings, and the plugin registry."""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

import lossatlas

from ..drawing import IMAGE_SUFFIXES
from ..errors import ConfigError, DataError, LossAtlasError, PluginError, ShapeError
from ..options import suggest

if TYPE_CHECKING:
    from ..registry import Registry

__all__ = [
    "CONTEXT",
    "EXIT_BROKEN_PIPE",
    "IMAGE_SUFFIXES",
    "cli",
    "debug_option",
    "fail",
    "friendly",
    "naming_config",
    "registry",
    "warn",
]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


#: Exit status when stdout is a pipe closed by its reader (``lossatlas plugins | head -1``):
#: 128 + SIGPIPE, what a shell reports for a tool killed by SIGPIPE.
EXIT_BROKEN_PIPE = 141

DEBUG_KEY = "lossatlas.debug"


def _line(message: str) -> str:
    """``message`` on one line (its line breaks joined by "; ")."""
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())


def fail(message: str, code: int = 2) -> None:
    click.echo(f"lossatlas: error: {_line(message)}", err=True)
    sys.exit(code)


def warn(message: str) -> None:
    """One line on stderr; the command goes on."""
    click.echo(f"lossatlas: warning: {_line(message)}", err=True)


def registry() -> Registry:
    """The plugin registry, its warnings (an unknown name to disable ...) printed. Built
    by ``lossatlas.engine.cli.make_registry`` (tests replace that name)."""
    from lossatlas.engine import cli as package

    reg = package.make_registry()
    for warning in reg.warnings:
        warn(warning)
    return reg


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
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", None)  # RunInterrupted: SIGTERM, SIGHUP
            if signum is not None:
                fail(
                    f"interrupted by {exc.signame}; run the same command again to resume",  # type: ignore[attr-defined]
                    128 + int(signum),
                )
            fail("interrupted; run the same command again to resume", 130)
        except PermissionError as exc:
            if debug:
                raise
            fail(f"permission denied: {exc.filename or exc}; choose a writable location")
        except OSError as exc:
            if debug:
                raise
            where = f"'{exc.filename}'" if exc.filename else "a file"
            fail(f"cannot use {where}: {exc.strerror or exc}")
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if debug:
                raise
            if _damaged_chunk(exc):
                fail(
                    "a chunk of the store is damaged (it fails its checksum or does not "
                    f"decompress: {type(exc).__name__}: {_line(str(exc))[:120]}); run "
                    "'lossatlas verify STORE' to find it, and 'lossatlas verify STORE "
                    "--repair' so that 'lossatlas run' recomputes it"
                )
            where = getattr(exc, "lossatlas_where", None)  # set by engine.context.blame
            if where:
                first = (str(exc).strip().splitlines() or [""])[0]
                fail(
                    f"{where} failed: {type(exc).__name__}: {first} (a bug in that plugin "
                    "or its input; rerun with --debug for the traceback)"
                )
            fail(
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


#: Errors about what a config says (not about the store); ``run`` and ``check`` start
#: them with the config file's name.
CONFIG_ERRORS = (ConfigError, PluginError, DataError, ShapeError)


@contextlib.contextmanager
def naming_config(source: str) -> Iterator[None]:
    """Start a config error's message with ``source:`` unless it names the file already."""
    try:
        yield
    except CONFIG_ERRORS as exc:
        message = str(exc)
        if not message.startswith(f"{source}:") and f"'{source}'" not in message:
            exc.args = (f"{source}: {message}",)
        raise
