"""One process per run, signals that end a run cleanly, runs that died seen as such.

- Reproduction 2: SIGTERM (and SIGHUP) end ``lossatlas run`` as Ctrl-C does: status
  ``interrupted``, one line with the resume hint, exit 143 (129); the same command then
  completes the run.
- Reproduction 3: two ``lossatlas run`` of one run started at the same moment: one runs,
  the other exits 2 with one line naming the holder (never an internal error); with
  ``--wait`` both succeed. Repeated, since a race shows only sometimes.
- A run killed with SIGKILL is shown ``stale`` by ``inspect`` and its lease is taken
  over with a notice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from lossatlas.engine.store import STATUS_DONE, RunLease, Store, lease_state
from lossatlas.engine.store.lease import LeaseHeld

SLOW: dict[str, Any] = {
    "name": "slow",
    "seed": 3,
    "dtype": "float64",
    "model": {"plugin": "mlp", "hidden": [16]},
    "dataset": {"plugin": "digits", "limit": 300},
    "steps": [{"name": "line", "probe": "random-line", "points": 61, "directions": 120}],
}

QUICK: dict[str, Any] = {
    **SLOW,
    "name": "quick",
    "steps": [{"name": "line", "probe": "random-line", "points": 9, "directions": 4}],
}

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _start(cmd: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _wait_for_cells(store: Path, run: str, timeout: float = 120) -> None:
    """Until the run has written its step template (cells are being computed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (store / run / "line" / "cell_status").exists():
            return
        time.sleep(0.05)
    pytest.fail("the run did not start in time")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_ends_a_run_as_ctrl_c_does(
    sig: int, code: int, tmp_path: Path, write_config: Any, lossatlas_command: Any
) -> None:
    config = write_config(SLOW)
    store = tmp_path / "s.zarr"
    proc = _start(lossatlas_command("run", config, "--store", store, "-q"))
    _wait_for_cells(store, "slow")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    line = err.strip()
    assert "\n" not in line and "interrupted by SIG" in line and "resume" in line, line
    st = Store(store)
    assert st.run_attrs("slow")["status"] == "interrupted"
    assert st.step_attrs("slow", "line")["status"] == "interrupted"
    assert lease_state(st, "slow")[0] == "none"  # released on the way out

    done = subprocess.run(
        lossatlas_command("run", config, "--store", store, "-q"),
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (st.cell_status("slow", "line") == STATUS_DONE).all()
    assert st.run_attrs("slow")["status"] == "complete"


@pytest.mark.parametrize("trial", range(3))
def test_two_processes_on_one_run_one_clear_outcome(
    trial: int, tmp_path: Path, write_config: Any, lossatlas_command: Any
) -> None:
    config = write_config(QUICK)
    store = tmp_path / "s.zarr"
    cmd = lossatlas_command("run", config, "--store", store, "-q")
    procs = [_start(cmd), _start(cmd)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    report = [(p.returncode, err) for p, (_, err) in zip(procs, outs, strict=True)]
    assert codes in ([0, 0], [0, 2]), report
    for p, (_, err) in zip(procs, outs, strict=True):
        assert "internal error" not in err and "Traceback" not in err, err
        if p.returncode == 2:
            line = err.strip()
            assert "\n" not in line and "is being run by pid" in line and "--wait" in line
    st = Store(store)
    assert st.run_attrs("quick")["status"] == "complete"
    assert (st.cell_status("quick", "line") == STATUS_DONE).all()


def test_with_wait_both_processes_succeed(
    tmp_path: Path, write_config: Any, lossatlas_command: Any
) -> None:
    config = write_config(QUICK)
    store = tmp_path / "s.zarr"
    cmd = lossatlas_command("run", config, "--store", store, "-q", "--wait")
    procs = [_start(cmd), _start(cmd)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err


def test_a_killed_run_is_stale_and_its_lease_is_taken_over(
    tmp_path: Path, write_config: Any, lossatlas_command: Any, run_cli: Any
) -> None:
    config = write_config(SLOW)
    store = tmp_path / "s.zarr"
    proc = _start(lossatlas_command("run", config, "--store", store, "-q"))
    _wait_for_cells(store, "slow")
    live = run_cli("inspect", store, "--json")
    entry = json.loads(live.stdout)[0]
    assert entry["state"] == "running" and entry["lease"]["pid"] == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)

    text = run_cli("inspect", store).stdout
    assert "[stale]" in text and f"pid {proc.pid}" in text and "resume" in text
    # The next run takes it over with a notice and completes.
    done = subprocess.run(
        lossatlas_command("run", config, "--store", store, "-q"),
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"took over run 'slow' from pid {proc.pid}" in done.stderr
    assert "[complete]" in run_cli("inspect", store).stdout


def test_a_lease_with_a_stale_heartbeat_on_another_host_is_taken_over(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.zarr")
    st.root()
    path = st.sidecar / "leases" / "r.lease"
    path.parent.mkdir(parents=True)
    old = {"pid": 1, "host": "elsewhere", "started": 0.0, "heartbeat": time.time(), "token": "x"}
    path.write_text(json.dumps(old))
    with pytest.raises(LeaseHeld, match="pid 1 on host elsewhere"):
        RunLease(st, "r").acquire()
    old["heartbeat"] = time.time() - 3600
    path.write_text(json.dumps(old))
    notices: list[str] = []
    lease = RunLease(st, "r").acquire(notice=notices.append)
    try:
        assert lease_state(st, "r")[0] == "live"
        assert notices and "heartbeat is stale" in notices[0]
    finally:
        lease.release()
    assert lease_state(st, "r")[0] == "none"
