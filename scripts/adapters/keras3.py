"""Certify Keras 3.15.1's losses on its torch backend (CPU), gradients from torch autograd.

    segloss certify --cmd "scripts/.venv-impl/bin/python scripts/adapters/keras3.py" \
        --known-failures scripts/adapters/known-failures/keras3.json

(scripts/setup_implementations.sh makes scripts/.venv-impl.) Each case's prediction becomes a
torch tensor that requires a gradient; it goes through the Keras loss object exactly as a Keras
user calls it, `loss(y_true, y_pred, sample_weight=None)`, and the gradient is torch autograd's
vector-Jacobian product of what Keras returned. The loss object is built with `dtype` = the
prediction's dtype, so that float64 cases stay float64 (Keras otherwise casts to floatx, float32),
except where Keras's own type promotion demotes float64 to float32 on this backend (ops.mean,
ops.divide_no_nan: a known failure). Kernels run on the CPU (KERAS_TORCH_DEVICE), as the fixtures'.

Mapping (PyTorch's `reduction` is handed to Keras unchanged: Keras's "mean" is its
"sum_over_batch_size", and "sum" and "none" mean what they mean in PyTorch):

| catalog id | Keras |
|---|---|
| cross_entropy, class indices | SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_index) |
| cross_entropy, class indices, smoothing | CategoricalCrossentropy(from_logits=True, label_smoothing=…), one-hot |
| cross_entropy, probability targets | CategoricalCrossentropy(from_logits=True, label_smoothing=…) |
| binary_cross_entropy | BinaryCrossentropy(from_logits=False), weight as sample_weight |
| binary_cross_entropy_with_logits | BinaryCrossentropy(from_logits=True), weight as sample_weight |
| sigmoid_focal_loss | BinaryFocalCrossentropy(apply_class_balancing=alpha != -1, alpha, gamma, from_logits=True) |
| kornia.tversky_loss | Tversky(alpha, beta, axis=(1, 2)) of keras.ops.softmax(pred) and keras.ops.one_hot(target) |
| kornia.dice_loss, average="micro" | Dice(axis=(1, 2, 3)) of the same |
| segloss.soft_dice, smooth=0 | Dice(axis=spatial axes) |

Layouts, which change nothing that is computed: the class axis moves last (Keras's
channels_last; autograd moves the gradient back); BinaryCrossentropy and BinaryFocalCrossentropy
average their elementwise losses over the last axis, so they get a trailing axis of length 1 and
return one loss per element, as PyTorch does.

Emulated (the answer says so): what Keras has no argument for, built from other Keras calls.
* cross_entropy `weight` with class indices: sample_weight = weight[target] (0 where ignored),
  reduction "mean_with_sample_weight" for "mean" (PyTorch's weighted mean divides by Σ weight).
* cross_entropy `weight` with probability targets: weight folded into the target (y·w), which
  CategoricalCrossentropy sums as −Σ_c w_c y_c log p_c, PyTorch's weighted loss.
* cross_entropy `label_smoothing` with class indices: keras.ops.one_hot targets into
  CategoricalCrossentropy(label_smoothing=ε), whose ε/C smoothing is PyTorch's; ignore_index as
  SparseCategoricalCrossentropy's ignore_class does it (label 0 and logits 0 at ignored positions)
  plus a 0/1 sample_weight with "mean_with_sample_weight".
* kornia's softmax of the logits and one-hot targets (keras.ops.softmax, keras.ops.one_hot), and
  its `eps` (segloss.soft_dice: smooth=0 → 0) as Keras's fuzz factor, keras.config.set_epsilon,
  which Dice and Tversky add to their denominators (1e-7 by default), set for that call only.

Unsupported: every other catalog id; pos_weight; class weights together with label smoothing
(PyTorch weights the smoothing term per class); ignore_index with probability targets (Keras's
CategoricalCrossentropy has no ignore_class); segloss.soft_dice's smooth ≠ 0 (Keras's Dice has no
smoothing term); kornia's ignore_index, weight and average="macro", and Tversky cases where a class
is absent from an image (kornia averages over the classes present, Keras over all).

Rejections are Keras's (or torch's, under Keras) own: the adapter checks nothing itself. It states
an error kind only for Keras's own checks that name the reason (KINDS: the reduction argument, the
target's shape against the prediction's), so the anchors' dtype, range and shape checks that Keras
does not make, torch errors that merely happen on such inputs, and Keras's shape check where
PyTorch names another reason (the target's rank or batch size) are known failures
(known-failures/keras3.json). An integer prediction, which Keras casts to float, gets a
forward-only answer (no gradient to take).

Alpha and beta go to keras.losses.Tversky by their documented meaning (alpha weighs false
positives): Keras 3.15.1 applies them the other way round (keras-team/keras#23333), which the
known-failure list records rather than this adapter hiding it.
"""

