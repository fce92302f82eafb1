#!/usr/bin/env bash
# Create (or reuse) a virtualenv under scripts/ and install pinned requirements into it: by default
# scripts/.venv with the generator's pins (requirements.txt); `setup_venv.sh NAME FILE...` makes
# scripts/NAME with the generator's pins plus those of each FILE (in scripts/). Either way the
# adapters' protocol helper, the segloss-adapter package in python/, is installed editable, so
# that the adapters in scripts/adapters/ import it as `segloss_adapter`.
#
# pip runs only when something it would install changed: the virtualenv keeps a stamp, the sha256
# of the requirement files and of python/pyproject.toml, and a virtualenv whose stamp matches is
# left as it is (no network, nothing upgraded). pip itself is upgraded only in a new virtualenv.
# Says what it did on stderr; prints the virtualenv's python on stdout (its last line).
# `setup_venv.sh --check [NAME FILE...]` changes nothing: it exits 1, saying why, unless the
# virtualenv exists and its stamp matches.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
check=false
if [ "${1:-}" = "--check" ]; then
    check=true
    shift
fi
setup="scripts/setup_venv.sh${*:+ $*}"
name="${1:-.venv}"
venv="$here/$name"
shift || true
files=("$here/requirements.txt")
for file in "$@"; do
    files+=("$here/$file")
done
helper="$repo/python"
stamp="$venv/.segloss-requirements.sha256"

say() { echo "setup_venv.sh: $*" >&2; }

created=false
if [ ! -x "$venv/bin/python" ]; then
    if $check; then
        say "scripts/$name does not exist; run $setup"
        exit 1
    fi
    say "creating scripts/$name"
    python3 -m venv "$venv"
    created=true
fi
# What pip would install, as one hash: the requirement files (in order) and the helper's metadata
# (its code is installed editable, so a change to it needs no install).
wanted="$("$venv/bin/python" - "${files[@]}" "$helper/pyproject.toml" <<'EOF'
import hashlib, sys
digest = hashlib.sha256()
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    digest.update(f"{len(data)}\n".encode() + data)
print(digest.hexdigest())
EOF
)"
have="$(cat "$stamp" 2>/dev/null || true)"
listed="$(printf '%s, ' "${files[@]#"$here/"}")"
if [ "$have" = "$wanted" ]; then
    say "scripts/$name is up to date (${listed}python/pyproject.toml unchanged, stamp ${wanted:0:12}); nothing installed"
elif $check; then
    say "scripts/$name is out of date (stamp ${have:0:12}${have:+, }requirements ${wanted:0:12}); run $setup"
    exit 1
else
    if $created; then
        "$venv/bin/python" -m pip install --quiet --upgrade pip
    elif [ -z "$have" ]; then
        say "scripts/$name has no stamp"
    else
        say "scripts/$name was installed from other requirements (stamp ${have:0:12}, now ${wanted:0:12})"
    fi
    say "installing ${listed%, } and the segloss-adapter helper (python/, editable) into scripts/$name"
    requirements=()
    for file in "${files[@]}"; do
        requirements+=(-r "$file")
    done
    rm -f "$stamp"
    "$venv/bin/python" -m pip install --quiet "${requirements[@]}" -e "$helper"
    echo "$wanted" > "$stamp"
    say "installed; stamp ${wanted:0:12} written"
fi
echo "$venv/bin/python"
