"""``lossatlas report``: one self-contained HTML page with every result of a store.

The page has a table of contents (a sticky side bar linking every run and step), an
overview table, and per run — newest first — a collapsible section with its status,
times (shown in the reader's own time zone), provenance and config, and per step a
collapsible section with its probe, completion (cells done / all, cells with NaN or
inf, trainings that diverged or had not converged; steps of the config with no result
yet are listed as "not started"), the probe's figure, the probe's own section
(:meth:`Probe.report_html <lossatlas.engine.Probe.report_html>`) and its variables.

Figures are inline SVG (vector, sharp at any zoom, text as paths); a figure whose SVG
would pass ``svg_limit`` bytes (a dense map) is a PNG at ``dpi`` instead, embedded as
a ``data:`` URI. There is no external CSS, script, font or image: the file opens in
any browser without a server, and can be mailed or archived as it is. A small inline
script shows times in the reader's zone, opens a collapsed section a link points into,
and offers "expand all"; without it the page still reads (UTC times, every link
works). All text from the store is HTML-escaped. A step whose figure fails to draw (or
a run whose attrs cannot be read) shows the error in place, naming the probe; the rest
of the report is unaffected, and :attr:`ReportSummary.failed` lists it (``lossatlas
report --strict`` exits 1 then).

Cost: one figure per step (the probe's ``plot`` on the stored Dataset, loaded into
memory), nothing recomputed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import lossatlas

from .errors import ConfigError, LossAtlasError, StoreError
from .html import check_fragment, esc
from .registry import Registry, make_registry
from .store import STATUS_VAR, Store
from .store.cells import CellCounts, cell_counts

__all__ = [
    "SVG_LIMIT",
    "ReportProgress",
    "ReportSummary",
    "build_report",
    "config_as_toml",
    "figure_html",
    "write_report",
]

#: Bytes of SVG beyond which a figure is embedded as a PNG instead (a dense map).
SVG_LIMIT = 1_500_000


class ReportProgress(Protocol):
    """What the report tells a progress display (the CLI passes a rich bar)."""

    def start(self, total: int) -> None:
        """``total`` figures will be drawn."""

    def advance(self, label: str) -> None:
        """The figure of ``label`` (RUN/STEP) is done."""

    def stop(self) -> None:
        """The report is written."""


@dataclass
class ReportSummary:
    """What went into a report: the runs (newest first), the figures drawn (``svg``
    of them inline SVG, the rest PNG) and what could not be drawn or read
    (``failed``: RUN/STEP of a figure, RUN of a run, ``RUN/STEP (probe section)``)."""

    runs: list[str] = field(default_factory=list)
    figures: int = 0
    svg: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass
class _Options:
    registry: Registry
    dpi: int
    plot_kwargs: dict[str, Any]
    style: str | None
    svg_limit: int
    summary: ReportSummary
    progress: ReportProgress | None
    counter: list[int] = field(default_factory=lambda: [0])


# ------------------------------------------------------------------ helpers


def _run_id(run: str) -> str:
    """The element id of a run's section (run names never hold ':')."""
    return f"run:{run}"


def _step_id(run: str, step: str) -> str:
    """The element id of a step's section: RUN/STEP, the name lossatlas plot takes."""
    return f"{run}/{step}"


def _href(element_id: str) -> str:
    return "#" + esc(element_id)


def _parse_time(value: Any) -> _dt.datetime | None:
    if not value:
        return None
    try:
        t = _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.UTC)


def _time(value: Any) -> str:
    """A ``<time>`` the page's script shows in the reader's zone (UTC without it)."""
    t = _parse_time(value)
    if t is None:
        return esc(value or "")
    utc = t.astimezone(_dt.UTC)
    return (
        f'<time datetime="{esc(utc.isoformat())}" title="{esc(utc.isoformat())}">'
        f"{esc(utc.strftime('%Y-%m-%d %H:%M UTC'))}</time>"
    )


