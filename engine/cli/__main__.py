"""``python -m lossatlas.engine.cli``: the ``lossatlas`` command."""

from . import main

main()
