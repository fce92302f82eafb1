"""Certify timm 1.0.31's classification losses (`timm.loss`) against PyTorch's functional cross
entropies, with gradients from torch autograd.

    segloss certify --cmd "scripts/.venv-impl/bin/python scripts/adapters/timm_losses.py" \
        --known-failures scripts/adapters/known-failures/timm.json

Mapping (catalog id -> timm class):

| catalog id                                  | timm 1.0.31                                          |
|---------------------------------------------|------------------------------------------------------|
| cross_entropy, class-index target           | LabelSmoothingCrossEntropy(smoothing=label_smoothing, 0.0 without it) |
| cross_entropy, probability target           | SoftTargetCrossEntropy()                             |
| binary_cross_entropy_with_logits            | BinaryCrossEntropy(smoothing=0.0, target_threshold=None, weight, pos_weight, reduction) |

The target is a probability target when it has the input's shape, as in PyTorch.
LabelSmoothingCrossEntropy is (1 - eps) * NLL + eps * mean over classes of -log p, PyTorch's
label_smoothing = eps (eps/C on every class); both timm cross entropies put the classes on the
last axis, take no class weights and no ignore_index, and return the mean over rows only.
BinaryCrossEntropy passes a target of the input's shape to F.binary_cross_entropy_with_logits
unchanged (its smoothing, 0.1 by default, applies to class-index targets it one-hot encodes, or to
dense ones only with smooth_dense; target_threshold None leaves targets as they are), so it takes
weight, pos_weight and every reduction natively; its class-index path has no catalog counterpart.

Unsupported: every other loss id; `weight` of cross_entropy; reduction="none" (and any other
value than mean or sum) of cross_entropy; label smoothing with probability targets
(SoftTargetCrossEntropy has none); ignore_index with probability targets; a target whose shape
does not pair with the input's where the layout is emulated (the emulation could not lay it out).

Emulated (reported as such), cross_entropy only:
* a class axis other than the last: an (N, C, d1, ...) input is laid out as rows of classes
  (movedim(1, -1), then, for class-index targets, reshape(-1, C) with the target reshape(-1));
  an unbatched (C,) input with a 0-d target as a batch of one;
* ignore_index (class-index targets): the ignored positions are removed before the call;
* reduction="sum": the mean times the number of rows it averaged (unsupported when there are no
  rows: an empty batch or every position ignored, where that mean is NaN).
"""

import warnings

import torch

from segloss_adapter import Call, Emulated, Unsupported, serve

import timm  # noqa: E402
from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy  # noqa: E402

assert timm.__version__ == "1.0.31", timm.__version__

PYTORCH_IGNORE_INDEX = -100


def _vjp(loss, prediction, grad_output):
    weights = torch.ones_like(loss) if grad_output is None else torch.from_numpy(grad_output).to(loss.dtype)
    (grad,) = torch.autograd.grad(loss, prediction, weights, allow_unused=True)
    return torch.zeros_like(prediction) if grad is None else grad


def cross_entropy(params, logits, target, weight):
    """timm's cross entropy of `logits` (classes on axis 1, as PyTorch) and `target`; returns the
    loss and the emulations it took."""
    params = dict(params)
    reduction = params.pop("reduction", "mean")
    smoothing = params.pop("label_smoothing", 0.0)
    ignore_index = params.pop("ignore_index", PYTORCH_IGNORE_INDEX)
    if params:
        raise Unsupported(f"timm's cross entropies have no {', '.join(sorted(params))}")
    if weight is not None:
        raise Unsupported("timm's cross entropies take no class weights")
    if reduction not in ("mean", "sum"):
        raise Unsupported(f"timm's cross entropies return the mean over rows only (no reduction={reduction!r})")
    emulated = []
    probabilities = target.shape == logits.shape
    if probabilities:
        if smoothing != 0.0:
            raise Unsupported("SoftTargetCrossEntropy has no label smoothing")
        if ignore_index != PYTORCH_IGNORE_INDEX:
            raise Unsupported("SoftTargetCrossEntropy has no ignore_index")
        if logits.dim() > 2:
            logits, target = logits.movedim(1, -1), target.movedim(1, -1)
            emulated.append("the class axis moved last (timm's classes are the last axis)")
        loss = SoftTargetCrossEntropy()(logits, target)
        rows = target[..., 0].numel()
    else:
        if logits.dim() == 1 and target.dim() == 0:
            logits, target = logits.unsqueeze(0), target.unsqueeze(0)
            emulated.append("the unbatched (C,) input as a batch of one")
        elif logits.dim() > 2:
            if target.shape != logits.shape[:1] + logits.shape[2:]:
                raise Unsupported(f"target of shape {tuple(target.shape)} does not pair with input {tuple(logits.shape)}: the layout emulation cannot lay it out")
            classes = logits.shape[1]
            logits, target = logits.movedim(1, -1).reshape(-1, classes), target.reshape(-1)
            emulated.append("positions laid out as rows of classes (timm's classes are the last axis of an (N, C) input)")
        if ignore_index != PYTORCH_IGNORE_INDEX:
            kept = target != ignore_index
            logits, target = logits[kept], target[kept]
            emulated.append("ignore_index by removing the ignored positions")
        loss = LabelSmoothingCrossEntropy(smoothing=smoothing)(logits, target)
        rows = target.numel()
    if reduction == "sum":
        if rows == 0:
            raise Unsupported("reduction='sum' over no rows: the emulation (the mean, NaN here, times 0 rows) cannot give PyTorch's 0")
        loss = loss * rows
        emulated.append("reduction='sum' as the mean times the number of rows")
    return loss, emulated


def compute(request):
    tensors = {name: torch.from_numpy(array) for name, array in request.tensors.items()}
    prediction = tensors[request.prediction]
    if prediction.is_floating_point():
        prediction.requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if request.loss == "cross_entropy":
            if set(tensors) - {"input", "target", "weight"}:
                raise Unsupported(f"unexpected tensors {sorted(tensors)}")
            loss, emulated = cross_entropy(request.params, tensors["input"], tensors["target"], tensors.get("weight"))
        elif request.loss == "binary_cross_entropy_with_logits":
            params = dict(request.params)
            reduction = params.pop("reduction", "mean")
            if params:
                raise Unsupported(f"timm's BinaryCrossEntropy has no {', '.join(sorted(params))}")
            if set(tensors) - {"input", "target", "weight", "pos_weight"}:
                raise Unsupported(f"unexpected tensors {sorted(tensors)}")
            criterion = BinaryCrossEntropy(
                smoothing=0.0,
                target_threshold=None,
                weight=tensors.get("weight"),
                reduction=reduction,
                pos_weight=tensors.get("pos_weight"),
            )
            loss, emulated = criterion(tensors["input"], tensors["target"]), []
        else:
            raise Unsupported(f"timm.loss has no counterpart of {request.loss}")
    grad = _vjp(loss, prediction, request.grad_output)
    result = (loss.detach().numpy(), grad.detach().numpy())
    return Emulated(*result, "; ".join(emulated)) if emulated else result


if __name__ == "__main__":
    serve(
        "timm 1.0.31 (timm.loss)",
        compute,
        calls=[
            Call("cross_entropy", "timm.loss.LabelSmoothingCrossEntropy(smoothing=label_smoothing) on rows of classes", when="class indices"),
            Call("cross_entropy", "timm.loss.SoftTargetCrossEntropy() on rows of classes", when="probability targets"),
            Call("binary_cross_entropy_with_logits", "timm.loss.BinaryCrossEntropy(smoothing=0.0, target_threshold=None, weight, pos_weight, reduction)"),
        ],
    )