def _duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return ""
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(round(s), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


TOP_ORDER = (
    "name",
    "description",
    "seed",
    "device",
    "dtype",
    "executor",
    "batch_size",
    "style",
    "executor_options",
    "model",
    "dataset",
    "steps",
)


def _ordered(table: dict[str, Any], first: Sequence[str]) -> dict[str, Any]:
    keys = [k for k in first if k in table] + [k for k in table if k not in first]
    return {k: table[k] for k in keys}


def config_as_toml(config: dict[str, Any]) -> str:
    """The stored config (JSON) written back as the TOML a user would type."""
    lines: list[str] = []
    config = _ordered(config, TOP_ORDER)
    tables = {k: v for k, v in config.items() if isinstance(v, dict)}
    steps = config.get("steps") if isinstance(config.get("steps"), list) else []
    for k, v in config.items():
        if k in tables or k == "steps" or v in ("", None):
            continue
        lines.append(f"{k} = {_toml_value(v)}")
    for name, table in tables.items():
        if not table:
            continue
        lines += ["", f"[{name}]"]
        lines += [f"{k} = {_toml_value(x)}" for k, x in _ordered(table, ("plugin",)).items()]
    for step in steps:
        step = _ordered(step, ("name", "probe"))
        lines += ["", "[[steps]]"]
        subtables = {
            k: x for k, x in step.items() if k in ("model", "dataset") and isinstance(x, dict)
        }
        lines += [f"{k} = {_toml_value(x)}" for k, x in step.items() if k not in subtables]
        for k, table in subtables.items():
            lines += [f"[steps.{k}]"] + [f"{a} = {_toml_value(b)}" for a, b in table.items()]
    return "\n".join(lines).strip() + "\n"


def _dl(items: Sequence[tuple[str, Any]], raw: Sequence[str] = ()) -> str:
    """A key/value table; values escaped, except those of the keys in ``raw`` (HTML
    this module wrote, such as a ``<time>``)."""
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{v if k in raw else esc(v)}</td></tr>"
        for k, v in items
        if v not in (None, "")
    )
    return f'<table class="kv">{rows}</table>'


def _facts(
    items: Sequence[tuple[str, Any]], raw: Sequence[str] = (), wide: Sequence[str] = ()
) -> str:
    """A step's facts as a grid of ``key value`` cells (two or three to a row on a wide
    page); the keys in ``wide`` take a whole row; values escaped except ``raw`` keys."""
    cells = "".join(
        f'<div class="fact{" wide" if k in wide else ""}"><span class="k">{esc(k)}</span> '
        f"<span>{v if k in raw else esc(v)}</span></div>"
        for k, v in items
        if v not in (None, "")
    )
    return f'<div class="facts">{cells}</div>'


def _badge(status: str) -> str:
    cls = {"complete": "ok", "running": "warn", "partial": "warn", "not started": "warn"}.get(
        status, "bad"
    )
    return f'<span class="badge {cls}">{esc(status)}</span>'


def _error_block(what: str, exc: BaseException) -> str:
    where = getattr(exc, "lossatlas_where", None)
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if where:
        what = f"{what}: {where} raised it (a bug in that plugin or its input)"
    return f'<div class="error"><strong>{esc(what)}</strong><pre>{esc(detail)}</pre></div>'


def figure_html(fig: Any, label: str, dpi: int, svg_limit: int, prefix: str) -> tuple[str, bool]:
    """(``<figure>`` holding ``fig`` as inline SVG, True), or as a PNG ``<img>`` at
    ``dpi`` when its SVG passes ``svg_limit`` bytes (False). ``prefix`` makes the SVG's
    ids unique in the page."""
    from .plotting import render_figure, svg_for_html

    svg = render_figure(fig, "svg", dpi)
    caption = f"figure of {label}"
    if len(svg) <= svg_limit:
        body = svg_for_html(svg, prefix).replace(
            "<svg ", f'<svg role="img" aria-label="{esc(caption)}" ', 1
        )
        return f'<figure class="fig">{body}</figure>', True
    png = base64.b64encode(render_figure(fig, "png", dpi)).decode("ascii")
    return (
        f'<figure class="fig"><img alt="{esc(caption)}" src="data:image/png;base64,{png}">'
        f'<figcaption class="muted">drawn as PNG at {dpi} dpi: its SVG would take '
        f"{len(svg) / 1e6:.1f} MB</figcaption></figure>"
    ), False


