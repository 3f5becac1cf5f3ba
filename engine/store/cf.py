"""CF-1.11 metadata for stored results: ``long_name`` and UDUNITS ``units`` everywhere.

The store applies these rules to every variable and coordinate it writes (a probe's
planned variables, static arrays, coordinates, the summary ``finalize`` returns), so a
probe may keep describing its variables in words: ``units`` becomes a UDUNITS string
("1" for a dimensionless number, which every loss, accuracy, norm ratio, count and
index here is), and a free-text unit a probe gave ("nats (cross-entropy) or mean
squared error", "‖x‖") moves to ``comment`` instead of being lost. ``long_name`` is the
probe's own if it gave one, else the variable's name in words (``train_loss`` →
"train loss"), so xarray's ``.plot()`` labels an axis "train loss [1]".
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONVENTIONS", "UDUNITS", "cf_attrs", "long_name_of"]

CONVENTIONS = "CF-1.11"

#: Units kept as they are: UDUNITS names a probe may use for dimensional quantities.
UDUNITS = frozenset(
    {"1", "s", "second", "seconds", "byte", "bytes", "B", "rad", "radian", "degree", "percent"}
)


def long_name_of(name: str) -> str:
    """``train_loss`` → ``train loss`` (the default ``long_name``)."""
    return str(name).replace("_", " ").strip() or str(name)


def cf_attrs(name: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` of the variable or coordinate ``name`` with CF ``long_name`` and
    ``units`` (UDUNITS; a free-text unit moved to ``comment``). Other attrs are kept."""
    out = dict(attrs)
    units = out.get("units")
    text = "" if units is None else str(units).strip()
    if text not in UDUNITS:
        out["units"] = "1"
        if text and text.lower() not in ("fraction", "count", "index", "dimensionless"):
            note = f"in units of {text}"
            comment = str(out.get("comment") or "")
            if note not in comment:
                out["comment"] = f"{comment}; {note}" if comment else note
    if not str(out.get("long_name") or "").strip():
        out["long_name"] = long_name_of(name)
    return out
