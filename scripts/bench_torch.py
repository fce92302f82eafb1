"""The reference against PyTorch at segmentation sizes, in two modes.

Compute only (the default): PyTorch's forward + backward on the inputs `cargo bench --bench
reference` times, in float64 and float32, next to the reference's, with the ratios and peak memory.

    python scripts/bench_torch.py                          # runs the Rust bench first, then PyTorch
    python scripts/bench_torch.py cross_entropy smp.TverskyLoss          # a subset of the cases
    python scripts/bench_torch.py --reference ref.jsonl    # reuses `cargo bench --bench reference -- --json` output

Whole jobs (`--whole-job`): each case's inputs are written once as .npy files (float32 input,
target as the loss takes it), then two kinds of process are timed from start to exit, each run a
process of its own: `segloss eval` (the release binary) and a Python process that imports torch and
the loss's library, loads the files, computes the loss and its gradient in float64 and saves
loss.npy and grad_input.npy. Wall time (median of --runs), peak resident memory of each, and the
agreement of the two jobs' outputs.

    python scripts/bench_torch.py --whole-job                           # every case
    python scripts/bench_torch.py --whole-job cross_entropy --runs 5    # a subset
    python scripts/bench_torch.py --whole-job --segloss target/release/segloss --workdir /tmp/jobs --keep

Inputs are regenerated here with the bench's counter-based generator (splitmix64 of
stream·2⁴⁰ + index), so both sides see the same values; the loss values are printed side by side as
a check. Each (case, dtype) runs in its own process so its peak resident memory is its own. Tables
are printed as markdown.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
LOGITS, CLASSES, IGNORED = 1, 2, 3
IGNORE_INDEX, IGNORED_SHARE = 255, 0.1
CHUNK = 1 << 22
LARGE, LOVASZ = (8, 21, 512, 512), (8, 21, 256, 256)
#: PyTorch's intra-op threads, in compute-only runs and in whole jobs alike.
TORCH_THREADS = 2


def _torchvision_focal(x, t):
    from torchvision.ops import sigmoid_focal_loss

    return sigmoid_focal_loss(x, t, reduction="mean")


def _soft_dice(x, t):
    """segloss.soft_dice's literal expression (segloss_gen.overlap.soft_dice, smooth 1, mean),
    written out so that a whole PyTorch job imports torch alone."""
    dims = tuple(range(2, x.dim()))
    return (1 - (2 * (x * t).sum(dims) + 1.0) / (x.sum(dims) + t.sum(dims) + 1.0)).mean()


def _smp_tversky(x, t):
    from segmentation_models_pytorch.losses import TverskyLoss

    return TverskyLoss("multiclass")(x, t)


def _smp_lovasz(x, t):
    from segmentation_models_pytorch.losses import LovaszLoss

    return LovaszLoss("multiclass")(x, t)


def _monai_dice(x, t):
    from monai.losses import DiceLoss

    return DiceLoss(softmax=True, to_onehot_y=True)(x, t)


def _monai_focal(x, t):
    from monai.losses import FocalLoss

    return FocalLoss()(x, t)


def _smp_focal(x, t):
    from segmentation_models_pytorch.losses import FocalLoss

    return FocalLoss("multiclass")(x, t)


def _kornia_focal(x, t):
    from kornia.losses import focal_loss

    return focal_loss(x, t, alpha=0.25, gamma=2.0, reduction="mean")


@dataclass(frozen=True)
class Case:
    """One benchmark case, as `benches/reference.rs` has it.

    `input`: logits (uniform in [−4, 4)), probabilities ([0, 1)) or clipped-probabilities
    ([0.02, 0.98)), all float32. `target`: classes ((N, H, W) int64), classes+ignored (10% of them
    255), class-map ((N, 1, H, W) int64) or one-hot ((N, C, H, W) float32). `loss` and `params`: the
    catalog call (`segloss eval`'s loss id and `--param`s); `torch_loss`: PyTorch's loss of
    (input, target)."""

    shape: tuple
    input: str
    target: str
    loss: str
    torch_loss: Callable
    params: dict = field(default_factory=dict)


CASES = {
    "cross_entropy": Case(LARGE, "logits", "classes", "cross_entropy", lambda x, t: F.cross_entropy(x, t)),
    "cross_entropy+ignore+smoothing": Case(
        LARGE,
        "logits",
        "classes+ignored",
        "cross_entropy",
        lambda x, t: F.cross_entropy(x, t, ignore_index=IGNORE_INDEX, label_smoothing=0.1),
        {"ignore_index": IGNORE_INDEX, "label_smoothing": 0.1},
    ),
    "nll_loss": Case(LARGE, "logits", "classes", "nll_loss", lambda x, t: F.nll_loss(x, t)),
    "binary_cross_entropy": Case(
        LARGE, "clipped-probabilities", "one-hot", "binary_cross_entropy", lambda x, t: F.binary_cross_entropy(x, t)
    ),
    "binary_cross_entropy_with_logits": Case(
        LARGE,
        "logits",
        "one-hot",
        "binary_cross_entropy_with_logits",
        lambda x, t: F.binary_cross_entropy_with_logits(x, t),
    ),
    "sigmoid_focal_loss": Case(
        LARGE, "logits", "one-hot", "sigmoid_focal_loss", _torchvision_focal, {"reduction": "mean"}
    ),
    "segloss.soft_dice": Case(LARGE, "probabilities", "one-hot", "segloss.soft_dice", _soft_dice),
    "smp.TverskyLoss": Case(LARGE, "logits", "classes", "smp.TverskyLoss", _smp_tversky, {"mode": "multiclass"}),
    "monai.DiceLoss": Case(
        LARGE, "logits", "class-map", "monai.DiceLoss", _monai_dice, {"softmax": True, "to_onehot_y": True}
    ),
    "kornia.focal_loss": Case(
        LARGE,
        "logits",
        "classes",
        "kornia.focal_loss",
        _kornia_focal,
        {"alpha": 0.25, "gamma": 2.0, "reduction": "mean"},
    ),
    "monai.FocalLoss": Case(LARGE, "logits", "one-hot", "monai.FocalLoss", _monai_focal),
    "smp.FocalLoss": Case(LARGE, "logits", "classes", "smp.FocalLoss", _smp_focal, {"mode": "multiclass"}),
    "smp.LovaszLoss": Case(LOVASZ, "logits", "classes", "smp.LovaszLoss", _smp_lovasz, {"mode": "multiclass"}),
}


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


INPUTS = {
    "logits": lambda u: 8.0 * u - 4.0,
    "probabilities": lambda u: u,
    "clipped-probabilities": lambda u: 0.02 + 0.96 * u,
}


def inputs(name):
    """The case's (input, target) as numpy arrays, bit for bit the Rust bench's."""
    case = CASES[name]
    count = int(np.prod(case.shape))
    x = uniform(LOGITS, count, INPUTS[case.input], np.float32).reshape(case.shape)
    classes = class_indices(case.shape, case.target == "classes+ignored")
    if case.target == "one-hot":
        c = case.shape[1]
        target = (classes[:, None, :, :] == np.arange(c)[None, :, None, None]).astype(np.float32)
        return x, target
    if case.target == "class-map":
        return x, classes[:, None, :, :]
    return x, classes


def markdown_row(cells, widths):
    """One markdown table row, each cell padded to its column's width (numbers to the right)."""
    padded = []
    for cell, width in zip(cells, widths):
        text = str(cell)
        padded.append(text.rjust(width) if _numeric(text) or text in ("n/a", "failed") else text.ljust(width))
    return "| " + " | ".join(padded) + " |"


def _numeric(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def markdown_header(headers, numeric_from, width=0):
    """The header row and the rule, columns from `numeric_from` on right-aligned; the case column
    32 characters wide at least, the others `width` (and the second 17, a shape's)."""
    widths = [max(len(h), 32 if i == 0 else max(width, 17) if i == 1 else width) for i, h in enumerate(headers)]
    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if i >= numeric_from else "-" * (w + 2) for i, w in enumerate(widths)
    ) + "|"
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print(rule, flush=True)
    return widths


def shape_text(shape):
    return str(tuple(shape))


# ---------------------------------------------------------------------------------------------
# Compute only


def run_one(name, dtype_name, runs):
    """Times one case in this process and prints its JSON record."""
    torch.set_num_threads(TORCH_THREADS)
    dtype = {"f64": torch.float64, "f32": torch.float32}[dtype_name]
    x_np, t_np = inputs(name)
    x = torch.from_numpy(x_np).to(dtype).requires_grad_()
    t = torch.from_numpy(t_np)
    t = t.to(dtype) if t.is_floating_point() else t
    del x_np, t_np
    loss_fn = CASES[name].torch_loss
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
    # VmHWM, as the Rust bench reads it: this process's own high-water mark (its ru_maxrss would
    # start at that of the process it was forked from).
    peak = _vm_hwm("self")
    record = {"case": name, "dtype": dtype_name, "median_s": statistics.median(seconds)}
    print(json.dumps(record | {"loss_value": value, "peak_rss_bytes": peak}))


def checked(name, record):
    """`record` if it describes the call this script makes for `name`. The two sides describe each
    case separately; a record that disagrees is from a stale file or a bench edited on one side."""
    case = CASES[name]
    if record["loss"] != case.loss or record.get("params", case.params) != case.params:
        rust = f"{record['loss']} {record.get('params')}"
        sys.exit(f"{name}: the Rust bench calls {rust}, this script {case.loss} {case.params}")
    return record


def rust_bench_record(name, runs):
    """The Rust bench run on one case alone (in its own process, as a full bench run runs it)."""
    command = ["cargo", "bench", "--bench", "reference", "--", name, "--runs", str(runs)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{name}: the Rust bench failed:\n{done.stderr.strip()}")
    return checked(name, json.loads(done.stdout.strip().splitlines()[-1]))


def torch_record(name, dtype_name, runs):
    """The case's record, or None when PyTorch rejects it (smp's Lovász refuses float64)."""
    command = [sys.executable, __file__, "--one", name, dtype_name, "--runs", str(runs)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{name} {dtype_name}: {done.stderr.strip().splitlines()[-1]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def compute_only(names, runs, reference_file):
    given = None
    if reference_file:
        lines = Path(reference_file).read_text().splitlines()
        given = {r["case"]: r for r in (json.loads(line) for line in lines if line.startswith("{"))}
        missing = [name for name in names if name not in given]
        if missing:
            rerun = "`cargo bench --bench reference -- --json`"
            sys.exit(f"not in {reference_file}: {', '.join(missing)}; rerun {rerun}")
        given = {name: checked(name, given[name]) for name in names}
    headers = (
        "case", "shape", "reference s", "PyTorch f64 s", "ref/f64", "PyTorch f32 s", "ref/f32",
        "reference peak MB", "peak / (input + f64 gradient)", "PyTorch f64 peak MB", "PyTorch f32 peak MB",
    )
    widths = markdown_header(headers, 2)
    checks = []
    for name in names:
        ref = given[name] if given else rust_bench_record(name, runs)
        f64, f32 = torch_record(name, "f64", runs), torch_record(name, "f32", runs)
        budget = ref["input_bytes"] + ref["gradient_bytes"]

        def seconds(r):
            return "n/a" if r is None else f"{r['median_s']:.2f}"

        def ratio(r):
            return "n/a" if r is None else f"{ref['median_s'] / r['median_s']:.2f}"

        def megabytes(r):
            return "n/a" if r is None else f"{r['peak_rss_bytes'] / 1e6:.0f}"

        cells = (
            name, shape_text(ref["shape"]), f"{ref['median_s']:.2f}", seconds(f64), ratio(f64),
            seconds(f32), ratio(f32), megabytes(ref), f"{ref['peak_rss_bytes'] / budget:.2f}",
            megabytes(f64), megabytes(f32),
        )
        print(markdown_row(cells, widths), flush=True)
        checks.append((name, ref, f64, f32))

    print("\nLoss values (the reference's float64 from float32 inputs; PyTorch f64 agrees to about 14")
    print("digits, f32 to about 6 where its reductions hold float32 accuracy):\n")
    widths = markdown_header(("case", "reference", "PyTorch f64", "PyTorch f32", "ref vs f64, relative"), 1, 21)
    for name, *records in checks:
        values = [r["loss_value"] if r else None for r in records]
        texts = [f"{v:.15g}" if v is not None else "n/a" for v in values]
        relative = "n/a" if values[1] is None else f"{_relative(values[0], values[1]):.1e}"
        print(markdown_row((name, *texts, relative), widths), flush=True)


def _relative(a, b):
    return abs(a - b) / max(abs(a), abs(b), np.finfo(np.float64).tiny)


# ---------------------------------------------------------------------------------------------
# Whole jobs


def job(name, input_path, target_path, out_dir):
    """A whole PyTorch job: load the .npy files, loss and gradient in float64, save both."""
    torch.set_num_threads(TORCH_THREADS)
    x = torch.from_numpy(np.load(input_path)).to(torch.float64).requires_grad_()
    t = torch.from_numpy(np.load(target_path))
    t = t.to(torch.float64) if t.is_floating_point() else t
    loss = CASES[name].torch_loss(x, t)
    loss.backward(torch.ones_like(loss))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "loss.npy", loss.detach().numpy())
    np.save(out / "grad_input.npy", x.grad.numpy())


def segloss_binary(given):
    """The release `segloss` binary: `given`, or built here (`cargo build --release`)."""
    if given:
        return str(Path(given).resolve())
    command = ["cargo", "build", "--release", "--bin", "segloss", "--message-format=json"]
    done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            return message["executable"]
    sys.exit("cargo build --release named no segloss executable")


GNU_TIME = "/usr/bin/time"


def timed_child(argv, log):
    """Runs `argv` as a child, its output to `log`: (wall seconds, peak RSS bytes, exit code).

    The peak is the child's own: a child's `ru_maxrss` (from `wait4` or RUSAGE_CHILDREN) starts at
    the high-water mark of the process it was forked from, this one, which has held whole inputs
    and gradients. So the child is started through GNU time, a small process, and its `%M` read;
    without GNU time, the child's VmHWM is polled from /proc every 10 ms."""
    with open(log, "ab") as out:
        actions = [(os.POSIX_SPAWN_DUP2, out.fileno(), 1), (os.POSIX_SPAWN_DUP2, out.fileno(), 2)]
        if os.access(GNU_TIME, os.X_OK):
            with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
                start = time.perf_counter()
                pid = os.posix_spawn(GNU_TIME, [GNU_TIME, "-f", "%M", "-o", rss.name, *argv], os.environ,
                                     file_actions=actions)
                _, status = os.waitpid(pid, 0)
                seconds = time.perf_counter() - start
                peak = int(rss.read().split()[-1]) * 1024
            return seconds, peak, os.waitstatus_to_exitcode(status)
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
        peak, status = 0, None
        while status is None:
            peak = max(peak, _vm_hwm(pid))
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
            else:
                time.sleep(0.01)
        return time.perf_counter() - start, peak, os.waitstatus_to_exitcode(status)


def _vm_hwm(pid):
    """A live process's peak resident set (VmHWM) in bytes; 0 once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def last_line(log):
    lines = Path(log).read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


def compare_outputs(ref_dir, torch_dir):
    """(reference loss, PyTorch loss, relative loss difference, max |Δ gradient|, max |gradient|)."""
    ref_loss, torch_loss = np.load(ref_dir / "loss.npy"), np.load(torch_dir / "loss.npy")
    if ref_loss.shape != torch_loss.shape:
        raise ValueError(f"loss shapes differ: {ref_loss.shape} vs {torch_loss.shape}")
    a, b = float(ref_loss.sum()), float(torch_loss.sum())
    ref_grad = np.load(ref_dir / "grad_input.npy", mmap_mode="r")
    torch_grad = np.load(torch_dir / "grad_input.npy", mmap_mode="r")
    if ref_grad.shape != torch_grad.shape or ref_grad.dtype != np.float64:
        kinds = f"{ref_grad.dtype}{ref_grad.shape} vs {torch_grad.dtype}{torch_grad.shape}"
        raise ValueError(f"gradients differ in kind: {kinds}")
    diff = scale = 0.0
    for i in range(ref_grad.shape[0]):
        g, h = np.asarray(ref_grad[i]), np.asarray(torch_grad[i], dtype=np.float64)
        diff = max(diff, float(np.max(np.abs(g - h))))
        scale = max(scale, float(np.max(np.abs(h))))
    return a, b, _relative(a, b), diff, scale


def whole_jobs(names, runs, segloss, workdir, keep):
    segloss = segloss_binary(segloss)
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="segloss-jobs-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"segloss: {segloss}\nPython: {sys.executable} (torch {torch.__version__}, {TORCH_THREADS} threads)")
    print(f"files: {root}; wall times are medians of {runs} runs, each a process of its own\n")
    headers = (
        "case", "shape", "segloss eval s", "PyTorch f64 job s", "segloss/PyTorch",
        "segloss eval peak MB", "PyTorch job peak MB",
    )
    widths = markdown_header(headers, 2)
    checks = []
    for name in names:
        case = CASES[name]
        directory = root / name
        directory.mkdir(parents=True, exist_ok=True)
        x, t = inputs(name)
        input_path, target_path = directory / "input.npy", directory / "target.npy"
        np.save(input_path, x)
        np.save(target_path, t)
        del x, t
        ref_out, torch_out = directory / "segloss", directory / "torch"
        params = [a for k, v in case.params.items() for a in ("--param", f"{k}={json.dumps(v)}")]
        commands = {
            "segloss": [segloss, "eval", case.loss, "--input", str(input_path), "--target", str(target_path),
                        *params, "--out", str(ref_out)],
            "torch": [sys.executable, str(Path(__file__).resolve()), "--job", name, str(input_path),
                      str(target_path), str(torch_out)],
        }
        results = {side: [] for side in commands}
        failed = {}
        for _ in range(runs):
            # The two sides alternate, so that drifting load on the machine falls on both.
            for side, argv in commands.items():
                if side in failed:
                    continue
                log = directory / f"{side}.log"
                seconds, peak, code = timed_child(argv, log)
                if code != 0:
                    failed[side] = last_line(log)
                    print(f"{name}, {side}: exit {code}: {failed[side]}", file=sys.stderr)
                    continue
                results[side].append((seconds, peak))

        def seconds(side):
            return statistics.median(s for s, _ in results[side]) if side not in failed else None

        def megabytes(side):
            return "failed" if side in failed else f"{max(p for _, p in results[side]) / 1e6:.0f}"

        ref_s, torch_s = seconds("segloss"), seconds("torch")
        cells = (
            name, shape_text(case.shape),
            "failed" if ref_s is None else f"{ref_s:.2f}",
            "failed" if torch_s is None else f"{torch_s:.2f}",
            "n/a" if None in (ref_s, torch_s) else f"{ref_s / torch_s:.2f}",
            megabytes("segloss"), megabytes("torch"),
        )
        print(markdown_row(cells, widths), flush=True)
        if failed:
            checks.append((name, None, "; ".join(f"{side}: {why}" for side, why in failed.items())))
        else:
            try:
                checks.append((name, compare_outputs(ref_out, torch_out), None))
            except (OSError, ValueError) as error:
                checks.append((name, None, str(error)))
        if not keep:
            shutil.rmtree(directory)
    if not keep and not workdir:
        shutil.rmtree(root, ignore_errors=True)

    print("\nThe two jobs' outputs (loss.npy, grad_input.npy, both float64):\n")
    widths = markdown_header(
        ("case", "segloss eval loss", "PyTorch f64 loss", "relative difference", "max abs grad diff", "max abs grad"),
        1,
        21,
    )
    for name, compared, why in checks:
        if compared is None:
            print(f"| {name.ljust(widths[0])} | {why} |")
            continue
        a, b, relative, diff, scale = compared
        cells = (name, f"{a:.15g}", f"{b:.15g}", f"{relative:.1e}", f"{diff:.1e}", f"{scale:.1e}")
        print(markdown_row(cells, widths), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", help="JSON lines from `cargo bench --bench reference -- --json`")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--whole-job", action="store_true", help="time whole `segloss eval` and PyTorch jobs")
    parser.add_argument("--segloss", help="--whole-job: the segloss binary (default: cargo build --release)")
    parser.add_argument("--workdir", help="--whole-job: where the .npy files go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="--whole-job: keep the inputs and outputs")
    parser.add_argument("cases", nargs="*", help="the cases to run (all when none is named)")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--job", nargs=4, metavar=("CASE", "INPUT", "TARGET", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(*args.one, args.runs)
        return
    if args.job:
        job(*args.job)
        return
    unknown = [name for name in args.cases if name not in CASES]
    if unknown:
        sys.exit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    names = [name for name in CASES if not args.cases or name in args.cases]
    if args.whole_job:
        whole_jobs(names, args.runs, args.segloss, args.workdir, args.keep)
    else:
        compute_only(names, args.runs, args.reference)


if __name__ == "__main__":
    main()
