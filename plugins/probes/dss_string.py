"""Dynamic String Sampling (Freeman & Bruna, ICLR 2017, §3 and Appendix A) on flat vectors.

A *string* is a list of models ("beads") θ1 = S[0], S[1], …, S[n-1] = θ2 joined by
straight segments. The level set {L ≤ L0} connects θ1 and θ2 (as far as the algorithm
can certify) when the loss on every segment stays below L0. The algorithm:

1. Evaluate the loss along each unchecked segment on a grid of ``points`` values of t
   (one vmapped pass, :meth:`Objective.evaluate`). A segment passes when its maximum is
   ≤ ``tolerance``·L0.
2. For a failing segment, insert a bead at the maximiser or at the midpoint and train it
   until its loss is ≤ α·L0 (a step cap ends a bead that does not get there). Only the
   two segments next to a new bead are rechecked.
3. ``greedy`` (§3.1) handles the leftmost failing segment first (the recursion of the
   paper, depth first); ``breadth-first`` (Appendix A) inserts a bead in *every* failing
   segment and trains them together as one vmapped ensemble, round after round.

The constrained variant of Appendix A holds a bead on the hyperplane equidistant from its
neighbours a, b: {x : (x − m)·n = 0}, m = (a+b)/2, n = (b−a)/‖b−a‖ (``hyperplane``: the
gradient and the position are projected, the κ → ∞ limit; ``penalty``: κ·|(x−m)·n| is
added to the loss), with a spring term ζ·(‖x−a‖ + ‖x−b‖).

The run always ends, with a reason (:data:`REASONS`): bead budget, depth (recursion
depth, or rounds for breadth-first), a bead that misses α·L0 within ``bead_steps``
steps, a barrier on a segment shorter than ``min_segment``·‖θ1−θ2‖, or a diverged bead.

Cost: a segment check is ``points`` forward passes (batched); a bead costs at most
``bead_steps`` forward+backward passes on a mini-batch plus one full forward pass every
``check_every`` steps. The breadth-first ensemble trains k beads in one vmapped pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch.func import vmap

from lossatlas.engine import progress
from lossatlas.engine.training import OptimizerSpec, TrainingLoop

if TYPE_CHECKING:
    from lossatlas.engine import Objective

__all__ = [
    "REASONS",
    "StringConfig",
    "StringState",
    "bead_steps_taken",
    "run_string",
    "string_measures",
    "train_beads",
]

#: Outcome codes: 0 is connected, everything else says why the string stopped.
REASONS: dict[int, str] = {
    0: "connected",
    1: "bead-failed",
    2: "barrier-remained",
    3: "depth-exhausted",
    4: "bead-budget-exhausted",
    5: "endpoint-above-threshold",
    6: "diverged",
}
RUNNING = -1


@dataclass
class StringConfig:
    """Everything that decides one string (one pair at one threshold)."""

    threshold: float
    tolerance: float = 1.0
    alpha: float = 0.9
    points: int = 17
    insert: Literal["max", "mid"] = "mid"
    strategy: Literal["greedy", "breadth-first"] = "greedy"
    constrain: Literal["none", "hyperplane", "penalty"] = "none"
    spring: float = 0.0
    kappa: float = 1.0
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-2
    momentum: float = 0.9
    batch_size: int = 0
    bead_steps: int = 2000
    check_every: int = 25
    max_beads: int = 16
    max_depth: int = 8
    min_segment: float = 1e-3
    split: Literal["train", "validation"] = "train"
    train_endpoints: bool = False
    initial_beads: int = 0
    endpoint_alpha: float = 0.0

    @property
    def target(self) -> float:
        return self.alpha * self.threshold

    @property
    def endpoint_target(self) -> float:
        """Where trained endpoints stop: endpoint_alpha·L0 (0: alpha·L0, as beads)."""
        return (self.endpoint_alpha or self.alpha) * self.threshold


@dataclass
class StringState:
    """The string so far; everything a resumed run needs (saved after each bead)."""

    beads: list[torch.Tensor]
    depth: list[int]
    bead_loss: list[float]
    bead_steps: list[int]
    #: Per segment i (between beads i and i+1): checked and below tolerance·L0.
    ok: list[bool]
    seg_max: list[float]
    inserted: int = 0
    rounds: int = 0
    status: int = RUNNING
    endpoint_steps: list[int] = field(default_factory=lambda: [0, 0])
    #: The bead that missed α·L0 (status bead-failed or diverged): the loss it reached
    #: (NaN if none failed, or it diverged) and the optimizer steps it took (-1: none).
    failed_loss: float = math.nan
    failed_steps: int = -1

    def fail(self, loss: float, steps: int, status: int) -> None:
        """Stop with ``status``, keeping what the failed bead reached."""
        self.failed_loss = float(loss)
        self.failed_steps = int(steps)
        self.status = status

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Plain tensors, for ``torch.save`` and a ``weights_only=True`` load."""
        return {
            "beads": torch.stack(self.beads).cpu(),
            "depth": torch.tensor(self.depth, dtype=torch.int64),
            "bead_loss": torch.tensor(self.bead_loss, dtype=torch.float64),
            "bead_steps": torch.tensor(self.bead_steps, dtype=torch.int64),
            "ok": torch.tensor(self.ok, dtype=torch.bool),
            "seg_max": torch.tensor(self.seg_max, dtype=torch.float64),
            "counters": torch.tensor([self.inserted, self.rounds, self.status], dtype=torch.int64),
            "endpoint_steps": torch.tensor(self.endpoint_steps, dtype=torch.int64),
            "failed": torch.tensor([self.failed_loss, self.failed_steps], dtype=torch.float64),
        }

    @classmethod
    def from_tensors(
        cls, d: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype
    ) -> StringState:
        beads = d["beads"].to(device, dtype)
        inserted, rounds, status = (int(v) for v in d["counters"])
        failed = d.get("failed", torch.tensor([math.nan, -1.0]))
        return cls(
            beads=[b for b in beads],
            depth=[int(v) for v in d["depth"]],
            bead_loss=[float(v) for v in d["bead_loss"]],
            bead_steps=[int(v) for v in d["bead_steps"]],
            ok=[bool(v) for v in d["ok"]],
            seg_max=[float(v) for v in d["seg_max"]],
            inserted=inserted,
            rounds=rounds,
            status=status,
            endpoint_steps=[int(v) for v in d["endpoint_steps"]],
            failed_loss=float(failed[0]),
            failed_steps=int(failed[1]),
        )

    def insert(self, i: int, x: torch.Tensor, depth: int, loss: float, steps: int) -> None:
        """Put bead ``x`` between beads i and i+1; both new segments are unchecked."""
        self.beads.insert(i + 1, x)
        self.depth.insert(i + 1, depth)
        self.bead_loss.insert(i + 1, loss)
        self.bead_steps.insert(i + 1, steps)
        self.ok[i : i + 1] = [False, False]
        self.seg_max[i : i + 1] = [math.nan, math.nan]
        self.inserted += 1


