"""``lossatlas verify``: read every chunk back and check the statuses against the data.

For every step of every run (or of the runs asked for):

- every array is read in full; an array that fails (a crc32c checksum that does not
  match, a chunk that does not decompress) is read again cell by cell to name the
  damaged cells;
- every cell marked done (status 1) must hold finite values in each variable the
  probe declared finite (status 2 says some are NaN/inf; status 0 says not run).

:func:`repair` marks the damaged and inconsistent cells not run (their chunks
rewritten with the fill value, their status 0) and the step ``partial``, so that
``lossatlas run`` recomputes exactly them and then the step's summary.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cells import array_dims, cell_region, unit_rows, unit_start
from .layout import STATUS_DONE, STATUS_PENDING, STATUS_VAR, Store, _fill

__all__ = ["Problem", "repair", "verify"]


@dataclass
class Problem:
    """One damaged or inconsistent thing in a store."""

    run: str
    step: str
    what: str  # "cell", "array", "step"
    detail: str
    cell: tuple[int, ...] | None = None
    coords: dict[str, Any] = field(default_factory=dict)
    array: str = ""
    repairable: bool = True

    def describe(self) -> str:
        where = f"{self.run}/{self.step}"
        if self.cell is not None:
            at = ", ".join(f"{d}={v}" for d, v in self.coords.items()) or "the only cell"
            return f"{where}: cell {at}: {self.detail}"
        if self.array:
            return f"{where}: array '{self.array}': {self.detail}"
        return f"{where}: {self.detail}"


def verify(store: Store, runs: list[str] | None = None) -> tuple[list[Problem], int]:
    """All problems in ``store`` (only ``runs`` if given) and the number of steps read."""
    problems: list[Problem] = []
    checked = 0
    for run in runs or store.runs():
        for step in store.steps(run):
            checked += 1
            problems += _verify_step(store, run, step)
    return problems, checked


def _verify_step(store: Store, run: str, step: str) -> list[Problem]:
    g = store.step_group(run, step)
    if g is None or not g.attrs.get("template_complete"):
        return []  # an incomplete template is rewritten on resume
    out: list[Problem] = []
    cell_dims = tuple(g.attrs.get("cell_dims", ()))
    summary = set(g.attrs.get("summary_vars", []))
    coords = {}
    for d in cell_dims:
        try:
            coords[d] = np.asarray(g[d][...])
        except Exception as exc:
            out.append(Problem(run, step, "array", _why(exc), array=d, repairable=False))
    try:
        status = np.asarray(g[STATUS_VAR][...])
        status_ok = True
    except Exception:
        status_ok = False
        status = np.zeros(tuple(len(coords.get(d, ())) for d in cell_dims), dtype="uint8")
    bad: dict[tuple[int, ...], str] = {}
    if not status_ok:
        for idx in _cells(status.shape):
            try:
                status[idx] = g[STATUS_VAR][idx] if idx else g[STATUS_VAR][...]
            except Exception as exc:
                bad[idx] = f"its status is unreadable ({_why(exc)})"
                status[idx] = STATUS_PENDING
    for name, arr in g.arrays():
        if name == STATUS_VAR or name in cell_dims:
            continue
        dims = array_dims(arr)
        per_cell = all(d in dims for d in cell_dims) and "finite" in arr.attrs
        try:
            values = np.asarray(arr[...])
        except Exception as exc:
            if not per_cell:
                out.append(
                    Problem(
                        run,
                        step,
                        "array",
                        _why(exc),
                        array=name,
                        repairable=name in summary,
                    )
                )
                continue
            for idx in _cells(status.shape):
                region = cell_region(dims, cell_dims, idx)
                try:
                    arr[region]
                except Exception as exc2:
                    bad.setdefault(idx, f"'{name}' is unreadable ({_why(exc2)})")
            continue
        if not per_cell or not int(arr.attrs.get("finite", 1)) or values.dtype.kind != "f":
            continue
        finite = np.isfinite(values)
        other = tuple(i for i, d in enumerate(dims) if d not in cell_dims)
        per = finite.all(axis=other) if other else finite  # per cell, in the array's order
        kept = [d for d in dims if d in cell_dims]
        if kept:
            per = np.transpose(per, [kept.index(d) for d in cell_dims])
        wrong = np.atleast_1d((status == STATUS_DONE) & ~per)
        if not cell_dims:
            if bool(wrong[0]):
                bad.setdefault((), f"marked done but '{name}' holds NaN/inf (never written?)")
            continue
        for idx in zip(*np.nonzero(wrong), strict=False):
            key = tuple(int(i) for i in idx)
            bad.setdefault(key, f"marked done but '{name}' holds NaN/inf (never written?)")
    for idx, why in sorted(bad.items()):
        cell_coords = {
            d: _plain(coords[d][i]) if d in coords else i
            for d, i in zip(cell_dims, idx, strict=False)
        }
        out.append(Problem(run, step, "cell", why, cell=idx, coords=cell_coords))
    return out


def repair(store: Store, problems: list[Problem]) -> tuple[int, list[Problem]]:
    """Mark the cells of ``problems`` not run and their steps ``partial``; drop damaged
    summary arrays (``finalize`` writes them again). Return the number of cells marked
    and the problems that cannot be repaired (coordinates or static arrays: remove the
    step with ``lossatlas rm`` and run again)."""
    marked = 0
    unrepairable = [p for p in problems if not p.repairable]
    touched: set[tuple[str, str]] = set()
    done_units: set[tuple[str, str, tuple[int, ...]]] = set()
    for p in problems:
        if not p.repairable:
            continue
        g = store.open_arrays(p.run, p.step)
        touched.add((p.run, p.step))
        if p.cell is None:
            if p.array:
                with store.lock():
                    import shutil

                    shutil.rmtree(store.path / p.run / p.step / p.array, ignore_errors=True)
            continue
        cell_dims = tuple(g.attrs.get("cell_dims", ()))
        # A chunk may hold several cells of the last cell dim (one unit of work): the
        # whole unit is rewritten with the fill value (a whole chunk: a damaged chunk is
        # never read back) and marked not run; it is recomputed as one.
        rows = unit_rows(g[STATUS_VAR], cell_dims)
        unit = unit_start(p.cell, rows)
        key = (p.run, p.step, unit)
        marked += 1
        if key in done_units:
            continue
        done_units.add(key)
        n_last = int(g[STATUS_VAR].shape[-1]) if cell_dims else 1
        stop = min(n_last, unit[-1] + rows) if cell_dims else 0
        for name, arr in g.arrays():
            dims = array_dims(arr)
            if name == STATUS_VAR or not all(d in dims for d in cell_dims):
                continue
            if "finite" not in arr.attrs:
                continue
            region = cell_region(dims, cell_dims, unit, stop)
            shape = tuple(
                (stop - unit[-1]) if cell_dims and d == cell_dims[-1] else arr.shape[k]
                for k, d in enumerate(dims)
                if d not in cell_dims or d == cell_dims[-1]
            )
            fill = _fill(str(arr.dtype))
            arr[region] = np.full(shape, fill if fill is not None else 0, dtype=arr.dtype)
        if cell_dims:
            g[STATUS_VAR][(*unit[:-1], slice(unit[-1], stop))] = STATUS_PENDING
        else:
            g[STATUS_VAR][...] = STATUS_PENDING
    for run, step in sorted(touched):
        g = store.step_group(run, step)
        summary = list(g.attrs.get("summary_vars", [])) if g is not None else []
        if summary:  # finalize writes them again once the cells are back
            import shutil

            with store.lock():
                for name in summary:
                    shutil.rmtree(store.path / run / step / name, ignore_errors=True)
        store.set_step_attrs(
            run, step, {"status": "partial", "summary_vars": [], "error": "repaired by verify"}
        )
        store.set_run_attrs(run, {"status": "partial"})
    return marked, unrepairable


def _cells(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    return [tuple(i) for i in itertools.product(*(range(n) for n in shape))] if shape else [()]


def _why(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:200]


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
