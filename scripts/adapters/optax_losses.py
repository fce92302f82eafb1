"""Certify optax 0.2.8's losses (on JAX 0.10.2, CPU) against the catalog: the loss from optax, the
gradient from `jax.vjp` with the request's grad_output, float64 enabled (`jax_enable_x64`) so that
float64 cases compute in float64 and float32 cases in float32.

    segloss certify --cmd "scripts/.venv-impl/bin/python scripts/adapters/optax_losses.py" \
        --known-failures scripts/adapters/known-failures/optax.json

(scripts/.venv-impl comes from scripts/setup_implementations.sh.)

Mapping (optax works on whatever axis it is told, so the catalog's (N, C, d1, ...) layouts are kept
for the cross entropies; the Dice losses take the class axis last, so it is moved there and back):

| catalog id | optax |
|---|---|
| cross_entropy, class indices | optax.losses.softmax_cross_entropy_with_integer_labels(axis=class axis, where=) |
| cross_entropy, class probabilities | optax.losses.softmax_cross_entropy(axis=class axis) |
| binary_cross_entropy_with_logits | optax.losses.sigmoid_binary_cross_entropy |
| sigmoid_focal_loss (torchvision) | optax.losses.sigmoid_focal_loss(alpha=, gamma=) |
| segloss.soft_dice | optax.losses.dice_loss(alpha=beta=0.5, smooth=smooth/2, apply_softmax=False) |
| segloss.soft_iou | optax.losses.dice_loss(alpha=beta=1, smooth=smooth, apply_softmax=False) |
| monai.DiceLoss | optax.losses.dice_loss(alpha=beta=0.5, smooth=smooth_nr/2; jaccard: alpha=beta=1) |
| monai.TverskyLoss | optax.losses.dice_loss(alpha=, beta=, smooth=smooth_nr) |

Native: `ignore_index` of class-index cross entropy (the `where=` mask, optax >= 0.2.4; optax gives
ignored positions a loss of 0), the focal loss's `alpha` (torchvision's alpha=-1, "no weighting", is
optax's alpha=None) and `gamma`, the Dice losses' class reduction (optax's `reduction` over the
class axis), MONAI's `include_background=False` (`ignore_background`), `batch` (`axis` over batch and
space), `weight` (`class_weights`, rounded to float32 as MONAI holds it). Dice parameters translate:
optax's 1 - (I + s)/(I + a(P - I) + b(T - I) + s) is the textbook/MONAI Dice 1 - (2I + 2s)/(P + T +
2s) at a = b = 1/2 (hence smooth/2), the IoU/Jaccard 1 - (I + s)/(P + T - I + s) at a = b = 1.

Emulated (the result says so): the cross entropies', BCE's and focal loss's `reduction` (optax
returns per-element losses: "sum" sums them; "mean" divides by the number of positions, or, for
class indices, by the positions not ignored, or by the sum of their class weights when weighted, as
PyTorch does); the Dice losses' batch reduction ("mean"/"sum" of optax's per-image class mean/sum);
cross entropy's class `weight` (class indices: the per-position loss times weight[target]; with
label smoothing or probability targets: the labels multiplied by the weight per class, since
PyTorch's smoothing term weights each class's log-probability by its own weight); `label_smoothing`
(optax.smooth_labels, with class indices turned into one-hot labels by jax.nn.one_hot and fed to
softmax_cross_entropy with the ignore mask as `where=`; only for label_smoothing > 0, since PyTorch
accepts a negative factor and does not smooth); BCE's `weight` (multiplies optax's loss)
and `pos_weight` (pos_weight * y * l(x, 1) + (1 - y) * l(x, 0), two calls of optax's loss); MONAI's
`to_onehot_y` (jax.nn.one_hot).

Unsupported: every other catalog loss; nll_loss (optax has no NLL on log-probabilities); an invalid
`reduction` of a loss optax does not reduce (no argument of optax to reject it); Dice predictions
that are not class distributions without an activation (optax's dice_loss with apply_softmax=False
takes only predictions summing to 1 over the class axis, and raises otherwise); MONAI options optax
has no counterpart for (sigmoid over several channels, ignore_index, squared_pred, soft_label,
smooth_nr != smooth_dr, both activations). Rejections are optax's or JAX's own (the adapter checks
nothing itself); it states an error kind only for optax's own checks that name the reason (KINDS:
the dtype checks of logits and integer labels, dice_loss's shape and reduction checks), so
PyTorch's bounds, dtype and shape checks that optax does not make, and JAX errors that merely
happen on such inputs (broadcasting, take_along_axis, squeeze), are known failures
(known-failures/optax.json).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from segloss_adapter import Call, Emulated, Rejected, Unsupported, serve  # noqa: E402

NAME = f"optax {optax.__version__} (JAX {jax.__version__}, CPU)"
REDUCTIONS = ("none", "mean", "sum")

# optax's own checks whose messages name the reason, as segloss error kinds (segloss_adapter.serve
# matches them in "<exception type>: <message>"). JAX's broadcasting, indexing and squeezing errors
# state no kind: they merely happen on such inputs.
KINDS = {
    # utils.check_subdtype(labels, jnp.integer), softmax_cross_entropy_with_integer_labels: the class indices' dtype.
    "target_dtype": [r"^TypeError: Expected the input to have a dtype that is a subdtype of <class 'numpy\.integer'>"],
    # utils.check_subdtype(logits, jnp.floating) in every optax loss called here: the prediction's dtype.
    "input_dtype": [r"^TypeError: Expected the input to have a dtype that is a subdtype of <class 'numpy\.floating'>"],
    # utils.check_shapes_equal(predictions, targets) in dice_loss: the target's shape against the prediction's.
    "target_shape_mismatch": [r"^ValueError: Shape mismatch: got \("],
    # dice_loss's check of its reduction argument ("mean", "sum" or "none").
    "invalid_reduction": [r"^ValueError: Unsupported reduction: "],
}
# optax.smooth_labels makes the same floating check of its labels: of one-hot labels in the
# prediction's dtype (input_dtype, as above), or of a probability target, which smooth_probabilities
# states as probability_target_dtype.
SUBDTYPE_CHECK = "Expected the input to have a dtype that is a subdtype of"


def vjp(function, prediction, grad_output):
    """The loss and its vector-Jacobian product with grad_output (ones when None)."""
    loss, pullback = jax.vjp(function, jnp.asarray(prediction))
    cotangent = jnp.ones_like(loss) if grad_output is None else jnp.asarray(grad_output, dtype=loss.dtype)
    (grad,) = pullback(cotangent)
    return np.asarray(loss), np.asarray(grad)


def elementwise_reduction(params):
    """The reduction the adapter applies to optax's per-element losses."""
    reduction = params.get("reduction", "mean")
    if reduction not in REDUCTIONS:
        raise Unsupported(f"reduction={reduction!r}: optax returns per-element losses and has no reduction argument to reject it")
    return reduction


