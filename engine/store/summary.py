"""What a store holds, as plain data: what ``lossatlas inspect`` (and ``--json``) shows.

A run's ``state`` tells apart what its stored ``status`` alone cannot:

- ``running``: a live process holds its lease (pid, host and heartbeat are given);
- ``stale``: its status says running but no live process holds it (killed with
  SIGKILL, a crash, a lost node): the same ``lossatlas run`` resumes it;
- ``interrupted`` / ``failed``: it stopped and said why (resumable);
- ``complete`` / ``partial``: it finished (``partial``: some step is not complete).
"""

from __future__ import annotations

import json
from typing import Any

from .cells import cell_counts
from .layout import STATUS_VAR, Store
from .lease import lease_state

__all__ = ["store_summary"]


def _run_state(status: str, lease: str) -> str:
    if lease == "live":
        return "running"
    if status == "running":
        return "stale"
    return status


def store_summary(store: Store, runs: list[str] | None = None) -> list[dict[str, Any]]:
    """One dict per run: name, status, state, lease, times, provenance, steps."""
    out = []
    for run in runs if runs is not None else store.runs():
        attrs = store.run_attrs(run)
        try:
            prov = json.loads(attrs.get("provenance", "{}"))
        except ValueError:
            prov = {}
        lease, holder = lease_state(store, run)
        status = str(attrs.get("status", "?"))
        entry: dict[str, Any] = {
            "run": run,
            "status": status,
            "state": _run_state(status, lease),
            "lease": None
            if holder is None
            else {
                "state": lease,
                "pid": holder.pid,
                "host": holder.host,
                "started": holder.started,
                "heartbeat": holder.heartbeat,
                "description": holder.describe(),
            },
            **{
                k: attrs.get(k)
                for k in ("started", "resumed", "finished", "stopped", "error", "config_source")
                if attrs.get(k) not in (None, "")
            },
            "provenance": prov,
            "steps": [],
        }
        for step in store.steps(run):
            entry["steps"].append(_step_summary(store, run, step))
        out.append(entry)
    return out


def _step_summary(store: Store, run: str, step: str) -> dict[str, Any]:
    g = store.step_group(run, step)
    if g is None or not g.attrs.get("template_complete"):
        return {"step": step, "status": "template incomplete", "template_complete": False}
    attrs = dict(g.attrs)
    try:
        status = store.cell_status(run, step)
        cells = {
            "done": cell_counts(status).done,
            "total": int(status.size),
            "nonfinite": cell_counts(status).nonfinite,
        }
    except Exception as exc:  # a damaged status: say so, keep going
        cells = {"error": f"{type(exc).__name__}: {exc}"}
    dims: dict[str, int] = {}
    variables = []
    for name, arr in g.arrays():
        names = getattr(arr.metadata, "dimension_names", None) or ()
        for d, n in zip(names, arr.shape, strict=False):
            dims[str(d)] = int(n)
        if name != STATUS_VAR and name not in dims and name not in attrs.get("cell_dims", []):
            variables.append(name)
    coords = [d for d in dims if d in {n for n, _ in g.arrays()}]
    variables = sorted(v for v in variables if v not in coords)
    return {
        "step": step,
        "probe": attrs.get("probe"),
        "status": attrs.get("status"),
        "template_complete": True,
        "cells": cells,
        "dims": dims,
        "variables": variables,
        **{k: attrs.get(k) for k in ("error", "started", "finished") if attrs.get(k)},
        "plugins": {
            k: attrs[k] for k in ("probe_plugin", "model_plugin", "dataset_plugin") if k in attrs
        },
    }
