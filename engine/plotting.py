"""Drawing stored results: the figure a probe makes, in a style, titled, saved.

What ``lossatlas plot``, ``lossatlas report`` and ``ds.atlas.plot`` share:

- :func:`plot_options` checks a probe's plot options (``-O KEY=VALUE``, keywords of
  ``ds.atlas.plot``) against its :attr:`Probe.PlotOptions` as config options are
  checked: an unknown key or a wrong type is a :class:`ConfigError` naming the probe.
- :func:`result_figure` draws one result, several of one probe (``plot_many``), the
  path comparison of several probes, or the 3-D surfaces of a result's maps. An
  exception raised inside a probe's ``plot`` names the probe and its plugin (as one
  raised inside its ``compute`` does), not lossatlas.
- :func:`title_figure` puts ``RUN/STEP`` above a figure, clear of its panels' titles.
- :func:`draw_results` does all of it to a file, inside the chosen style
  (:mod:`lossatlas.engine.style`), with a checked ``dpi``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

    from .registry import Registry

__all__ = [
    "DPI_RANGE",
    "IMAGE_SUFFIXES",
    "check_dpi",
    "check_output",
    "draw_results",
    "parse_option_pairs",
    "plot_options",
    "render_figure",
    "result_figure",
    "run_style",
    "svg_for_html",
    "title_figure",
]

#: Image formats ``lossatlas plot -o`` writes (by suffix).
IMAGE_SUFFIXES = (".png", ".svg", ".pdf", ".eps", ".jpg", ".jpeg")

#: The resolutions accepted for raster output: below 10 dpi nothing is legible; above
#: 1200 a figure of the probes' sizes passes a gigabyte of pixels.
DPI_RANGE = (10, 1200)


# ------------------------------------------------------------------- checks


def check_dpi(dpi: Any, where: str = "--dpi") -> int:
    """``dpi`` as an int in :data:`DPI_RANGE`, else a :class:`ConfigError`."""
    lo, hi = DPI_RANGE
    if isinstance(dpi, bool) or not isinstance(dpi, int | float) or dpi != int(dpi):
        raise ConfigError(f"{where}: expected a whole number of dots per inch, got {dpi!r}")
    if not lo <= int(dpi) <= hi:
        raise ConfigError(
            f"{where}: {int(dpi)} dots per inch is outside {lo}..{hi}; 150 suits a screen, "
            "300-600 a printed page (or write .pdf/.svg, which do not depend on it)"
        )
    return int(dpi)


def check_output(output: str | Path) -> Path:
    """Refuse an image file name whose format or folder is wrong, before anything is
    drawn."""
    out = Path(output)
    suffix = out.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ConfigError(
            f"output '{output}': use a {', '.join(IMAGE_SUFFIXES[:-1])} or "
            f"{IMAGE_SUFFIXES[-1]} file name"
        )
    folder = out.resolve().parent
    if not folder.is_dir():
        raise ConfigError(f"output '{output}': folder '{folder}' does not exist; create it first")
    return out


# ------------------------------------------------------------- plot options


def parse_option_pairs(pairs: Sequence[str], where: str = "-O") -> dict[str, Any]:
    """``["metric=accuracy", "pair=1", "logy=true"]`` as ``{"metric": "accuracy", "pair":
    1, "logy": True}``: each value read as a TOML value (numbers, true/false, quoted
    strings, [lists]) and else taken as the text it is."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, raw = str(pair).partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(
                f"{where} {pair!r}: expected KEY=VALUE, e.g. -O metric=accuracy "
                "('lossatlas plugins PROBE' lists a probe's plot options)"
            )
        text = raw.strip()
        try:
            value = tomllib.loads(f"v = {text}")["v"] if text else ""
        except tomllib.TOMLDecodeError:
            value = text
        out[key] = value
    return out


def plot_options(probe: Any, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """``given`` checked against ``probe.PlotOptions`` (unknown keys and wrong types
    refused, defaults filled in), as the keyword arguments of its ``plot``."""
    from .options import parse_options

    cls = getattr(probe, "PlotOptions", None)
    if cls is None or not dataclasses.is_dataclass(cls):
        from .components import PlotOptions as cls  # a probe older than plot options
    parsed = parse_options(cls, dict(given or {}), f"plot options of probe '{probe.name}'")
    return {f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed) if f.init}


