#!/usr/bin/env bash
# Create (or reuse) scripts/.venv-impl: the generator's pinned anchors (requirements.txt) plus the
# other implementations segloss certifies (requirements-implementations.txt: Keras 3, JAX and optax,
# ONNX Runtime and the onnx reference evaluator, pytorch-toolbelt, fvcore; timm comes with the
# anchors), and the adapters' helper (python/). Kept apart from scripts/.venv so that the
# generator's environment never changes. Installs only what changed, as setup_venv.sh does;
# `--check` changes nothing and exits 1 unless the virtualenv is up to date.
set -euo pipefail
if [ $# -gt 1 ] || { [ $# -eq 1 ] && [ "$1" != "--check" ]; }; then
    echo "usage: $0 [--check]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/setup_venv.sh" "$@" .venv-impl requirements-implementations.txt