def _figure(ds: Any, label: str, o: _Options) -> str:
    """The probe's figure of ``ds`` in the run's style (or ``o.style``), as HTML."""
    import matplotlib.pyplot as plt

    from .plotting import result_figure, run_style
    from .style import use_style

    note = ""
    style = o.style
    if style is None:
        try:
            style = run_style(ds)
        except ConfigError as exc:
            note = f'<p class="warn">{esc(exc)}; drawn in the lossatlas style</p>'
    with use_style(style):
        fig = result_figure({label: ds.load()}, o.registry, o.plot_kwargs)
        try:
            o.counter[0] += 1
            html, is_svg = figure_html(fig, label, o.dpi, o.svg_limit, f"f{o.counter[0]}-")
        finally:
            plt.close(fig)
    o.summary.figures += 1
    o.summary.svg += int(is_svg)
    return note + html


def _probe_section(ds: Any, label: str, o: _Options) -> str:
    """The probe's own HTML (``Probe.report_html``), checked to keep the page whole."""
    from .context import blame

    name = str(ds.attrs.get("probe", "?"))
    try:
        probe = o.registry.get("probe", name)
        method = getattr(probe, "report_html", None)
        if method is None:
            return ""
        with blame(f"probe '{name}': report_html"):
            fragment = method(ds)
        if not fragment:
            return ""
        if not isinstance(fragment, str):
            raise LossAtlasError(
                f"probe '{name}': report_html returned {type(fragment).__name__}, not a "
                "string of HTML or None"
            )
        problems = check_fragment(fragment)
        if problems:
            raise LossAtlasError(
                f"probe '{name}': report_html returned HTML that cannot go into a "
                f"self-contained page: {'; '.join(problems[:3])}"
            )
    except Exception as exc:
        o.summary.failed.append(f"{label} (probe section)")
        return _error_block("the probe's own section could not be made", exc)
    return f'<div class="probe-own">{fragment}</div>'


# ----------------------------------------------------------------- sections


