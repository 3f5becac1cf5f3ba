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

import matplotlib
import pytest
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


@pytest.mark.parametrize("probe", PROBES)
def test_probe_plot_renders_from_store(probe: str, tmp_path: Path) -> None:
    if probe not in TINY:
        pytest.fail(f"add a tiny config for probe {probe} to tests/test_all_plots.py")
    text = f'name = "{probe}"\n' + HEADER + TINY[probe]
    config = parse_config(tomllib.loads(text), source=f"<tiny {probe}>")
    assert config.steps[-1].probe == probe, "the last step of a tiny config is the one plotted"
    store = tmp_path / "s.zarr"
    run_pipeline(config, str(store), make_registry(), progress=None)

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
