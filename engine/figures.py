"""The finish every probe's figure shares: labelled colour bars, readable log axes,
markers that stand out on any map, and labels that carry a quantity's units.

Probes (built-in and third-party) call these from their ``plot``; they import only
matplotlib, inside the functions, so importing this module costs nothing::

    from lossatlas.engine import figures

    cs = ax.contourf(A, B, Z, levels=levels, norm=norm)
    figures.colorbar(fig, cs, ax, figures.quantity(ds, "train_loss"))  # "train loss [nats]"
    figures.mark(ax, 0, 0, "centre", label="x*")
    figures.log_axis(ax, "y")                                          # 0.2, 0.5, 1, 2 ...

Units come from the stored result: a variable's UDUNITS ``units`` when it has one, the
free-text unit the store moved to its ``comment`` ("in units of ‖x‖"), and for a loss
the run's loss units (the step attr ``loss_units``: nats for cross-entropy).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.colorbar import Colorbar
    from matplotlib.figure import Figure

__all__ = [
    "MARKERS",
    "colorbar",
    "halo",
    "log_axis",
    "map_norm",
    "mark",
    "plain_number",
    "quantity",
    "units_of",
]

#: How each kind of point is marked: filled shapes with a contrasting edge, readable on
#: dark and light parts of a map and in a white legend box alike (colours from the
#: lossatlas palette: vermillion #D55E00, sky blue #56B4E9).
MARKERS: dict[str, dict[str, Any]] = {
    "centre": {"marker": "P", "ms": 12, "mfc": "white", "mec": "black", "mew": 1.2},
    "minimum": {"marker": "X", "ms": 11, "mfc": "#D55E00", "mec": "white", "mew": 1.0},
    "maximum": {"marker": "X", "ms": 11, "mfc": "#56B4E9", "mec": "black", "mew": 1.0},
    "start": {"marker": "s", "ms": 7, "mfc": "white", "mec": "black", "mew": 1.2},
    "end": {"marker": "*", "ms": 14, "mfc": "#D55E00", "mec": "black", "mew": 1.0},
    "model": {"marker": "o", "ms": 10, "mfc": "none", "mec": "white", "mew": 2.0},
    "point": {"marker": "o", "ms": 4, "mfc": "#D55E00", "mec": "black", "mew": 0.5},
}

MarkKind = Literal["centre", "minimum", "maximum", "start", "end", "model", "point"]

_IN_UNITS = re.compile(r"in units of ([^;]+)")


def units_of(ds: xr.Dataset, name: str) -> str:
    """The units of variable or coordinate ``name`` of ``ds`` as a reader wants them:
    "" for a pure number (UDUNITS "1", fraction, count), the UDUNITS string when it is
    one, the probe's own unit ("‖x‖", "loss / parameter²") kept in ``comment`` by the
    store — with "loss" spelled as the run's loss units (``loss_units``: "nats / parameter²")
    — and for a loss variable without its own unit, the run's loss units."""
    if name not in ds.variables:
        return ""
    attrs = ds[name].attrs
    units = str(attrs.get("units", "") or "").strip()
    if units and units != "1":
        return units
    loss_units = str(ds.attrs.get("loss_units", "") or "").strip()
    found = _IN_UNITS.search(str(attrs.get("comment", "") or ""))
    own = found.group(1).strip() if found else ""
    if own.startswith("the run's") or len(own) > 32:
        own = ""  # a sentence, not a unit (a metric's "the run's loss (nats for ...)")
    if own and loss_units:
        for word in ("loss units", "loss", "nats"):
            if own == word or own.startswith(f"{word} "):
                return loss_units + own[len(word) :]
    if own:
        return own
    text = str(name)
    if "loss" in text and "accuracy" not in text:
        return loss_units
    return ""


def quantity(ds: xr.Dataset, name: str, what: str | None = None) -> str:
    """``"train loss [nats]"``: ``what`` (default: the variable's ``long_name``, else its
    name in words) and its units (:func:`units_of`) in brackets when it has any."""
    if what is None:
        what = str(ds[name].attrs.get("long_name") or "") if name in ds.variables else ""
        what = what or str(name).replace("_", " ")
    units = units_of(ds, name)
    return f"{what} [{units}]" if units else what


def colorbar(
    fig: Figure, mappable: Any, ax: Axes | Sequence[Axes], label: str, **kwargs: Any
) -> Colorbar:
    """A colour bar for ``mappable`` beside ``ax``, labelled ``label`` (the quantity and
    its units, e.g. from :func:`quantity`); an empty label is refused, so no map
    ships with a colour bar nobody can read."""
    if not str(label).strip():
        raise ValueError("a colour bar needs a label: the quantity and its units")
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import NullFormatter

    kwargs.setdefault("shrink", 0.9)
    cb = fig.colorbar(mappable, ax=ax, **kwargs)
    cb.set_label(label)
    if isinstance(getattr(mappable, "norm", None), LogNorm):  # 0.2, 0.5, 1 — not 2×10⁻¹
        axis = cb.ax.yaxis if cb.orientation == "vertical" else cb.ax.xaxis
        axis.set_major_locator(_readable_log_locator())
        axis.set_major_formatter(_readable_log_formatter())
        axis.set_minor_formatter(NullFormatter())
    return cb