def _step_section(store: Store, run: str, step: str, o: _Options) -> tuple[str, CellCounts | None]:
    """The step's section and its cell counts (None where it has no readable
    ``cell_status``: no template yet, or a step that cannot be read)."""
    label = f"{run}/{step}"
    head = f'<details class="step" id="{esc(_step_id(run, step))}" open><summary><h3>{esc(label)}'
    group = store.step_group(run, step)
    if group is None or not group.attrs.get("template_complete"):
        return (
            head + '</h3></summary><p class="muted">No result yet: the step\'s template is '
            "incomplete (it is rewritten when the run is resumed).</p></details>"
        ), None
    try:
        ds = store.open_step(run, step)
        attrs = ds.attrs
        counts = cell_counts(ds[STATUS_VAR]) if STATUS_VAR in ds else None
    except Exception as exc:
        o.summary.failed.append(label)
        return (
            head + "</h3></summary>" + _error_block("this step cannot be read", exc) + "</details>"
        ), None
    shown = counts if counts is not None else CellCounts(done=1, nonfinite=0, total=1)
    done, total, bad = shown.done, shown.total, shown.nonfinite

    parts = [
        head
        + f' <span class="probe">probe {esc(attrs.get("probe", "?"))}</span> '
        + _badge(str(attrs.get("status", "unknown")))
        + "</h3></summary>"
    ]
    pct = 100.0 * done / total if total else 100.0
    facts: list[tuple[str, Any]] = [
        (
            "cells",
            f"{done} / {total} computed ({pct:.0f}%)" + (f", {bad} with NaN or inf" if bad else ""),
        ),
        ("dims", ", ".join(f"{d} = {n}" for d, n in ds.sizes.items()) or "(scalar)"),
        ("cell dims", ", ".join(attrs.get("cell_dims", [])) or "(one cell)"),
        ("started", _time(attrs.get("started"))),
        ("finished", _time(attrs.get("finished"))),
        ("took", _duration(attrs.get("seconds"))),
        ("plugin", attrs.get("probe_plugin")),
    ]
    try:
        options = json.loads(attrs.get("step_config", "{}"))
        opts = ", ".join(
            f"{k} = {_toml_value(v)}" for k, v in options.items() if k not in ("name", "probe")
        )
        facts.insert(0, ("options", opts or "(defaults)"))
    except (TypeError, ValueError):
        pass
    diverged = _diverged(ds)
    if diverged:
        facts.insert(2, ("diverged", diverged))
    falling = _still_falling(ds)
    if falling:
        facts.insert(2, ("not converged", falling))
    parts.append(f'<div class="meter"><div style="width:{pct:.1f}%"></div></div>')
    parts.append(_facts(facts, raw=("started", "finished"), wide=("options", "dims")))
    if diverged:
        parts.append(f'<p class="error">diverged: {esc(diverged)}</p>')
    if falling:
        parts.append(f'<p class="warn">not converged: {esc(falling)}</p>')
    try:
        parts.append(_figure(ds, label, o))
    except Exception as exc:
        o.summary.failed.append(label)
        parts.append(_error_block("the figure could not be drawn", exc))
    parts.append(_probe_section(ds, label, o))

    rows = []
    for name, var in ds.data_vars.items():
        if name == STATUS_VAR:
            continue
        rows.append(
            f"<tr><td><code>{esc(name)}</code></td><td>{esc(', '.join(map(str, var.dims)))}"
            f"</td><td>{esc(var.attrs.get('units', ''))}</td>"
            f"<td>{esc(var.attrs.get('description', ''))}</td></tr>"
        )
    parts.append(
        '<details class="vars"><summary>variables</summary><table class="vars"><tr>'
        "<th>name</th><th>dims</th><th>units</th><th>description</th></tr>"
        + "".join(rows)
        + "</table></details>"
    )
    return "".join(parts) + "</details>", counts


def _not_started(run: str, step: dict[str, Any]) -> str:
    name = str(step.get("name", "?"))
    return (
        f'<details class="step" id="{esc(_step_id(run, name))}" open><summary><h3>'
        f"{esc(run)}/{esc(name)} "
        f'<span class="probe">probe {esc(step.get("probe", "?"))}</span> '
        + _badge("not started")
        + '</h3></summary><p class="muted">The config lists this step but the store holds '
        "no result for it: the run stopped before it (see the run's status), or it was left "
        "out with <code>lossatlas run --step</code>. Running the same config again computes "
        "it.</p></details>"
    )


def _pipeline_order(steps: Sequence[str], config: dict[str, Any]) -> list[str]:
    """The stored steps in the order of the config's [[steps]], then any others."""
    listed = [s.get("name") for s in config.get("steps", []) if isinstance(s, dict)]
    first = [s for s in listed if s in steps]
    return first + sorted(s for s in steps if s not in first)