# --- cross entropy -------------------------------------------------------------------------------


def cross_entropy(request):
    params = dict(request.params)
    reduction = elementwise_reduction(params)
    logits = request.tensors["input"]
    target = request.tensors["target"]
    weight = request.tensors.get("weight")
    # PyTorch smooths only when label_smoothing > 0 (a negative one is accepted and does nothing).
    smoothing = max(params.get("label_smoothing", 0.0), 0.0)
    class_axis = 0 if logits.ndim == 1 else 1
    if target.shape == logits.shape:
        return cross_entropy_probabilities(request, logits, target, weight, smoothing, reduction, class_axis, params)
    return cross_entropy_indices(request, logits, target, weight, smoothing, reduction, class_axis, params)


def along_classes(weight, ndim, class_axis):
    """A per-class weight shaped to broadcast along the class axis of an ndim-axis tensor."""
    shape = [1] * ndim
    shape[class_axis] = -1
    return jnp.asarray(weight).reshape(shape)


def smooth_probabilities(labels, smoothing, class_axis):
    """optax.smooth_labels of a probability target, whose dtype check (utils.check_subdtype(labels,
    jnp.floating)) rejects the target, not the prediction, as KINDS would take it."""
    try:
        return optax.smooth_labels(labels, smoothing, axis=class_axis)
    except TypeError as error:
        if not str(error).startswith(SUBDTYPE_CHECK):
            raise
        raise Rejected("probability_target_dtype", f"{type(error).__name__}: {error}") from error


def cross_entropy_probabilities(request, logits, target, weight, smoothing, reduction, class_axis, params):
    how = []
    labels = jnp.asarray(target)
    if smoothing > 0.0:
        labels = smooth_probabilities(labels, smoothing, class_axis)
        how.append("label_smoothing through optax.smooth_labels")
    if weight is not None:
        labels = labels * along_classes(weight, logits.ndim, class_axis)
        how.append("class weight by multiplying the labels per class")
    if "ignore_index" in params:
        how.append("ignore_index dropped (softmax_cross_entropy has none; PyTorch ignores a negative one with probabilities)")

    def loss(x):
        per_position = optax.losses.softmax_cross_entropy(x, labels, axis=class_axis)
        if reduction == "sum":
            return per_position.sum()
        if reduction == "mean":
            return per_position.sum() / per_position.size
        return per_position

    if reduction != "none":
        how.append(f"reduction={reduction} over optax's per-position losses")
    value, grad = vjp(loss, logits, request.grad_output)
    return Emulated(value, grad, "; ".join(how)) if how else (value, grad)