# ------------------------------------------------------------------ bead training


def _split_tensors(obj: Objective, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    s = obj.splits[split]
    return s.inputs, s.targets


@contextmanager
def _few_threads(obj: Objective, work: int) -> Iterator[None]:
    """Run small CPU problems on one thread: BLAS threads on tiny matrices only wait for
    each other, and on a busy machine that waiting costs 10-50× (measured on the
    1-4-4-1 net). ``work`` is the activation count of one training step."""
    if obj.device.type != "cpu" or work > 2**20 or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_beads(
    obj: Objective,
    x0: torch.Tensor,
    left: torch.Tensor | None,
    right: torch.Tensor | None,
    cfg: StringConfig,
    seed: int,
    target: float | None = None,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """Train k beads at once (a vmapped ensemble) until each loss is ≤ α·L0.

    ``x0`` (k, D) are the starting points; ``left``/``right`` (k, D) their fixed
    neighbours (None: no spring and no constraint, e.g. endpoints). Each step draws one
    mini-batch (order from ``seed``; full batch when ``cfg.batch_size`` is 0), takes
    per-bead gradients from one backward pass through the vmapped forward, adds the
    spring ζ·(‖x−a‖+‖x−b‖) and the constraint of ``cfg.constrain``, and updates the
    beads still above the target (SGD with momentum, or Adam: ``torch.optim`` on the shared
    :class:`~lossatlas.engine.training.TrainingLoop`, each bead with its own optimizer
    state and step count). Every ``check_every``
    steps the full-split loss decides which beads are done. A bead stops at
    ``bead_steps`` steps whatever happens. ``target`` (default α·L0) is the loss to
    reach.

    Returns (x (k, D), reached (k,) bool, steps (k,) int, loss (k,) float; NaN where a
    bead diverged).
    """
    n = len(obj.splits[cfg.split])
    bs = n if cfg.batch_size <= 0 else min(cfg.batch_size, n)
    goal = cfg.target if target is None else float(target)
    with _few_threads(obj, obj._activations_per_sample * bs * x0.shape[0]):
        return _train_beads(obj, x0, left, right, cfg, seed, bs, goal)


def _train_beads(
    obj: Objective,
    x0: torch.Tensor,
    left: torch.Tensor | None,
    right: torch.Tensor | None,
    cfg: StringConfig,
    seed: int,
    bs: int,
    goal: float,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    X = x0.detach().clone()
    inputs, targets = _split_tensors(obj, cfg.split)
    n = inputs.shape[0]
    g = torch.Generator(device="cpu").manual_seed(int(seed))

    normal = mid = None
    if left is not None and right is not None:
        mid = 0.5 * (left + right)
        diff = right - left
        normal = diff / diff.norm(dim=1, keepdim=True).clamp_min(1e-30)
        if cfg.constrain == "hyperplane":
            X = X - ((X - mid) * normal).sum(1, keepdim=True) * normal

    def bead_loss(x: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return obj.batch_loss(x, xb, yb)

    batched_loss = vmap(bead_loss, in_dims=(0, None, None))

    def per_bead_grad(X: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        # The beads are independent, so ∂(Σ_k L(x_k))/∂x_k = ∇L(x_k): one backward pass
        # through the vmapped forward gives every bead's gradient.
        Xg = X.detach().requires_grad_(True)
        with torch.enable_grad():
            (G,) = torch.autograd.grad(batched_loss(Xg, xb, yb).sum(), Xg)
        return G

    def on_plane(params: list[torch.Tensor]) -> None:
        """The hyperplane constraint after each step (the κ → ∞ limit)."""
        assert mid is not None and normal is not None
        for k, p in enumerate(params):
            p.sub_(((p - mid[k]) * normal[k]).sum() * normal[k])

    # Each bead is a member of the shared loop: its own Adam moments and step count (the
    # bias correction counts its steps), frozen once it reaches the target.
    loop = TrainingLoop(
        X,
        OptimizerSpec(
            cfg.optimizer, cfg.lr, momentum=cfg.momentum if cfg.optimizer == "sgd" else 0.0
        ),
        project=on_plane if normal is not None and cfg.constrain == "hyperplane" else None,
        total=cfg.bead_steps,
    )
    loss = obj.evaluate(X, cfg.split)["loss"]
    diverged = ~np.isfinite(loss)
    reached = (loss <= goal) & ~diverged
    loop.stop(reached | diverged)
    perm = torch.arange(n)
    pos = n
    t = 0
    bar = progress.task("bead training", cfg.bead_steps, "step", bound=True)
    while t < cfg.bead_steps and loop.running:
        if pos + bs > n:
            perm = torch.randperm(n, generator=g) if bs < n else torch.arange(n)
            pos = 0
        idx = perm[pos : pos + bs].to(inputs.device)
        pos += bs
        X = loop.stacked()
        G = per_bead_grad(X, inputs[idx], targets[idx])
        if normal is not None:
            if cfg.spring > 0:
                for nb in (left, right):
                    d = X - nb
                    G = G + cfg.spring * d / d.norm(dim=1, keepdim=True).clamp_min(1e-30)
            if cfg.constrain == "penalty":
                off = ((X - mid) * normal).sum(1, keepdim=True)
                G = G + cfg.kappa * torch.sign(off) * normal
            elif cfg.constrain == "hyperplane":
                G = G - (G * normal).sum(1, keepdim=True) * normal
        t += 1
        active_np = loop.active.copy()
        loop.apply(G)
        if t % cfg.check_every == 0 or t == cfg.bead_steps:
            X = loop.stacked()
            sel = np.flatnonzero(active_np)
            now = obj.evaluate(X[torch.as_tensor(sel, device=X.device)], cfg.split)["loss"]
            loss[sel] = now
            bad = ~np.isfinite(now) | ~torch.isfinite(X[sel]).all(1).cpu().numpy()
            diverged[sel] |= bad
            reached[sel] = (now <= goal) & ~bad
            loop.stop(reached | diverged)
        bar.update(t, beads=f"{int(reached.sum())}/{len(reached)} below the goal")
    bar.close()
    X = loop.finish()
    steps = loop.steps.copy()
    loss = np.where(diverged, np.nan, loss)
    return X, reached, steps, loss


def bead_steps_taken(state: StringState) -> int:
    """Optimizer steps spent on the beads of a string (endpoints included)."""
    return int(sum(state.bead_steps) + sum(state.endpoint_steps))


# ------------------------------------------------------------------ the string


def _segment_points(a: torch.Tensor, b: torch.Tensor, points: int) -> torch.Tensor:
    t = torch.linspace(0.0, 1.0, points, dtype=torch.float64, device=a.device).to(a.dtype)
    return a.unsqueeze(0) + t.unsqueeze(1) * (b - a).unsqueeze(0)


def _check_segments(
    obj: Objective, state: StringState, idx: list[int], cfg: StringConfig
) -> dict[int, np.ndarray]:
    """Loss on the t grid of the segments ``idx``, in one batched evaluation."""
    if not idx:
        return {}
    pts = torch.cat([_segment_points(state.beads[i], state.beads[i + 1], cfg.points) for i in idx])
    loss = obj.evaluate(pts, cfg.split)["loss"].reshape(len(idx), cfg.points)
    return {i: loss[j] for j, i in enumerate(idx)}


def _new_bead(state: StringState, i: int, losses: np.ndarray, cfg: StringConfig) -> torch.Tensor:
    a, b = state.beads[i], state.beads[i + 1]
    if cfg.insert == "max":
        inner = losses[1:-1]
        inner = np.where(np.isfinite(inner), inner, np.inf)
        j = 1 + int(np.argmax(inner))
        t = j / (cfg.points - 1)
    else:
        t = 0.5
    return a + t * (b - a)


def _segment_too_short(state: StringState, i: int, cfg: StringConfig) -> bool:
    full = float((state.beads[-1] - state.beads[0]).norm())
    seg = float((state.beads[i + 1] - state.beads[i]).norm())
    return seg <= cfg.min_segment * full


def _start(
    obj: Objective, theta1: torch.Tensor, theta2: torch.Tensor, cfg: StringConfig, seed: int
) -> StringState:
    ends = torch.stack([theta1, theta2])
    loss = obj.evaluate(ends, cfg.split)["loss"]
    state = StringState(
        beads=[theta1.clone(), theta2.clone()],
        depth=[0, 0],
        bead_loss=[float(v) for v in loss],
        bead_steps=[0, 0],
        ok=[False],
        seg_max=[math.nan],
    )
    high = ~(loss <= cfg.threshold)
    if high.any() and cfg.train_endpoints:
        sel = np.flatnonzero(~(loss <= cfg.endpoint_target))
        x, _reached, steps, now = train_beads(
            obj, ends[sel], None, None, cfg, _seed(seed, "endpoints"), cfg.endpoint_target
        )
        for j, e in enumerate(sel):
            state.beads[e] = x[j]
            state.bead_loss[e] = float(now[j])
            state.endpoint_steps[e] = int(steps[j])
        high = ~(np.asarray(state.bead_loss) <= cfg.threshold)
    if high.any():
        state.status = 5
    elif cfg.initial_beads > 0:
        _initial_beads(obj, state, cfg, seed)
    return state


def _initial_beads(obj: Objective, state: StringState, cfg: StringConfig, seed: int) -> None:
    """Insert ``initial_beads`` beads evenly spaced on the straight segment, trained to
    α·L0 as one ensemble before any segment is checked (the authors' code starts every
    string this way, with one bead: ``WeightString(…, numbeads=1)``)."""
    a, b = state.beads[0], state.beads[-1]
    n = cfg.initial_beads
    t = torch.arange(1, n + 1, dtype=torch.float64, device=a.device).to(a.dtype) / (n + 1)
    x0 = a.unsqueeze(0) + t.unsqueeze(1) * (b - a).unsqueeze(0)
    left = torch.cat([a.unsqueeze(0), x0[:-1]])
    right = torch.cat([x0[1:], b.unsqueeze(0)])
    x, reached, steps, loss = train_beads(obj, x0, left, right, cfg, _seed(seed, "initial"))
    if not reached.all():
        worst = int(np.argmax(np.where(reached, -np.inf, np.nan_to_num(loss, nan=np.inf))))
        state.fail(loss[worst], steps[worst], 6 if not np.isfinite(loss[worst]) else 1)
        return
    for j in range(n):
        state.insert(j, x[j], 1, float(loss[j]), int(steps[j]))


def _seed(seed: int, *keys: Any) -> int:
    from lossatlas.engine.context import derive_seed

    return derive_seed(seed, *keys)


def run_string(
    obj: Objective,
    theta1: torch.Tensor,
    theta2: torch.Tensor,
    cfg: StringConfig,
    seed: int,
    *,
    state: StringState | None = None,
    on_bead: Callable[[StringState], None] | None = None,
) -> StringState:
    """Build the string from θ1 to θ2 at threshold ``cfg.threshold`` (see module doc).

    ``state`` resumes a saved string; ``on_bead`` is called after each finished bead
    (greedy) or round of beads (breadth-first) with the current state — the place to
    save a checkpoint. All randomness comes from ``seed`` and the bead's number, so a
    resumed run builds the same string as an uninterrupted one. Always terminates:
    the number of beads is at most ``max_beads`` and each trains at most
    ``bead_steps`` steps.
    """
    if state is None:
        state = _start(obj, theta1, theta2, cfg, seed)
        if on_bead is not None and state.status == RUNNING:
            on_bead(state)
    if state.status != RUNNING:
        return state
    if cfg.strategy == "greedy":
        _greedy(obj, state, cfg, seed, on_bead)
    else:
        _breadth_first(obj, state, cfg, seed, on_bead)
    return state


def _greedy(
    obj: Objective,
    state: StringState,
    cfg: StringConfig,
    seed: int,
    on_bead: Callable[[StringState], None] | None,
) -> None:
    limit = cfg.tolerance * cfg.threshold
    while state.status == RUNNING:
        todo = [i for i, ok in enumerate(state.ok) if not ok]
        if not todo:
            state.status = 0
            break
        i = todo[0]
        losses = _check_segments(obj, state, [i], cfg)[i]
        state.seg_max[i] = float(np.nanmax(np.where(np.isfinite(losses), losses, np.inf)))
        if state.seg_max[i] <= limit:
            state.ok[i] = True
            continue
        depth = max(state.depth[i], state.depth[i + 1]) + 1
        if _segment_too_short(state, i, cfg):
            state.status = 2
        elif depth > cfg.max_depth:
            state.status = 3
        elif state.inserted >= cfg.max_beads:
            state.status = 4
        if state.status != RUNNING:
            break
        x0 = _new_bead(state, i, losses, cfg).unsqueeze(0)
        a, b = state.beads[i].unsqueeze(0), state.beads[i + 1].unsqueeze(0)
        x, reached, steps, loss = train_beads(
            obj, x0, a, b, cfg, _seed(seed, "bead", state.inserted)
        )
        if not reached[0]:
            state.fail(loss[0], steps[0], 6 if not np.isfinite(loss[0]) else 1)
            break
        state.insert(i, x[0], depth, float(loss[0]), int(steps[0]))
        if on_bead is not None:
            on_bead(state)


def _breadth_first(
    obj: Objective,
    state: StringState,
    cfg: StringConfig,
    seed: int,
    on_bead: Callable[[StringState], None] | None,
) -> None:
    limit = cfg.tolerance * cfg.threshold
    while state.status == RUNNING:
        todo = [i for i, ok in enumerate(state.ok) if not ok]
        checked = _check_segments(obj, state, todo, cfg)
        failing = []
        for i, losses in checked.items():
            state.seg_max[i] = float(np.nanmax(np.where(np.isfinite(losses), losses, np.inf)))
            if state.seg_max[i] <= limit:
                state.ok[i] = True
            else:
                failing.append(i)
        if not failing:
            state.status = 0
            break
        if any(_segment_too_short(state, i, cfg) for i in failing):
            state.status = 2
        elif state.rounds + 1 > cfg.max_depth:
            state.status = 3
        elif state.inserted + len(failing) > cfg.max_beads:
            state.status = 4
        if state.status != RUNNING:
            break
        x0 = torch.stack([_new_bead(state, i, checked[i], cfg) for i in failing])
        a = torch.stack([state.beads[i] for i in failing])
        b = torch.stack([state.beads[i + 1] for i in failing])
        x, reached, steps, loss = train_beads(
            obj, x0, a, b, cfg, _seed(seed, "round", state.rounds)
        )
        if not reached.all():
            # The failed bead with the highest loss it reached (a diverged one first).
            worst = int(np.argmax(np.where(reached, -np.inf, np.nan_to_num(loss, nan=np.inf))))
            state.fail(loss[worst], steps[worst], 6 if not np.isfinite(loss).all() else 1)
            break
        state.rounds += 1
        for j, i in reversed(list(enumerate(failing))):  # right to left keeps indices valid
            state.insert(i, x[j], state.rounds, float(loss[j]), int(steps[j]))
        if on_bead is not None:
            on_bead(state)


# ------------------------------------------------------------------ measures


def string_measures(obj: Objective, state: StringState, cfg: StringConfig) -> dict[str, Any]:
    """Length (all parameters, weights only), normalised by ‖θ1−θ2‖, and the loss along
    the whole final string: (n-1, points) on the t grid of each segment. The lengths
    are those of the string as it stands; the probe stores them for connected pairs
    only (an unconnected string is no geodesic)."""
    S = torch.stack(state.beads)
    steps = S[1:] - S[:-1]
    dist = float((S[-1] - S[0]).norm())
    wmask = obj.layout.mask("weight", device=S.device)
    length = float(steps.norm(dim=1).sum())
    length_w = float(steps[:, wmask].norm(dim=1).sum())
    dist_w = float((S[-1] - S[0])[wmask].norm())
    path = _check_segments(obj, state, list(range(len(state.beads) - 1)), cfg)
    path_loss = np.stack([path[i] for i in range(len(state.beads) - 1)])
    return {
        "distance": dist,
        "length": length,
        "length_norm": length / dist if dist > 0 else math.nan,
        "length_norm_weights": length_w / dist_w if dist_w > 0 else math.nan,
        "path_loss": path_loss,
        "segment_max": path_loss.max(axis=1),
        "max_loss": float(path_loss.max()),
    }
