#!/usr/bin/env bash
# Regenerate the conformance matrix in README.md: certify every shipped adapter against the
# bundled fixtures (with its known-failure list) and render the results between the README's
# conformance-matrix markers. Needs the generator's virtualenv (scripts/setup_venv.sh).
set -euo pipefail
scripts="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$scripts")"
cd "$repo"
python="$(bash "$scripts/setup_venv.sh" | tail -n 1)"
cargo build --release --quiet
segloss="$repo/target/release/segloss"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# name | command ("" for the built-in reference)
adapters=(
    "reference|"
    "torch_functional|$python scripts/adapters/torch_functional.py --library torch"
    "anchor_libraries|$python scripts/adapters/torch_functional.py --library torchvision --library smp --library monai --library kornia"
    "logsoftmax_nll_module|$python scripts/adapters/logsoftmax_nll_module.py"
)
reports=()
status=0
for entry in "${adapters[@]}"; do
    name="${entry%%|*}"
    command="${entry#*|}"
    args=(certify --json)
    [ -n "$command" ] && args+=(--cmd "$command")
    known="scripts/adapters/known-failures/$name.json"
    [ -f "$known" ] && args+=(--known-failures "$known")
    if ! "$segloss" "${args[@]}" > "$work/$name.json"; then
        echo "$name: the run failed (unexpected failures or passes); see segloss certify ${args[*]:1}" >&2
        status=1
    fi
    reports+=("$work/$name.json")
done
"$segloss" matrix "${reports[@]}" --update README.md
echo "README.md conformance matrix regenerated" >&2
exit $status
