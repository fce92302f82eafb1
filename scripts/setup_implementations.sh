#!/usr/bin/env bash
# Create (or reuse) scripts/.venv-impl: the generator's pinned anchors (requirements.txt) plus the
# other implementations segloss certifies (requirements-implementations.txt: Keras 3, JAX and optax,
# ONNX Runtime and the onnx reference evaluator, pytorch-toolbelt, fvcore; timm comes with the
# anchors). Kept apart from scripts/.venv so that the generator's environment never changes.
exec bash "$(dirname "$0")/setup_venv.sh" .venv-impl requirements-implementations.txt
