"""Drawing stored results of a store to image files: ``lossatlas plot`` opens the
steps here and hands them to :func:`lossatlas.engine.plotting.draw_results` (one step
with its probe's plot, several of one probe with ``plot_many``, steps of different
probes as a comparison of their paths, or a step's 2-D maps as surfaces)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .plotting import IMAGE_SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "draw"]


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
    suffix). ``kwargs`` go to :func:`~lossatlas.engine.plotting.draw_results`
    (``options``, ``logy``, ``surface``, ``dpi``, ``style``, ``title``); ``warn`` says
    that a step is partial (drawn from the cells done); ``registry``: the plugins
    (default: the installed ones)."""
    from .plotting import check_output, draw_results
    from .store.reading import open_result, store_to_read

    groups = (groups,) if isinstance(groups, str) else tuple(groups)
    out = check_output(output)  # the one check of the file name: before the store is read
    st = store_to_read(store)
    results = {group: open_result(st, store, group) for group in groups}
    if registry is None:
        from .registry import make_registry

        registry = make_registry()
    return draw_results(results, out, registry=registry, warn=warn, **kwargs)
