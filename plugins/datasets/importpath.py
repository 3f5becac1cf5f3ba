"""The user's own data by import path (data set ``python``).

``function = "my_package.data:load"`` names a function; it is called with the
``kwargs`` table as keyword arguments (plus ``seed=`` if it declares a ``seed``
parameter) and returns either a :class:`DataBundle`, or ``(X, y)`` (split by the
seed), or ``(X_train, y_train, X_val, y_val)``, as numpy arrays or tensors.

:func:`load_object` and :func:`call_with` are shared with the ``python`` model.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lossatlas.engine import ConfigError, DataBundle, DataError, DatasetPlugin, LossAtlasError

from .arrays import TaskOption, bundle_from_arrays, expand_path

__all__ = [
    "PythonData",
    "PythonDataOptions",
    "call_with",
    "check_import_path",
    "load_object",
    "source_files",
]


def check_import_path(text: str, option: str) -> None:
    """Raise ValueError unless ``text`` reads ``package.module:attribute``."""
    module, sep, attr = text.partition(":")
    if (
        not sep
        or not module
        or not attr
        or not all(part.isidentifier() for part in [*module.split("."), *attr.split(".")])
    ):
        raise ValueError(
            f"option '{option}' must read 'package.module:name' (e.g. "
            f"'my_package.data:load'), got {text!r}"
        )


@contextlib.contextmanager
def _search_path(dirs: list[str]) -> Iterator[None]:
    added = [str(expand_path(d)) for d in dirs]
    saved = list(sys.path)
    sys.path[:0] = [d for d in added if d not in sys.path]
    try:
        yield
    finally:
        sys.path[:] = saved


def load_object(text: str, where: str, search_path: list[str] | None = None) -> Any:
    """Import ``package.module:attr`` (attr may be dotted) and return the attribute.

    ``search_path`` directories are tried first while importing (``~`` expanded,
    relative to the working directory). Any failure is a :class:`ConfigError` that
    names the import path and what went wrong.
    """
    module_name, _, attr = text.partition(":")
    try:
        with _search_path(search_path or []):
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"{where}: cannot import '{text}': no module named '{exc.name}'; install its "
            "package, or put its directory on PYTHONPATH or in the option search_path"
        ) from None
    except Exception as exc:
        raise ConfigError(
            f"{where}: importing '{text}' failed: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(
                f"{where}: cannot import '{text}': module '{module_name}' has no attribute '{attr}'"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{where}: '{text}' is a {type(obj).__name__}, not a function")
    return obj


def source_files(text: str, where: str, search_path: list[str] | None = None) -> list[str]:
    """The file that defines the object at import path ``text`` (for the provenance's
    source hashes), or none for an object without a Python source file."""
    obj = load_object(text, where, search_path)
    try:
        path = inspect.getsourcefile(inspect.unwrap(obj))
    except TypeError:  # a builtin or C extension
        return []
    return [path] if path else []


def call_with(
    fn: Callable[..., Any],
    text: str,
    where: str,
    kwargs: dict[str, Any],
    offered: dict[str, Any],
) -> Any:
    """Call ``fn(**kwargs, **extra)`` where extra are the ``offered`` keywords that ``fn``
    declares by name. Errors other than lossatlas' own become a ConfigError naming
    ``text`` (the original exception is chained, for ``--debug``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}  # builtins without a signature get no extra keywords
    extra = {
        k: v
        for k, v in offered.items()
        if k in params
        and params[k].kind
        in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    clash = sorted(set(extra) & set(kwargs))
    if clash:
        raise ConfigError(
            f"{where}: kwargs must not set {', '.join(clash)}: lossatlas passes it to '{text}'"
        )
    try:
        return fn(**kwargs, **extra)
    except LossAtlasError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{where}: calling '{text}' with kwargs {kwargs!r} raised {type(exc).__name__}: {exc}"
        ) from exc


@dataclass
class PythonDataOptions:
    function: str = field(
        metadata={
            "doc": "import path 'package.module:function' of a function returning a "
            "DataBundle, (X, y) or (X_train, y_train, X_val, y_val)"
        }
    )
    kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"doc": "keyword arguments for the function"}
    )
    search_path: list[str] = field(
        default_factory=list,
        metadata={"doc": 'directories to import from first (e.g. ["."]), besides sys.path'},
    )
    validation: float = field(
        default=0.2, metadata={"doc": "fraction held out by seed when (X, y) is returned"}
    )
    task: TaskOption = field(
        default="auto",
        metadata={"doc": "classification, regression, or auto (integer targets: classes)"},
    )

    def validate(self) -> None:
        check_import_path(self.function, "function")
        if not 0 < self.validation < 1:
            raise ValueError(f"option 'validation' must be in (0, 1), got {self.validation}")


class PythonData(DatasetPlugin[PythonDataOptions]):
    name = "python"
    summary = "your own data from a Python function given by import path 'module:function'"
    Options = PythonDataOptions

    def load(self, options: PythonDataOptions, seed: int) -> DataBundle:
        where = "dataset 'python'"
        text = options.function
        fn = load_object(text, where, options.search_path)
        result = call_with(fn, text, where, dict(options.kwargs), {"seed": seed})
        if isinstance(result, DataBundle):
            return result
        if isinstance(result, (tuple, list)) and len(result) in (2, 4):
            bundle = bundle_from_arrays(
                *result,
                task=options.task,
                validation=options.validation,
                seed=seed,
                source=f"{where} '{text}'",
                description=text,
            )
            bundle.attrs.update(function=text, kwargs=dict(options.kwargs))
            return bundle
        got = (
            f"a {len(result)}-tuple"
            if isinstance(result, (tuple, list))
            else f"a {type(result).__name__}"
        )
        raise DataError(
            f"{where}: '{text}' returned {got}; return a DataBundle, (X, y) or "
            "(X_train, y_train, X_val, y_val)"
        )

    def sources(self, options: PythonDataOptions) -> list[str]:
        return source_files(options.function, "dataset 'python'", options.search_path)
