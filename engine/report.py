"""``lossatlas report``: one self-contained HTML page with every result of a store.

The page holds, per run: its status, provenance (versions, device, dtype, seed,
times), its config, and per step the probe, completion (cells done / all, cells with
NaN or inf, trainings that diverged; steps of the config with no result yet are listed
as "not started"), the variables with their units and descriptions, and the probe's figure
as a PNG embedded as a base64 ``data:`` URI. There is no external CSS, script, font
or image, so the file opens in any browser without a server and can be mailed or
archived as it is. All text from the store is HTML-escaped. A step whose figure fails
to draw (or a run whose attrs cannot be read) shows the error in place; the rest of
the report is unaffected.

Cost: one figure per step (the probe's ``plot`` on the stored Dataset, loaded into
memory), nothing recomputed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import lossatlas

from .accessor import title_figure
from .errors import ConfigError, StoreError
from .registry import Registry, make_registry
from .store import STATUS_NONFINITE, STATUS_VAR, Store

__all__ = ["ReportProgress", "ReportSummary", "build_report", "write_report"]


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
    """What went into a report: the runs, the steps drawn and the steps that failed."""

    runs: list[str] = field(default_factory=list)
    figures: int = 0
    failed: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ helpers


def esc(value: Any) -> str:
    """HTML-escape any value's text (quotes included)."""
    return html.escape(str(value), quote=True)


def _anchor(*parts: str) -> str:
    text = "-".join(parts)
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


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


def _dl(items: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items if v not in (None, "")
    )
    return f'<table class="kv">{rows}</table>'


def _step_links(run: str, steps: Sequence[str]) -> str:
    return ", ".join(f'<a href="#{_anchor(run, s)}">{esc(s)}</a>' for s in steps)


def _badge(status: str) -> str:
    cls = {"complete": "ok", "running": "warn", "partial": "warn", "not started": "warn"}.get(
        status, "bad"
    )
    return f'<span class="badge {cls}">{esc(status)}</span>'


def _error_block(what: str, exc: BaseException) -> str:
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return f'<div class="error"><strong>{esc(what)}</strong><pre>{esc(detail)}</pre></div>'


def figure_png(ds: Any, registry: Registry, title: str, dpi: int, **kwargs: Any) -> bytes:
    """The probe's figure of a stored step as PNG bytes (the current backend is kept)."""
    import matplotlib.pyplot as plt

    fig = ds.atlas.plot(registry=registry, **kwargs)
    try:
        title_figure(fig, title)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


# ----------------------------------------------------------------- sections


def _step_section(
    store: Store,
    run: str,
    step: str,
    registry: Registry,
    dpi: int,
    summary: ReportSummary,
    plot_kwargs: dict[str, Any],
) -> str:
    label = f"{run}/{step}"
    head = f'<section class="step" id="{_anchor(run, step)}"><h3>{esc(label)}'
    group = store.step_group(run, step)
    if group is None or not group.attrs.get("template_complete"):
        return (
            head + '</h3><p class="muted">No result yet: the step\'s template is '
            "incomplete (it is rewritten when the run is resumed).</p></section>"
        )
    try:
        ds = store.open_step(run, step)
        attrs = ds.attrs
        status = np.asarray(ds[STATUS_VAR].values) if STATUS_VAR in ds else np.ones(())
        done, total = int(np.sum(status > 0)), int(status.size)
        bad = int(np.sum(status == STATUS_NONFINITE))
    except Exception as exc:
        summary.failed.append(label)
        return head + "</h3>" + _error_block("this step cannot be read", exc) + "</section>"

    parts = [
        head
        + f' <span class="probe">probe {esc(attrs.get("probe", "?"))}</span> '
        + _badge(str(attrs.get("status", "unknown")))
        + "</h3>"
    ]
    pct = 100.0 * done / total if total else 100.0
    facts = [
        (
            "cells",
            f"{done} / {total} computed ({pct:.0f}%)" + (f", {bad} with NaN or inf" if bad else ""),
        ),
        ("dims", ", ".join(f"{d} = {n}" for d, n in ds.sizes.items()) or "(scalar)"),
        ("cell dims", ", ".join(attrs.get("cell_dims", [])) or "(one cell)"),
        ("started", attrs.get("started")),
        ("finished", attrs.get("finished")),
        ("seconds", attrs.get("seconds")),
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
    parts.append(_dl(facts))
    if diverged:
        parts.append(f'<p class="error">diverged: {esc(diverged)}</p>')
    if falling:
        parts.append(f'<p class="warn">not converged: {esc(falling)}</p>')

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
        '<details><summary>variables</summary><table class="vars"><tr><th>name</th>'
        "<th>dims</th><th>units</th><th>description</th></tr>"
        + "".join(rows)
        + "</table></details>"
    )
    try:
        png = figure_png(ds, registry, label, dpi, **plot_kwargs)
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure><img alt="figure of {esc(label)}" '
            f'src="data:image/png;base64,{data}"></figure>'
        )
        summary.figures += 1
    except Exception as exc:
        summary.failed.append(label)
        parts.append(_error_block("the figure could not be drawn", exc))
    return "".join(parts) + "</section>"


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


