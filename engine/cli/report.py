"""``lossatlas report``: one HTML page with every figure, config and provenance."""

from __future__ import annotations

import click

from .base import CONTEXT, cli, debug_option, fail, friendly, registry

__all__ = ["report"]


@cli.command(context_settings=CONTEXT, short_help="Write an HTML report of a store.")
@click.argument("store", type=click.Path())
@click.option(
    "-o",
    "--output",
    default="report.html",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The HTML file to write (one self-contained page; no server needed).",
)
@click.option(
    "--run",
    "runs",
    multiple=True,
    metavar="RUN",
    help="Only this run (repeatable); default: every run in the store.",
)
@click.option("--logy", is_flag=True, help="Logarithmic loss axes, where a plot has one.")
@click.option(
    "--style",
    default=None,
    metavar="NAME|FILE",
    help="Matplotlib style over lossatlas's for every figure; default: each run's 'style'.",
)
@click.option(
    "--dpi",
    type=int,
    default=150,
    show_default=True,
    help="Resolution of a figure embedded as PNG (maps too large for SVG), 10 to 1200.",
)
@click.option(
    "--strict", is_flag=True, help="Exit 1 if any figure (or run, or step) could not be drawn."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@debug_option
@friendly
def report(
    store: str,
    output: str,
    runs: tuple[str, ...],
    logy: bool,
    style: str | None,
    dpi: int,
    strict: bool,
    quiet: bool,
) -> None:
    """Write one HTML page with every figure, config and provenance in STORE.

    \b
    A table of contents links every run (newest first) and step. For each run: its
    status, the versions, device, dtype, seed and times it ran with (shown in the
    reader's time zone), its config, and for each step the probe, how many cells are
    computed, the probe's figure (inline SVG; PNG for a map too large for SVG) and
    the probe's own section. Runs and steps fold away. Everything is embedded, so the
    page opens in a browser from disk and can be mailed as one file. A figure that
    cannot be drawn shows its error in place of the picture (--strict: exit 1 then).

    \b
    Example:
      lossatlas report atlas.zarr -o report.html
      lossatlas report atlas.zarr --run quickstart -o quickstart.html
    """
    import matplotlib

    from ..store.reading import store_to_read

    matplotlib.use("Agg")
    from ..display import RichReportProgress
    from ..report import write_report

    store_to_read(store)
    summary = write_report(
        store,
        output,
        list(runs) or None,
        registry=registry(),
        dpi=dpi,
        style=style,
        progress=RichReportProgress(quiet),
        plot_kwargs={"logy": True} if logy else None,
    )
    failed = (
        f"; {len(summary.failed)} could not be drawn: {', '.join(summary.failed)}"
        if summary.failed
        else ""
    )
    click.echo(f"wrote {output}: {len(summary.runs)} run(s), {summary.figures} figure(s){failed}")
    if strict and summary.failed:
        fail(f"--strict: {len(summary.failed)} part(s) of the report could not be drawn", 1)
