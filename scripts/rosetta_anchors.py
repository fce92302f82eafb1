"""Check the Rosetta's equivalences against the anchors themselves.

`segloss rosetta` claims, from the reference spec, that two calls compute the same function. This
script evaluates every claimed pair with the anchor libraries (PyTorch, torchvision, smp, MONAI,
kornia, through scripts/adapters/torch_functional.py) on fresh generated problems and reports how
far the two anchors' losses and gradients with respect to the logits are apart:

    scripts/.venv/bin/python scripts/rosetta_anchors.py [--segloss target/release/segloss] [--problems 20]

It exits 1 when a pair differs by more than --tolerance (relative), naming it. The anchors
compute in float64 here, except where a library computes in float32 whatever its input (MONAI's
focal loss; smp's Lovász weights), which the tolerance (default 1e-6) leaves room for.

With `--write tests/data/rosetta_anchors.json` it also records, for every claimed pair, both
anchors' losses and gradients on its first --recorded problems (one per scenario), with the
problems themselves and this script's sha256: `tests/rosetta.rs` checks every equivalence the page
claims against these recorded anchor outputs (both anchors agree; the reference reproduces each),
so that CI, which has no PyTorch, holds the page to the anchors too.
"""

import argparse
import hashlib
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "adapters"))
from segloss_adapter import Request  # noqa: E402
from torch_functional import LIBRARIES, make_compute  # noqa: E402


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def problem(rng: np.random.Generator, scenario: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, 3, H, W) as float32 numbers in float64, and labels (N, H, W), in the four
    scenarios of the Rosetta's problems (every class, a class absent, an image of one class,
    confident logits)."""
    batch, height, width = rng.integers(1, 4), rng.integers(2, 6), rng.integers(2, 6)
    scale = 8.0 if scenario == 3 else 2.0
    logits = (scale * rng.uniform(-1, 1, (batch, 3, height, width))).astype(np.float32).astype(np.float64)
    labels = rng.integers(0, 2 if scenario == 1 else 3, (batch, height, width))
    if scenario == 2:
        labels[0] = 1
    return logits, labels


def tensors(form: dict, logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction = {
        "logits": logits,
        "logits32": logits.astype(np.float32),
        "probabilities": softmax(logits),
    }[form["prediction"]]
    target = {
        "indices": labels,
        "indices_with_channel": labels[:, None],
        "one_hot": np.moveaxis(np.eye(logits.shape[1])[labels], -1, 1),
    }[form["target"]]
    return prediction, target.astype(np.int64 if form["target"] != "one_hot" else np.float64)


def evaluate(compute, described: dict, logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The anchor's loss and its gradient with respect to the logits."""
    prediction, target = tensors(described["form"], logits, labels)
    names = described["tensors"]
    setting = described["setting"]
    loss, grad = compute(Request(setting["loss"], dict(setting["params"]), {names[0]: prediction, names[1]: target}, names[0], None))
    grad = np.asarray(grad, dtype=np.float64)
    if described["form"]["prediction"] == "probabilities":
        p = softmax(logits)
        grad = p * (grad - (p * grad).sum(axis=1, keepdims=True))
    return np.asarray(loss, dtype=np.float64), grad


def relative(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), np.finfo(float).tiny)
    return float(np.abs(a - b).max(initial=0.0) / scale)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segloss", default="target/release/segloss")
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--write", type=Path, help="record the anchors' outputs in this file")
    parser.add_argument("--recorded", type=int, default=4, help="problems recorded per pair")
    args = parser.parse_args()
    pairs = []
    tables = json.loads(subprocess.run([args.segloss, "rosetta", "--json"], check=True, capture_output=True, text=True).stdout)
    compute = make_compute(list(LIBRARIES))
    rng = np.random.default_rng(12345)
    failed = 0
    print(f"{'from':<58} {'to':<75} {'largest relative difference':>28}")
    for table in tables:
        for translation in table["translations"]:
            if not translation["same"]:
                continue
            worst = 0.0
            recorded = []
            for index in range(args.problems):
                logits, labels = problem(rng, index % 4)
                loss_a, grad_a = evaluate(compute, translation["from"], logits, labels)
                loss_b, grad_b = evaluate(compute, translation["to"], logits, labels)
                worst = max(worst, relative(loss_a, loss_b), relative(grad_a, grad_b))
                if index < args.recorded:
                    recorded.append({
                        "logits": array(logits), "labels": array(labels),
                        "from": {"loss": array(loss_a), "grad": array(grad_a)},
                        "to": {"loss": array(loss_b), "grad": array(grad_b)},
                    })
            pairs.append({"from": translation["from"]["setting"], "to": translation["to"]["setting"],
                          "problems": recorded})
            call = lambda described: described["setting"]["loss"] + json.dumps(described["setting"]["params"], sort_keys=True)
            flag = "" if worst <= args.tolerance else "   <-- beyond the tolerance"
            failed += worst > args.tolerance
            print(f"{call(translation['from']):<58} {call(translation['to']):<75} {worst:>28.1e}{flag}")
    print(f"{failed} pair(s) beyond {args.tolerance:g}", file=sys.stderr)
    if args.write and not failed:
        versions = {name: importlib.import_module(module).__version__.split("+")[0]
                    for name, module in [("torch", "torch"), ("torchvision", "torchvision"),
                                         ("smp", "segmentation_models_pytorch"), ("monai", "monai"),
                                         ("kornia", "kornia"), ("numpy", "numpy")]}
        record = {
            "format": "segloss-rosetta-anchors", "version": 1,
            "generator": {"script": "scripts/rosetta_anchors.py",
                          "script_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
                          "seed": 12345, "libraries": versions},
            "pairs": pairs,
        }
        args.write.write_text(json.dumps(record, indent=None, separators=(",", ":")) + "\n")
        print(f"wrote {args.write}: {len(pairs)} pairs, {args.recorded} problems each", file=sys.stderr)
    return 1 if failed else 0


def array(values: np.ndarray) -> dict:
    """An array as the record holds it: its shape and its values in row-major order."""
    values = np.asarray(values)
    return {"shape": list(values.shape), "values": values.ravel().tolist()}


if __name__ == "__main__":
    sys.exit(main())