import contextlib
import os

os.environ["KERAS_BACKEND"] = "torch"
os.environ["KERAS_TORCH_DEVICE"] = "cpu"  # the fixtures are CPU results

import numpy as np  # noqa: E402
import torch  # noqa: E402

import keras  # noqa: E402
from segloss_adapter import Call, Emulated, ForwardOnly, Unsupported, serve  # noqa: E402

KERAS_VERSION = "3.15.1"

# The calls this adapter makes, as the mapping above gives them (declared in the hello).
CALLS = [
    Call("cross_entropy", "keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_index)",
         when="class indices"),
    Call("cross_entropy", "keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=ε) on one-hot targets",
         when="class indices with label smoothing"),
    Call("cross_entropy", "keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=ε)",
         when="probability targets"),
    Call("binary_cross_entropy", "keras.losses.BinaryCrossentropy(from_logits=False), weight as sample_weight"),
    Call("binary_cross_entropy_with_logits", "keras.losses.BinaryCrossentropy(from_logits=True), weight as sample_weight"),
    Call("sigmoid_focal_loss",
         "keras.losses.BinaryFocalCrossentropy(apply_class_balancing=alpha != -1, alpha=alpha, gamma=gamma, from_logits=True)"),
    Call("kornia.tversky_loss", "keras.losses.Tversky(alpha, beta, axis=(1, 2)) of softmax(pred) and one_hot(target)"),
    Call("kornia.dice_loss", "keras.losses.Dice(axis=(1, 2, 3)) of softmax(pred) and one_hot(target)", when='average="micro"'),
    Call("segloss.soft_dice", "keras.losses.Dice(axis=spatial axes)", when="smooth=0"),
]

# Keras's own checks whose messages name the reason, as segloss error kinds (segloss_adapter.serve
# matches them in "<exception type>: <message>"). Nothing else Keras or torch raises states a kind.
KINDS = {
    # keras.losses.Loss's standardize_reduction: the reduction argument checked against Keras's list.
    "invalid_reduction": [r"^ValueError: Invalid value for argument `reduction`\. "],
    # the torch backend's binary and (sparse) categorical crossentropy: target's shape against output's.
    "target_shape_mismatch": [r"^ValueError: Arguments `target` and `output` must have the same shape"],
}


def loss_dtype(prediction: torch.Tensor):
    """The Keras loss's compute dtype: the prediction's, or Keras's default (floatx) for a
    non-floating prediction, which Keras then casts."""
    return str(prediction.dtype).removeprefix("torch.") if prediction.is_floating_point() else None


