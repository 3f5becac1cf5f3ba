"""``lossatlas plot``: draw stored results to an image."""

from __future__ import annotations

import click

from .base import CONTEXT, IMAGE_SUFFIXES, cli, debug_option, friendly, registry, warn

__all__ = ["plot"]


@cli.command(context_settings=CONTEXT, short_help="Draw stored results to an image.")
@click.argument("store", type=click.Path())
@click.argument("groups", metavar="RUN/STEP [RUN/STEP ...]", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help=f"Image file; the format follows the suffix ({', '.join(IMAGE_SUFFIXES)}).",
)
@click.option("--logy", is_flag=True, help="Logarithmic loss axis (on maps: colour scale).")
@click.option(
    "-O",
    "--plot-option",
    "plot_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A plot option of the probe (repeatable), e.g. -O metric=accuracy; "
    "'lossatlas plugins PROBE' lists them.",
)
@click.option(
    "--surface",
    is_flag=True,
    help="Draw the step's 2-D maps as 3-D surfaces instead of the probe's figure.",
)
@click.option(
    "--style",
    default=None,
    metavar="NAME|FILE",
    help="Matplotlib style over lossatlas's: a name (seaborn-v0_8-paper, ggplot ...) or an "
    ".mplstyle file; default: the run config's 'style', else lossatlas.",
)
@click.option("--no-title", is_flag=True, help="No figure title (RUN/STEP nor the probe's).")
@click.option(
    "--dpi",
    type=int,
    default=150,
    show_default=True,
    help="Resolution of raster images (.png, .jpg, .jpeg), 10 to 1200.",
)
@debug_option
@friendly
def plot(
    store: str,
    groups: tuple[str, ...],
    output: str,
    logy: bool,
    plot_options: tuple[str, ...],
    surface: bool,
    style: str | None,
    no_title: bool,
    dpi: int,
) -> None:
    """Draw the stored result RUN/STEP of STORE with its probe's plot.

    RUN/STEP names a run and one of its steps, as 'lossatlas inspect STORE' lists
    them. The figure is the probe's picture of the paper it implements, drawn from
    the stored result alone (nothing is recomputed). Several RUN/STEP of one probe
    go on one figure where the probe compares results (goldilocks: seed 000 Fig. 4;
    radial-profile: Fig. 5a), each labelled by its RUN/STEP.

    Steps of different probes that hold paths between two points (interpolation,
    align, curve, neb, dss) go on one figure comparing the paths: the loss along each,
    its barrier and its normalised length. --surface draws a step's 2-D maps (any
    probe's: hessian-directions, trajectory ...) as 3-D surfaces.

    Figures are drawn in the lossatlas style (TrueType fonts in PDF and EPS, readable
    sizes, a colour-blind-safe palette); --style puts another on top of it. -O sets
    a plot option of the probe (checked: an unknown key or a wrong type is an error).

    A step that is not complete (its run was interrupted, failed or is still
    running) is drawn from the cells done so far, with a warning and
    "(partial: N/M cells)" in the title.

    \b
    Examples:
      lossatlas plot atlas.zarr quickstart/line -o line.png --logy
      lossatlas plot hd.zarr run/maps -o maps.pdf -O metric=accuracy --no-title
      lossatlas plot atlas.zarr fig4/relu-100 fig4/tanh-100 fig4/cnn -o fig4.png
      lossatlas plot atlas.zarr paths/lines paths/curve paths/neb -o paths.png
      lossatlas plot atlas.zarr maps/maps --surface -o surface.png
      lossatlas plot atlas.zarr quickstart/line -o line.pdf --style paper.mplstyle
    """
    from ..drawing import draw
    from ..plotting import parse_option_pairs

    path = draw(
        store,
        groups,
        output,
        registry=registry(),
        warn=warn,
        options=parse_option_pairs(plot_options),
        logy=logy,
        surface=surface,
        dpi=dpi,
        style=style,
        title=not no_title,
    )
    click.echo(f"wrote {path}")
