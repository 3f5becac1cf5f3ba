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
    "PluginError",
    "RunInterrupted",
    "ShapeError",
    "StoreError",
]


class LossAtlasError(Exception):
    """Base class of every error lossatlas raises on purpose."""

    exit_code = 2


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
