"""The matplotlib style figures are drawn with: lossatlas's own, a named one, or a file.

``lossatlas plot`` and ``lossatlas report`` draw every figure inside :func:`use_style`
(``--style NAME|FILE``, else the run config's ``style`` key, else ``lossatlas``). The
``lossatlas`` style (``lossatlas.mplstyle`` beside this module) embeds fonts as
TrueType (Type 42) in PDF and PostScript instead of Type 3, uses readable sizes and a
colour-blind-safe palette (Okabe & Ito). Another style is applied *on top of* it: a
matplotlib name (``seaborn-v0_8-paper``, ``ggplot`` ... — ``matplotlib.style.available``)
or an ``.mplstyle`` file changes what it sets and keeps the rest, so a journal's file
that only sets fonts and sizes still gets Type 42 fonts. ``default`` is matplotlib's
own defaults, whole (Type 3 fonts included).

The style must be active both when a figure is drawn and when it is saved (matplotlib
reads ``pdf.fonttype`` at save time)::

    from lossatlas.engine.style import use_style

    with use_style("seaborn-v0_8-paper"):
        fig = ds.atlas.plot()
        fig.savefig("figure.pdf")

``ds.atlas.savefig(path, style=...)`` does both.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .options import suggest

__all__ = ["DEFAULT_STYLE", "check_style", "style_names", "style_path", "style_rc", "use_style"]

#: The style figures are drawn with unless told otherwise.
DEFAULT_STYLE = "lossatlas"

#: Names that mean matplotlib's own defaults (``matplotlib.style.use`` aliases).
_MPL_DEFAULT = ("default", "mpl20")

#: rcParams that are not style (matplotlib's styles ignore them too): a style file
#: must not switch the backend of the process drawing it.
_NOT_STYLE = {
    "backend",
    "backend_fallback",
    "interactive",
    "toolbar",
    "timezone",
    "figure.max_open_warning",
    "figure.raise_window",
    "savefig.directory",
    "tk.window_focus",
    "docstring.hardcopy",
    "date.epoch",
}


def _not_style(key: str) -> bool:
    return key in _NOT_STYLE or key.startswith("webagg.")


def style_path() -> Path:
    """The lossatlas style file (package data)."""
    return Path(__file__).with_name("lossatlas.mplstyle")


def style_names() -> list[str]:
    """Every style name :func:`use_style` accepts: ``lossatlas``, ``default`` and
    matplotlib's (``matplotlib.style.available``)."""
    import matplotlib.style

    return [DEFAULT_STYLE, "default", *sorted(matplotlib.style.available)]


def _is_file_spec(spec: str) -> bool:
    return spec.endswith(".mplstyle") or "/" in spec or "\\" in spec or Path(spec).is_file()


def check_style(spec: str, where: str = "--style", base: str | Path | None = None) -> str:
    """``spec`` checked: a style name, or an ``.mplstyle`` file (relative paths resolved
    against ``base``, e.g. the config's folder) that exists and holds valid rcParams.
    Returns the name, or the file's absolute path. Raises :class:`ConfigError` saying
    what is wrong and what is accepted."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{where}: a style is a name such as 'lossatlas' or an .mplstyle file")
    spec = spec.strip()
    if _is_file_spec(spec):
        path = Path(spec).expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        if not path.is_file():
            raise ConfigError(
                f"{where}: style file '{spec}' does not exist"
                + (f" (looked in '{path.parent}')" if path.parent != Path(".") else "")
                + "; give an .mplstyle file or a style name such as 'lossatlas'"
            )
        _read_file(path, where)
        return str(path.resolve())
    names = style_names()
    if spec not in names and spec not in _MPL_DEFAULT:
        raise ConfigError(
            f"{where}: no style is named '{spec}'{suggest(spec, names)}; use 'lossatlas' "
            '(the default), a matplotlib style (python -c "import matplotlib.style; '
            'print(matplotlib.style.available)") or an .mplstyle file'
        )
    return spec


def _strip_comment(line: str) -> str:
    """``line`` without its comment: a ``#`` outside double quotes starts one (the rule
    of matplotlib's rc files, where a colour may be written "#ff0000")."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return line[:i].strip()
    return line.strip()


def _read_file(path: Path, where: str) -> dict[str, Any]:
    """The rcParams of an ``.mplstyle`` file, every line, key and value checked (a bad
    one is a :class:`ConfigError` naming the file and line, not a logged warning)."""
    import matplotlib

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: style file '{path}' cannot be read: {exc}") from None
    rc = matplotlib.RcParams()
    known = matplotlib.rcParams.keys()
    for number, line in enumerate(lines, 1):
        text = _strip_comment(line)
        if not text:
            continue
        at = f"{where}: style file '{path}', line {number}"
        key, colon, value = text.partition(":")
        key, value = key.strip(), value.strip()
        if not colon or not key:
            raise ConfigError(f"{at}: expected 'key: value', got {line.strip()!r}")
        if key not in known:
            raise ConfigError(f"{at}: '{key}' is not a matplotlib rcParam{suggest(key, known)}")
        if len(value) > 1 and value[0] == value[-1] == '"':
            value = value[1:-1]
        try:
            rc[key] = value
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{at}: {exc}") from None
    return {k: v for k, v in rc.items() if not _not_style(k)}


def style_rc(spec: str | None = None) -> dict[str, Any]:
    """The rcParams of style ``spec`` (None: ``lossatlas``), applied over lossatlas's."""
    import matplotlib
    import matplotlib.style

    base = _read_file(style_path(), "the lossatlas style")
    if spec is None or spec == DEFAULT_STYLE:
        return base
    spec = check_style(spec)
    if spec in _MPL_DEFAULT:
        return {k: v for k, v in matplotlib.rcParamsDefault.items() if not _not_style(k)}
    if Path(spec).is_file():
        return {**base, **_read_file(Path(spec), "--style")}
    named = matplotlib.style.library[spec]
    return {**base, **{k: v for k, v in named.items() if not _not_style(k)}}


@contextlib.contextmanager
def use_style(spec: str | None = None) -> Iterator[None]:
    """Draw (and save) inside the style ``spec`` (see the module docstring); the
    rcParams are restored afterwards."""
    import matplotlib

    rc = style_rc(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = matplotlib.rc_context(rc)
    with ctx:
        yield