def cross_entropy_indices(request, logits, target, weight, smoothing, reduction, class_axis, params):
    how = []
    ignore_index = params.get("ignore_index")
    labels = jnp.asarray(target)
    # Compared in int64 so that a negative ignore_index meets uint8 targets without overflow.
    mask = None if ignore_index is None else jnp.asarray(target.astype(np.int64) != ignore_index)
    num_classes = logits.shape[class_axis]
    if weight is not None:
        # weight[target] per position, 0 where ignored (labels clipped only to index the weight).
        position_weight = jnp.asarray(weight)[jnp.clip(labels, 0, num_classes - 1)]
        if mask is not None:
            position_weight = jnp.where(mask, position_weight, 0)
    if smoothing > 0.0:
        one_hot = jax.nn.one_hot(labels, num_classes, axis=class_axis, dtype=logits.dtype)
        soft = optax.smooth_labels(one_hot, smoothing, axis=class_axis)
        how.append("label_smoothing through jax.nn.one_hot + optax.smooth_labels + softmax_cross_entropy")
        if weight is not None:
            soft = soft * along_classes(weight, logits.ndim, class_axis)
            how.append("class weight by multiplying the smoothed labels per class")

        def per_position(x):
            return optax.losses.softmax_cross_entropy(x, soft, axis=class_axis, where=mask)

    else:

        def per_position(x):
            losses = optax.losses.softmax_cross_entropy_with_integer_labels(x, labels, axis=class_axis, where=mask)
            return losses if weight is None else losses * position_weight

        if weight is not None:
            how.append("class weight as the per-position weight weight[target]")

    if reduction == "mean":
        if weight is not None:
            denominator = position_weight.sum()
            how.append("reduction=mean as the weighted sum over the sum of weight[target]")
        elif mask is not None:
            denominator = mask.sum()
            how.append("reduction=mean as the sum over the number of positions not ignored")
        else:
            denominator = labels.size
            how.append("reduction=mean over optax's per-position losses")
    elif reduction == "sum":
        how.append("reduction=sum over optax's per-position losses")

    def loss(x):
        losses = per_position(x)
        if reduction == "sum":
            return losses.sum()
        if reduction == "mean":
            return losses.sum() / denominator
        return losses

    value, grad = vjp(loss, logits, request.grad_output)
    return Emulated(value, grad, "; ".join(how)) if how else (value, grad)


# --- binary losses -------------------------------------------------------------------------------


def reduce_elementwise(losses, reduction):
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.mean()
    return losses


def binary_cross_entropy_with_logits(request):
    params = dict(request.params)
    reduction = elementwise_reduction(params)
    logits = request.tensors["input"]
    target = jnp.asarray(request.tensors["target"])
    weight = request.tensors.get("weight")
    pos_weight = request.tensors.get("pos_weight")
    how = []
    if pos_weight is not None:
        how.append("pos_weight as pos_weight*y*l(x,1) + (1-y)*l(x,0) from two optax calls")
    if weight is not None:
        how.append("weight by multiplying optax's elementwise loss")
    if reduction != "none":
        how.append(f"reduction={reduction} over optax's elementwise losses")

    def loss(x):
        if pos_weight is None:
            losses = optax.losses.sigmoid_binary_cross_entropy(x, target)
        else:
            positive = optax.losses.sigmoid_binary_cross_entropy(x, jnp.ones_like(x))
            negative = optax.losses.sigmoid_binary_cross_entropy(x, jnp.zeros_like(x))
            losses = jnp.asarray(pos_weight) * target * positive + (1 - target) * negative
        if weight is not None:
            losses = losses * jnp.asarray(weight)
        return reduce_elementwise(losses, reduction)

    value, grad = vjp(loss, logits, request.grad_output)
    return Emulated(value, grad, "; ".join(how)) if how else (value, grad)


