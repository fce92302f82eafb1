"""Write segloss's golden fixtures: `PYTHONHASHSEED=0 python scripts/generate_fixtures.py --out DIR`.

DIR (which must not exist or be empty) receives manifest.json and cases/<case id>/<name>.npy, as
docs/fixture-format.md specifies. Use scripts/regen.sh to refresh or check the committed fixtures/.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from segloss_gen import binary_focal, common, cross_entropy, defects, lovasz_mcc, overlap

#: One module per loss family; each exposes `cases()`.
FAMILIES = (cross_entropy, binary_focal, overlap, lovasz_mcc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write the fixtures into")
    args = parser.parse_args(argv)
    if os.environ.get("PYTHONHASHSEED") != "0":
        # Some anchors' error messages print a Python set, whose order follows the hash seed.
        print("run with PYTHONHASHSEED=0 (scripts/regen.sh does), so error messages are reproducible", file=sys.stderr)
        return 2
    common.configure_torch()
    started = time.monotonic()
    cases = []
    for family in FAMILIES:
        found = family.cases()
        losses = sorted({case.loss for case in found})
        print(f"{family.__name__.rsplit('.', 1)[-1]}: {len(found)} cases of {len(losses)} losses", file=sys.stderr)
        cases += found
    width = len(str(len(cases)))

    def progress(loss: str, count: int, done: int) -> None:
        elapsed = time.monotonic() - started
        print(f"[{done:>{width}}/{len(cases)}] {loss}: {count} cases written ({elapsed:.1f} s)", file=sys.stderr)

    try:
        manifest = common.generate(cases, args.out, defects.shown, progress)
        defects.check_every_defect_shown(manifest["cases"])
    except common.GenerationError as error:
        print(f"fixture generation failed: {error}", file=sys.stderr)
        return 1
    errors = sum(entry["expected"]["outcome"] == "error" for entry in manifest["cases"])
    total = len(manifest["cases"])
    shown = sum("alternatives" in entry for entry in manifest["cases"])
    print(f"wrote {total} cases ({total - errors} values, {errors} errors; {shown} show an upstream defect)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
