"""Running some steps of a pipeline (``--step``, ``steps=``): the earlier steps they use
must be chosen too or be in the store. Checked before the store is touched, and said
with structured context (:class:`~lossatlas.engine.errors.MissingStepError`) that the
CLI turns into the command that would work."""

from __future__ import annotations

from .config import RunConfig
from .context import StepContext
from .errors import MissingStepError, StoreError
from .registry import Registry
from .store import Store
from .store.reading import results

__all__ = ["check_earlier_steps", "left_out"]


def _ready_steps(store: Store, run: str) -> set[str]:
    """The steps of ``run`` with a result in ``store`` (none if the store is new)."""
    if not store.exists() or run not in store.runs():
        return set()
    return set(results(store, run))


def _missing_earlier(config: RunConfig, store: Store, steps: list[str]) -> list[str]:
    """The config's steps left out by ``steps`` that have no result in ``store``."""
    ready = _ready_steps(store, config.name)
    return [s.name for s in config.steps if s.name not in steps and s.name not in ready]


def check_earlier_steps(
    config: RunConfig, registry: Registry, store: Store, steps: list[str]
) -> None:
    """Refuse to run only ``steps`` when one of them uses a point of an earlier step
    that is neither chosen nor in the store (before the store is touched): a
    :class:`MissingStepError` whose ``context`` names both steps."""
    missing = set(_missing_earlier(config, store, steps))
    if not missing:
        return
    for step in config.steps:
        if step.name not in steps:
            continue
        ctx = StepContext(registry, config, step)
        for use in ctx.references():
            p = use.point
            if p.local and p.step in missing:
                reason = (
                    f"--step {step.name}: it uses point '{use.ref}' of step '{p.step}', which "
                    f"has no result in store '{store.path}' for run '{config.name}'"
                )
                raise MissingStepError(
                    f"{reason}; " + _needs_hint(p.step or "", steps),
                    reason=reason,
                    step=step.name,
                    needed=p.step,
                    ref=str(use.ref),
                    run=config.name,
                    store=str(store.path),
                    steps=list(steps),
                )


def _needs_hint(needed: str, steps: list[str]) -> str:
    return f"name step '{needed}' with --step too, or run the whole config without --step"


def left_out(exc: StoreError, config: RunConfig, store: Store, steps: list[str]) -> StoreError:
    """A store error about a step's missing result, said as what ``steps`` left out."""
    needed = str(exc.context.get("step", ""))
    if needed not in _missing_earlier(config, store, steps):
        return exc
    reason = f"{exc} (left out by --step)"
    return MissingStepError(
        f"{reason}; " + _needs_hint(needed, steps),
        reason=reason,
        needed=needed,
        run=config.name,
        store=str(store.path),
        steps=list(steps),
    )
