"""Every registered probe draws its figure from a stored result.

For each probe the built-in plugins register, a tiny config (``TINY`` below: the
probe's step, after a short ``train`` step where it needs a trained point) runs into
a fresh store, and ``lossatlas plot`` must write a non-empty PNG. A probe without an
entry fails with the message to add one, so a new probe cannot ship without a figure
that draws. Deselect with ``-m "not plots"``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import matplotlib
import pytest
import torch
from click.testing import CliRunner

from lossatlas.engine import make_registry
from lossatlas.engine.cli import cli
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store

matplotlib.use("Agg")

pytestmark = pytest.mark.plots

#: model and data of every tiny config: a 64-6-10 MLP on 120 digits (D = 460).
HEADER = """
seed = 0
dtype = "float64"

[model]
plugin = "mlp"
hidden = [6]

[dataset]
plugin = "digits"
limit = 120
"""

#: a few SGD steps: enough to give later steps a trained point and a trajectory.
TRAIN = """
[[steps]]
name = "train"
probe = "train"
epochs = 2
batch_size = 32
lr = 0.2
record_every = 1
"""

#: a second trained point, for the probes that join two.
OTHER = """
[[steps]]
name = "other"
probe = "train"
from = "init:1"
epochs = 2
batch_size = 32
lr = 0.2
seed = 1
record_every = 0
"""

#: probe name -> the [[steps]] of its tiny config (the LAST step is the one plotted).
TINY: dict[str, str] = {
    "random-line": """
[[steps]]
name = "probe"
probe = "random-line"
points = 5
directions = 2
""",
    "train": TRAIN,
    "interpolation": TRAIN
    + """
[[steps]]
name = "probe"
probe = "interpolation"
pairs = [["init", "train"], ["init:1", "train"]]
points = 7
zoom_points = 5
""",
    "trajectory": TRAIN
    + """
[[steps]]
name = "probe"
probe = "trajectory"
of = "train"
grid = 5
control_grid = 5
""",
    "hessian-directions": TRAIN
    + """
[[steps]]
name = "probe"
probe = "hessian-directions"
at = "train"
points = 3
""",
    "eigenpairs": TRAIN
    + """
[[steps]]
name = "probe"
probe = "eigenpairs"
at = "train"
k = 2
which = "both"
store_vectors = true
""",
    "trace": """
[[steps]]
name = "probe"
probe = "trace"
landscape = "eq26"
n_params = 20
directions = 6
n_points = 7
density_steps = 5
density_probes = 2
""",
    "projection-curvature": """
[[steps]]
name = "probe"
probe = "projection-curvature"
landscape = "eq26"
n_params = 20
projections = 40
block = 20
chunk = 20
""",
    "goldilocks": """
[[steps]]
name = "probe"
probe = "goldilocks"
radii = 3
dims = [2, 3]
samples = 1
""",
    "radial-profile": """
[[steps]]
name = "probe"
probe = "radial-profile"
radii = 4
samples = 3
dims = [2]
hessian_samples = 1
""",
    "subspace-training": """
[[steps]]
name = "probe"
probe = "subspace-training"
radii = 2
dims = [2, 4]
samples = 1
epochs = 1
batch_size = 60
""",
    "init-selection": """
[[steps]]
name = "probe"
probe = "init-selection"
inits = 3
dim = 3
epochs = 1
batch_size = 60
""",
    "radius-dynamics": """
[[steps]]
name = "probe"
probe = "radius-dynamics"
starts = [0.5, 2.0]
epochs = 2
batch_size = 60
record_every = 1
""",
    "dss": TRAIN
    + """
[[steps]]
name = "other"
probe = "train"
from = "init:1"
epochs = 2
batch_size = 32
lr = 0.2

[[steps]]
name = "probe"
probe = "dss"
pairs = [["train", "other"]]
thresholds = [2.2]
points = 5
bead_steps = 40
max_beads = 3
max_depth = 2
""",
    "permute-units": TRAIN
    + """
[[steps]]
name = "probe"
probe = "permute-units"
at = "train"
""",
    "align": TRAIN
    + OTHER
    + """
[[steps]]
name = "probe"
probe = "align"
a = "train"
b = "other"
points = 3
""",
    "curve": TRAIN
    + OTHER
    + """
