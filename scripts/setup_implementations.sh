#!/usr/bin/env bash
# Create (or reuse) scripts/.venv-impl: the generator's pinned anchors (requirements.txt) plus the
# other implementations segloss certifies (requirements-implementations.txt: Keras 3, JAX and optax,
# ONNX Runtime and the onnx reference evaluator, pytorch-toolbelt, fvcore; timm comes with the
# anchors). Kept apart from scripts/.venv so that the generator's environment never changes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-impl"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" -r "$here/requirements-implementations.txt"
echo "$venv/bin/python"
