"""Drawing stored results to image files: one step with its probe's plot, several steps
of one probe with its ``plot_many``, steps of different probes as a comparison of their
paths, or any step's 2-D maps as surfaces. ``lossatlas plot`` and the report call it."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["IMAGE_SUFFIXES", "draw"]

#: Image formats ``plot -o`` accepts (by suffix).
IMAGE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def draw(
    store: str,
    groups: str | tuple[str, ...],
    output: str,
    *,
    registry: Any = None,
    warn: Callable[[str], Any] = _warn,
    **kwargs: Any,
) -> Path:
    """Render ``RUN/STEP`` (one or several) of ``store`` to ``output`` (the format by its
    suffix). ``kwargs``: ``logy``, ``surface``, ``dpi`` and any the probe's plot takes;
    ``warn`` says that a step is partial (drawn from the cells done); ``registry``:
    the plugins (default: the installed ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .accessor import title_figure
    from .store import STATUS_VAR
    from .store.cells import cell_counts
    from .store.reading import open_result, store_to_read

    groups = (groups,) if isinstance(groups, str) else tuple(groups)
    suffix = Path(output).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ConfigError(
            f"output '{output}': use a {', '.join(IMAGE_SUFFIXES[:-1])} or "
            f"{IMAGE_SUFFIXES[-1]} file name"
        )
    folder = Path(output).resolve().parent
    if not folder.is_dir():
        raise ConfigError(f"output '{output}': folder '{folder}' does not exist; create it first")
    st = store_to_read(store)
    datasets = {}
    labels = []
    for group in groups:
        ds = open_result(st, store, group)
        datasets[group] = ds
        labels.append(group)
        if ds.attrs.get("status") != "complete":
            counts = cell_counts(ds[STATUS_VAR])
            done, total = counts.done, counts.total
            run_name, step = group.split("/", 1)
            warn(
                f"step '{step}' of run '{run_name}' is partial ({done}/{total} cells done); "
                "the plot shows what exists"
            )
            labels[-1] += f" (partial: {done}/{total} cells)"
    probes = sorted({str(ds.attrs["probe"]) for ds in datasets.values()})
    if registry is None:
        from .registry import make_registry

        registry = make_registry()
    probe = registry.get("probe", probes[0])
    opts = {k: v for k, v in kwargs.items() if k not in ("dpi", "surface")}
    if kwargs.get("surface"):
        if len(datasets) > 1:
            raise ConfigError("--surface draws the 2-D maps of one step; give one RUN/STEP")
        from .maps import plot_surfaces

        fig = plot_surfaces(next(iter(datasets.values())).load(), logz=bool(opts.get("logy")))
    elif len(datasets) == 1:
        fig = probe.plot(next(iter(datasets.values())).load(), **opts)
    elif len(probes) == 1 and type(probe).plot_many is not _base_plot_many():
        fig = probe.plot_many({g: ds.load() for g, ds in datasets.items()}, **opts)
    else:
        fig = _compare_paths(registry, datasets, groups, probes, bool(opts.get("logy")))
    title_figure(fig, ", ".join(labels))
    fig.savefig(output, dpi=kwargs.get("dpi", 130), bbox_inches="tight")
    plt.close(fig)
    return Path(output)


def _base_plot_many() -> Any:
    from .components import Probe

    return Probe.plot_many


def _compare_paths(
    registry: Any, datasets: dict[str, Any], groups: tuple[str, ...], probes: list[str], logy: bool
) -> Any:
    """The path comparison of several steps (see :mod:`lossatlas.engine.paths`): every
    step's probe must declare the paths its result holds."""
    from .paths import plot_paths

    paths = {}
    for group, ds in datasets.items():
        found = registry.get("probe", str(ds.attrs["probe"])).paths(ds.load())
        if not found:
            what = (
                f"are results of different probes ({', '.join(probes)})"
                if len(probes) > 1
                else f"are results of probe '{probes[0]}', which draws one result at a time"
            )
            raise ConfigError(
                f"groups {', '.join(groups)} {what}; such steps go on one figure only as a "
                f"comparison of paths, and '{group}' (probe '{ds.attrs['probe']}') holds no "
                "path between two points; plot the steps one by one"
            )
        paths[group.split("/", 1)[1] if len({g.split("/")[0] for g in groups}) == 1 else group] = (
            found
        )
    return plot_paths(paths, logy=logy)