[[steps]]
name = "probe"
probe = "curve"
pairs = [["train", "other"]]
epochs = 1
batch_size = 48
points = 5
""",
    "neb": TRAIN
    + OTHER
    + """
[[steps]]
name = "probe"
probe = "neb"
pairs = [["train", "other"]]
pivots = 1
cycles = 2
insert = 1
steps = 3
sub_pivots = 2
""",
    "lmc-instability": TRAIN
    + """
[[steps]]
name = "probe"
probe = "lmc-instability"
of = "train"
spawn = [0, 2]
points = 3
""",
}

#: The built-in probes (a third-party plugin installed beside lossatlas is not covered).
_REGISTRY = make_registry()
PROBES = [
    n
    for n in _REGISTRY.names("probe")
    if _REGISTRY.provider("probe", n).distribution == "lossatlas"
]


def test_every_entry_names_a_registered_probe() -> None:
    stale = sorted(set(TINY) - set(PROBES))
    assert not stale, f"TINY has entries for probes that are not registered: {stale}"


_STORED: dict[str, tuple[Path, Any]] = {}


def stored_result(probe: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The tiny config of ``probe`` run into a store once per test session (the plot
    and the CF tests read the same result): (store path, config)."""
    if probe not in TINY:
        pytest.fail(f"add a tiny config for probe {probe} to tests/test_all_plots.py")
    if probe not in _STORED:
        text = f'name = "{probe}"\n' + HEADER + TINY[probe]
        config = parse_config(tomllib.loads(text), source=f"<tiny {probe}>")
        assert config.steps[-1].probe == probe, "the last step of a tiny config is plotted"
        store = tmp_path_factory.mktemp(probe) / "s.zarr"
        run_pipeline(config, str(store), make_registry(), progress=None)
        _STORED[probe] = (store, config)
    return _STORED[probe]


