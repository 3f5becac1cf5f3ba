"""The ``.atlas`` xarray accessors: a stored result explains and draws itself in a notebook.

Importing :mod:`lossatlas` registers them (the moment xarray is imported, before or
after), so a Dataset or DataTree opened with plain xarray gets the same figures and facts
the CLI shows::

    import xarray as xr
    import lossatlas  # registers .atlas

    tree = xr.open_datatree("atlas.zarr", engine="zarr")
    tree.atlas.runs                       # ['quickstart']
    ds = tree.atlas.step("quickstart/line")
    ds.atlas.probe                        # 'random-line'
    ds.atlas.config["model"]              # the run's [model] table
    ds.atlas.provenance["torch_version"]  # versions, device, times
    ds.atlas.completion                   # 1.0 when every cell is done
    ds.where(ds.atlas.done).train_loss    # values of finished cells only
    fig = ds.atlas.plot(logy=True)        # the probe's figure

Nothing here computes: everything is read from the Dataset's variables and attrs
(``cell_status`` and the provenance attrs the runner writes; see docs/store.md).
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

import xarray as xr

from .errors import StoreError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .registry import Registry

__all__ = ["PROVENANCE_KEYS", "AtlasAccessor", "AtlasTreeAccessor"]

STATUS_VAR = "cell_status"
STATUS_DONE, STATUS_NONFINITE = 1, 2

#: The step attrs that make up a result's provenance, in display order.
PROVENANCE_KEYS = (
    "run",
    "step",
    "probe",
    "probe_plugin",
    "status",
    "started",
    "finished",
    "seconds",
    "cells_nonfinite",
    "device",
    "device_name",
    "dtype",
    "seed",
    "lossatlas_version",
    "torch_version",
    "python_version",
    "numpy_version",
    "xarray_version",
    "zarr_version",
    "platform",
)


@functools.lru_cache(maxsize=1)
def _default_registry() -> Registry:
    from .registry import make_registry

    return make_registry()


def _json_attr(attrs: dict[str, Any], key: str) -> dict[str, Any]:
    raw = attrs.get(key)
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        raise StoreError(f"attribute '{key}' is not valid JSON: {str(raw)[:80]!r}") from None
    return value if isinstance(value, dict) else {}


@xr.register_dataset_accessor("atlas")
class AtlasAccessor:
    """``ds.atlas``: the probe, config, provenance, completion and plot of a stored step."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    # ------------------------------------------------------------ identity

    @property
    def is_result(self) -> bool:
        """Whether this Dataset is a lossatlas step result (it names its probe)."""
        return "probe" in self._ds.attrs

    def _need(self) -> None:
        if not self.is_result:
            raise StoreError(
                "this Dataset is not a lossatlas result (it has no 'probe' attribute); open "
                "a RUN/STEP group of a lossatlas store, e.g. xr.open_zarr(STORE, group='RUN/STEP')"
            )

    @property
    def probe(self) -> str:
        """The name of the probe that made this result."""
        self._need()
        return str(self._ds.attrs["probe"])

    @property
    def run(self) -> str:
        """The run (store group) this result belongs to."""
        return str(self._ds.attrs.get("run", ""))

    @property
    def step(self) -> str:
        """The step's name in its run."""
        return str(self._ds.attrs.get("step", ""))

    @property
    def name(self) -> str:
        """``RUN/STEP``, the name ``lossatlas plot`` takes."""
        return f"{self.run}/{self.step}"

    @property
    def status(self) -> str:
        """``complete``; ``running`` for a step not finished (yet); ``failed`` or
        ``interrupted`` (with the one-line error in ``attrs["error"]``) for one that
        stopped — the same ``lossatlas run`` resumes it."""
        return str(self._ds.attrs.get("status", "unknown"))

    # -------------------------------------------------------------- config

    @property
    def config(self) -> dict[str, Any]:
        """The whole run config (top-level keys, [model], [dataset], [[steps]]) as a dict."""
        self._need()
        return _json_attr(self._ds.attrs, "config")

    @property
    def step_config(self) -> dict[str, Any]:
        """This step's [[steps]] table as written: name, probe and options."""
        self._need()
        return _json_attr(self._ds.attrs, "step_config")

    @property
    def options(self) -> dict[str, Any]:
        """The probe options of this step (its [[steps]] table less name, probe, overrides)."""
        skip = {"name", "probe", "model", "dataset"}
        return {k: v for k, v in self.step_config.items() if k not in skip}

    @property
    def provenance(self) -> dict[str, Any]:
        """Versions, device, dtype, seed, start/end times and status of this result."""
        self._need()
        attrs = self._ds.attrs
        return {k: attrs[k] for k in PROVENANCE_KEYS if k in attrs}

    # ---------------------------------------------------------- completion

    @property
    def cell_dims(self) -> tuple[str, ...]:
        """The dims the sweep ran one cell at a time."""
        return tuple(self._ds.attrs.get("cell_dims", ()))

    def _status(self) -> xr.DataArray:
        self._need()
        if STATUS_VAR not in self._ds:
            raise StoreError(f"result '{self.name}' has no '{STATUS_VAR}' variable")
        return self._ds[STATUS_VAR]

    @property
    def done(self) -> xr.DataArray:
        """Boolean mask over the cell dims: True where the cell was computed.

        Use it to keep finished cells only: ``ds.where(ds.atlas.done)``.
        """
        status = self._status()
        mask = status >= STATUS_DONE
        mask.attrs = {"description": "cell was computed", "units": ""}
        return mask.rename("done")

    @property
    def nonfinite(self) -> xr.DataArray:
        """Boolean mask over the cell dims: True where a cell holds NaN or inf values."""
        mask = self._status() == STATUS_NONFINITE
        mask.attrs = {"description": "cell holds NaN or inf", "units": ""}
        return mask.rename("nonfinite")

    @property
    def cells(self) -> tuple[int, int]:
        """(cells computed, cells in all)."""
        from .store.cells import cell_counts

        counts = cell_counts(self._status())
        return counts.done, counts.total

    @property
    def completion(self) -> float:
        """The fraction of cells computed, in [0, 1]."""
        done, total = self.cells
        return done / total if total else 1.0

    # ------------------------------------------------------------ variables

    @property
    def results(self) -> xr.Dataset:
        """The measured variables without the engine's bookkeeping (``cell_status``)."""
        return self._ds.drop_vars(STATUS_VAR, errors="ignore")

    def describe(self) -> str:
        """A few lines: what this result is, its completion and each variable's meaning."""
        self._need()
        done, total = self.cells
        lines = [
            f"{self.name}: probe {self.probe} [{self.status}], cells {done}/{total}",
            "dims: " + ", ".join(f"{d}={n}" for d, n in self._ds.sizes.items()),
        ]
        for name, var in self.results.data_vars.items():
            units = var.attrs.get("units") or ""
            unit_text = f" [{units}]" if units else ""
            lines.append(
                f"  {name}({', '.join(map(str, var.dims))}){unit_text}: "
                f"{var.attrs.get('description', '')}"
            )
        return "\n".join(lines)

    # ------------------------------------------------------------- drawing

    def plot(
        self, registry: Registry | None = None, *, style: str | None = None, **kwargs: Any
    ) -> Figure:
        """Draw this result with its probe's ``plot`` (the paper's figure).

        ``kwargs`` are the probe's plot options (``lossatlas plugins PROBE`` lists them;
        ``logy=True`` is understood by every probe), checked as ``lossatlas plot -O``
        checks them. The probe is looked up in ``registry`` (default: the installed
        plugins). ``surface=True`` draws the result's 2-D maps as 3-D surfaces instead
        (:func:`lossatlas.engine.maps.plot_surfaces`, for any probe). The figure is
        drawn in ``style`` (default: the run config's ``style``, else lossatlas's; see
        :mod:`lossatlas.engine.style`); save it inside ``use_style`` too, or with
        :meth:`savefig`, for the style's PDF fonts.
        """
        from .plotting import result_figure, run_style
        from .style import use_style

        self._need()
        surface = bool(kwargs.pop("surface", False))
        reg = registry if registry is not None else _default_registry()
        with use_style(style if style is not None else run_style(self._ds)):
            return result_figure({self.name: self._ds.load()}, reg, kwargs, surface=surface)

    def savefig(
        self,
        path: str,
        dpi: int = 150,
        *,
        style: str | None = None,
        title: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Draw with :meth:`plot` and save to ``path`` (format from its suffix), both
        inside the style (so a PDF embeds TrueType fonts). ``title``: None keeps the
        figure as the probe drew it, True puts RUN/STEP above it as ``lossatlas plot``
        does, False removes every figure title (``--no-title``)."""
        import matplotlib.pyplot as plt

        from .plotting import check_dpi, remove_titles, run_style, title_figure
        from .style import use_style

        dpi = check_dpi(dpi, "dpi")
        with use_style(style if style is not None else run_style(self._ds)):
            fig = self.plot(style=style, **kwargs)
            try:
                if title:
                    title_figure(fig, self.name)
                elif title is not None:
                    remove_titles(fig)
                fig.savefig(path, dpi=dpi, bbox_inches="tight")
            finally:
                plt.close(fig)


@xr.register_datatree_accessor("atlas")
class AtlasTreeAccessor:
    """``tree.atlas``: the runs and steps of a whole store opened with ``xr.open_datatree``."""

    def __init__(self, tree: xr.DataTree) -> None:
        self._tree = tree

    @property
    def runs(self) -> list[str]:
        """The runs in the store (top-level groups), sorted."""
        return sorted(self._tree.children)

    def steps(self, run: str) -> list[str]:
        """The steps of ``run`` that hold a result, in the order of the run config's
        [[steps]] (the pipeline's order; any others after them, sorted)."""
        if run not in self._tree.children:
            raise StoreError(f"the store has no run '{run}'; runs: {', '.join(self.runs)}")
        node = self._tree[run]
        stored = sorted(n for n, child in node.children.items() if "probe" in child.attrs)
        try:
            config = _json_attr(dict(node.attrs), "config")
        except StoreError:
            config = {}
        listed = [s.get("name") for s in config.get("steps", []) if isinstance(s, dict)]
        first = [s for s in listed if s in stored]
        return first + [s for s in stored if s not in first]

    def run_config(self, run: str) -> dict[str, Any]:
        """The config of ``run`` as a dict."""
        self.steps(run)
        return _json_attr(dict(self._tree[run].attrs), "config")

    def step(self, name: str) -> xr.Dataset:
        """The result ``RUN/STEP`` as a Dataset (with its ``.atlas``)."""
        run, _, step = name.partition("/")
        if not step:
            raise StoreError(f"'{name}' must be RUN/STEP")
        if step not in self.steps(run):
            raise StoreError(
                f"run '{run}' has no step '{step}'; steps: {', '.join(self.steps(run)) or 'none'}"
            )
        return self._tree[run][step].to_dataset()

    def results(self) -> dict[str, xr.Dataset]:
        """Every result in the store as ``{"RUN/STEP": Dataset}``."""
        return {f"{r}/{s}": self._tree[r][s].to_dataset() for r in self.runs for s in self.steps(r)}

    @property
    def completion(self) -> dict[str, float]:
        """The fraction of cells computed, per ``RUN/STEP``."""
        return {name: ds.atlas.completion for name, ds in self.results().items()}

    def plot(self, name: str, registry: Registry | None = None, **kwargs: Any) -> Figure:
        """The probe's figure of ``RUN/STEP``."""
        return self.step(name).atlas.plot(registry=registry, **kwargs)