def sigmoid_focal_loss(request):
    params = dict(request.params)
    reduction = elementwise_reduction(params)
    logits = request.tensors["inputs"]
    target = jnp.asarray(request.tensors["targets"])
    alpha = params.get("alpha", 0.25)  # torchvision's default; optax's is None
    gamma = params.get("gamma", 2.0)
    # torchvision's alpha=-1 means no alpha weighting, which is optax's alpha=None; any other alpha
    # goes to optax as it is (optax checks no range).
    optax_alpha = None if alpha == -1 else alpha

    def loss(x):
        losses = optax.losses.sigmoid_focal_loss(x, target, alpha=optax_alpha, gamma=gamma)
        return reduce_elementwise(losses, reduction)

    value, grad = vjp(loss, logits, request.grad_output)
    if reduction != "none":
        return Emulated(value, grad, f"reduction={reduction} over optax's elementwise losses")
    return value, grad


# --- Dice ----------------------------------------------------------------------------------------


def class_last(array):
    return jnp.moveaxis(jnp.asarray(array), 1, -1)


def require_distributions(probabilities):
    """optax's dice_loss(apply_softmax=False) raises unless the predictions sum to 1 over the class
    axis (its own test: allclose(sum, 1, rtol=1e-5)); such a request is outside its domain."""
    sums = probabilities.sum(axis=1)
    if not np.allclose(sums, 1.0, rtol=1e-5):
        raise Unsupported(
            "optax.losses.dice_loss(apply_softmax=False) takes only class distributions (predictions summing to 1 over the "
            "class axis, else ValueError); these are independent per-class or single-channel probabilities"
        )


def dice(request, prediction, target, *, alpha, beta, smooth, apply_softmax, reduction,
         ignore_background=False, class_weights=None, batch=False, none_shape=None):
    """optax.losses.dice_loss on class-last layouts: optax reduces over classes ("mean"/"sum") or
    keeps them ("none"); the adapter reduces the batch ("mean"/"sum" of optax's per-image values)."""
    target = class_last(target)
    spatial = tuple(range(1, prediction.ndim - 1))
    axis = (0,) + spatial if batch else spatial

    def loss(x):
        per_image = optax.losses.dice_loss(
            class_last(x), target, class_weights=class_weights, smooth=smooth, alpha=alpha, beta=beta,
            apply_softmax=apply_softmax, reduction=reduction, ignore_background=ignore_background, axis=axis,
        )
        if reduction == "none":
            return per_image if none_shape is None else per_image.reshape(none_shape(per_image.shape))
        if batch:  # optax already reduced the classes of the whole batch
            return per_image
        return per_image.mean() if reduction == "mean" else per_image.sum()

    value, grad = vjp(loss, prediction, request.grad_output)
    if not batch and reduction in ("mean", "sum"):
        return value, grad, f"batch reduction={reduction} of optax's per-image {reduction} over classes"
    return value, grad, None


def textbook_overlap(request):
    params = dict(request.params)
    prediction = request.tensors["input"]
    target = request.tensors["target"]
    smooth = params.get("smooth", 1.0)
    require_distributions(prediction)
    if request.loss == "segloss.soft_dice":
        # 1 - (I + s')/(I + (P-I)/2 + (T-I)/2 + s') = 1 - (2I + 2s')/(P + T + 2s'): s' = smooth/2.
        coefficients = dict(alpha=0.5, beta=0.5, smooth=smooth / 2)
    else:
        # 1 - (I + s)/(I + (P-I) + (T-I) + s) = 1 - (I + s)/(P + T - I + s).
        coefficients = dict(alpha=1.0, beta=1.0, smooth=smooth)
    value, grad, how = dice(request, prediction, target, apply_softmax=False,
                            reduction=params.get("reduction", "mean"), **coefficients)
    return Emulated(value, grad, how) if how else (value, grad)


MONAI_UNSUPPORTED = {
    "ignore_index": "optax's dice_loss has no ignore mask",
    "squared_pred": "optax's dice_loss sums p, not p^2, in the denominator",
    "soft_label": "optax's intersection is sum(p*t), not MONAI's soft-label (|p|+|t|-|p-t|)/2",
    "other_act": "optax's dice_loss applies softmax/sigmoid or nothing",
}