@pytest.mark.parametrize("probe", PROBES)
def test_probe_plot_renders_from_store(
    probe: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store, config = stored_result(probe, tmp_path_factory)

    out = tmp_path / f"{probe}.png"
    group = f"{probe}/{config.steps[-1].name}"
    result = CliRunner().invoke(cli, ["plot", str(store), group, "-o", str(out), "--dpi", "40"])
    assert result.exit_code == 0, f"lossatlas plot {group} failed: {result.output}"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    image = matplotlib.image.imread(str(out))
    assert image.shape[0] > 20 and image.shape[1] > 20
    assert image[..., :3].std() > 0.01, "the figure is blank"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("probe", PROBES)
def test_probe_honours_device_and_dtype(
    probe: str, device: str, dtype: str, tmp_path: Path
) -> None:
    """Every probe runs on every available device in both precisions, and says so."""
    text = (
        f'name = "{probe}"\ndevice = "{device}"\n'
        + HEADER.replace('dtype = "float64"', f'dtype = "{dtype}"')
        + TINY[probe]
    )
    config = parse_config(tomllib.loads(text), source=f"<tiny {probe} {device} {dtype}>")
    store = tmp_path / "s.zarr"
    run_pipeline(config, str(store), make_registry(), progress=None)
    st = Store(str(store))
    for step in config.steps:
        ds = st.open_step(probe, step.name)
        assert ds.attrs["device"].startswith(device) and ds.attrs["dtype"] == dtype
        assert ds.atlas.completion == 1.0, f"step {step.name} on {device}/{dtype} incomplete"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("probe", PROBES)
def test_probe_on_cuda_gives_the_cpu_numbers(probe: str, tmp_path: Path) -> None:
    """Every probe's CUDA path (float64) computes what its CPU path computes, to the
    rounding of other kernels: each stored floating-point variable of every step."""
    import numpy as np

    results = {}
    for device in ("cpu", "cuda"):
        text = f'name = "{probe}"\ndevice = "{device}"\n' + HEADER + TINY[probe]
        config = parse_config(tomllib.loads(text), source=f"<tiny {probe} {device}>")
        store = tmp_path / f"{device}.zarr"
        run_pipeline(config, str(store), make_registry(), progress=None)
        results[device] = {
            step.name: Store(str(store)).open_step(probe, step.name).load() for step in config.steps
        }
    for step, want in results["cpu"].items():
        got = results["cuda"][step]
        for name in want.data_vars:
            a, b = np.asarray(got[name].values), np.asarray(want[name].values)
            if a.dtype.kind != "f" or "seconds" in str(name) or str(name).endswith("_time"):
                continue
            np.testing.assert_allclose(
                a, b, rtol=1e-5, atol=1e-7, equal_nan=True, err_msg=f"{step}/{name}"
            )


#: UDUNITS strings a stored result may use ("1": dimensionless).
UDUNITS_OK = {"1", "s", "seconds", "bytes", "rad", "degree"}


@pytest.mark.parametrize("probe", PROBES)
def test_probe_result_carries_cf_metadata(
    probe: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every variable and coordinate of every probe's result has a long_name and UDUNITS
    units, the Dataset names its Conventions, xarray's own plot labels its axes with
    them, and the result writes to netCDF as it is."""
    import matplotlib.pyplot as plt
    import xarray as xr

    store, config = stored_result(probe, tmp_path_factory)
    for step in config.steps:
        ds = Store(str(store)).open_step(probe, step.name)
        assert ds.attrs.get("Conventions") == "CF-1.11", step.name
        for name, var in ds.variables.items():
            assert str(var.attrs.get("long_name", "")).strip(), f"{step.name}/{name}: long_name"
            assert var.attrs.get("units") in UDUNITS_OK, (
                f"{step.name}/{name}: units {var.attrs.get('units')!r} is not UDUNITS"
            )
        # xarray's own plot of the first variable with one or two dims of length > 1
        for name in ds.data_vars:
            da = ds[name].squeeze()
            if 1 <= da.ndim <= 2 and da.dtype.kind in "fiu":
                fig, ax = plt.subplots()
                da.load().plot(ax=ax)
                xlabel = ax.get_xlabel()
                dim = da.dims[-1] if da.ndim == 2 else da.dims[0]
                assert xlabel == f"{ds[dim].attrs['long_name']} [{ds[dim].attrs['units']}]"
                plt.close(fig)
                break
        out = tmp_path / f"{step.name}.nc"
        ds.to_netcdf(out, engine="h5netcdf")
        back = xr.open_dataset(out, engine="h5netcdf")
        assert set(back.data_vars) == set(ds.data_vars)
        back.close()
    if probe == "interpolation":
        ds = Store(str(store)).open_step(probe, "probe")
        labels = list(ds["pair_label"].values)
        assert labels == ["init → train", "init:1 → train"]
        picked = ds.set_xindex("pair_label").sel(pair_label="init:1 → train")
        assert int(picked["pair"]) == 1


@pytest.mark.parametrize("probe", PROBES)
def test_probe_figure_is_publication_ready(
    probe: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every colour bar of every probe's figure says what it shows (a label), the
    figure's PDF embeds TrueType (Type 42) fonts, never Type 3, and a probe's own report
    section is HTML a self-contained page can hold."""
    import io

    import matplotlib.pyplot as plt

    from lossatlas.engine.plotting import result_figure
    from lossatlas.engine.style import use_style

    store, config = stored_result(probe, tmp_path_factory)
    group = f"{probe}/{config.steps[-1].name}"
    ds = Store(str(store)).open_step(probe, config.steps[-1].name).load()
    with use_style():
        fig = result_figure({group: ds}, _REGISTRY, {"logy": True})
        try:
            bars = [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None)]
            for cb in bars:
                label = cb.ax.get_ylabel() if cb.orientation == "vertical" else cb.ax.get_xlabel()
                assert label.strip(), f"{probe}: a colour bar without a label"
            buf = io.BytesIO()
            fig.savefig(buf, format="pdf")
        finally:
            plt.close(fig)
    pdf = buf.getvalue()
    assert b"/Type3" not in pdf, f"{probe}: Type 3 fonts in the PDF"
    assert b"/FontFile2" in pdf, f"{probe}: no embedded TrueType font"
    # the probe's own report section, where it has one, fits a self-contained page
    from lossatlas.engine.html import check_fragment

    own = _REGISTRY.get("probe", probe).report_html(ds)
    assert own is None or check_fragment(own) == [], (probe, check_fragment(own or ""))
