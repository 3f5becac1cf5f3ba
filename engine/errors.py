"""One exception family for everything lossatlas reports to a user.

Every message names what was being done, with which input, and what the user can do
about it. The CLI prints ``str(error)`` on one line and exits non-zero; a traceback is
shown only with ``--debug``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "LossAtlasError",
    "MissingStepError",
    "PluginError",
    "RunInterrupted",
    "ShapeError",
    "StoreError",
]


class LossAtlasError(Exception):
    """Base class of every error lossatlas raises on purpose.

    ``context`` holds structured facts about the error (``run``, ``step``, ``ref`` ...)
    that a caller may act on, so that nobody has to search the message's text; it
    survives pickling (an error raised on a Dask worker keeps it).
    """

    exit_code = 2

    def __init__(self, *args: object, **context: object) -> None:
        super().__init__(*args)
        self.context: dict[str, object] = dict(context)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.args, self.context))


def _rebuild(
    cls: type[LossAtlasError], args: tuple[object, ...], context: dict[str, object]
) -> LossAtlasError:
    return cls(*args, **context)


class ConfigError(LossAtlasError):
    """A config (TOML file or options table) is malformed, unknown or impossible."""


class PluginError(LossAtlasError):
    """A plugin failed to load, is unknown, or broke its contract."""


class DataError(LossAtlasError):
    """A data set or checkpoint file is missing, unreadable or of the wrong format."""


class ShapeError(LossAtlasError):
    """A model, a data set and a subspace do not fit together."""


class StoreError(LossAtlasError):
    """A Zarr store is missing, foreign, corrupted, read-only or holds a different run."""


class MissingStepError(StoreError):
    """A step needs the result of a step that the store does not hold (left out by
    ``--step``/``steps=``). ``context``: ``step`` (the one that needs it), ``needed``,
    ``ref`` (the reference), ``run``, ``store``, ``steps`` (the steps chosen)."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGTERM or SIGHUP: handled as Ctrl-C is (status ``interrupted``,
    resumable); the CLI exits with 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = int(signum)
        try:
            self.signame = signal.Signals(signum).name
        except ValueError:
            self.signame = f"signal {signum}"
        super().__init__(f"stopped by {self.signame}")
