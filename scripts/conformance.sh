#!/usr/bin/env bash
# Regenerate the conformance matrix in README.md: certify every shipped adapter against the
# bundled fixtures (with its known-failure list) and render the results between the README's
# conformance-matrix markers. Needs the generator's virtualenv (scripts/setup_venv.sh).
set -euo pipefail
scripts="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$scripts")"
cd "$repo"
python="$(bash "$scripts/setup_venv.sh" | tail -n 1)"
# The other implementations live in a virtualenv of their own (the anchors' pins plus theirs).
impl_python="$(bash "$scripts/setup_implementations.sh" | tail -n 1)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# name | command, or "builtin NAME" for an implementation compiled into segloss (one other than
# the reference needs the cargo feature impl-NAME) | extra `segloss certify` options (optional)
adapters=(
    "reference|builtin reference"
    "torch_functional|$python scripts/adapters/torch_functional.py --library torch"
    "anchor_libraries|$python scripts/adapters/torch_functional.py --library torchvision --library smp --library monai --library kornia"
    "logsoftmax_nll_module|$python scripts/adapters/logsoftmax_nll_module.py"
    "candle|builtin candle"
    "burn|builtin burn|--tier float32"
    "keras3|$impl_python scripts/adapters/keras3.py"
    "optax|$impl_python scripts/adapters/optax_losses.py"
    "onnxruntime|$impl_python scripts/adapters/onnx_losses.py --runtime onnxruntime"
    "onnx_reference|$impl_python scripts/adapters/onnx_losses.py --runtime reference"
    "pytorch_toolbelt|$impl_python scripts/adapters/pytorch_toolbelt.py"
    "timm|$impl_python scripts/adapters/timm_losses.py"
    "fvcore|$impl_python scripts/adapters/fvcore_losses.py|--tier float32"
)

# One build with every feature the built-in entries need (the Rust library adapters take minutes
# to compile the first time).
features=()
for entry in "${adapters[@]}"; do
    fields="${entry#*|}"
    command="${fields%%|*}"
    case "$command" in
        "builtin reference") ;;
        "builtin "*) features+=("impl-${command#builtin }") ;;
    esac
done
cargo build --release --quiet ${features[@]+--features "${features[*]}"}
segloss="${CARGO_TARGET_DIR:-$repo/target}/release/segloss"

reports=()
status=0
for entry in "${adapters[@]}"; do
    name="${entry%%|*}"
    fields="${entry#*|}"
    command="${fields%%|*}"
    options=""
    [ "$fields" != "$command" ] && options="${fields#*|}"
    args=(certify --json)
    case "$command" in
        "builtin "*) args+=(--implementation "${command#builtin }") ;;
        *) args+=(--cmd "$command") ;;
    esac
    # Word-split on purpose: the options are plain flags.
    # shellcheck disable=SC2206
    [ -n "$options" ] && args+=($options)
    known="scripts/adapters/known-failures/$name.json"
    [ -f "$known" ] && args+=(--known-failures "$known")
    if ! "$segloss" "${args[@]}" > "$work/$name.json"; then
        echo "$name: the run failed (unexpected failures or passes); see segloss certify ${args[*]:1}" >&2
        status=1
    fi
    reports+=("$work/$name.json")
done
"$segloss" matrix "${reports[@]}" --update README.md --calls docs/certified-calls.json
echo "README.md conformance matrix and docs/certified-calls.json regenerated (then: segloss rosetta --write docs/rosetta.md)" >&2
exit $status
