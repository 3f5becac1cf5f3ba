"""``lossatlas inspect``: what a store holds."""

from __future__ import annotations

import json

import click

from .base import CONTEXT, cli, debug_option, friendly

__all__ = ["inspect"]


@cli.command(context_settings=CONTEXT, short_help="Show what a store holds.")
@click.argument("store", type=click.Path())
@click.option("--run", "run_name", default=None, metavar="RUN", help="Only this run.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one JSON list).")
@debug_option
@friendly
def inspect(store: str, run_name: str | None, as_json: bool) -> None:
    """Show the runs and steps in STORE: dims, completion and provenance.

    For each run: its state, times, versions, device, dtype and seed; for each
    step: its probe, how many cells are computed, its dims and variables.

    \b
    A run's state is one of:
      running      a live process holds it (its pid, host and last heartbeat shown)
      stale        it says running, but its process is gone (killed, crashed)
      interrupted  stopped by Ctrl-C, SIGTERM or SIGHUP
      failed       stopped by an error (shown)
      partial      finished with a step not complete
      complete     every step complete
    A stale, interrupted, failed or partial run resumes with the same 'lossatlas run'.

    \b
    Example:
      lossatlas inspect atlas.zarr --run quickstart
      lossatlas inspect atlas.zarr --json
    """
    from ..store.reading import check_run, store_to_read
    from ..store.summary import store_summary

    st = store_to_read(store)
    runs = st.runs()
    if run_name:
        check_run(st, store, run_name)
        runs = [run_name]
    summary = store_summary(st, runs)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    if not runs:
        click.echo(f"{store}: no runs yet")
    for entry in summary:
        r = entry["run"]
        prov = entry["provenance"]
        state = entry["state"]
        click.echo(
            f"run {r}  [{state}]  started {entry.get('started', '?')}"
            f"  finished {entry.get('finished', '-')}"
        )
        click.echo(
            f"  config: {entry.get('config_source', '?')}; lossatlas "
            f"{prov.get('lossatlas_version')}, torch {prov.get('torch_version')}, "
            f"python {prov.get('python_version')}; device {prov.get('device')}, "
            f"dtype {prov.get('dtype')}, seed {prov.get('seed')}"
        )
        lease = entry.get("lease")
        if state == "running" and lease:
            click.echo(f"  running now: {lease['description']}")
        elif state == "stale":
            was = f" (was {lease['description']})" if lease else ""
            click.echo(
                f"  stale: it says running but no process is running it{was}; it was "
                "killed or crashed; run the same command again to resume"
            )
        if entry.get("error"):
            click.echo(f"  stopped {entry.get('stopped', '?')}: {entry['error']}")
            click.echo("  (run the same command again to resume)")
        for step in entry["steps"]:
            s = step["step"]
            if not step["template_complete"]:
                click.echo(f"  step {s}: incomplete template (will be rewritten on resume)")
                continue
            cells = step["cells"]
            if "error" in cells:
                count = f"cells unreadable ({cells['error']}); run 'lossatlas verify'"
            else:
                bad = cells["nonfinite"]
                count = f"cells {cells['done']}/{cells['total']}" + (
                    f" ({bad} with NaN/inf)" if bad else ""
                )
            click.echo(f"  step {s}  probe {step['probe']}  [{step['status']}] {count}")
            if step.get("error"):
                click.echo(f"    error: {step['error']}")
            dims = ", ".join(f"{d}={n}" for d, n in step["dims"].items())
            click.echo(f"    dims: {dims}")
            click.echo(f"    variables: {', '.join(step['variables'])}")
