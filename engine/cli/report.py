"""``lossatlas report``: one HTML page with every figure, config and provenance."""

from __future__ import annotations

import click

from ..store.reading import store_to_read
from .base import CONTEXT, cli, debug_option, friendly, registry, under_ci

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
    "--dpi", type=int, default=100, show_default=True, help="Resolution of the embedded figures."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@debug_option
@friendly
def report(
    store: str, output: str, runs: tuple[str, ...], logy: bool, dpi: int, quiet: bool
) -> None:
    """Write one HTML page with every figure, config and provenance in STORE.

    \b
    For each run: its status, the versions, device, dtype, seed and times it ran
    with, its config, and for each step the probe, how many cells are computed and
    the probe's figure. Figures are embedded, so the page opens in a browser from
    disk and can be mailed as one file. A figure that cannot be drawn shows its error
    in place of the picture.

    \b
    Example:
      lossatlas report atlas.zarr -o report.html
      lossatlas report atlas.zarr --run quickstart -o quickstart.html
    """
    import matplotlib

    matplotlib.use("Agg")
    from ..display import RichReportProgress
    from ..report import write_report

    quiet = quiet or under_ci()
    store_to_read(store)
    summary = write_report(
        store,
        output,
        list(runs) or None,
        registry=registry(),
        dpi=dpi,
        progress=RichReportProgress(quiet),
        plot_kwargs={"logy": True} if logy else None,
    )
    failed = (
        f"; {len(summary.failed)} could not be drawn: {', '.join(summary.failed)}"
        if summary.failed
        else ""
    )
    click.echo(f"wrote {output}: {len(summary.runs)} run(s), {summary.figures} figure(s){failed}")
