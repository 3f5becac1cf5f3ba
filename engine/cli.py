"""The ``lossatlas`` command line: run pipelines, list plugins, inspect and plot results."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

import lossatlas

from .errors import ConfigError, LossAtlasError, StoreError
from .registry import make_registry
from .runner import Progress, RunReport, StepReport

__all__ = ["main"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"lossatlas: error: {message}", err=True)
    sys.exit(code)


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn errors into one line and a non-zero exit; a traceback only with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return func(*args, **kwargs)
        except LossAtlasError as exc:
            if debug:
                raise
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; run the same command again to resume", 130)
        except PermissionError as exc:
            if debug:
                raise
            _fail(f"permission denied: {exc.filename or exc}; choose a writable location")
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if debug:
                raise
            where = getattr(exc, "lossatlas_where", None)  # set by engine.context.blame
            if where:
                first = (str(exc).strip().splitlines() or [""])[0]
                _fail(
                    f"{where} failed: {type(exc).__name__}: {first} (a bug in that plugin "
                    "or its input; rerun with --debug for the traceback)"
                )
            _fail(
                f"internal error ({type(exc).__name__}: {exc}); rerun with --debug for the "
                "traceback and please report it",
                1,
            )

    return wrapper


@click.group(context_settings=CONTEXT)
@click.version_option(lossatlas.__version__, prog_name="lossatlas")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """lossatlas: loss-landscape experiments on your own models and data.

    A config file (TOML) names a model, a data set and a list of steps; each step
    runs a probe (train, interpolate, Hessian directions, Goldilocks, DSS ...) and
    stores a labelled result in a Zarr store that xarray opens directly.

    \b
    Start with:
      lossatlas run examples/quickstart.toml      run a pipeline into ./atlas.zarr
      lossatlas inspect atlas.zarr                what is in a store
      lossatlas plot atlas.zarr quickstart/line -o line.png
      lossatlas report atlas.zarr -o report.html  every figure on one page
      lossatlas plugins                           models, data sets, probes available

    Run 'lossatlas COMMAND --help' for a command's options.
    """


# --------------------------------------------------------------------------- run


class RichProgress(Progress):
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None

    def step_started(self, step: str, total: int, pending: int) -> None:
        if self.quiet:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as RP,
        )

        done = total - pending
        if pending == 0:
            return
        self.bar = RP(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.bar.start()
        self.task = self.bar.add_task(f"step {step}", total=total, completed=done)

    def cell_done(self, step: str, status: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def step_finished(self, step: str, report: StepReport) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        if self.quiet:
            return
        if report.skipped:
            click.echo(f"step {step}: already complete in the store ({report.cells} cells)")
        else:
            extra = f", {report.nonfinite} with NaN/inf" if report.nonfinite else ""
            click.echo(
                f"step {step}: {report.computed} cell(s) computed{extra} in {report.seconds:.1f} s"
            )


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
    "--seed", type=int, default=None, metavar="N", help="Run seed (overrides the config)."
)
@click.option(
    "--executor", default=None, metavar="NAME", help="Executor plugin: local (default) or dask."
)
@click.option(
    "--address",
    default=None,
    metavar="URL",
    help="Dask scheduler address tcp://HOST:PORT (with --executor dask).",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    metavar="N",
    help="Dask LocalCluster workers (with --executor dask and no --address).",
)
@click.option(
    "--step", "steps", multiple=True, metavar="STEP", help="Run only this step (repeatable)."
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Resume an unfinished run of the same name (with --no-resume, refuse).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly
def run(
    config_file: str,
    store: str,
    name: str | None,
    device: str | None,
    dtype: str | None,
    seed: int | None,
    executor: str | None,
    address: str | None,
    workers: int | None,
    steps: tuple[str, ...],
    resume: bool,
    quiet: bool,
) -> None:
    """Run the pipeline in CONFIG.toml and store its results.

    Everything is checked before the store is touched (plugins, options, point
    references, shapes). Each step's result goes to the group RUN/STEP of the store.
    Steps already complete in the store are skipped; an interrupted run continues
    where it stopped when the same command is run again. The progress bar is off
    with --quiet, and when CI is set and stderr is not a terminal.

    \b
    Examples:
      lossatlas run examples/quickstart.toml
      lossatlas run my.toml --store results.zarr --name wide --device cuda
      lossatlas run my.toml --executor dask --workers 4
    """
    from .config import load_config
    from .runner import run_pipeline
    from .store import Store

    config = load_config(config_file)
    config = config.with_overrides(
        name=name, device=device, dtype=dtype, seed=seed, executor=executor
    )
    opts = dict(config.executor_options)
    if address:
        opts["address"] = address
    if workers is not None:
        opts["workers"] = workers
    if (address or workers is not None) and config.executor == "local":
        raise ConfigError("--address and --workers need --executor dask")
    config.executor_options = opts
    if not resume and Store(store).exists() and config.name in Store(store).runs():
        raise StoreError(f"run '{config.name}' exists in '{store}' and --no-resume was given")
    quiet = quiet or (not sys.stderr.isatty() and bool(os.environ.get("CI")))
    report: RunReport = run_pipeline(
        config, store, make_registry(), progress=RichProgress(quiet), steps=list(steps) or None
    )
    click.echo(f"\nResults of run '{report.run}' are in {report.store}")
    click.echo("Open them with:")
    click.echo("  import xarray as xr")
    click.echo(f"  tree = xr.open_datatree({report.store!r}, engine='zarr')")
    for s in report.steps:
        click.echo(f"  tree['{report.run}/{s.name}'].to_dataset()   # probe {s.probe}")
    first = report.steps[0].name if report.steps else ""
    click.echo(f"or draw one: lossatlas plot {report.store} {report.run}/{first} -o plot.png")
    click.echo(f"or all of them on one page: lossatlas report {report.store} -o report.html")


# ----------------------------------------------------------------------- plugins


@cli.command(context_settings=CONTEXT, short_help="List the installed plugins.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly
def plugins(as_json: bool) -> None:
    """List every plugin, its distribution and what it registers; broken ones marked.

    The names shown are what a config uses: [model] plugin = NAME,
    [dataset] plugin = NAME, probe = NAME in [[steps]], subspace tables
    {plugin = NAME}, executor = NAME. Set LOSSATLAS_DISABLE_PLUGINS=a,b to
    switch plugins off by name.
    """
    registry = make_registry()
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in registry.records], indent=2))
        return
    for r in registry.records:
        mark = {"ok": "", "failed": "  [FAILED]", "disabled": "  [disabled]"}[r.status]
        click.echo(f"{r.name}  ({r.distribution} {r.version}){mark}")
        if r.error:
            click.echo(f"    error: {r.error}")
        for kind, names in r.registered.items():
            for n in names:
                comp = registry.components[kind].get(n)
                summary = comp[0].summary if comp else ""
                click.echo(f"    {kind:<9} {n:<22} {summary}")


# ----------------------------------------------------------------------- inspect


@cli.command(context_settings=CONTEXT, short_help="Show what a store holds.")
@click.argument("store", type=click.Path())
@click.option("--run", "run_name", default=None, metavar="RUN", help="Only this run.")
@friendly
def inspect(store: str, run_name: str | None) -> None:
    """Show the runs and steps in STORE: dims, completion and provenance.

    For each run: its status, times, versions, device, dtype and seed; for each
    step: its probe, how many cells are computed, its dims and variables.

    \b
    Example:
      lossatlas inspect atlas.zarr --run quickstart
    """
    import numpy as np

    from .store import STATUS_NONFINITE, STATUS_VAR, Store

    st = Store(store)
    runs = st.runs()
    if run_name:
        if run_name not in runs:
            raise StoreError(f"store '{store}' has no run '{run_name}'; runs: {', '.join(runs)}")
        runs = [run_name]
    if not runs:
        click.echo(f"{store}: no runs yet")
    for r in runs:
        attrs = st.run_attrs(r)
        prov = json.loads(attrs.get("provenance", "{}"))
        click.echo(
            f"run {r}  [{attrs.get('status', '?')}]  started {attrs.get('started', '?')}"
            f"  finished {attrs.get('finished', '-')}"
        )
        click.echo(
            f"  config: {attrs.get('config_source', '?')}; lossatlas "
            f"{prov.get('lossatlas_version')}, torch {prov.get('torch_version')}, "
            f"python {prov.get('python_version')}; device {prov.get('device')}, "
            f"dtype {prov.get('dtype')}, seed {prov.get('seed')}"
        )
        if attrs.get("error"):
            click.echo(f"  stopped {attrs.get('stopped', '?')}: {attrs['error']}")
            click.echo("  (run the same command again to resume)")
        for s in st.steps(r):
            g = st.step_group(r, s)
            if g is None or not g.attrs.get("template_complete"):
                click.echo(f"  step {s}: incomplete template (will be rewritten on resume)")
                continue
            status = np.asarray(g[STATUS_VAR][...])
            total = status.size
            done = int(np.sum(status > 0))
            bad = int(np.sum(status == STATUS_NONFINITE))
            ds = st.open_step(r, s)
            dims = ", ".join(f"{d}={n}" for d, n in ds.sizes.items())
            click.echo(
                f"  step {s}  probe {g.attrs.get('probe')}  [{g.attrs.get('status')}] "
                f"cells {done}/{total}" + (f" ({bad} with NaN/inf)" if bad else "")
            )
            if g.attrs.get("error"):
                click.echo(f"    error: {g.attrs['error']}")
            click.echo(f"    dims: {dims}")
            names = [v for v in ds.data_vars if v != STATUS_VAR]
            click.echo(f"    variables: {', '.join(names)}")


# -------------------------------------------------------------------------- plot


@cli.command(context_settings=CONTEXT, short_help="Draw stored results to an image.")
@click.argument("store", type=click.Path())
@click.argument("groups", metavar="RUN/STEP [RUN/STEP ...]", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Image file; the format follows the suffix (.png, .svg, .pdf).",
)
@click.option("--logy", is_flag=True, help="Logarithmic loss axis, where the plot has one.")
@click.option(
    "--dpi",
    type=int,
    default=130,
    show_default=True,
    help="Resolution of raster images (.png, .jpg).",
)
@friendly
def plot(store: str, groups: tuple[str, ...], output: str, logy: bool, dpi: int) -> None:
    """Draw the stored result RUN/STEP of STORE with its probe's plot.

    RUN/STEP names a run and one of its steps, as 'lossatlas inspect STORE' lists
    them. The figure is the probe's picture of the paper it implements, drawn from
    the stored result alone (nothing is recomputed). Several RUN/STEP of one probe
    go on one figure where the probe compares results (goldilocks: seed 000 Fig. 4;
    radial-profile: Fig. 5a), each labelled by its RUN/STEP.

    \b
    Examples:
      lossatlas plot atlas.zarr quickstart/line -o line.png --logy
      lossatlas plot atlas.zarr fig4/relu-100 fig4/tanh-100 fig4/cnn -o fig4.png
    """
    path = draw(store, groups, output, logy=logy, dpi=dpi)
    click.echo(f"wrote {path}")


def draw(store: str, groups: str | tuple[str, ...], output: str, **kwargs: Any) -> Path:
    """Render ``RUN/STEP`` (one or several of one probe) of ``store`` to ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .accessor import title_figure
    from .store import Store

    groups = (groups,) if isinstance(groups, str) else tuple(groups)
    suffix = Path(output).suffix.lower()
    if suffix not in (".png", ".svg", ".pdf", ".jpg", ".jpeg"):
        raise ConfigError(f"output '{output}': use a .png, .svg or .pdf file name")
    folder = Path(output).resolve().parent
    if not folder.is_dir():
        raise ConfigError(f"output '{output}': folder '{folder}' does not exist; create it first")
    st = Store(store)
    datasets = {}
    for group in groups:
        if "/" not in group:
            raise ConfigError(f"group '{group}' must be RUN/STEP (see lossatlas inspect {store})")
        run_name, step = group.split("/", 1)
        if run_name not in st.runs():
            raise StoreError(f"store '{store}' has no run '{run_name}'")
        datasets[group] = st.open_step(run_name, step)
    probes = sorted({str(ds.attrs["probe"]) for ds in datasets.values()})
    if len(probes) > 1:
        raise ConfigError(
            f"groups {', '.join(groups)} are results of different probes ({', '.join(probes)}); "
            "one figure compares results of one probe"
        )
    probe = make_registry().get("probe", probes[0])
    opts = {k: v for k, v in kwargs.items() if k != "dpi"}
    if len(datasets) == 1:
        fig = probe.plot(next(iter(datasets.values())).load(), **opts)
    else:
        fig = probe.plot_many({g: ds.load() for g, ds in datasets.items()}, **opts)
    title_figure(fig, ", ".join(groups))
    fig.savefig(output, dpi=kwargs.get("dpi", 130), bbox_inches="tight")
    plt.close(fig)
    return Path(output)


# ------------------------------------------------------------------------ report


class RichReportProgress:
    """A rich progress bar over the figures of a report (nothing when quiet)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None

    def start(self, total: int) -> None:
        if self.quiet or total == 0:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RP

        self.bar = RP(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("drawing figures", total=total)

    def advance(self, label: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=f"drew {label}")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


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
    from .report import write_report

    quiet = quiet or (not sys.stderr.isatty() and bool(os.environ.get("CI")))
    summary = write_report(
        store,
        output,
        list(runs) or None,
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


def main() -> None:
    cli(prog_name="lossatlas")


if __name__ == "__main__":
    main()