def _run_section(store: Store, run: str, o: _Options, is_open: bool) -> tuple[str, dict[str, Any]]:
    row: dict[str, Any] = {"run": run, "status": "unreadable", "steps": [], "missing": []}
    head = (
        f'<details class="run" id="{esc(_run_id(run))}"{" open" if is_open else ""}>'
        f"<summary><h2>run {esc(run)} "
    )
    try:
        attrs = store.run_attrs(run)
        prov = json.loads(attrs.get("provenance") or "{}")
        config = json.loads(attrs.get("config") or "{}")
        steps = _pipeline_order(store.steps(run), config)
    except Exception as exc:
        o.summary.failed.append(run)
        return head + "</h2></summary>" + _error_block(
            "this run cannot be read", exc
        ) + "</details>", row
    status = str(attrs.get("status", "unknown"))
    listed = [x for x in config.get("steps", []) if isinstance(x, dict)]
    missing = [x for x in listed if x.get("name") not in steps]
    row.update(
        status=status,
        steps=steps,
        missing=[str(x.get("name")) for x in missing],
        started=attrs.get("started", ""),
        finished=attrs.get("finished", ""),
        device=prov.get("device", ""),
    )
    out = [
        head
        + _badge(status)
        + f' <span class="when">started {_time(attrs.get("started"))}</span></h2></summary>'
    ]
    if status == "running":
        out.append(
            '<p class="muted">This run has not finished: it is still running, or it '
            "stopped early (an error or an interruption). Running the same command again "
            "resumes it where it stopped.</p>"
        )
    if config.get("description"):
        out.append(f'<p class="description">{esc(config["description"])}</p>')
    out.append('<div class="cols"><details class="prov"><summary>provenance</summary>')
    out.append(
        _dl(
            [
                ("config file", attrs.get("config_source")),
                ("started", _time(attrs.get("started"))),
                ("resumed", _time(attrs.get("resumed"))),
                ("finished", _time(attrs.get("finished"))),
                ("device", f"{prov.get('device', '')} ({prov.get('device_name', '')})"),
                ("dtype", prov.get("dtype")),
                ("seed", prov.get("seed")),
                ("lossatlas", prov.get("lossatlas_version")),
                ("torch", prov.get("torch_version")),
                ("python", prov.get("python_version")),
                ("numpy", prov.get("numpy_version")),
                ("xarray", prov.get("xarray_version")),
                ("zarr", prov.get("zarr_version")),
                ("platform", prov.get("platform")),
            ],
            raw=("started", "resumed", "finished"),
        )
    )
    out.append('</details><details class="config"><summary>config</summary>')
    try:
        text = config_as_toml(config)
    except Exception:
        text = json.dumps(config, indent=2)
    out.append(f'<pre class="config">{esc(text)}</pre></details></div>')
    done_cells = total_cells = 0
    for step in steps:
        text, counts = _step_section(store, run, step, o)
        out.append(text)
        if counts is not None:
            done_cells += counts.done
            total_cells += counts.total
        if o.progress is not None:
            o.progress.advance(f"{run}/{step}")
    for x in missing:
        out.append(_not_started(run, x))
    row["cells"] = f"{done_cells} / {total_cells}"
    if missing:
        row["cells"] += f" ({len(missing)} step(s) not started)"
    out.append("</details>")
    return "".join(out), row


def _newest_first(store: Store, runs: Sequence[str]) -> list[str]:
    """``runs`` by start time, newest first (runs whose start cannot be read last)."""
    floor = _dt.datetime.min.replace(tzinfo=_dt.UTC)

    def started(run: str) -> _dt.datetime:
        try:
            return _parse_time(store.run_attrs(run).get("started")) or floor
        except Exception:
            return floor

    return sorted(runs, key=lambda r: (started(r), r), reverse=True)


def _toc(rows: Sequence[dict[str, Any]], failed: Sequence[str]) -> str:
    items = []
    for row in rows:
        run = row["run"]
        steps = "".join(
            f'<li><a href="{_href(_step_id(run, s))}">{esc(s)}</a></li>'
            for s in [*row.get("steps", []), *row.get("missing", [])]
        )
        items.append(
            f'<li><a class="run" href="{_href(_run_id(run))}">{esc(run)}</a> '
            f"{_badge(row['status'])}<ol>{steps}</ol></li>"
        )
    problems = ""
    if failed:
        problems = (
            '<p class="error">Could not draw or read: '
            + ", ".join(f'<a href="{_href(_target(f))}">{esc(f)}</a>' for f in failed)
            + "</p>"
        )
    return (
        '<nav id="la:toc" aria-label="contents"><h2>Contents</h2>'
        '<p><a href="#la:overview">overview</a></p>'
        f'<ol class="runs">{"".join(items)}</ol>{problems}'
        '<p class="buttons" hidden><button type="button" id="la:expand">expand all</button> '
        '<button type="button" id="la:collapse">collapse all</button></p></nav>'
    )


