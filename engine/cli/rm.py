"""``lossatlas rm``: remove a run or a step from a store."""

from __future__ import annotations

import sys

import click

from ..errors import ConfigError, StoreError
from ..options import suggest
from .base import CONTEXT, cli, debug_option, friendly

__all__ = ["rm"]


@cli.command(context_settings=CONTEXT, short_help="Remove a run or step from a store.")
@click.argument("store", type=click.Path())
@click.argument("target", metavar="RUN[/STEP]")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@debug_option
@friendly
def rm(store: str, target: str, yes: bool) -> None:
    """Remove the run RUN (all its steps) or the step RUN/STEP from STORE.

    Asks before removing unless --yes is given. A run that a live process is running
    is refused. The store's consolidated metadata is rewritten, so xarray and
    'lossatlas inspect' see the change at once. A removed step is recomputed by the
    next 'lossatlas run' of its config.

    \b
    Examples:
      lossatlas rm atlas.zarr quickstart/line
      lossatlas rm atlas.zarr old-run --yes
    """
    from ..store import lease_state
    from ..store.reading import check_run, store_to_read

    st = store_to_read(store)
    run_name, _, step = target.partition("/")
    check_run(st, store, run_name)
    if step and step not in st.steps(run_name):
        steps = st.steps(run_name)
        raise StoreError(
            f"run '{run_name}' has no step '{step}'{suggest(step, steps)}; steps: "
            f"{', '.join(steps) or 'none'}"
        )
    state, holder = lease_state(st, run_name)
    if state == "live" and holder is not None:
        raise StoreError(f"run '{run_name}' is being run by {holder.describe()}; stop it first")
    what = f"step '{step}' of run '{run_name}'" if step else f"run '{run_name}' and all its steps"
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"rm: removing {what} needs confirmation; add --yes")
        click.confirm(f"Remove {what} from {store}?", abort=True)
    st.remove(run_name, step or None)
    click.echo(f"removed {what} from {store}")
