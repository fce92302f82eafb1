"""A complete segloss adapter to start from: copy it and put your library's calls in `compute`.

    pip install -e python/     # the segloss_adapter helper (and NumPy)
    segloss certify --cmd "python3 python/examples/template_adapter.py" --filter cross_entropy/
    segloss certify --cmd "python3 python/examples/template_adapter.py --forward-only" --filter cross_entropy/

The "library" here is `softmax_cross_entropy`, plain NumPy standing in for yours: it takes rows of
logits and their integer labels and gives each row's loss and gradient. The adapter maps segloss's
`cross_entropy` cases onto it: it lays the classes of an `(N, C, d1, ...)` input out as rows,
emulates `ignore_index` (which the library lacks) by dropping the ignored rows, reduces, and states
why it rejects an input. Whatever it does not have it reports unsupported.
"""

from __future__ import annotations

import sys

import numpy as np

from segloss_adapter import Call, Emulated, ForwardOnly, Outcome, Rejected, Request, Unsupported, serve


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Your library: per-row losses and their gradients for rows of logits, (R, C), and labels, (R,)."""
    shifted = logits - logits.max(axis=1, keepdims=True, initial=-np.inf)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(labels))
    grad = np.exp(log_p)
    grad[rows, labels] -= 1.0
    return -log_p[rows, labels], grad


def compute(request: Request) -> Outcome:
    if request.loss != "cross_entropy":
        raise Unsupported(f"only cross_entropy, not {request.loss}")
    params = dict(request.params)
    reduction = params.pop("reduction", "mean")
    ignore_index = params.pop("ignore_index", None)
    if params:  # label_smoothing
        raise Unsupported(f"no {', '.join(sorted(params))}")
    if set(request.tensors) != {"input", "target"}:
        raise Unsupported("no class weights")
    logits, target = request.tensors["input"], request.tensors["target"]
    if target.shape == logits.shape:
        raise Unsupported("no probability targets")
    # Rejections: state the segloss error kind where the reason is certain.
    if logits.dtype.kind != "f":
        raise Rejected("input_dtype", f"TypeError: logits must be floating point, not {logits.dtype}")
    if target.dtype == np.uint8:
        raise Unsupported("class indices are int64 only")
    if target.dtype != np.int64:
        raise Rejected("target_dtype", f"TypeError: class indices must be int64, not {target.dtype}")
    batched = logits.ndim > 1
    if target.shape != (logits.shape[:1] + logits.shape[2:] if batched else ()):
        kind = ("target_rank" if batched and target.ndim != logits.ndim - 1
                else "batch_size_mismatch" if batched and target.shape[0] != logits.shape[0]
                else "target_shape_mismatch")
        raise Rejected(kind, f"ValueError: target {target.shape} does not fit input {logits.shape}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}")  # stated by the kinds table below

    classes = logits.shape[1] if batched else logits.shape[0]
    rows = np.moveaxis(logits, 1, -1).reshape(-1, classes) if batched else logits.reshape(1, -1)
    labels = target.reshape(-1)
    kept = labels != ignore_index if ignore_index is not None else np.ones(labels.shape, bool)
    if ((labels[kept] < 0) | (labels[kept] >= classes)).any():
        raise Rejected("target_out_of_bounds", f"IndexError: a class index is not in [0, {classes})")
    kept_losses, kept_grad = softmax_cross_entropy(rows[kept].astype(np.float64), labels[kept])
    losses = np.zeros(labels.shape)
    losses[kept] = kept_losses
    grad = np.zeros(rows.shape)
    grad[kept] = kept_grad

    # The reduction and the vector-Jacobian product with grad_output (None means ones).
    weight = np.ones(labels.shape) if request.grad_output is None else request.grad_output.reshape(-1)
    if reduction == "none":
        loss = losses.reshape(target.shape)
    else:
        count = 1 if reduction == "sum" else kept.sum()
        loss = losses.sum() / count  # a mean over no position is NaN, as in PyTorch; its gradient is 0
        weight = np.broadcast_to(weight, labels.shape) / max(count, 1)
    grad = grad * weight[:, None]
    if batched:  # back from rows to the input's layout
        grad_input = np.moveaxis(grad.reshape(target.shape + (classes,)), -1, 1)
    else:
        grad_input = grad.reshape(logits.shape)

    # The answer: float32 or float64 arrays (here the input's dtype), or one of the helper's results.
    loss, grad_input = loss.astype(logits.dtype), grad_input.astype(logits.dtype)
    how = "ignore_index by dropping the ignored positions" if ignore_index is not None else None
    if "--forward-only" in sys.argv:
        return ForwardOnly(loss, why="the template's --forward-only", how=how)
    return (loss, grad_input) if how is None else Emulated(loss, grad_input, how=how)


if __name__ == "__main__":
    with np.errstate(invalid="ignore", divide="ignore"):
        serve("template adapter (NumPy cross entropy)", compute,
              kinds={"invalid_reduction": [r"^ValueError: unknown reduction "]},
              # The calls it makes, for the Rosetta page: your library's, as its users write them.
              calls=[Call("cross_entropy", "softmax_cross_entropy(logits as rows (R, C), labels (R,))",
                          when="class indices")])
