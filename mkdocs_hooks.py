"""mkdocs hooks of the docs site (``mkdocs.yml``: ``hooks``).

The pages in docs/ link to files of the repository outside docs/ (example configs,
benchmark results, the plugin package), which read well on a forge but are not pages of
the site. In the site such a link becomes its path as code, so ``mkdocs build --strict``
passes without a dead link and without copying the repository into the site.
"""

from __future__ import annotations

import re
from typing import Any

_OUTSIDE = re.compile(r"\[([^\]]+)\]\((\.\./(?:\.\./)*(?!docs/)[^)\s#]+)(#[^)]*)?\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Links that leave docs/ (``../examples/x.toml``) as their path in code."""

    def plain(m: re.Match[str]) -> str:
        text, target = m.group(1), m.group(2).lstrip("./")
        return text if text.strip("`") == target else f"{text} (`{target}`)"

    return _OUTSIDE.sub(plain, markdown)


def on_config(config: Any) -> Any:
    """Lay out the import package for the API reference.

    ``lossatlas.engine`` and ``lossatlas.plugins`` live in the top-level folders engine/
    and plugins/ (``[tool.setuptools] package-dir``), which griffe (mkdocstrings' reader)
    cannot map; ``.docs-src/lossatlas`` links them into one package tree it reads
    statically (nothing is imported).
    """
    from pathlib import Path

    root = Path(config["config_file_path"]).resolve().parent
    tree = root / ".docs-src" / "lossatlas"
    tree.mkdir(parents=True, exist_ok=True)
    links = {p.name: p for p in (root / "lossatlas").iterdir() if p.suffix in (".py", ".typed")}
    links.update(engine=root / "engine", plugins=root / "plugins")
    for name, target in links.items():
        link = tree / name
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return config
