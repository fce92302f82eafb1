#!/usr/bin/env bash
# Create (or reuse) a virtualenv under scripts/ and install pinned requirements into it: by default
# scripts/.venv with the generator's pins (requirements.txt); `setup_venv.sh NAME FILE...` makes
# scripts/NAME with the generator's pins plus those of each FILE (in scripts/). Prints its python.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/${1:-.venv}"
shift || true
requirements=(-r "$here/requirements.txt")
for file in "$@"; do
    requirements+=(-r "$here/$file")
done
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "${requirements[@]}"
echo "$venv/bin/python"
