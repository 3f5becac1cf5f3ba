"""``lossatlas run``: run a pipeline config into a store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .base import CONTEXT, AtLeast, cli, debug_option, friendly, naming_config, registry

__all__ = ["run"]


@cli.command(context_settings=CONTEXT, short_help="Run a pipeline config into a store.")
@click.argument("config_file", metavar="CONFIG.toml", type=click.Path(dir_okay=False))
@click.option(
    "--store",
    "store",
    default="atlas.zarr",
    show_default=True,
    metavar="PATH",
    help="Zarr store to write into (created if missing; shared by many runs).",
)
@click.option(
    "--name",
    default=None,
    metavar="NAME",
    help="Run name (the store group); default: the config's.",
)
@click.option(
    "--device", default=None, metavar="DEVICE", help="cpu, cuda or cuda:N (overrides the config)."
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float64"]),
    default=None,
    help="Floating-point precision (overrides the config).",
)
@click.option(
    "--seed",
    type=AtLeast(0),
    default=None,
    metavar="N",
    help="Run seed, 0 or more (overrides the config).",
)
@click.option(
    "--executor", default=None, metavar="NAME", help="Executor plugin: local (default) or dask."
)
@click.option(
    "-E",
    "--executor-option",
    "executor_opts",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option of the executor (repeatable), e.g. -E workers=4 or "
    "-E address=tcp://host:8786; 'lossatlas plugins dask' lists them.",
)
@click.option("--address", default=None, metavar="URL", hidden=True)  # = -E address=URL
@click.option("--workers", type=AtLeast(1), default=None, metavar="N", hidden=True)
@click.option(
    "--step",
    "steps",
    multiple=True,
    metavar="STEP",
    help="Run only this step (repeatable); the earlier steps it uses must be in the store.",
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Resume an unfinished run of the same name (with --no-resume, refuse).",
)
@click.option(
    "--rerun",
    default=None,
    metavar="STEP",
    help="Recompute STEP and every step after it (their stored results are removed first).",
)
@click.option(
    "--wait",
    is_flag=True,
    help="If another process is running this run, wait for it instead of stopping.",
)
@click.option(
    "--allow-plugin-change",
    is_flag=True,
    help="Resume a step although a plugin it uses changed version (recorded in provenance).",
)
@click.option(
    "--max-memory",
    default=None,
    metavar="SIZE",
    help="Refuse a step needing more memory per cell (e.g. 8GiB); default: memory available.",
)
@click.option(
    "--max-store",
    default=None,
    metavar="SIZE",
    help="Refuse a step whose result is larger (e.g. 50GB); default: free disk at the store.",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress bar, no per-step lines; at the end one line: where the results are.",
)
@debug_option
@friendly
def run(
    config_file: str,
    store: str,
    name: str | None,
    device: str | None,
    dtype: str | None,
    seed: int | None,
    executor: str | None,
    executor_opts: tuple[str, ...],
    address: str | None,
    workers: int | None,
    steps: tuple[str, ...],
    resume: bool,
    rerun: str | None,
    wait: bool,
    allow_plugin_change: bool,
    max_memory: str | None,
    max_store: str | None,
    quiet: bool,
) -> None:
    """Run the pipeline in CONFIG.toml and store its results.

    Everything is checked before the store is touched (plugins, options, point
    references, shapes). Each step's result goes to the group RUN/STEP of the store.
    Steps already complete in the store are skipped; an interrupted run continues
    where it stopped when the same command is run again.

    --step runs only the steps named; the earlier steps whose results they use (a
    point such as at = "train") must already be in the store under the same run
    name, or be named with --step too, else the run stops before it starts.

    Each step prints a line when it ends ("step line: 123 cell(s) computed in
    4.5 s"). On a terminal a progress bar shows the step's cells and, below it, what
    runs inside the current cell (a training's steps and epochs, an eigen-solver's
    HVPs, DSS beads), each with an ETA; in a log (stderr not a terminal) a line
    every few seconds says the same (LOSSATLAS_PROGRESS_SECONDS, default 5).
    --quiet turns all of it off, and of the closing lines (how to open the results)
    keeps only the first, where the results are.

    An error in the config, or in what it names (plugins, options, checkpoints),
    starts with the config file's name.

    Before anything is written, each step's size is estimated (cells, evaluations,
    bytes in the store, memory per cell; 'lossatlas check' prints them) and a step
    over --max-memory or --max-store is refused with what to lower.

    -E KEY=VALUE sets an option of the executor (as its [executor] table in the
    config does); any executor plugin's options work, and 'lossatlas plugins NAME'
    lists them. --address URL and --workers N are short for -E address=URL and
    -E workers=N.

    One process runs a run at a time: a second one on the same run stops with the
    holder's pid and host (or waits, with --wait). SIGTERM and SIGHUP stop a run
    as Ctrl-C does (status interrupted; the same command resumes it).

    The config format is in docs/config.md; examples/ holds a config for each
    probe; 'lossatlas plugins' lists the models, data sets, probes ... a config
    can name, and 'lossatlas plugins NAME' one's options.

    \b
    Examples:
      lossatlas run examples/quickstart.toml
      lossatlas run my.toml --store results.zarr --name wide --device cuda
      lossatlas run my.toml --executor dask -E workers=4
      lossatlas run my.toml --step line --debug
      lossatlas run my.toml --rerun line
    """
    from ..config import load_config, parse_executor_option
    from ..errors import MissingStepError, StoreError
    from ..progress import ConsoleProgress
    from ..runner import run_pipeline
    from ..sizes import Limits, parse_size
    from ..store import Store

    with naming_config(str(Path(config_file))):
        config = load_config(config_file)
        config = config.with_overrides(
            name=name, device=device, dtype=dtype, seed=seed, executor=executor
        )
        opts = dict(config.executor_options)
        opts.update(parse_executor_option(text) for text in executor_opts)
        if address:
            opts["address"] = address
        if workers is not None:
            opts["workers"] = workers
        if (address or workers is not None) and config.executor == "local":
            raise click.UsageError("--address and --workers need --executor dask")
        config.executor_options = opts
        if not resume and Store(store).exists() and config.name in Store(store).runs():
            raise StoreError(f"run '{config.name}' exists in '{store}' and --no-resume was given")
        progress = ConsoleProgress(bar=False if quiet else None, lines=not quiet, log=not quiet)
        limits = Limits.machine(
            store,
            memory=parse_size(max_memory, "--max-memory") if max_memory else None,
            store=parse_size(max_store, "--max-store") if max_store else None,
        )
        try:
            report = run_pipeline(
                config,
                store,
                registry(),
                progress=progress,
                steps=list(steps) or None,
                rerun=rerun,
                wait=wait,
                allow_plugin_change=allow_plugin_change,
                limits=limits,
            )
        except MissingStepError as exc:
            raise MissingStepError(
                f"{exc.context['reason']}; " + _again(config, store, steps, exc), **exc.context
            ) from None
    if quiet:
        click.echo(f"Results of run '{report.run}' are in {report.store}")
        return
    click.echo(f"\nResults of run '{report.run}' are in {report.store}")
    click.echo("Open them with:")
    click.echo("  import lossatlas")
    click.echo(f"  tree = lossatlas.open({report.store!r}, {report.run!r})")
    for s in report.steps:
        click.echo(f"  tree['{s.name}'].ds   # probe {s.probe}")
    first = report.steps[0].name if report.steps else ""
    click.echo(f"or draw one: lossatlas plot {report.store} {report.run}/{first} -o plot.png")
    click.echo(f"or all of them on one page: lossatlas report {report.store} -o report.html")


def _again(config: Any, store: str, steps: tuple[str, ...], exc: Any) -> str:
    """The command that names the missing step with --step too (from the error's
    context: the step left out)."""
    needed = str(exc.context.get("needed", ""))
    names = [s.name for s in config.steps]
    wanted = [n for n in names if n in steps or n == needed]
    again = " ".join(f"--step {n}" for n in wanted)
    return (
        f"name it with --step too (lossatlas run {config.source or 'CONFIG.toml'} "
        f"--store {store} {again}), or run the whole config without --step"
    )
