"""The in-process executor: cells one after another in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lossatlas.engine import Executor, NoOptions


class LocalExecutor(Executor[NoOptions]):
    name = "local"
    summary = "runs the cells one after another in this process (the default)"
    Options = NoOptions

    def run(
        self,
        options: NoOptions,
        job: Callable[[tuple[int, ...]], int],
        cells: Iterable[tuple[int, ...]],
        on_done: Callable[[tuple[int, ...], int], None],
        session: object = None,
    ) -> None:
        for index in cells:
            on_done(index, job(index))
