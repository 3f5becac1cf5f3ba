#!/usr/bin/env bash
# The peers the benchmarks compare against, in their own venv (benchmarks/.peers, git-
# ignored): loss-landscapes 3.0.6 and PyHessian 0.1. They are never lossatlas
# dependencies. The venv sees the project venv's packages (torch, lossatlas) through a
# .pth file, so nothing large is installed twice. Run from the repository root with the
# project venv active; then run any benchmark as  benchmarks/.peers/bin/python benchmarks/bench_X.py
set -euo pipefail
cd "$(dirname "$0")/.."
main_site=$(python -c 'import site; print(site.getsitepackages()[0])')
python -c 'import lossatlas, torch' || { echo "activate the project venv first (README: set-up)" >&2; exit 1; }
python3 -m venv benchmarks/.peers
peer_site=$(benchmarks/.peers/bin/python -c 'import site; print(site.getsitepackages()[0])')
echo "import site; site.addsitedir('$main_site')" > "$peer_site/lossatlas_main_venv.pth"
benchmarks/.peers/bin/pip install -q --no-deps loss-landscapes==3.0.6 PyHessian==0.1
benchmarks/.peers/bin/python -c 'import loss_landscapes, pyhessian, lossatlas; print("peers ready: benchmarks/.peers/bin/python")'
