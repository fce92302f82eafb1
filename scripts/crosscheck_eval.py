"""Cross-check `segloss eval` against PyTorch on random calls made independently of the fixtures.

Each trial draws a loss, dtype, shape, reduction and options (and, for a share of trials, one
corruption PyTorch rejects), calls torch.nn.functional, then runs the segloss binary on the same
.npy files and compares: PyTorch's loss and gradient within the float32/float64 tolerance, or a
rejection on both sides.

    scripts/.venv/bin/python scripts/crosscheck_eval.py --binary target/release/segloss --trials 2000 --seed 7
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TOLERANCE = {np.float64: (1e-10, 1e-13), np.float32: (1.3e-6, 1e-5)}
CORRUPTIONS = ["target_high", "target_negative", "target_dtype", "batch", "weight_length", "smoothing", "reduction"]


def draw_call(rng):
    """A random, usually valid, cross_entropy or nll_loss call as (loss, tensors, params, corruption)."""
    loss = rng.choice(["cross_entropy", "nll_loss"])
    dtype = rng.choice([np.float64, np.float32])
    classes = int(rng.integers(1, 6))
    spatial = [int(size) for size in rng.integers(1, 4, size=int(rng.integers(0, 5)))]
    unbatched = rng.random() < 0.1
    shape = [classes] if unbatched else [int(rng.integers(0 if rng.random() < 0.05 else 1, 4)), classes, *spatial]
    class_axis = 0 if unbatched else 1
    target_shape = shape[:class_axis] + shape[class_axis + 1:]
    tensors = {"input": (rng.standard_normal(shape) * 3).astype(dtype)}
    params = {"reduction": str(rng.choice(["none", "mean", "sum"]))}

    probabilities = loss == "cross_entropy" and rng.random() < 0.3
    if probabilities:
        target = rng.dirichlet(np.ones(classes), size=target_shape or None)
        tensors["target"] = np.ascontiguousarray(np.moveaxis(np.asarray(target), -1, class_axis)).astype(dtype)
    else:
        target = rng.integers(0, classes, size=target_shape).astype(np.int64)
        if rng.random() < 0.4:
            params["ignore_index"] = int(rng.choice([0, classes - 1, classes + 2, -1, 255]))
            target = np.where(rng.random(target_shape) < 0.3, params["ignore_index"], target).astype(np.int64)
        if rng.random() < 0.2 and target.min(initial=0) >= 0 and target.max(initial=0) <= 255:
            target = target.astype(np.uint8)
        tensors["target"] = np.asarray(target)
    if rng.random() < 0.4:
        tensors["weight"] = rng.uniform(-0.5, 2.0, size=classes).astype(dtype)
    if loss == "cross_entropy" and rng.random() < 0.4:
        params["label_smoothing"] = float(rng.choice([0.0, 0.05, 0.3, 1.0, -0.2]))

    corruption = rng.choice(CORRUPTIONS) if rng.random() < 0.2 else None
    if corruption == "target_high" and not probabilities and tensors["target"].size:
        tensors["target"] = tensors["target"].astype(np.int64)
        tensors["target"].flat[0] = classes + 1
        params.pop("ignore_index", None)
    elif corruption == "target_negative" and not probabilities and tensors["target"].size:
        tensors["target"] = tensors["target"].astype(np.int64)
        tensors["target"].flat[0] = -3
        params.pop("ignore_index", None)
    elif corruption == "target_dtype":
        tensors["target"] = tensors["target"].astype(np.int32)
    elif corruption == "batch" and not unbatched:
        tensors["target"] = np.zeros([shape[0] + 1, *target_shape[1:]], dtype=np.int64)
    elif corruption == "weight_length":
        tensors["weight"] = np.ones(classes + 1, dtype=dtype)
    elif corruption == "smoothing" and loss == "cross_entropy":
        params["label_smoothing"] = 1.5
    elif corruption == "reduction":
        params["reduction"] = "avg"
    return loss, tensors, params, corruption


def torch_result(loss, tensors, params, rng):
    """PyTorch's (loss, grad_input, grad_output) or the exception it raised."""
    input_ = torch.tensor(tensors["input"], requires_grad=True)
    weight = torch.tensor(tensors["weight"]) if "weight" in tensors else None
    try:
        value = getattr(F, loss)(input_, torch.tensor(tensors["target"]), weight=weight, **params)
    except Exception as error:  # the rejection itself is the result
        return error
    grad_output = torch.tensor(rng.uniform(0.5, 2.0, size=value.shape), dtype=value.dtype)
    try:
        (grad,) = torch.autograd.grad(value, input_, grad_output)
    except Exception as error:  # a call PyTorch cannot differentiate is rejected as a whole
        return error
    return value.detach().numpy(), grad.numpy(), grad_output.numpy()


def close(actual, expected, dtype):
    rtol, atol = TOLERANCE[dtype]
    return actual.shape == expected.shape and np.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/segloss")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20261129)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    counts = {"agreed": 0, "rejected by both": 0, "disagreed": 0}
    with tempfile.TemporaryDirectory() as scratch:
        for trial in range(args.trials):
            loss, tensors, params, corruption = draw_call(rng)
            expected = torch_result(loss, tensors, params, rng)
            trial_dir = Path(scratch) / str(trial)
            trial_dir.mkdir()
            command = [args.binary, "eval", loss, "--out", str(trial_dir / "out")]
            for name, array in tensors.items():
                np.save(trial_dir / f"{name}.npy", array)
                command += [f"--{name}", str(trial_dir / f"{name}.npy")]
            for name, value in params.items():
                command += ["--param", f"{name}={value}"]
            if not isinstance(expected, Exception):
                np.save(trial_dir / "grad_output.npy", expected[2])
                command += ["--grad-output", str(trial_dir / "grad_output.npy")]
            ran = subprocess.run(command, capture_output=True, text=True)
            dtype = tensors["input"].dtype.type
            if isinstance(expected, Exception):
                verdict = "rejected by both" if ran.returncode != 0 and not (trial_dir / "out").exists() else "disagreed"
            elif ran.returncode != 0:
                verdict = "disagreed"
            else:
                loss_ok = close(np.load(trial_dir / "out" / "loss.npy"), expected[0].astype(np.float64), dtype)
                grad_ok = close(np.load(trial_dir / "out" / "grad_input.npy"), expected[1].astype(np.float64), dtype)
                verdict = "agreed" if loss_ok and grad_ok else "disagreed"
            counts[verdict] += 1
            if verdict == "disagreed":
                print(f"trial {trial}: {loss} {params} corruption={corruption} shapes="
                      f"{ {name: (array.dtype.name, array.shape) for name, array in tensors.items()} }\n"
                      f"  torch: {expected if isinstance(expected, Exception) else 'computed'}\n"
                      f"  segloss: exit {ran.returncode} {ran.stderr.strip()}")
    print(", ".join(f"{count} {verdict}" for verdict, count in counts.items()))
    return 1 if counts["disagreed"] else 0


if __name__ == "__main__":
    sys.exit(main())