def differentiate(loss: torch.Tensor, prediction: torch.Tensor, grad_output):
    """The loss and the vector-Jacobian product with respect to the (floating) prediction, as
    NumPy arrays. When Keras returned a loss of another shape than the anchor's, grad_output does
    not fit it: the gradient is NaN then (empty for an empty prediction), and the forward check
    reports the shape."""
    loss_np = loss.detach().cpu().numpy()
    if grad_output is None:
        grad_output = torch.ones_like(loss)
    else:
        grad_output = torch.from_numpy(grad_output).to(loss.dtype)
        if tuple(grad_output.shape) != tuple(loss.shape):
            return loss_np, np.full(tuple(prediction.shape), np.nan)
    if not loss.requires_grad:
        return loss_np, np.zeros(tuple(prediction.shape))
    (grad,) = torch.autograd.grad(loss, prediction, grad_output, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(prediction)
    return loss_np, grad.cpu().numpy()


def leaf(array: np.ndarray) -> torch.Tensor:
    """The prediction as a torch leaf tensor that records its gradient when it can have one."""
    tensor = torch.from_numpy(array)
    if tensor.is_floating_point():
        tensor.requires_grad_(True)
    return tensor


def channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """(N, C, d1, …) → (N, d1, …, C); a 1-d (C,) stays as it is."""
    return tensor if tensor.dim() < 2 else torch.movedim(tensor, 1, -1)


def cross_entropy(request):
    params = dict(request.params)
    reduction = params.pop("reduction", "mean")
    smoothing = params.pop("label_smoothing", 0.0)
    ignore_index = params.pop("ignore_index", None)
    if params:
        raise Unsupported(f"cross_entropy options {sorted(params)}")
    tensors = {name: torch.from_numpy(array) for name, array in request.tensors.items()}
    prediction = leaf(request.tensors["input"])
    target, weight = tensors["target"], tensors.get("weight")
    dtype = loss_dtype(prediction)
    logits = channels_last(prediction)
    num_classes = prediction.shape[0 if prediction.dim() == 1 else 1]
    emulated = []

    if target.shape == prediction.shape:  # class probabilities, as PyTorch reads them
        if ignore_index is not None:
            raise Unsupported("CategoricalCrossentropy has no ignore_class")
        y_true = channels_last(target)
        if weight is not None:
            if smoothing:
                raise Unsupported("class weights with label smoothing: PyTorch weights the smoothed target")
            if tuple(weight.shape) != (num_classes,):
                raise Unsupported("Keras has no class weights, so nothing of its own checks their length")
            y_true = keras.ops.multiply(y_true, weight)
            emulated.append("class weights folded into the probability target (y·w)")
        criterion = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=smoothing, reduction=reduction, dtype=dtype
        )
        loss = criterion(y_true, logits)
    elif smoothing:
        if weight is not None:
            raise Unsupported("class weights with label smoothing: PyTorch weights the smoothing term per class")
        sample_weight = None
        labels = target
        if ignore_index is not None:
            # What SparseCategoricalCrossentropy's ignore_class does: ignored positions get
            # label 0 and logits 0 (so that NaN logits there do not leak), then a 0/1 weight.
            valid = keras.ops.not_equal(target, ignore_index)
            labels = keras.ops.where(valid, target, 0)
            logits = keras.ops.where(keras.ops.expand_dims(valid, -1), logits, 0.0)
            sample_weight = keras.ops.cast(valid, dtype or keras.config.floatx())
            reduction = "mean_with_sample_weight" if reduction == "mean" else reduction
            emulated.append("ignore_index as ignore_class does it (label 0, logits 0) with a 0/1 sample_weight")
        one_hot = keras.ops.one_hot(labels, num_classes, dtype=dtype)
        emulated.insert(0, "label smoothing through keras.ops.one_hot targets and CategoricalCrossentropy")
        criterion = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=smoothing, reduction=reduction, dtype=dtype
        )
        loss = criterion(one_hot, logits, sample_weight=sample_weight)
    else:
        sample_weight = None
        if weight is not None:
            if tuple(weight.shape) != (num_classes,):
                raise Unsupported("Keras has no class weights, so nothing of its own checks their length")
            # Out-of-range targets are Keras's to reject, not this gather's.
            index = keras.ops.clip(keras.ops.cast(target, "int64"), 0, num_classes - 1)
            sample_weight = keras.ops.take(weight, index)
            if ignore_index is not None:
                sample_weight = keras.ops.where(keras.ops.equal(target, ignore_index), 0.0, sample_weight)
            reduction = "mean_with_sample_weight" if reduction == "mean" else reduction
            emulated.append("class weights as sample_weight = weight[target], mean_with_sample_weight")
        criterion = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=ignore_index, reduction=reduction, dtype=dtype
        )
        loss = criterion(target, logits, sample_weight=sample_weight)
    return finish(loss, prediction, request, emulated)


def binary(request):
    """binary_cross_entropy, binary_cross_entropy_with_logits and torchvision's
    sigmoid_focal_loss: elementwise losses, given Keras a trailing axis of length 1."""
    params = dict(request.params)
    reduction = params.pop("reduction", "mean" if request.loss != "sigmoid_focal_loss" else "none")
    if request.loss == "sigmoid_focal_loss":
        alpha = params.pop("alpha", 0.25)
        gamma = params.pop("gamma", 2.0)
        prediction = leaf(request.tensors["inputs"])
        target = torch.from_numpy(request.tensors["targets"])
        weight = None
    else:
        prediction = leaf(request.tensors["input"])
        target = torch.from_numpy(request.tensors["target"])
        weight = request.tensors.get("weight")
        if "pos_weight" in request.tensors:
            raise Unsupported("BinaryCrossentropy has no pos_weight")
    if params:
        raise Unsupported(f"{request.loss} options {sorted(params)}")
    dtype = loss_dtype(prediction)
    if request.loss == "sigmoid_focal_loss":
        criterion = keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=alpha != -1, alpha=alpha, gamma=gamma, from_logits=True,
            reduction=reduction, dtype=dtype,
        )
    else:
        criterion = keras.losses.BinaryCrossentropy(
            from_logits=request.loss == "binary_cross_entropy_with_logits", reduction=reduction, dtype=dtype
        )
    sample_weight = None if weight is None else torch.from_numpy(weight)
    loss = criterion(target.unsqueeze(-1), prediction.unsqueeze(-1), sample_weight=sample_weight)
    return finish(loss, prediction, request, [])