def _not_started(run: str, step: dict[str, Any]) -> str:
    name = str(step.get("name", "?"))
    return (
        f'<section class="step" id="{_anchor(run, name)}"><h3>{esc(run)}/{esc(name)} '
        f'<span class="probe">probe {esc(step.get("probe", "?"))}</span> '
        + _badge("not started")
        + '</h3><p class="muted">The config lists this step but the store holds no result '
        "for it: the run stopped before it (see the run's status), or it was left out "
        "with <code>lossatlas run --step</code>. Running the same config again computes "
        "it.</p></section>"
    )


def _pipeline_order(steps: Sequence[str], config: dict[str, Any]) -> list[str]:
    """The stored steps in the order of the config's [[steps]], then any others."""
    listed = [s.get("name") for s in config.get("steps", []) if isinstance(s, dict)]
    first = [s for s in listed if s in steps]
    return first + sorted(s for s in steps if s not in first)


def _run_section(
    store: Store,
    run: str,
    registry: Registry,
    dpi: int,
    summary: ReportSummary,
    progress: ReportProgress | None,
    plot_kwargs: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    row: dict[str, Any] = {"run": run, "status": "unreadable"}
    out = [f'<section class="run" id="{_anchor(run)}"><h2>run {esc(run)} ']
    try:
        attrs = store.run_attrs(run)
        prov = json.loads(attrs.get("provenance") or "{}")
        config = json.loads(attrs.get("config") or "{}")
        steps = _pipeline_order(store.steps(run), config)
    except Exception as exc:
        summary.failed.append(run)
        out.append("</h2>" + _error_block("this run cannot be read", exc) + "</section>")
        return "".join(out), row
    status = str(attrs.get("status", "unknown"))
    row.update(
        status=status,
        steps=steps,
        started=attrs.get("started", ""),
        finished=attrs.get("finished", ""),
        device=prov.get("device", ""),
        description=config.get("description", ""),
    )
    listed = [x for x in config.get("steps", []) if isinstance(x, dict)]
    missing = [x for x in listed if x.get("name") not in steps]
    row["missing"] = [str(x.get("name")) for x in missing]
    out.append(_badge(status) + "</h2>")
    if status == "running":
        out.append(
            '<p class="muted">This run has not finished: it is still running, or it '
            "stopped early (an error or an interruption). Running the same command again "
            "resumes it where it stopped.</p>"
        )
    if config.get("description"):
        out.append(f"<p>{esc(config['description'])}</p>")
    out.append('<div class="cols"><div>')
    out.append("<h4>provenance</h4>")
    out.append(
        _dl(
            [
                ("config file", attrs.get("config_source")),
                ("started", attrs.get("started")),
                ("resumed", attrs.get("resumed")),
                ("finished", attrs.get("finished")),
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
            ]
        )
    )
    out.append("</div><div><h4>config</h4>")
    try:
        text = config_as_toml(config)
    except Exception:
        text = json.dumps(config, indent=2)
    out.append(f'<pre class="config">{esc(text)}</pre></div></div>')
    done_cells = total_cells = 0
    for step in steps:
        out.append(_step_section(store, run, step, registry, dpi, summary, plot_kwargs))
        g = store.step_group(run, step)
        if g is not None and g.attrs.get("template_complete") and STATUS_VAR in g:
            st = np.asarray(g[STATUS_VAR][...])
            done_cells += int(np.sum(st > 0))
            total_cells += int(st.size)
        if progress is not None:
            progress.advance(f"{run}/{step}")
    for x in missing:
        out.append(_not_started(run, x))
    row["cells"] = f"{done_cells} / {total_cells}"
    if missing:
        row["cells"] += f" ({len(missing)} step(s) not started)"
    out.append("</section>")
    return "".join(out), row


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232a;
background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85}main{max-width:1180px;margin:0 auto;padding:12px 28px 40px}
h2{border-bottom:2px solid #1d3557;padding-bottom:4px;margin-top:36px}
h3{margin:0 0 8px;font-size:16px}h4{margin:10px 0 4px}
section.run{margin-bottom:24px}
section.step{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:14px 16px;
margin:14px 0}
.badge{font-size:12px;padding:1px 8px;border-radius:10px;vertical-align:middle}
.ok{background:#d8f3dc;color:#1b4332}.warn{background:#fff3bf;color:#7c5e00}
.bad{background:#ffe3e3;color:#8a1c1c}.probe{font-weight:normal;color:#555;font-size:14px}
table{border-collapse:collapse}td,th{padding:2px 10px 2px 0;text-align:left;
vertical-align:top}
table.kv th{color:#555;font-weight:600;white-space:nowrap}
table.vars td,table.vars th{border-bottom:1px solid #eee}
table.runs td,table.runs th{border-bottom:1px solid #dde1e6;padding:4px 14px 4px 0}
pre{background:#f0f2f5;padding:8px 10px;border-radius:4px;overflow-x:auto;font-size:12px}
.cols{display:flex;gap:28px;flex-wrap:wrap}.cols>div{flex:1;min-width:320px}
figure{margin:10px 0 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
.error{background:#fff5f5;border:1px solid #f1aeb5;border-radius:4px;padding:8px 10px;
margin-top:8px}.error pre{background:#fff;white-space:pre-wrap}
.meter{height:6px;background:#e9ecef;border-radius:3px;margin:4px 0 8px;max-width:420px}
.meter div{height:6px;background:#2d6a4f;border-radius:3px}
.muted{color:#777}nav a{margin-right:12px}a{color:#1d4e89}
"""


def build_report(
    store_path: str | Path,
    runs: Sequence[str] | None = None,
    *,
    registry: Registry | None = None,
    dpi: int = 100,
    progress: ReportProgress | None = None,
    plot_kwargs: dict[str, Any] | None = None,
) -> tuple[str, ReportSummary]:
    """The HTML text of the report of ``store_path`` (only ``runs`` if given).

    Raises :class:`StoreError` if the store does not exist or a named run is missing;
    failures inside a run or step are shown in the page instead.
    """
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
    registry = registry if registry is not None else make_registry()
    summary = ReportSummary(runs=chosen)
    if progress is not None:
        total = 0
        for r in chosen:
            try:
                total += len(store.steps(r))
            except Exception:
                pass
        progress.start(total)
    sections, rows = [], []
    for r in chosen:
        text, row = _run_section(store, r, registry, dpi, summary, progress, plot_kwargs or {})
        sections.append(text)
        rows.append(row)
    if progress is not None:
        progress.stop()

    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    table = [
        '<table class="runs"><tr><th>run</th><th>status</th><th>steps</th>'
        "<th>cells</th><th>device</th><th>started</th><th>finished</th></tr>"
    ]
    for row in rows:
        table.append(
            f'<tr><td><a href="#{_anchor(row["run"])}">{esc(row["run"])}</a></td>'
            f"<td>{_badge(row['status'])}</td>"
            f"<td>{_step_links(row['run'], [*row.get('steps', []), *row.get('missing', [])])}"
            "</td>"
            f"<td>{esc(row.get('cells', ''))}</td><td>{esc(row.get('device', ''))}</td>"
            f"<td>{esc(row.get('started', ''))}</td><td>{esc(row.get('finished', ''))}</td></tr>"
        )
    table.append("</table>")
    failed = ""
    if summary.failed:
        failed = (
            '<p class="error">Could not draw or read: '
            + ", ".join(
                f'<a href="#{_anchor(*f.split("/", 1))}">{esc(f)}</a>' for f in summary.failed
            )
            + "</p>"
        )
    body = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>lossatlas report: {esc(store.path.name)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>lossatlas report</h1><p>store <code>{esc(store.path)}</code> · "
        f"{len(chosen)} run(s) · written {esc(now)} by lossatlas {esc(lossatlas.__version__)}"
        "</p></header><main>"
        + ('<p class="muted">This store has no runs yet.</p>' if not chosen else "")
        + "".join(table)
        + failed
        + "".join(sections)
        + "</main></body></html>\n"
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
