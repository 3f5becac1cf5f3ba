"""``lossatlas check``: a config validated as ``run`` validates it; nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .base import CONTEXT, cli, debug_option, friendly, naming_config, registry

__all__ = ["check"]


@cli.command(context_settings=CONTEXT, short_help="Validate a config; write nothing.")
@click.argument("config_file", metavar="CONFIG.toml", type=click.Path(dir_okay=False))
@click.option(
    "--store",
    "store",
    default=None,
    metavar="PATH",
    help="A store whose runs the config refers to (RUN/STEP points); only read.",
)
@click.option("--name", default=None, metavar="NAME", help="Run name, as for 'run'.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@debug_option
@friendly
def check(config_file: str, store: str | None, name: str | None, as_json: bool) -> None:
    """Check CONFIG.toml as 'run' would, and print it resolved; write nothing.

    Every plugin, option, point reference and shape is checked (the model and data
    are built). Printed: the config with every default filled in (each component's
    and step's options as the plugin reads them) and each step's estimate: cells,
    loss evaluations, Hessian-vector products, bytes in the store and memory per
    cell, against this machine's limits.

    \b
    Example:
      lossatlas check examples/quickstart.toml
    """
    from ..config import load_config
    from ..resolve import resolve_config

    with naming_config(str(Path(config_file))):
        config = load_config(config_file).with_overrides(name=name)
        resolved = resolve_config(config, registry(), store)
    if as_json:
        click.echo(json.dumps(resolved, indent=2, default=str))
        return
    click.echo(f"{config_file}: OK (run '{config.name}', {len(config.steps)} step(s))")
    click.echo("")
    click.echo(resolved["toml"])
    click.echo("estimates:")
    for step, est in resolved["estimates"].items():
        click.echo(f"  {step}: {est['text']}")
    limits = resolved["limits"]
    click.echo(f"limits: {limits['memory']} of memory per cell, {limits['store']} in the store")