def _target(failed: str) -> str:
    """The element id a 'could not draw' link points to."""
    label = failed.split(" (", 1)[0]
    return _step_id(*label.split("/", 1)) if "/" in label else _run_id(label)


def _diverged(ds: Any) -> str:
    """A line saying how many runs of a step diverged (its ``diverged`` variable is
    non-zero: the loss became NaN or inf and training stopped), or ``""``."""
    if "diverged" not in ds.data_vars:
        return ""
    try:
        flags = np.asarray(ds["diverged"].values, dtype=float)
    except (TypeError, ValueError):
        return ""
    hit = int(np.sum(np.nan_to_num(flags) != 0))
    if not hit:
        return ""
    return (
        f"{hit} of {flags.size} trainings diverged (the loss became NaN or inf and "
        "training stopped); a lower learning rate usually helps"
    )


def _still_falling(ds: Any) -> str:
    """A line saying how many trainings of a step ended with their loss still falling
    (its ``still_falling`` / ``baseline_still_falling`` variables), or ``""``."""
    parts = []
    for name, what in (("still_falling", "trainings"), ("baseline_still_falling", "baselines")):
        if name not in ds.data_vars:
            continue
        try:
            flags = np.asarray(ds[name].values, dtype=float)
        except (TypeError, ValueError):
            continue
        hit = int(np.sum(np.nan_to_num(flags) != 0))
        if hit:
            parts.append(f"{hit} of {flags.size} {what}")
    if not parts:
        return ""
    return (
        f"the loss was still falling at the end in {' and '.join(parts)}; their accuracies "
        "belong to the schedule (more epochs or a larger lr would change them)"
    )