def monai_overlap(request):
    params = dict(request.params)
    prediction = request.tensors["input"]
    target = request.tensors["target"]
    channels = prediction.shape[1]
    for name, why in MONAI_UNSUPPORTED.items():
        if params.get(name) is not None and params.get(name) is not False:
            raise Unsupported(f"{name}: {why}")
    smooth_nr = params.get("smooth_nr", 1e-5)
    smooth_dr = params.get("smooth_dr", 1e-5)
    if smooth_nr != smooth_dr:
        raise Unsupported("smooth_nr != smooth_dr: optax's dice_loss adds one smooth to numerator and denominator")
    sigmoid, softmax = params.get("sigmoid", False), params.get("softmax", False)
    if sigmoid and softmax:
        raise Unsupported("sigmoid and softmax together: optax's dice_loss has a single apply_softmax")
    how = []
    if sigmoid:
        if channels != 1:
            raise Unsupported("sigmoid over several channels: optax's dice_loss applies softmax whenever the class axis has more than one entry")
        apply_softmax = True  # sigmoid for a single channel
    elif softmax and channels > 1:
        apply_softmax = True
    else:
        apply_softmax = False  # MONAI ignores softmax on a single channel
        require_distributions(prediction)
    if params.get("to_onehot_y", False) and channels > 1:
        target = jnp.moveaxis(jax.nn.one_hot(jnp.squeeze(jnp.asarray(target), 1), channels, dtype=prediction.dtype), -1, 1)
        how.append("to_onehot_y through jax.nn.one_hot")
    ignore_background = not params.get("include_background", True) and channels > 1
    class_weights = None
    if request.loss == "monai.DiceLoss":
        if params.get("jaccard", False):
            coefficients = dict(alpha=1.0, beta=1.0, smooth=smooth_nr / 2)
        else:
            coefficients = dict(alpha=0.5, beta=0.5, smooth=smooth_nr / 2)
        weight = params.get("weight")
        if weight is not None and channels > 1:
            # MONAI holds `weight` as a float32 tensor (torch.as_tensor of Python floats): those values.
            class_weights = jnp.asarray(np.asarray(weight, dtype=np.float32).astype(prediction.dtype))
            if ignore_background:
                # MONAI's weight leaves the background out; optax weighs before dropping class 0.
                class_weights = jnp.concatenate([jnp.ones(1, prediction.dtype), class_weights])
                how.append("weight padded with a background entry optax then drops")
    else:
        coefficients = dict(alpha=params.get("alpha", 0.5), beta=params.get("beta", 0.5), smooth=smooth_nr)
    batch = params.get("batch", False)
    spatial_ones = (1,) * (prediction.ndim - 2)
    if request.loss == "monai.DiceLoss":
        none_shape = lambda shape: tuple(shape) + spatial_ones  # noqa: E731  (N, C, 1, ...) or (C, 1, ...)
    else:
        none_shape = None
    value, grad, reduced = dice(
        request, prediction, target, apply_softmax=apply_softmax, reduction=params.get("reduction", "mean"),
        ignore_background=ignore_background, class_weights=class_weights, batch=batch, none_shape=none_shape,
        **coefficients,
    )
    if reduced:
        how.append(reduced)
    return Emulated(value, grad, "; ".join(how)) if how else (value, grad)


# --- dispatch ------------------------------------------------------------------------------------

LOSSES = {
    "cross_entropy": cross_entropy,
    "binary_cross_entropy_with_logits": binary_cross_entropy_with_logits,
    "sigmoid_focal_loss": sigmoid_focal_loss,
    "segloss.soft_dice": textbook_overlap,
    "segloss.soft_iou": textbook_overlap,
    "monai.DiceLoss": monai_overlap,
    "monai.TverskyLoss": monai_overlap,
}


def compute(request):
    function = LOSSES.get(request.loss)
    if function is None:
        raise Unsupported(f"{request.loss}: no optax loss computes it")
    return function(request)


if __name__ == "__main__":
    serve(
        NAME,
        compute,
        kinds=KINDS,
        calls=[
            Call("cross_entropy", "optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels, axis=1, where=label != ignore_index)", when="class indices"),
            Call("cross_entropy", "optax.losses.softmax_cross_entropy(logits, labels, axis=1)", when="probability targets"),
            Call("binary_cross_entropy_with_logits", "optax.losses.sigmoid_binary_cross_entropy(logits, labels)"),
            Call("sigmoid_focal_loss", "optax.losses.sigmoid_focal_loss(logits, labels, alpha=alpha (None for -1), gamma=gamma)"),
            Call("segloss.soft_dice", "optax.losses.dice_loss(alpha=0.5, beta=0.5, smooth=smooth/2, apply_softmax=False)"),
            Call("segloss.soft_iou", "optax.losses.dice_loss(alpha=1, beta=1, smooth=smooth, apply_softmax=False)"),
            Call("monai.DiceLoss", "optax.losses.dice_loss(alpha=0.5, beta=0.5, smooth=smooth_nr/2, ignore_background=not include_background, class_weights=weight); jaccard: alpha=beta=1"),
            Call("monai.TverskyLoss", "optax.losses.dice_loss(alpha=alpha, beta=beta, smooth=smooth_nr)"),
        ],
    )