@contextlib.contextmanager
def fuzz_factor(value: float):
    """keras.config.set_epsilon for one call, restored after it."""
    saved = keras.config.epsilon()
    keras.config.set_epsilon(value)
    try:
        yield
    finally:
        keras.config.set_epsilon(saved)


def kornia_overlap(request):
    """kornia.dice_loss (average="micro") and kornia.tversky_loss: Keras's Dice and Tversky of the
    softmax of the logits and the one-hot labels, channels last, with kornia's eps as epsilon."""
    params = dict(request.params)
    eps = params.pop("eps", 1e-8)
    if params.pop("ignore_index", -100) != -100:
        raise Unsupported("Keras's Dice and Tversky have no ignored label")
    if "weight" in request.tensors:
        raise Unsupported("Keras's Dice has no class weights")
    prediction = leaf(request.tensors["pred"])
    labels = torch.from_numpy(request.tensors["target"])
    if prediction.dim() < 2:
        raise Unsupported("a prediction without a class axis has no kornia layout to map")
    num_classes = prediction.shape[1]
    dtype = loss_dtype(prediction)
    if request.loss == "kornia.dice_loss":
        average = params.pop("average", "micro")
        if average != "micro":
            raise Unsupported(f"average={average!r}: kornia's macro average leaves out classes absent from an "
                              "image's target, Keras's Dice averages over all")
        # One Dice per image over every class and position: all axes but the batch.
        criterion = keras.losses.Dice(axis=tuple(range(1, prediction.dim())), dtype=dtype)
    else:
        alpha, beta = params.pop("alpha"), params.pop("beta")
        # One index per image and class over the positions: the spatial axes, channels last.
        spatial = tuple(range(1, prediction.dim() - 1))
        criterion = keras.losses.Tversky(alpha=alpha, beta=beta, axis=spatial, dtype=dtype)
    if params:
        raise Unsupported(f"{request.loss} options {sorted(params)}")
    probabilities = keras.ops.softmax(channels_last(prediction), axis=-1)
    one_hot = keras.ops.one_hot(labels, num_classes, dtype=dtype)
    if request.loss == "kornia.tversky_loss" and not bool(one_hot.flatten(1, -2).amax(1).all()):
        raise Unsupported("a class absent from an image: kornia averages over the classes present, Keras over all")
    with fuzz_factor(eps):
        loss = criterion(one_hot, probabilities)
    how = f"kornia's softmax and one-hot labels through keras.ops; keras.config.set_epsilon({eps})"
    return finish(loss, prediction, request, [how])


def soft_dice(request):
    """segloss.soft_dice with smooth=0: 1 − 2Σpt/(Σp + Σt) per image and class, Keras's Dice over
    the spatial axes with a fuzz factor of 0."""
    params = dict(request.params)
    reduction = params.pop("reduction", "mean")
    smooth = params.pop("smooth", 1.0)
    if params:
        raise Unsupported(f"segloss.soft_dice options {sorted(params)}")
    if smooth != 0:
        raise Unsupported("Keras's Dice has no smoothing term")
    prediction = leaf(request.tensors["input"])
    target = torch.from_numpy(request.tensors["target"])
    spatial = tuple(range(2, prediction.dim()))
    criterion = keras.losses.Dice(axis=spatial, reduction=reduction, dtype=loss_dtype(prediction))
    with fuzz_factor(0.0):
        loss = criterion(target, prediction)
    return finish(loss, prediction, request, ["keras.config.set_epsilon(0.0) for smooth=0"])


def finish(loss, prediction, request, emulated):
    how = "; ".join(emulated) or None
    if not prediction.is_floating_point():
        why = f"Keras cast the {prediction.dtype} prediction to float; there is no gradient with respect to it"
        return ForwardOnly(loss.detach().cpu().numpy(), why, how)
    loss, grad = differentiate(loss, prediction, request.grad_output)
    return Emulated(loss, grad, how) if how else (loss, grad)


LOSSES = {
    "cross_entropy": cross_entropy,
    "binary_cross_entropy": binary,
    "binary_cross_entropy_with_logits": binary,
    "sigmoid_focal_loss": binary,
    "kornia.dice_loss": kornia_overlap,
    "kornia.tversky_loss": kornia_overlap,
    "segloss.soft_dice": soft_dice,
}


def compute(request):
    if request.loss not in LOSSES:
        raise Unsupported(f"Keras has no counterpart of {request.loss}")
    return LOSSES[request.loss](request)


if __name__ == "__main__":
    found = (keras.__version__, keras.backend.backend())
    assert found == (KERAS_VERSION, "torch"), f"this adapter certifies Keras {KERAS_VERSION} on torch, not {found}"
    serve(f"Keras {KERAS_VERSION} (torch backend, CPU)", compute, kinds=KINDS, calls=CALLS)