def map_norm(
    z: np.ndarray, log: bool = False, levels: int = 30, dynamic_range: float = 1e6
) -> tuple[Any, Any]:
    """(norm, levels) for a filled contour map of ``z``: linear (``levels`` levels), or
    logarithmic when ``log`` and every finite value is positive (levels spaced
    geometrically over at most ``dynamic_range``: values further below the top share
    the lowest colour, so a single near-zero minimum does not flatten the map). A map
    with non-positive values stays linear."""
    from matplotlib.colors import LogNorm

    finite = np.asarray(z, dtype=float)
    finite = finite[np.isfinite(finite)]
    if log and finite.size and finite.min() > 0 and finite.max() > finite.min():
        hi = float(finite.max())
        lo = max(float(finite.min()), hi / dynamic_range)
        return LogNorm(vmin=lo, vmax=hi, clip=True), np.geomspace(lo, hi, levels)
    return None, levels


def halo(width: float = 1.6, color: str = "black") -> list[Any]:
    """Path effects that outline a line (``path_effects=halo()``): a white trajectory
    stays visible on the bright end of a map, a dark one on the dark end."""
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=width + 1.6, foreground=color), patheffects.Normal()]


def mark(
    ax: Axes, x: Any, y: Any, kind: MarkKind = "point", label: str | None = None, **kwargs: Any
) -> Any:
    """Mark the point(s) (``x``, ``y``) as ``kind`` (:data:`MARKERS`: ``centre`` for x*,
    ``minimum``, ``maximum``, ``start``, ``end``, ``model``, ``point``), drawn above
    lines and maps; ``kwargs`` override the style. Returns the line."""
    style = {**MARKERS[kind], "ls": "none", "zorder": 6, **kwargs}
    (line,) = ax.plot(np.atleast_1d(x), np.atleast_1d(y), label=label, **style)
    return line


def plain_number(value: float, _pos: Any = None) -> str:
    """A tick label without scientific notation where a reader would not use it:
    ``0.2``, ``1.5``, ``30``, ``0.001``; ``1e-05`` / ``2e+06`` beyond (as ``10⁻⁵``-style
    mathtext for powers of ten)."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else ""
    mag = abs(value)
    if 1e-3 <= mag < 1e5:
        text = f"{value:.6g}"
        return text
    exponent = math.floor(math.log10(mag) + 1e-9)
    mantissa = value / 10**exponent
    if abs(mantissa - round(mantissa)) < 1e-6 and round(abs(mantissa)) == 1:
        sign = "-" if value < 0 else ""
        return f"${sign}10^{{{exponent}}}$"
    return f"${mantissa:.3g}\\times10^{{{exponent}}}$"


def _readable_log_locator() -> Any:
    from matplotlib.ticker import LogLocator, MaxNLocator

    class ReadableLogLocator(LogLocator):
        """Major ticks at 1, 2, 5 × 10^k when the axis spans under 2.5 decades, at
        1…9 × 10^k under half a decade, evenly spaced numbers when even those leave
        fewer than two ticks in view, and LogLocator's powers of ten beyond."""

        def tick_values(self, vmin: float, vmax: float) -> Any:
            lo, hi = sorted((float(vmin), float(vmax)))
            if not (lo > 0 and math.isfinite(lo) and math.isfinite(hi)):
                return super().tick_values(vmin, vmax)
            decades = math.log10(hi / lo)
            if decades >= 2.5:
                return super().tick_values(vmin, vmax)
            subs = (1.0, 2.0, 5.0) if decades >= 0.5 else tuple(np.arange(1.0, 10.0))
            first, last = math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1
            ticks = np.array([s * 10.0**k for k in range(first, last + 1) for s in subs])
            inside = ticks[(ticks >= lo * (1 - 1e-9)) & (ticks <= hi * (1 + 1e-9))]
            if inside.size >= 2:
                return ticks
            return MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)

    return ReadableLogLocator(base=10.0)


def _readable_log_formatter() -> Any:
    from matplotlib.ticker import Formatter

    class ReadableLogFormatter(Formatter):
        """Plain numbers (0.2, 1, 300) while the whole axis stays within 10⁻³…10⁵;
        powers of ten for every tick of an axis that goes beyond, so one axis never
        mixes 10000 with 10⁵."""

        def __call__(self, value: float, pos: Any = None) -> str:
            lo, hi = sorted(abs(v) for v in self.axis.get_view_interval())
            wide = lo < 1e-3 or hi >= 1e5
            if wide and value > 0 and math.isfinite(value):
                exponent = math.log10(value)
                if abs(exponent - round(exponent)) < 1e-9:
                    return f"$10^{{{round(exponent)}}}$"
            return plain_number(value)

    return ReadableLogFormatter()


def log_axis(ax: Axes, which: Literal["x", "y"] = "y") -> None:
    """A logarithmic ``which`` axis with readable ticks: 0.2, 0.5, 1, 2 on a short range
    (never 2×10⁻¹ or 1.96×10⁻¹), plain numbers or powers of ten (not both) on a long
    one; minor ticks unlabelled."""
    from matplotlib.ticker import LogLocator, NullFormatter

    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_locator(_readable_log_locator())
    axis.set_major_formatter(_readable_log_formatter())
    axis.set_minor_locator(LogLocator(base=10.0, subs=np.arange(2.0, 10.0), numticks=12))
    axis.set_minor_formatter(NullFormatter())