def _base_options(given: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    from .components import PlotOptions
    from .options import parse_options

    parsed = parse_options(PlotOptions, dict(given or {}), f"plot options of {what}")
    return dataclasses.asdict(parsed)


# ------------------------------------------------------------------ figures


def _where(registry: Registry, name: str, what: str) -> str:
    try:
        record = registry.provider("probe", name)
        plugin = f" (plugin {record.name}, {record.distribution} {record.version})"
    except Exception:
        plugin = ""
    return f"probe '{name}'{plugin}: {what}"


def _base_plot_many() -> Any:
    from .components import Probe

    return Probe.plot_many


def result_figure(
    results: Mapping[str, xr.Dataset],
    registry: Registry,
    options: Mapping[str, Any] | None = None,
    surface: bool = False,
) -> Figure:
    """The figure of ``results`` (``{label: loaded Dataset}``): one result with its
    probe's ``plot``; several of one probe with its ``plot_many``; steps of several
    probes holding paths as the path comparison (:func:`lossatlas.engine.plot_paths`);
    ``surface``: the 2-D maps of one result as 3-D surfaces. ``options`` are checked
    (:func:`plot_options`). A probe's exception carries which probe and plugin raised it
    (``lossatlas_where``, printed by the CLI)."""
    from .context import blame

    if not results:
        raise ConfigError("nothing to draw: give at least one RUN/STEP")
    probes = sorted({str(ds.attrs.get("probe", "?")) for ds in results.values()})
    if surface:
        if len(results) > 1:
            raise ConfigError("--surface draws the 2-D maps of one step; give one RUN/STEP")
        from .maps import plot_surfaces

        opts = _base_options(options, "--surface")
        return plot_surfaces(next(iter(results.values())), logz=bool(opts["logy"]))
    probe = registry.get("probe", probes[0])
    if len(results) == 1:
        opts = plot_options(probe, options)
        with blame(_where(registry, probe.name, "plot")):
            return probe.plot(next(iter(results.values())), **opts)
    if len(probes) == 1 and type(probe).plot_many is not _base_plot_many():
        opts = plot_options(probe, options)
        with blame(_where(registry, probe.name, "plot_many")):
            return probe.plot_many(dict(results), **opts)
    return _compare_paths(registry, results, probes, options)


def _compare_paths(
    registry: Registry,
    results: Mapping[str, xr.Dataset],
    probes: list[str],
    options: Mapping[str, Any] | None,
) -> Figure:
    """The path comparison of several steps (:mod:`lossatlas.engine.paths`): every
    step's probe must declare the paths its result holds."""
    from .context import blame
    from .paths import plot_paths

    opts = _base_options(options, "the path comparison")
    groups = list(results)
    one_run = len({g.split("/")[0] for g in groups}) == 1
    paths = {}
    for group, ds in results.items():
        name = str(ds.attrs.get("probe", "?"))
        with blame(_where(registry, name, "paths")):
            found = registry.get("probe", name).paths(ds)
        if not found:
            what = (
                f"are results of different probes ({', '.join(probes)})"
                if len(probes) > 1
                else f"are results of probe '{probes[0]}', which draws one result at a time"
            )
            raise ConfigError(
                f"groups {', '.join(groups)} {what}; such steps go on one figure only as a "
                f"comparison of paths, and '{group}' (probe '{name}') holds no path between "
                "two points; plot the steps one by one"
            )
        paths[group.split("/", 1)[1] if one_run and "/" in group else group] = found
    units = {str(ds.attrs.get("loss_units", "")) for ds in results.values()}
    unit = units.pop() if len(units) == 1 else ""
    return plot_paths(paths, logy=bool(opts["logy"]), loss_units=unit)


def title_figure(fig: Figure, title: str) -> None:
    """Put ``title`` (the RUN/STEP a figure shows) above ``fig``, before any title the
    probe gave it (``"RUN/STEP — probe's title"``), wrapped to the figure's width and
    placed above everything the figure holds, so it never covers a panel's title."""
    own = fig._suptitle.get_text() if fig._suptitle is not None else ""
    text = f"{title} — {own}" if own and title else (title or own)
    if not text:
        return
    if fig._suptitle is not None:
        fig._suptitle.set_visible(False)
    renderer = _renderer(fig)
    top = fig.get_tightbbox(renderer).y1 / fig.get_figheight() if renderer else 1.0
    fig.suptitle(text, y=max(top, 0.98) + 0.01, va="bottom", wrap=True)
    fig._suptitle.set_visible(True)


def remove_titles(fig: Figure) -> None:
    """Remove the figure-level title a probe gave (``--no-title``: a paper's caption
    says it); panel titles stay."""
    if fig._suptitle is not None:
        fig._suptitle.remove()
        fig._suptitle = None


def _renderer(fig: Figure) -> Any:
    canvas = fig.canvas
    get = getattr(canvas, "get_renderer", None)
    if callable(get):
        return get()
    getter = getattr(fig, "_get_renderer", None)
    return getter() if callable(getter) else None


def render_figure(fig: Figure, fmt: str, dpi: int) -> bytes:
    """``fig`` saved to bytes as ``fmt`` (png, svg, pdf ...) at ``dpi``."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


# ------------------------------------------------------------------- styles


def run_style(ds: xr.Dataset) -> str | None:
    """The ``style`` of the run config a stored result was made with (None: none set).
    A style file that is no longer there is a :class:`ConfigError` saying to give
    ``--style``."""
    from .style import check_style

    raw = ds.attrs.get("config")
    try:
        config = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    except (TypeError, ValueError):
        return None
    spec = config.get("style") if isinstance(config, dict) else None
    if not spec:
        return None
    try:
        return check_style(str(spec), "the run's style")
    except ConfigError as exc:
        raise ConfigError(f"{exc} (the config's 'style' key; give --style to override)") from None


# --------------------------------------------------------------------- draw


def _partial_label(group: str, ds: xr.Dataset, warn: Callable[[str], None] | None) -> str:
    from .store import STATUS_VAR
    from .store.cells import cell_counts

    if ds.attrs.get("status") == "complete" or STATUS_VAR not in ds:
        return group
    counts = cell_counts(ds[STATUS_VAR])
    done, total = counts.done, counts.total
    run_name, _, step = group.partition("/")
    if warn is not None:
        warn(
            f"step '{step}' of run '{run_name}' is partial ({done}/{total} cells done); "
            "the plot shows what exists"
        )
    return f"{group} (partial: {done}/{total} cells)"


def draw_results(
    results: Mapping[str, xr.Dataset],
    output: str | Path,
    *,
    registry: Registry,
    options: Mapping[str, Any] | None = None,
    logy: bool = False,
    surface: bool = False,
    dpi: int = 150,
    style: str | None = None,
    title: bool = True,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Draw ``results`` (``{"RUN/STEP": Dataset}``, opened lazily) to ``output``.

    ``options``: plot options (:func:`plot_options`; ``logy`` sets ``logy = true``);
    ``style``: a style name or file (default: the run config's ``style``, else
    lossatlas's); ``title``: put RUN/STEP above the figure (False: no figure title at
    all, the probe's included); ``warn`` receives a line per partial step. ``output``
    is a name :func:`check_output` accepts: :func:`lossatlas.engine.drawing.draw`
    checks it before it opens the store."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .style import check_style, use_style

    out = Path(output)
    dpi = check_dpi(dpi)
    if style is not None:
        style = check_style(style)
    opts = dict(options or {})
    if logy:
        opts["logy"] = True
    labels = [_partial_label(g, ds, warn) for g, ds in results.items()]
    loaded = {g: ds.load() for g, ds in results.items()}
    if style is None:
        styles = {run_style(ds) for ds in loaded.values()}
        style = styles.pop() if len(styles) == 1 else None
    with use_style(style):
        fig = result_figure(loaded, registry, opts, surface=surface)
        try:
            if title:
                title_figure(fig, ", ".join(labels))
            else:
                remove_titles(fig)
            fig.savefig(out, dpi=dpi, bbox_inches="tight")
        finally:
            plt.close(fig)
    return out


def svg_for_html(svg: bytes, prefix: str) -> str:
    """A matplotlib SVG made fit to sit inline in an HTML page beside others: the XML
    prolog, DOCTYPE and RDF metadata dropped, every ``id`` and reference to one
    (``url(#…)``, ``href="#…"``) prefixed with ``prefix``, so two figures never share
    an id."""
    text = svg.decode("utf-8")
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, count=1, flags=re.DOTALL)
    ids = set(re.findall(r'\bid="([^"]+)"', text))

    def rename(m: re.Match[str]) -> str:
        name = m.group(2)
        return f"{m.group(1)}{prefix}{name}" if name in ids else m.group(0)

    text = re.sub(r'(\bid=")([^"]+)', rename, text)
    text = re.sub(r"(url\(#)([^)]+)", rename, text)
    text = re.sub(r'((?:xlink:)?href="#)([^"]+)', rename, text)
    return text
