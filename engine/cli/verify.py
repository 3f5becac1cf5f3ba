"""``lossatlas verify``: read every chunk of a store; find and repair damaged cells."""

from __future__ import annotations

import click

from .base import CONTEXT, cli, debug_option, fail, friendly

__all__ = ["verify"]


@cli.command(context_settings=CONTEXT, short_help="Read every chunk; find damaged cells.")
@click.argument("store", type=click.Path())
@click.option("--run", "runs", multiple=True, metavar="RUN", help="Only this run (repeatable).")
@click.option(
    "--repair",
    is_flag=True,
    help="Mark damaged or inconsistent cells not run, so that 'lossatlas run' recomputes them.",
)
@debug_option
@friendly
def verify(store: str, runs: tuple[str, ...], repair: bool) -> None:
    """Read every chunk of STORE and check each cell's status against its data.

    Each chunk carries a crc32c checksum: a chunk changed on disk (a bad disk, a
    partial copy, an edit) fails to read. A cell marked done must hold finite values
    where its probe promised them. Exit 0 when all is well; 1 naming each damaged or
    inconsistent cell. With --repair those cells are marked not run and their steps
    'partial': the same 'lossatlas run' then recomputes exactly them (and the step's
    summary). Damaged coordinates or static arrays cannot be repaired in place:
    remove the step ('lossatlas rm') and run again.

    \b
    Examples:
      lossatlas verify atlas.zarr
      lossatlas verify atlas.zarr --repair
    """
    from ..store.reading import check_run, store_to_read
    from ..store.verify import repair as do_repair
    from ..store.verify import verify as do_verify

    st = store_to_read(store)
    for r in runs:
        check_run(st, store, r)
    problems, checked = do_verify(st, list(runs) or None)
    if not problems:
        click.echo(f"{store}: {checked} step(s) read, every chunk and status consistent")
        return
    for p in problems:
        click.echo(f"{store}: {p.describe()}")
    if not repair:
        fail(
            f"{len(problems)} problem(s) in {store}; 'lossatlas verify {store} --repair' "
            "marks the damaged cells for recomputing",
            1,
        )
    marked, left = do_repair(st, problems)
    click.echo(
        f"marked {marked} cell(s) not run; 'lossatlas run' with the same config recomputes them"
    )
    if left:
        fail(
            f"{len(left)} problem(s) cannot be repaired in place ("
            + "; ".join(p.describe() for p in left)
            + "); remove those steps with 'lossatlas rm' and run again",
            1,
        )
