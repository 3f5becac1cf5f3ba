"""``lossatlas plugins``: the installed plugins, a component's options, JSON Schemas."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import click

from .base import CONTEXT, cli, debug_option, friendly, registry

__all__ = ["USED_AS", "plugins"]


@cli.command(context_settings=CONTEXT, short_help="List the installed plugins.")
@click.argument("name", required=False, metavar="[NAME]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--schema",
    is_flag=True,
    help="Print the JSON Schema of NAME's options, or without NAME of a whole config file.",
)
@debug_option
@friendly
def plugins(name: str | None, as_json: bool, schema: bool) -> None:
    """List every plugin, its distribution and what it registers; broken ones marked.

    The names shown are what a config uses: [model] plugin = NAME,
    [dataset] plugin = NAME, [loss] plugin = NAME, probe = NAME in [[steps]],
    subspace tables {plugin = NAME}, executor = NAME. Set
    LOSSATLAS_DISABLE_PLUGINS=a,b to switch plugins off by name.

    With NAME, show the options of the model, data set, loss, subspace, probe or
    executor of that name (each of them if several kinds use the name): each
    option's TOML key, type, default and what it does.

    --schema prints JSON Schema (draft 2020-12): of NAME's options, or without NAME
    of a whole config with every installed plugin's options, for editors that check
    TOML as it is typed (Taplo, VS Code's Even Better TOML: put
    '#:schema ./lossatlas.schema.json' on a config's first line).

    \b
    Examples:
      lossatlas plugins
      lossatlas plugins random-line
      lossatlas plugins --schema > lossatlas.schema.json
    """
    reg = registry()
    if name is not None:
        _show_component(reg, name, as_json, schema)
        return
    if schema:
        from ..schema import config_schema

        click.echo(json.dumps(config_schema(reg), indent=2))
        return
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in reg.records], indent=2))
        return
    for r in reg.records:
        mark = {
            "ok": "",
            "failed": "  [FAILED]",
            "disabled": "  [disabled]",
            "replaced": "  [replaced]",
        }[r.status]
        click.echo(f"{r.name}  ({r.distribution} {r.version}){mark}")
        if r.error:
            click.echo(f"    error: {r.error}")
        if r.note:
            click.echo(f"    note: {r.note}")
        for kind, names in r.registered.items():
            for n in names:
                comp = reg.components[kind].get(n)
                summary = comp[0].summary if comp else ""
                click.echo(f"    {kind:<9} {n:<22} {summary}")


#: kind -> how a config names a component of that kind (for ``lossatlas plugins NAME``).
USED_AS = {
    "model": '[model] plugin = "{name}"',
    "dataset": '[dataset] plugin = "{name}"',
    "loss": '[loss] plugin = "{name}"',
    "subspace": 'a subspace table {{plugin = "{name}", ...}}',
    "probe": '[[steps]] probe = "{name}"',
    "executor": '[executor] plugin = "{name}" (options in the same table, or -E KEY=VALUE)',
}


def _show_component(reg: Any, name: str, as_json: bool, schema: bool) -> None:
    """Print the options of every component called ``name`` (or their JSON Schema)."""
    rows = reg.describe(name)
    if schema:
        out = [row["schema"] for row in rows]
        click.echo(json.dumps(out[0] if len(out) == 1 else out, indent=2))
        return
    for row in rows:
        row.pop("schema")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for i, row in enumerate(rows):
        if i:
            click.echo("")
        click.echo(
            f"{row['kind']} '{name}'  (plugin {row['plugin']}, "
            f"{row['distribution']} {row['version']})"
        )
        if row["summary"]:
            click.echo(f"  {row['summary']}")
        click.echo(f"  used as: {USED_AS[row['kind']].format(name=name)}")
        sections = [("options", row["options"])]
        if "plot_options" in row:
            sections.append(("plot options (lossatlas plot -O KEY=VALUE)", row["plot_options"]))
        for title, opts in sections:
            if not opts:
                click.echo(f"  {title}: none")
                continue
            click.echo(f"  {title}:")
            for opt in opts:
                default = (
                    "required" if opt["default"] == "required" else f"default {opt['default']}"
                )
                click.echo(f"    {opt['name']}  ({opt['type']}; {default})")
                if opt["doc"]:
                    wrapped = textwrap.fill(
                        opt["doc"], width=96, initial_indent=" " * 8, subsequent_indent=" " * 8
                    )
                    click.echo(wrapped)
