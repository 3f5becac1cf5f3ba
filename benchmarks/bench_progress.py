"""What progress inside a cell costs: the same training with and without a display.

Side by side in one run, on the digits MLP 64-100-100-10 (1438 train samples),
mini-batches of 16 (about 90 optimizer steps per epoch, the case where a per-step
``update`` weighs most), 3 epochs:

1. ``train`` with no display installed (``progress.task`` returns the no-op meter);
2. the same with ``lossatlas run``'s display in a log (``ConsoleProgress``, lines to
   /dev/null every 5 s; its meters throttle to one event per second);
3. the same with a display that takes every event (``RecordingProgress``, interval 0):
   the worst case, an event per optimizer step.

Runs alternate (ABCABC…) so that load on the machine hits them alike; reports the
median seconds of each and the ratios to (1), and the cost of one ``Meter.update``.

Run:  python benchmarks/bench_progress.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import torch

from lossatlas.engine import Objective, progress
from lossatlas.engine.progress import ConsoleProgress, RecordingProgress, reporting
from lossatlas.engine.training import train
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.models.mlp import MLPModel, MLPOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = Digits().load(DigitsOptions(), seed=0)
    model = MLPModel().build(MLPOptions(hidden=[100, 100]), data, seed=0)
    obj = Objective(model, data)

    def run() -> float:
        t0 = time.perf_counter()
        res = train(obj, obj.x0, lr=0.05, epochs=args.epochs, batch_size=16, history=False)
        assert res.steps > 0
        return time.perf_counter() - t0

    displays = {
        "no display": lambda: None,
        "ConsoleProgress (a log)": lambda: ConsoleProgress(
            bar=False, every=5.0, out=io.StringIO(), err=io.StringIO()
        ),
        "RecordingProgress (every event)": RecordingProgress,
    }
    times: dict[str, list[float]] = {k: [] for k in displays}
    steps = 0
    run()  # warm-up
    for _ in range(args.repeat):
        for name, make in displays.items():
            sink = make()
            with reporting(sink):
                times[name].append(run())
            if isinstance(sink, RecordingProgress):
                steps = len(sink.of("training")) - 2
    base = statistics.median(times["no display"])
    print(f"train: {args.epochs} epochs, {steps} optimizer steps, median of {args.repeat}")
    print(f"{'display':<34} {'seconds':>8} {'ratio':>7}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:<34} {m:8.3f} {m / base:7.3f}")
    for name, sink in (("no display", None), ("RecordingProgress", RecordingProgress())):
        with reporting(sink):
            bar = progress.task("t", 10**6)
            t0 = time.perf_counter()
            for i in range(100_000):
                bar.update(i, epoch="1/2")
            dt = time.perf_counter() - t0
            bar.close()
        print(f"Meter.update, {name}: {1e6 * dt / 100_000:.2f} µs per call")


if __name__ == "__main__":
    main()
