"""One executor session per pipeline (see :meth:`lossatlas.engine.Executor.session`)."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

__all__ = ["ExecutorSession"]


class ExecutorSession:
    """One :meth:`Executor.session` for a whole pipeline, opened when the first step
    with cells to compute needs it (a pipeline already complete starts no cluster) and
    closed after the last step, also on an error or an interrupt."""

    def __init__(self, executor: Any, options: Any) -> None:
        self.executor = executor
        self.options = options
        self._stack = contextlib.ExitStack()
        self._opened = False
        self._session: Any = None

    def __enter__(self) -> ExecutorSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)

    def get(self) -> Any:
        """What the executor's session yielded (opened on the first call)."""
        if not self._opened:
            self._session = self._stack.enter_context(self.executor.session(self.options))
            self._opened = True
        return self._session

    def run(self, job: Any, cells: list[Any], on_done: Any) -> None:
        """The executor's ``run`` with the session (an executor of version 0.1 whose
        ``run`` takes no ``session`` is called without it)."""
        if not cells:
            return
        params = inspect.signature(self.executor.run).parameters
        if "session" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            self.executor.run(self.options, job, cells, on_done, session=self.get())
        else:
            self.executor.run(self.options, job, cells, on_done)
