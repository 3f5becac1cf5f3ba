"""Point references: one value object, one parser, one collector.

A probe option typed :class:`PointRef` names a parameter vector x ∈ R^D; one typed
:class:`StepRef` names an earlier step whose stored result the option uses as a whole
(a train step's trajectory). Every form is parsed here, once:

=====================  ==========================================================
``init``               the model's initialisation (its ``[model] seed``)
``init:N``             a fresh initialisation with seed N
``STEP``               the ``point`` variable of an earlier step of this run
``STEP.VAR``           another ``(param,)`` variable of that step
``STEP@N``             the snapshot a train step recorded at optimizer step N
``RUN/STEP[.VAR|@N]``  the same, of another run in the same store
``checkpoint:PATH``    a state dict saved with ``torch.save`` (weights only)
=====================  ==========================================================

:func:`collect_refs` finds every reference in a parsed options object, however deeply
nested (lists of pairs, tables, subspace tables that another plugin parses), so the
engine checks them all before anything runs and probes never check references by
hand. Resolving a reference (reading the store, building the model) is the step
context's: :meth:`lossatlas.engine.StepContext.resolve_point`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ConfigError

__all__ = [
    "Point",
    "PointRef",
    "RandomPoint",
    "RefUse",
    "StepRef",
    "collect_refs",
    "parse_point",
    "parse_random",
]

#: Step and run names (the config's rule: letters, digits, '-' and '_').
_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"
_STEP_FORM = re.compile(
    rf"^(?:(?P<run>{_NAME})/)?(?P<step>{_NAME})(?:\.(?P<var>\w+)|@(?P<at>.*))?$"
)

#: Every form, for error messages.
FORMS = "'init', 'init:SEED', 'STEP', 'STEP.VAR', 'STEP@N', 'RUN/STEP', 'checkpoint:PATH'"


class PointRef(str):
    """An option value that names a parameter vector (see the module's table of forms).

    Declare an option as ``PointRef`` (or a list of them, nested as deep as needed) and
    the engine parses and checks it before the run starts; resolve it with
    ``ctx.resolve_point(options.at)``.
    """


class StepRef(str):
    """An option value that names a step whose stored result is used as a whole:
    ``STEP`` (an earlier step of this run) or ``RUN/STEP`` (a stored step of another
    run). Declare the probes the step must run with ``metadata={"probes": ("train",)}``
    on the option's field; the engine checks it before the run starts."""


class RandomPoint(str):
    """An option value for a random point, where a probe accepts one next to point
    references (interpolation's pairs): ``random:R`` (a Gaussian direction scaled to
    norm R) or ``random`` (the norm of the other point of the pair). Declare the option
    as ``RandomPoint | PointRef``; what the point is, is the probe's to draw (from its
    cell's generator)."""


def parse_random(text: str) -> float | None:
    """The radius of ``random:R`` (None for bare ``random``); a ConfigError if R is not
    a positive number."""
    if text == "random":
        return None
    try:
        r = float(text.split(":", 1)[1]) if text.startswith("random:") else -1.0
    except ValueError:
        r = -1.0
    if not r > 0:
        raise ConfigError(f"point '{text}': 'random:R' needs a positive radius R")
    return r


@dataclass(frozen=True)
class Point:
    """A parsed point (or step) reference.

    ``kind`` is ``init`` (``seed`` None: the model's own), ``checkpoint`` (``path``) or
    ``step`` (``run`` None: this run; ``var`` None: ``point``; ``snapshot``: the optimizer
    step of a recorded snapshot).
    """

    text: str
    kind: Literal["init", "checkpoint", "step"]
    seed: int | None = None
    path: str | None = None
    run: str | None = None
    step: str | None = None
    var: str | None = None
    snapshot: int | None = None

    @classmethod
    def parse(cls, text: str) -> Point:
        """Parse ``text``; a malformed reference is a :class:`ConfigError` that says which
        forms there are."""
        return parse_point(text)

    @property
    def variable(self) -> str:
        """The variable a step reference reads (``point`` unless ``STEP.VAR``)."""
        return self.var or "point"

    @property
    def local(self) -> bool:
        """A step of this run (not ``RUN/STEP``)."""
        return self.kind == "step" and self.run is None

    def __str__(self) -> str:
        return self.text


def parse_point(text: str | Point) -> Point:
    """A :class:`Point` from any reference form (see the module docstring)."""
    if isinstance(text, Point):
        return text
    text = str(text)
    if text == "init":
        return Point(text, "init")
    if text.startswith("init:"):
        seed = text.split(":", 1)[1]
        if not seed.isdigit():
            raise ConfigError(f"point '{text}': 'init:N' needs a non-negative integer seed N")
        return Point(text, "init", seed=int(seed))
    if text.startswith("checkpoint:"):
        path = text.split(":", 1)[1]
        if not path:
            raise ConfigError(f"point '{text}': 'checkpoint:PATH' needs a file path")
        return Point(text, "checkpoint", path=path)
    m = _STEP_FORM.match(text)
    if m is None:
        raise ConfigError(f"point '{text}' is not a reference; the forms are: {FORMS}")
    at = m.group("at")
    if at is not None and not at.isdigit():
        raise ConfigError(
            f"point '{text}': a recorded snapshot is 'STEP@N' or 'RUN/STEP@N', N the optimizer "
            "step of a snapshot the train step STEP recorded (record_every)"
        )
    return Point(
        text,
        "step",
        run=m.group("run"),
        step=m.group("step"),
        var=m.group("var"),
        snapshot=None if at is None else int(at),
    )


def parse_step_ref(text: str) -> Point:
    """A :class:`StepRef`'s text as a :class:`Point` of kind ``step`` (no variable, no
    snapshot)."""
    p = parse_point(text)
    if p.kind != "step" or p.var is not None or p.snapshot is not None:
        step = p.step or "STEP"
        raise ConfigError(
            f"'{text}' names {'a variable' if p.var else 'a point'}, not a step; give a step "
            f"('{step}' or 'RUN/{step}'), whose stored result is used"
        )
    return p


@dataclass(frozen=True)
class RefUse:
    """A reference found in options: where (``pairs[0][1]``, ``planes.models.points[2]``),
    what it is, and the field's metadata (``probes`` a StepRef must name)."""

    where: str
    ref: PointRef | StepRef
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def point(self) -> Point:
        return parse_step_ref(self.ref) if isinstance(self.ref, StepRef) else parse_point(self.ref)

    @property
    def is_step(self) -> bool:
        return isinstance(self.ref, StepRef)


#: Parses a nested component table (``{plugin = "three-points", ...}``) into its options
#: object, or returns None when ``value`` is not such a table.
Expand = Callable[[dict[str, Any], str], Any]


def collect_refs(value: Any, where: str = "", expand: Expand | None = None) -> list[RefUse]:
    """Every :class:`PointRef` and :class:`StepRef` in ``value`` (an options dataclass,
    or lists and tables of them), depth first, with where each one sits.

    ``expand(table, where)`` may turn a plain table into the options object of the
    component it names (the step context passes one for subspace tables), so references
    inside another plugin's options are found too.
    """
    out: list[RefUse] = []
    _collect(value, where, expand, {}, out)
    return out


def _collect(
    value: Any, where: str, expand: Expand | None, meta: dict[str, Any], out: list[RefUse]
) -> None:
    if isinstance(value, PointRef | StepRef):
        out.append(RefUse(where or "option", value, dict(meta)))
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            key = f.metadata.get("key", f.name)
            _collect(getattr(value, f.name), _join(where, key), expand, dict(f.metadata), out)
        return
    if isinstance(value, dict):
        parsed = expand(value, where) if expand is not None else None
        if parsed is not None:
            _collect(parsed, where, expand, {}, out)
            return
        for k, v in value.items():
            _collect(v, _join(where, str(k)), expand, meta, out)
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _collect(v, f"{where}[{i}]", expand, meta, out)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
