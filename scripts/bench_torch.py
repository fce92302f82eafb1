"""PyTorch's compute-only timings (forward + backward) on the inputs `cargo bench --bench reference`
times, in float64 and float32, next to the reference's, with the ratios and peak memory.

    python scripts/bench_torch.py                          # runs the Rust bench first, then PyTorch
    python scripts/bench_torch.py --reference ref.jsonl    # reuses `cargo bench --bench reference -- --json` output

Inputs are regenerated here with the bench's counter-based generator (splitmix64 of
stream·2⁴⁰ + index), so both sides see the same values; the loss values are printed side by side as
a check. Each (case, dtype) runs in its own process so its peak resident memory is its own.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SCRIPTS = Path(__file__).resolve().parent
LOGITS, CLASSES, IGNORED = 1, 2, 3
IGNORE_INDEX, IGNORED_SHARE = 255, 0.1
CHUNK = 1 << 22
LARGE, LOVASZ = (8, 21, 512, 512), (8, 21, 256, 256)
# name → (shape, input kind, target kind, the loss of (input, target))
CASES = {
    "cross_entropy": (LARGE, "logits", "classes", lambda x, t: F.cross_entropy(x, t)),
    "cross_entropy+ignore+smoothing": (
        LARGE,
        "logits",
        "classes+ignored",
        lambda x, t: F.cross_entropy(x, t, ignore_index=IGNORE_INDEX, label_smoothing=0.1),
    ),
    "nll_loss": (LARGE, "logits", "classes", lambda x, t: F.nll_loss(x, t)),
    "binary_cross_entropy_with_logits": (
        LARGE,
        "logits",
        "one-hot",
        lambda x, t: F.binary_cross_entropy_with_logits(x, t),
    ),
    "sigmoid_focal_loss": (LARGE, "logits", "one-hot", lambda x, t: _torchvision_focal(x, t)),
    "segloss.soft_dice": (LARGE, "probabilities", "one-hot", lambda x, t: _soft_dice(x, t)),
    "smp.LovaszLoss": (LOVASZ, "logits", "classes", lambda x, t: _smp_lovasz(x, t)),
}


def _torchvision_focal(x, t):
    from torchvision.ops import sigmoid_focal_loss

    return sigmoid_focal_loss(x, t, reduction="mean")


def _soft_dice(x, t):
    sys.path.insert(0, str(SCRIPTS))
    from segloss_gen.overlap import soft_dice

    return soft_dice(x, t)


def _smp_lovasz(x, t):
    from segmentation_models_pytorch.losses import LovaszLoss

    return LovaszLoss("multiclass")(x, t)


def uniform(stream, count, transform, dtype):
    """splitmix64 of stream·2⁴⁰ + index as doubles in [0, 1), transformed, stored as `dtype`."""
    out = np.empty(count, dtype=dtype)
    with np.errstate(over="ignore"):
        for start in range(0, count, CHUNK):
            z = np.arange(start, min(count, start + CHUNK), dtype=np.uint64) + np.uint64(stream << 40)
            z = z + np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            out[start : start + len(z)] = transform((z >> np.uint64(11)).astype(np.float64) / 2.0**53)
    return out


def class_indices(shape, ignore):
    n, c, h, w = shape
    count = n * h * w
    classes = uniform(CLASSES, count, lambda u: np.minimum((u * c).astype(np.int64), c - 1), np.int64)
    if ignore:
        classes[uniform(IGNORED, count, lambda u: u < IGNORED_SHARE, bool)] = IGNORE_INDEX
    return classes.reshape(n, h, w)


def inputs(name):
    shape, input_kind, target_kind, _ = CASES[name]
    count = int(np.prod(shape))
    if input_kind == "logits":
        x = uniform(LOGITS, count, lambda u: 8.0 * u - 4.0, np.float32).reshape(shape)
    else:
        x = uniform(LOGITS, count, lambda u: u, np.float32).reshape(shape)
    classes = class_indices(shape, target_kind == "classes+ignored")
    if target_kind == "one-hot":
        c = shape[1]
        target = (classes[:, None, :, :] == np.arange(c)[None, :, None, None]).astype(np.float32)
        return x, target
    return x, classes


def run_one(name, dtype_name, runs):
    """Times one case in this process and prints its JSON record."""
    torch.set_num_threads(2)
    dtype = {"f64": torch.float64, "f32": torch.float32}[dtype_name]
    x_np, t_np = inputs(name)
    x = torch.from_numpy(x_np).to(dtype).requires_grad_()
    t = torch.from_numpy(t_np)
    t = t.to(dtype) if t.is_floating_point() else t
    del x_np, t_np
    loss_fn = CASES[name][3]
    seconds, value = [], float("nan")
    for _ in range(runs):
        x.grad = None
        start = time.perf_counter()
        loss = loss_fn(x, t)
        loss.backward()
        seconds.append(time.perf_counter() - start)
        value = float(loss.detach().sum())
        if seconds[0] > 20.0:
            break
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    record = {"case": name, "dtype": dtype_name, "median_s": statistics.median(seconds)}
    print(json.dumps(record | {"loss_value": value, "peak_rss_bytes": peak}))


def reference_records(path):
    if path:
        text = Path(path).read_text()
    else:
        command = ["cargo", "bench", "--bench", "reference", "--", "--json"]
        text = subprocess.run(command, cwd=SCRIPTS.parent, check=True, capture_output=True, text=True).stdout
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return {record["case"]: record for record in records}


def torch_record(name, dtype_name, runs):
    """The case's record, or None when PyTorch rejects it (smp's Lovász refuses float64)."""
    command = [sys.executable, __file__, "--one", name, dtype_name, "--runs", str(runs)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{name} {dtype_name}: {done.stderr.strip().splitlines()[-1]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def seconds_and_ratio(ref, record):
    if record is None:
        return f"{'n/a':>7} {'n/a':>7}"
    return f"{record['median_s']:>7.2f} {ref['median_s'] / record['median_s']:>7.2f}"


def megabytes(record):
    return f"{'n/a':>7}" if record is None else f"{record['peak_rss_bytes'] / 1e6:>7.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", help="JSON lines from `cargo bench --bench reference -- --json`")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("cases", nargs="*", help="the cases to run (all when none is named)")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(*args.one, args.runs)
        return
    reference = reference_records(args.reference)
    columns = ("ref s", "f64 s", "ref/f64", "f32 s", "ref/f32", "ref MB")
    print(
        f"{'case':<34} {'shape':<17} " + " ".join(f"{c:>7}" for c in columns)
        + f" {'ref/(in+g)':>10} {'f64 MB':>7} {'f32 MB':>7}  loss ref | f64 | f32"
    )
    for name, (shape, *_) in CASES.items():
        if args.cases and name not in args.cases:
            continue
        ref = reference[name]
        f64, f32 = torch_record(name, "f64", args.runs), torch_record(name, "f32", args.runs)
        budget = ref["input_bytes"] + ref["gradient_bytes"]
        losses = " | ".join(f"{r['loss_value']:.12g}" if r else "n/a" for r in (ref, f64, f32))
        print(
            f"{name:<34} {str(shape):<17} {ref['median_s']:>7.2f}"
            f" {seconds_and_ratio(ref, f64)} {seconds_and_ratio(ref, f32)}"
            f" {ref['peak_rss_bytes'] / 1e6:>7.0f} {ref['peak_rss_bytes'] / budget:>10.2f} {megabytes(f64)} {megabytes(f32)}"
            f"  {losses}",
            flush=True,
        )


if __name__ == "__main__":
    main()
