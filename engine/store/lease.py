"""The run lease: one process at a time runs a run, and everyone can see who.

A lease is a small JSON file beside the store (``.STORE.lossatlas/leases/RUN.lease``)
naming the holder (pid, host, start, command) and a heartbeat the holder refreshes
every few seconds, and the holder keeps an ``flock`` on that file for as long as it
runs. So:

- on the same host, a holder that died (SIGKILL, a crash, a reboot) is known at once:
  its flock went with it;
- on another host (a store on a shared file system), a holder whose heartbeat is older
  than ``stale_after`` seconds is taken to be gone;
- either way the lease is taken over with a notice naming the old holder; a live holder
  makes :meth:`RunLease.acquire` raise :class:`LeaseHeld` (or wait, with ``wait``).

If the holder finds that its lease was taken over (it was stopped, e.g. SIGSTOP, for
longer than ``stale_after``), :meth:`RunLease.check` raises, so two processes never
write the same run for long.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError

if TYPE_CHECKING:
    from .layout import Store

__all__ = ["HEARTBEAT_S", "STALE_AFTER_S", "LeaseHeld", "LeaseInfo", "RunLease", "lease_state"]

#: Seconds between heartbeats.
HEARTBEAT_S = 5.0
#: A heartbeat older than this (seconds) marks the lease of a holder on another host stale.
STALE_AFTER_S = 60.0


def _now_iso(t: float | None = None) -> str:
    return _dt.datetime.fromtimestamp(t or time.time(), _dt.UTC).isoformat(timespec="seconds")


@dataclass
class LeaseInfo:
    """Who holds a run: process id, host, start and last heartbeat (UNIX seconds)."""

    pid: int
    host: str
    started: float
    heartbeat: float
    command: str = ""
    token: str = ""

    def describe(self) -> str:
        ago = max(0.0, time.time() - self.heartbeat)
        return (
            f"pid {self.pid} on host {self.host} since {_now_iso(self.started)} "
            f"(last heartbeat {ago:.0f} s ago)"
        )


class LeaseHeld(StoreError):
    """The run is held by a live process."""

    def __init__(self, message: str, holder: LeaseInfo) -> None:
        super().__init__(message)
        self.holder = holder


def _read(path: Path) -> LeaseInfo | None:
    try:
        data = json.loads(path.read_text())
        return LeaseInfo(**{k: data[k] for k in LeaseInfo.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_state(
    store: Store, run: str, stale_after: float = STALE_AFTER_S
) -> tuple[str, LeaseInfo | None]:
    """``("live", holder)``, ``("stale", last holder)`` or ``("none", None)`` for ``run``,
    without taking anything (for ``inspect`` and ``rm``)."""
    path = store.sidecar / "leases" / f"{run}.lease"
    info = _read(path)
    if info is None:
        return "none", None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return "none", None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return "live", info  # a process holds the flock
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    if info.host == socket.gethostname():
        # Nobody holds the flock: the holder on this host is gone.
        return "stale", info
    fresh = time.time() - info.heartbeat < stale_after
    return ("live" if fresh else "stale"), info


class RunLease:
    """The lease of ``run`` in ``store`` for this process (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        run: str,
        *,
        heartbeat: float = HEARTBEAT_S,
        stale_after: float = STALE_AFTER_S,
    ) -> None:
        self.store = store
        self.run = run
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.path = store.sidecar / "leases" / f"{run}.lease"
        self.info: LeaseInfo | None = None
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None

    # ------------------------------------------------------------- taking

    def acquire(
        self,
        wait: bool = False,
        notice: Callable[[str], None] | None = None,
        poll: float = 1.0,
    ) -> RunLease:
        """Take the lease, or raise :class:`LeaseHeld` naming its live holder (with
        ``wait``, poll until it is free, telling ``notice`` once)."""
        said = False
        while True:
            try:
                self._try(notice)
                return self
            except LeaseHeld as exc:
                if not wait:
                    raise
                if notice is not None and not said:
                    notice(f"waiting for run '{self.run}': it is held by {exc.holder.describe()}")
                    said = True
                time.sleep(poll)

    def _try(self, notice: Callable[[str], None] | None) -> None:
        with self.store.lock():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = _read(self.path) or LeaseInfo(0, "?", 0.0, 0.0)
                fresh = time.time() - holder.heartbeat < self.stale_after
                if fresh:
                    raise LeaseHeld(self._held_message(holder), holder) from None
                # Alive (it holds the flock) but silent for too long: stopped or hung.
                # Take over; it finds out at its next check and stops.
                fd = os.open(self.path, os.O_RDWR)
                self._took_over(holder, "its heartbeat is stale", notice)
                self._write(fd)
                return
            old = _read(self.path)
            if old is not None and old.host != socket.gethostname():
                if time.time() - old.heartbeat < self.stale_after:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                    raise LeaseHeld(self._held_message(old), old)
                self._took_over(old, "its heartbeat is stale", notice)
            elif old is not None:
                self._took_over(old, "it is no longer running", notice)
            self._write(fd)

    def _held_message(self, holder: LeaseInfo) -> str:
        return (
            f"run '{self.run}' in '{self.store.path}' is being run by {holder.describe()}; "
            "wait for it to finish (--wait waits), or give this run another --name"
        )

    def _took_over(self, old: LeaseInfo, why: str, notice: Callable[[str], None] | None) -> None:
        if notice is not None:
            notice(
                f"took over run '{self.run}' from pid {old.pid} on host {old.host} ({why}; "
                f"last heartbeat {_now_iso(old.heartbeat)})"
            )

    def _write(self, fd: int) -> None:
        now = time.time()
        self.info = LeaseInfo(
            pid=os.getpid(),
            host=socket.gethostname(),
            started=now,
            heartbeat=now,
            command=" ".join(sys.argv)[:500],
            token=os.urandom(8).hex(),
        )
        self._fd = fd
        self._dump()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="lossatlas-lease", daemon=True)
        self._thread.start()

    def _dump(self) -> None:
        assert self.info is not None and self._fd is not None
        # Overwritten in place (the flock is on this inode, so no rename); a reader that
        # catches it half-written sees no lease for a moment and looks again.
        data = json.dumps(asdict(self.info)).encode()
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, data)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            current = _read(self.path)
            if self.info is None:
                return
            if current is not None and current.token and current.token != self.info.token:
                self.lost = (
                    f"run '{self.run}' was taken over by pid {current.pid} on host "
                    f"{current.host} while this process did not answer; stopping"
                )
                return
            self.info.heartbeat = time.time()
            with contextlib.suppress(OSError):
                self._dump()

    def check(self) -> None:
        """Raise :class:`StoreError` if another process took this lease over."""
        if self.lost:
            raise StoreError(self.lost)

    # ------------------------------------------------------------ releasing

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._fd is None:
            return
        # Under the store lock, as acquiring is: nobody opens the file between its
        # removal and the end of the flock.
        with self.store.lock():
            try:
                current = _read(self.path)
                ours = self.info is not None and current is not None
                if ours and current.token == self.info.token:  # type: ignore[union-attr]
                    self.path.unlink(missing_ok=True)
                for folder in (self.path.parent, self.path.parent.parent):
                    with contextlib.suppress(OSError):
                        folder.rmdir()  # only if empty
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> RunLease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