CSS = """
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;
background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:14px 24px}header h1{margin:0;font-size:21px}
header p{margin:2px 0 0;opacity:.88;font-size:14px}
.layout{display:grid;grid-template-columns:250px minmax(0,1fr);align-items:start}
nav{position:sticky;top:0;max-height:100vh;overflow:auto;padding:12px 14px 24px 18px;
border-right:1px solid #dde1e6;background:#fbfbfc;font-size:14px}
nav h2{font-size:15px;margin:4px 0 6px;border:0}nav ol{margin:0;padding-left:18px}
nav ol.runs{padding-left:0;list-style:none}nav ol.runs>li{margin:8px 0}
nav a.run{font-weight:600}nav .badge{font-size:11px}
main{padding:6px 26px 48px;min-width:0;max-width:1240px}
h2{font-size:19px;margin:0;display:inline}h3{margin:0;font-size:16px;display:inline}
details.run{border-top:2px solid #1d3557;margin:18px 0 8px;padding-top:6px}
details.run>summary{cursor:pointer;padding:4px 0}
details.step{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 14px;
margin:12px 0}
details.step>summary{cursor:pointer}
summary{list-style-position:outside}
.when{font-size:13px;font-weight:normal;color:#555;margin-left:6px}
.badge{font-size:12px;padding:1px 8px;border-radius:10px;vertical-align:middle;
font-weight:600}
.ok{background:#d8f3dc;color:#1b4332}.warn{background:#fff3bf;color:#6b5200}
.bad{background:#ffe3e3;color:#8a1c1c}.probe{font-weight:normal;color:#555;font-size:14px}
p.warn,p.error{padding:4px 8px;border-radius:4px}
table{border-collapse:collapse}td,th{padding:2px 12px 2px 0;text-align:left;vertical-align:top}
table.kv{font-size:14px}table.kv th{color:#555;font-weight:600;white-space:nowrap}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:1px 24px;
font-size:14px;margin:4px 0}.facts .wide{grid-column:1/-1}
.facts .k{color:#555;font-weight:600;margin-right:4px}
table.vars td,table.vars th,table.probe-table td,table.probe-table th{border-bottom:1px solid #eee}
table.runs td,table.runs th{border-bottom:1px solid #dde1e6;padding:4px 14px 4px 0}
pre{background:#f0f2f5;padding:8px 10px;border-radius:4px;font-size:12.5px;
white-space:pre-wrap;overflow-wrap:anywhere}
.cols{display:flex;gap:10px 28px;flex-wrap:wrap}.cols>details{flex:1;min-width:300px}
details.prov>summary,details.config>summary,details.vars>summary{cursor:pointer;color:#1d4e89}
figure.fig{margin:10px 0 4px}figure.fig svg,figure.fig img{max-width:100%;height:auto;
display:block}
.error{background:#fff5f5;border:1px solid #f1aeb5;border-radius:4px;padding:8px 10px;
margin-top:8px}.error pre{background:#fff}
.meter{height:6px;background:#e9ecef;border-radius:3px;margin:6px 0 8px;max-width:420px}
.meter div{height:6px;background:#2d6a4f;border-radius:3px}
.muted{color:#666}a{color:#1d4e89}.probe-own{margin:8px 0}
table.probe-table{margin:6px 0 10px;font-size:14px}
table.probe-table caption{text-align:left;color:#555;font-size:13px;padding-bottom:2px}
button{font:inherit;font-size:13px;padding:2px 8px;cursor:pointer}
@media (max-width:900px){.layout{display:block}nav{position:static;max-height:none;
border-right:0;border-bottom:1px solid #dde1e6}}
@media print{nav{display:none}.layout{display:block}}
"""

#: The page's only script: times in the reader's zone, open the collapsed sections a
#: link points into, "expand all" / "collapse all". The page reads without it.
SCRIPT = """
(function () {
  "use strict";
  var shown = {year: "numeric", month: "short", day: "numeric", hour: "2-digit",
               minute: "2-digit", timeZoneName: "short"};
  Array.prototype.forEach.call(document.querySelectorAll("time[datetime]"), function (t) {
    var d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d.getTime())) { t.textContent = d.toLocaleString(undefined, shown); }
  });
  function reveal(id) {
    var el = document.getElementById(id);
    for (var n = el; n; n = n.parentElement) {
      if (n.tagName === "DETAILS") { n.open = true; }
    }
    return el;
  }
  function fromHash() {
    if (location.hash.length > 1) {
      var el = reveal(decodeURIComponent(location.hash.slice(1)));
      if (el) { el.scrollIntoView(); }
    }
  }
  Array.prototype.forEach.call(document.querySelectorAll('a[href^="#"]'), function (a) {
    a.addEventListener("click", function () {
      reveal(decodeURIComponent(a.getAttribute("href").slice(1)));
    });
  });
  window.addEventListener("hashchange", fromHash);
  fromHash();
  function all(open) {
    Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) {
      d.open = open;
    });
  }
  document.getElementById("la:expand").addEventListener("click", function () { all(true); });
  document.getElementById("la:collapse").addEventListener("click", function () { all(false); });
  document.querySelector("nav .buttons").hidden = false;
})();
"""


