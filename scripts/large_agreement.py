"""Run the anchors (PyTorch, torchvision, smp, MONAI, kornia) on the `large` corpus and report
how far each is from the reference, case by case: the check that the reference behaves at
segmentation sizes as the libraries it specifies do.

    scripts/.venv/bin/python scripts/large_agreement.py                      # every large case
    scripts/.venv/bin/python scripts/large_agreement.py --filter "*/f64" --filter cross_entropy
    scripts/.venv/bin/python scripts/large_agreement.py --library torch --library smp

It runs `segloss certify --corpus large --json` with the anchors' adapter
(scripts/adapters/torch_functional.py) and prints, per check, the anchor's normwise difference
from the reference in ulps of the tensor's largest magnitude (float32 ulps for float32 cases,
float64 for float64; a failed check's detail says what was allowed), then the worst per library
and dtype. A check beyond its bound is the anchor's own error at size when the float64 anchors agree
(see the README's "Corpora"). Exit status 0 when the run completed, whatever the agreement.
"""

import argparse
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def library_of(loss: str) -> str:
    if "." in loss:
        return loss.split(".", 1)[0]
    return "torchvision" if loss == "sigmoid_focal_loss" else "torch"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segloss", default=str(ROOT / "target" / "release" / "segloss"),
                        help="the segloss binary (built with cargo build --release if absent)")
    parser.add_argument("--library", action="append", default=[],
                        help="only this anchor library (repeatable)")
    parser.add_argument("--filter", action="append", default=[],
                        help="only cases this filter selects (whole id segments and * globs, as segloss certify --filter; repeatable)")
    parser.add_argument("--timeout", default="600", help="seconds per case")
    args = parser.parse_args()

    segloss = pathlib.Path(args.segloss)
    if not segloss.exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    adapter = f"{sys.executable} {ROOT / 'scripts' / 'adapters' / 'torch_functional.py'}"
    for library in args.library:
        adapter += f" --library {library}"
    command = [str(segloss), "certify", "--corpus", "large", "--cmd", adapter,
               "--timeout", args.timeout, "--json"]
    for text in args.filter:
        command += ["--filter", text]
    print("running:", " ".join(command), file=sys.stderr)
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if not run.stdout.strip():
        print(run.stderr, file=sys.stderr)
        return 1
    report = json.loads(run.stdout)

    worst = {}
    print("| check | status | normwise ulps | detail |")
    print("|---|---|---:|---|")
    for check in report["checks"]:
        if check["status"] == "unsupported":
            continue
        name = check["check"]
        loss, dtype = name.split("/")[0], name.split("/")[1]
        ulps = check.get("normwise_ulps")
        detail = (check.get("detail") or "").split("\n")
        if ulps is None and len(detail) > 2 and "ulps" in detail[2]:
            ulps = float(detail[2].split(" ulps")[0].rsplit(" ", 1)[-1])
        key = (library_of(loss), dtype)
        if ulps is not None and ulps >= worst.get(key, (0.0, ""))[0]:
            worst[key] = (ulps, name)
        shown = f"{ulps:.1f}" if ulps is not None else "n/a"
        note = "" if check["status"] == "passed" else detail[0]
        print(f"| {name} | {check['status']} | {shown} | {note} |")
    print()
    print("| library | dtype | worst normwise ulps | case |")
    print("|---|---|---:|---|")
    for (library, dtype), (ulps, name) in sorted(worst.items()):
        print(f"| {library} | {dtype} | {ulps:.1f} | {name} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
