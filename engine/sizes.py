"""Sizes checked before anything is allocated: each step's estimate against the limits.

A probe's :meth:`~lossatlas.engine.Probe.estimate` says from its options what a step
will cost (cells, loss evaluations, HVPs, bytes in the store, memory per cell). The
runner compares each estimate with :class:`Limits` — by default the machine's available
memory and the free disk space where the store lives — before the store is created, and
refuses a step over either with the estimate and the options that drive it. A probe
without an estimate is checked once its plan is known, before its template is written.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .components import Estimate, Plan, human_bytes
from .errors import ConfigError

__all__ = ["Limits", "check_estimate", "parse_size", "plan_bytes"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(text: str, what: str = "size") -> int:
    """``"4GB"``, ``"512MiB"``, ``"1e9"`` → bytes; ConfigError for anything else."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigError(
            f"{what}: {text!r} is not a size; write a number of bytes with an optional "
            "unit, e.g. 512MiB, 4GB, 2TiB"
        )
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value <= 0:
        raise ConfigError(f"{what}: must be positive, got {text!r}")
    return int(value)


def available_memory() -> int | None:
    """Memory available to new allocations (Linux MemAvailable; None if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def free_disk(path: str | Path) -> int | None:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


@dataclass
class Limits:
    """The most memory one cell may need and the most a result may take in the store.

    None means unchecked. :meth:`machine` takes them from the machine: the memory
    available now and the free disk space where the store lives.
    """

    memory: int | None = None
    store: int | None = None
    #: where the defaults came from, for the refusal message
    memory_source: str = "--max-memory"
    store_source: str = "--max-store"

    @classmethod
    def machine(
        cls, store_path: str | Path, memory: int | None = None, store: int | None = None
    ) -> Limits:
        mem_src, store_src = "--max-memory", "--max-store"
        if memory is None:
            memory, mem_src = available_memory(), "the memory available now"
        if store is None:
            store, store_src = free_disk(store_path), f"the free disk space at '{store_path}'"
        return cls(memory, store, mem_src, store_src)


def plan_bytes(plan: Plan) -> int:
    """Bytes of a plan's variables in the store (uncompressed)."""
    import numpy as np

    total = 0
    for var in plan.variables.values():
        n = 1
        for d in var.dims:
            n *= len(plan.coords[d])
        total += n * np.dtype(var.dtype).itemsize
    cells = 1
    for d in plan.cell_dims:
        cells *= len(plan.coords[d])
    return total + cells


def check_estimate(step: str, estimate: Estimate | Any, limits: Limits) -> None:
    """Refuse a step whose estimate is over a limit, saying what to change."""
    drivers = ", ".join(f"'{d}'" for d in estimate.drivers)
    lower = f"lower {drivers}" if drivers else "make the step smaller"
    if limits.store is not None and estimate.store_bytes > limits.store:
        raise ConfigError(
            f"step '{step}': its result would take {human_bytes(estimate.store_bytes)} in "
            f"the store ({estimate.describe()}), more than {human_bytes(limits.store)} "
            f"({limits.store_source}); {lower}, or raise the limit with --max-store SIZE"
        )
    if (
        limits.memory is not None
        and estimate.cell_bytes is not None
        and estimate.cell_bytes > limits.memory
    ):
        raise ConfigError(
            f"step '{step}': one cell would need about {human_bytes(estimate.cell_bytes)} "
            f"of memory ({estimate.describe()}), more than {human_bytes(limits.memory)} "
            f"({limits.memory_source}); {lower}, or raise the limit with --max-memory SIZE"
        )