def build_report(
    store_path: str | Path,
    runs: Sequence[str] | None = None,
    *,
    registry: Registry | None = None,
    dpi: int = 150,
    progress: ReportProgress | None = None,
    plot_kwargs: dict[str, Any] | None = None,
    style: str | None = None,
    svg_limit: int = SVG_LIMIT,
) -> tuple[str, ReportSummary]:
    """The HTML text of the report of ``store_path`` (only ``runs`` if given; newest
    first either way).

    ``dpi``: resolution of a figure embedded as PNG; ``style``: the style every figure
    is drawn in (default: each run's ``style``, else lossatlas's); ``plot_kwargs``:
    plot options every probe understands (``logy``); ``svg_limit``: bytes of SVG beyond
    which a figure is a PNG. Raises :class:`StoreError` if the store does not exist or a
    named run is missing; failures inside a run or step are shown in the page instead.
    """
    from .plotting import _base_options, check_dpi
    from .style import check_style

    dpi = check_dpi(dpi)
    if style is not None:
        style = check_style(style)
    kwargs = _base_options(plot_kwargs, "the report")
    store = Store(store_path)
    all_runs = store.runs()
    if runs:
        missing = [r for r in runs if r not in all_runs]
        if missing:
            raise StoreError(
                f"store '{store.path}' has no run {', '.join(map(repr, missing))}; "
                f"runs: {', '.join(all_runs) or 'none'}"
            )
        chosen = list(dict.fromkeys(runs))
    else:
        chosen = all_runs
    chosen = _newest_first(store, chosen)
    summary = ReportSummary(runs=chosen)
    o = _Options(
        registry=registry if registry is not None else make_registry(),
        dpi=dpi,
        plot_kwargs=kwargs,
        style=style,
        svg_limit=int(svg_limit),
        summary=summary,
        progress=progress,
    )
    if progress is not None:
        total = 0
        for r in chosen:
            try:
                total += len(store.steps(r))
            except Exception:
                pass
        progress.start(total)
    sections, rows = [], []
    for i, r in enumerate(chosen):
        text, row = _run_section(store, r, o, is_open=i == 0)
        sections.append(text)
        rows.append(row)
    if progress is not None:
        progress.stop()

    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    table = [
        '<section id="la:overview"><h2>Runs, newest first</h2><table class="runs"><tr>'
        "<th>run</th><th>status</th><th>steps</th><th>cells</th><th>device</th>"
        "<th>started</th><th>finished</th></tr>"
    ]
    for row in rows:
        run = row["run"]
        steps = ", ".join(
            f'<a href="{_href(_step_id(run, s))}">{esc(s)}</a>'
            for s in [*row.get("steps", []), *row.get("missing", [])]
        )
        table.append(
            f'<tr><td><a href="{_href(_run_id(run))}">{esc(run)}</a></td>'
            f"<td>{_badge(row['status'])}</td><td>{steps}</td>"
            f"<td>{esc(row.get('cells', ''))}</td><td>{esc(row.get('device', ''))}</td>"
            f"<td>{_time(row.get('started'))}</td><td>{_time(row.get('finished'))}</td></tr>"
        )
    table.append("</table></section>")
    body = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>lossatlas report: {esc(store.path.name)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>lossatlas report</h1><p>store <code>{esc(store.path)}</code> · "
        f"{len(chosen)} run(s) · written {_time(now)} by lossatlas "
        f"{esc(lossatlas.__version__)}</p></header>"
        '<div class="layout">'
        + _toc(rows, summary.failed)
        + "<main>"
        + ('<p class="muted">This store has no runs yet.</p>' if not chosen else "")
        + "".join(table)
        + "".join(sections)
        + f"</main></div><script>{SCRIPT}</script></body></html>\n"
    )
    return body, summary


def write_report(
    store_path: str | Path,
    output: str | Path,
    runs: Sequence[str] | None = None,
    **kwargs: Any,
) -> ReportSummary:
    """Write the report of ``store_path`` to ``output`` (see :func:`build_report`)."""
    out = Path(output)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"report '{out}': use a file name ending in .html")
    if not out.parent.exists():
        raise ConfigError(f"report '{out}': folder '{out.parent}' does not exist")
    text, summary = build_report(store_path, runs, **kwargs)
    out.write_text(text, encoding="utf-8")
    return summary
