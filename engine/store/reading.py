"""Reading a store for a person: refuse what is not a lossatlas store, name the runs and
steps there are when one asked for is missing, open one result ``RUN/STEP``.

The commands that only read (inspect, plot, report, export, rm, verify) and the Python
API ask here; the messages say what to give instead.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, StoreError
from ..options import suggest
from .layout import MARKER, Store

__all__ = ["check_run", "open_result", "results", "store_to_read"]


def store_to_read(store: str) -> Store:
    """The :class:`~lossatlas.engine.store.Store` at ``store`` for a command that only
    reads it (inspect, plot, report): a path that is not a lossatlas store is refused
    with what to give instead (the store's own checks speak of writing into it)."""
    import zarr

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


def check_run(st: Store, store: str, run_name: str) -> None:
    """Refuse a run the store does not hold, listing the runs it does."""
    runs = st.runs()
    if run_name not in runs:
        raise StoreError(
            f"store '{store}' has no run '{run_name}'{suggest(run_name, runs)}; "
            f"runs: {', '.join(runs) or 'none yet'}"
        )


def results(st: Store, run_name: str) -> list[str]:
    """The steps of ``run_name`` that have a result (``lossatlas inspect`` lists them)."""
    return [s for s in st.steps(run_name) if st.step_ready(run_name, s)]


def open_result(st: Store, store: str, group: str) -> Any:
    """The stored result ``RUN/STEP`` of ``st`` (lazily), or a clear error naming the
    results there are."""
    if "/" not in group:
        found = [f"{r}/{s}" for r in st.runs() for s in results(st, r)]
        raise ConfigError(
            f"group '{group}' must be RUN/STEP{suggest(group, found)}; results in "
            f"'{store}': {', '.join(found) or 'none yet'}"
        )
    run_name, step = group.split("/", 1)
    check_run(st, store, run_name)
    if not st.step_ready(run_name, step):
        ready = results(st, run_name)
        started = " (it has not started or its template is incomplete; resume the run)"
        raise StoreError(
            f"store '{store}' has no result for step '{step}' of run '{run_name}'"
            + (started if step in st.steps(run_name) else suggest(step, ready))
            + f"; steps of run '{run_name}' with results: {', '.join(ready) or 'none yet'}"
        )
    return st.open_step(run_name, step)
