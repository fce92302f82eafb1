#!/usr/bin/env bash
# Regenerate the golden fixtures.
#
#   scripts/regen.sh           replace fixtures/ with a fresh generation (stale files disappear)
#   scripts/regen.sh --check   regenerate into a temporary directory and fail, listing the
#                              differing files, unless it is byte-identical to fixtures/
#
# The generator's virtualenv is created or reused by setup_venv.sh.
set -euo pipefail

usage() { echo "usage: $0 [--check]" >&2; exit 2; }
check=false
case $# in
    0) ;;
    1) [ "$1" = "--check" ] || usage; check=true ;;
    *) usage ;;
esac

scripts="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$scripts")"
fixtures="$repo/fixtures"

python="$(bash "$scripts/setup_venv.sh" | tail -n 1)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Anchors print Python sets in some error messages (MONAI's and kornia's option lists): a fixed
# hash seed fixes their order. The generator reports each family's and each loss's cases on stderr.
echo "generating the fixtures into a temporary directory" >&2
PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 "$python" "$scripts/generate_fixtures.py" --out "$work/fixtures"

if $check; then
    if [ ! -d "$fixtures" ]; then
        echo "fixtures/ does not exist; run scripts/regen.sh" >&2
        exit 1
    fi
    if ! diff -r -q "$fixtures" "$work/fixtures" >"$work/diff.txt"; then
        echo "fixtures/ differs from a fresh generation:" >&2
        sed -e "s|$work/fixtures|<fresh>|g" -e "s|$fixtures|fixtures|g" "$work/diff.txt" >&2
        exit 1
    fi
    echo "fixtures/ is up to date" >&2
else
    rm -rf "$fixtures"
    mv "$work/fixtures" "$fixtures"
    echo "fixtures/ regenerated" >&2
fi
