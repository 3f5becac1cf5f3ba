"""The store: the one place that knows where results live and what state they are in.

- :mod:`.layout` — :class:`Store`: the Zarr layout (runs, steps, templates, summaries),
  the cell statuses, scratch space per cell, removal;
- :mod:`.lease` — :class:`RunLease`: one process at a time per run, with a heartbeat;
- :mod:`.verify` — reading every chunk back, statuses against data, repair;
- :mod:`.export` — a step as netCDF or CSV (one table of formats, :data:`EXPORTERS`);
- :mod:`.cf` — CF-1.11 ``long_name``/``units`` rules.

Runner, CLI, report and accessor ask the store; nothing else reads Zarr itself.
"""

from __future__ import annotations

import os  # noqa: F401  (tests patch lossatlas.engine.store.os.access)

from .cf import CONVENTIONS, cf_attrs
from .layout import (
    MARKER,
    STATUS_DONE,
    STATUS_NONFINITE,
    STATUS_PENDING,
    STATUS_VAR,
    Store,
)
from .lease import LeaseHeld, LeaseInfo, RunLease, lease_state

__all__ = [
    "CONVENTIONS",
    "MARKER",
    "STATUS_DONE",
    "STATUS_NONFINITE",
    "STATUS_PENDING",
    "STATUS_VAR",
    "LeaseHeld",
    "LeaseInfo",
    "RunLease",
    "Store",
    "cf_attrs",
    "lease_state",
]
