"""``lossatlas export``: a stored result as netCDF, CSV or VTK."""

from __future__ import annotations

import click

from .base import CONTEXT, cli, debug_option, friendly

__all__ = ["export"]


@cli.command(context_settings=CONTEXT, short_help="Write a stored result as netCDF, CSV or VTK.")
@click.argument("store", type=click.Path())
@click.argument("group", metavar="RUN/STEP")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["netcdf", "csv", "vtk"]),
    required=True,
    help="netcdf: netCDF-4 with CF attributes (pip install 'lossatlas[netcdf]'); "
    "csv: one tidy table; vtk: a VTK XML structured grid (.vts) of the step's 2-D maps, "
    "for ParaView.",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="File.")
@click.option("--var", "variables", multiple=True, metavar="NAME", help="Only this variable.")
@click.option(
    "--axes",
    default=None,
    metavar="A,B",
    help="vtk: the two dims of the map, where a result has maps over several pairs.",
)
@click.option(
    "--height",
    default=None,
    metavar="MAP",
    help="vtk: lift the grid by this map (e.g. train_loss[map=hessian]); default flat.",
)
@debug_option
@friendly
def export(
    store: str,
    group: str,
    fmt: str,
    output: str,
    variables: tuple[str, ...],
    axes: str | None,
    height: str | None,
) -> None:
    """Write the stored result RUN/STEP of STORE to one file another tool reads.

    netCDF keeps every variable, coordinate and attribute (CF-1.11, attributes made
    netCDF-safe: lists and tables as JSON text); CSV is one tidy table with a row
    per value: variable, each dim's coordinate, value, units. --var keeps only the
    variables named. VTK writes every 2-D map of the step (each float variable over
    the map's two axes, one array per index of any other dim, e.g.
    train_loss[map=hessian]) as point arrays of one structured grid: open it in
    ParaView, colour by an array, and use Warp By Scalar for a 3-D surface.

    \b
    Examples:
      lossatlas export atlas.zarr quickstart/line --format netcdf -o line.nc
      lossatlas export atlas.zarr quickstart/line --format csv -o line.csv --var train_loss
      lossatlas export atlas.zarr maps/maps --format vtk -o maps.vts
    """
    from ..store.export import export as do_export
    from ..store.reading import open_result, store_to_read

    ds = open_result(store_to_read(store), store, group)
    options = {k: v for k, v in (("axes", axes), ("height", height)) if v is not None}
    path = do_export(ds, fmt, output, list(variables) or None, **options)
    click.echo(f"wrote {path}")
