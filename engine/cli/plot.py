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
@click.option("--logy", is_flag=True, help="Logarithmic loss axis, where the plot has one.")
@click.option(
    "--surface",
    is_flag=True,
    help="Draw the step's 2-D maps as 3-D surfaces instead of the probe's figure.",
)
@click.option(
    "--dpi",
    type=int,
    default=130,
    show_default=True,
    help="Resolution of raster images (.png, .jpg, .jpeg).",
)
@debug_option
@friendly
def plot(
    store: str, groups: tuple[str, ...], output: str, logy: bool, surface: bool, dpi: int
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

    A step that is not complete (its run was interrupted, failed or is still
    running) is drawn from the cells done so far, with a warning and
    "(partial: N/M cells)" in the title.

    \b
    Examples:
      lossatlas plot atlas.zarr quickstart/line -o line.png --logy
      lossatlas plot atlas.zarr fig4/relu-100 fig4/tanh-100 fig4/cnn -o fig4.png
      lossatlas plot atlas.zarr paths/lines paths/curve paths/neb -o paths.png
      lossatlas plot atlas.zarr maps/maps --surface -o surface.png
    """
    from ..drawing import draw

    path = draw(
        store, groups, output, registry=registry(), warn=warn, logy=logy, surface=surface, dpi=dpi
    )
    click.echo(f"wrote {path}")
