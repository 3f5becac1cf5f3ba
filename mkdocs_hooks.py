"""mkdocs hooks of the docs site (``mkdocs.yml``: ``hooks``).

The pages in docs/ link to files of the repository outside docs/ (example configs,
benchmark results, the plugin package), which read well on a forge but are not pages of
the site. In the site such a link becomes its path as code, so ``mkdocs build --strict``
passes without a dead link and without copying the repository into the site.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

_OUTSIDE = re.compile(r"\[([^\]]+)\]\((\.\./(?:\.\./)*(?!docs/)[^)\s#]+)(#[^)]*)?\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Links that leave docs/ (``../examples/x.toml``) as their path in code."""

    def plain(m: re.Match[str]) -> str:
        text, target = m.group(1), m.group(2).lstrip("./")
        return text if text.strip("`") == target else f"{text} (`{target}`)"

    return _OUTSIDE.sub(plain, markdown)


def _lay_out_package(root: Path) -> None:
    """Lay out the import package for the API reference.

    ``lossatlas.engine`` and ``lossatlas.plugins`` live in the top-level folders engine/
    and plugins/ (``[tool.setuptools] package-dir``), which griffe (mkdocstrings' reader)
    cannot map; ``.docs-src/lossatlas`` links them into one package tree it reads
    statically (nothing is imported). Rebuilt on every build, with relative links, so a
    tree copied elsewhere (links dereferenced or pointing at the old place) is never read.
    """
    tree = root / ".docs-src" / "lossatlas"
    if tree.is_symlink() or tree.is_file():
        tree.unlink()
    elif tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    links = {p.name: p for p in (root / "lossatlas").iterdir() if p.suffix in (".py", ".typed")}
    links.update(engine=root / "engine", plugins=root / "plugins")
    for name, target in links.items():
        (tree / name).symlink_to(os.path.relpath(target, tree))


# At import, that is while mkdocs loads its configuration: mkdocstrings checks its
# ``paths`` (``.docs-src``) before any ``on_config`` event runs, so a fresh clone without
# the folder would lose it.
_lay_out_package(Path(__file__).resolve().parent)
