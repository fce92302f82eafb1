"""Certify pytorch-toolbelt 0.8.0 (`pytorch_toolbelt.losses`), the library segmentation_models_pytorch
took its losses from, against smp's catalog ids: each toolbelt class answers the smp loss it
descends from, with the same constructor arguments where toolbelt has them, and gradients from
torch autograd.

    segloss certify --cmd "scripts/.venv-impl/bin/python scripts/adapters/pytorch_toolbelt.py" \
        --known-failures scripts/adapters/known-failures/pytorch_toolbelt.json

Mapping (catalog id -> toolbelt class):

| catalog id                 | toolbelt 0.8.0                                                       |
|----------------------------|----------------------------------------------------------------------|
| smp.DiceLoss               | DiceLoss(mode, classes, log_loss, from_logits, smooth, ignore_index, eps) |
| smp.JaccardLoss            | JaccardLoss(mode, classes, log_loss, from_logits, smooth, eps)       |
| smp.FocalLoss              | BinaryFocalLoss(alpha, gamma, ignore_index, reduction, normalized, reduced_threshold, class_weights) |
| smp.LovaszLoss             | binary, multilabel: BinaryLovaszLoss(per_image, ignore_index); multiclass: LovaszLoss(per_image, ignore) |
| smp.SoftBCEWithLogitsLoss  | SoftBCEWithLogitsLoss(weight, ignore_index, reduction, smooth_factor, pos_weight) |
| smp.SoftCrossEntropyLoss   | SoftCrossEntropyLoss(reduction, smooth_factor, ignore_index)         |

Every other loss id is unsupported, and so is every smp argument the toolbelt class lacks:
`class_weights` of DiceLoss and JaccardLoss, `ignore_index` of JaccardLoss, `from_logits=False` of
FocalLoss and LovaszLoss (toolbelt's focal and Lovász losses take logits only; smp 0.6.0's
LovaszLoss accepts from_logits and ignores it), `eps` of FocalLoss, and a `mode` outside
binary/multiclass/multilabel for FocalLoss and LovaszLoss, whose toolbelt classes have no mode (the
adapter picks the class by it). DiceLoss and JaccardLoss take smp's `mode` themselves.

smp.FocalLoss, mode by mode: in binary mode smp flattens prediction and target before its focal
call, and the adapter hands BinaryFocalLoss the same flattened tensors (a layout, not an emulation).
In multiclass and multilabel modes BinaryFocalLoss gets smp's (N, C, ...) tensors as they are; it
one-hot encodes (N, ...) class indices itself and applies the sigmoid focal term to every class
(pytorch-toolbelt#78 was about the multiclass `FocalLoss` calling the sigmoid focal function; since
0.5.3 `FocalLoss` is a deprecated alias of the softmax `CrossEntropyFocalLoss`, which has no catalog
counterpart; the sigmoid one-vs-rest loss smp computes is BinaryFocalLoss).

`classes` of DiceLoss and JaccardLoss is passed as smp gets it, a list, and toolbelt's to_tensor
turns a list into np.ndarray(classes), an uninitialised array of that shape (the bug smp fixed in
qubvel-org/segmentation_models.pytorch#396). A list holding 0 gives an empty array, a defined
(wrong) answer that the known failures record; for a list without 0 the selected classes are
whatever memory held, so those cases are answered unsupported rather than with a random outcome.

Where toolbelt's loss has another shape than the anchor's (FocalLoss reductions in multiclass and
multilabel modes, ignore_index with reduction="none"), there is no vector-Jacobian product with the
anchor's grad_output to compare, and the adapter reports the gradient as NaN.

Emulated: smp.LovaszLoss in multiclass mode. toolbelt's LovaszLoss hands its input straight to the
Lovász-Softmax as class probabilities (Berman's reference takes probabilities too); smp applies a
softmax over the class axis first. The adapter applies that softmax (torch.softmax) and says so.

toolbelt's focal loss computes in float32 whatever the input (focal_loss_with_logits starts with
output.float()); its float64 cases are known failures of float32 rounding, the rest of the library
keeps the input's dtype, hence the strict tier.

toolbelt's CrossEntropyFocalLoss, BalancedBCEWithLogitsLoss, BiTemperedLogisticLoss,
FocalCosineLoss, SoftF1Loss, WingLoss, LogCoshLoss and QualityFocalLoss have no catalog id; the
functional focal_loss_with_logits (and its deprecated alias sigmoid_focal_loss) is left to the smp
mapping above, although it is torchvision's sigmoid_focal_loss with alpha=None for -1.
"""

import os
import sys
import warnings

import torch

from segloss_adapter import Call, Emulated, Unsupported, serve

# This file's name is the package's: drop its directory from the path so that the import below
# finds the installed pytorch_toolbelt, not this adapter.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _here]
import pytorch_toolbelt  # noqa: E402
import pytorch_toolbelt.losses as tb  # noqa: E402

assert pytorch_toolbelt.__version__ == "0.8.0", pytorch_toolbelt.__version__

MODES = ("binary", "multiclass", "multilabel")


def _take(params, allowed, lacks, library_class):
    """The keyword arguments toolbelt has; Unsupported for a non-default one it lacks."""
    for name, value in params.items():
        if name in lacks and value is not None:
            raise Unsupported(f"toolbelt's {library_class} has no {name}")
        if name not in allowed and name not in lacks:
            raise Unsupported(f"toolbelt's {library_class} has no {name}")
    return {name: value for name, value in params.items() if name in allowed}


def _vjp(loss, prediction, grad_output):
    """The gradient of <grad_output, loss> with respect to the prediction. A loss whose shape is
    not the anchor's (toolbelt reducing differently) has no comparable gradient: NaN."""
    if grad_output is None:
        weights = torch.ones_like(loss)
    else:
        weights = torch.from_numpy(grad_output).to(loss.dtype)
        if weights.shape != loss.shape:
            print(f"loss of shape {tuple(loss.shape)}, the anchor's {tuple(weights.shape)}: gradient reported as NaN", file=sys.stderr, flush=True)
            return torch.full_like(prediction, float("nan"))
    if not loss.requires_grad:  # a constant loss (toolbelt's Lovász mean of no terms)
        return torch.zeros_like(prediction)
    (grad,) = torch.autograd.grad(loss, prediction, weights, allow_unused=True)
    return torch.zeros_like(prediction) if grad is None else grad


def compute(request):
    loss_id = request.loss
    params = dict(request.params)
    tensors = {name: torch.from_numpy(array) for name, array in request.tensors.items()}
    prediction = tensors[request.prediction]
    if prediction.is_floating_point():
        prediction.requires_grad_(True)
    softmax_first = False  # the one emulation: smp.LovaszLoss in multiclass mode

    if loss_id in ("smp.DiceLoss", "smp.JaccardLoss") and params.get("classes") is not None:
        classes = params["classes"]
        if 0 not in classes:
            # toolbelt's to_tensor builds np.ndarray(classes): the list is read as a shape, so the
            # classes become uninitialised memory. With a 0 in that shape the array is empty (a
            # defined, wrong answer the certification shows); without one the outcome is undefined.
            raise Unsupported(f"toolbelt's to_tensor reads classes={classes} as the shape of an uninitialised array (np.ndarray instead of np.array): the selected classes are undefined")
    if loss_id == "smp.DiceLoss":
        kwargs = _take(params, {"mode", "classes", "log_loss", "from_logits", "smooth", "ignore_index", "eps"}, {"class_weights"}, "DiceLoss")
        make = lambda: tb.DiceLoss(**kwargs)  # noqa: E731
    elif loss_id == "smp.JaccardLoss":
        kwargs = _take(params, {"mode", "classes", "log_loss", "from_logits", "smooth", "eps"}, {"class_weights", "ignore_index"}, "JaccardLoss")
        make = lambda: tb.JaccardLoss(**kwargs)  # noqa: E731
    elif loss_id == "smp.FocalLoss":
        mode = params.pop("mode")
        if mode not in MODES:
            raise Unsupported(f"toolbelt's BinaryFocalLoss has no mode (smp's mode {mode!r})")
        if params.pop("from_logits", True) is not True:
            raise Unsupported("toolbelt's BinaryFocalLoss takes logits only (no from_logits)")
        kwargs = _take(params, {"alpha", "gamma", "ignore_index", "reduction", "normalized", "reduced_threshold", "class_weights"}, {"eps"}, "BinaryFocalLoss")
        if mode == "binary":
            # smp's binary mode flattens both tensors before its focal call; so does the adapter.
            tensors["y_pred"] = tensors["y_pred"].reshape(-1)
            tensors["y_true"] = tensors["y_true"].reshape(-1)
        make = lambda: tb.BinaryFocalLoss(**kwargs)  # noqa: E731
    elif loss_id == "smp.LovaszLoss":
        mode = params.pop("mode")
        if mode not in MODES:
            raise Unsupported(f"toolbelt's Lovász losses have no mode (smp's mode {mode!r})")
        if params.pop("from_logits", True) is not True:
            raise Unsupported("toolbelt's Lovász losses have no from_logits")
        kwargs = _take(params, {"per_image", "ignore_index"}, set(), "LovaszLoss")
        if mode == "multiclass":
            kwargs["ignore"] = kwargs.pop("ignore_index", None)
            make = lambda: tb.LovaszLoss(**kwargs)  # noqa: E731
            softmax_first = True
        else:
            make = lambda: tb.BinaryLovaszLoss(**kwargs)  # noqa: E731
    elif loss_id == "smp.SoftBCEWithLogitsLoss":
        kwargs = _take(params, {"ignore_index", "reduction", "smooth_factor"}, set(), "SoftBCEWithLogitsLoss")
        for name in ("weight", "pos_weight"):
            if name in tensors:
                kwargs[name] = tensors.pop(name)
        make = lambda: tb.SoftBCEWithLogitsLoss(**kwargs)  # noqa: E731
    elif loss_id == "smp.SoftCrossEntropyLoss":
        kwargs = _take(params, {"ignore_index", "reduction", "smooth_factor"}, set(), "SoftCrossEntropyLoss")
        make = lambda: tb.SoftCrossEntropyLoss(**kwargs)  # noqa: E731
    else:
        raise Unsupported(f"pytorch-toolbelt has no counterpart of {loss_id}")

    if set(tensors) != {"y_pred", "y_true"}:
        raise Unsupported(f"unexpected tensors {sorted(tensors)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        criterion = make()
        y_pred = torch.softmax(tensors["y_pred"], dim=1) if softmax_first else tensors["y_pred"]
        loss = criterion(y_pred, tensors["y_true"])
    if not isinstance(loss, torch.Tensor):  # toolbelt's Lovász mean of no terms is the int 0
        loss = torch.as_tensor(loss, dtype=prediction.dtype)
    grad = _vjp(loss, prediction, request.grad_output)
    result = (loss.detach().numpy(), grad.detach().numpy())
    if softmax_first:
        return Emulated(*result, "softmax over the class axis applied by the adapter: toolbelt's LovaszLoss takes class probabilities")
    return result


if __name__ == "__main__":
    serve(
        "pytorch-toolbelt 0.8.0",
        compute,
        calls=[
            Call("smp.DiceLoss", "pytorch_toolbelt.losses.DiceLoss(mode, classes, log_loss, from_logits, smooth, ignore_index, eps)"),
            Call("smp.JaccardLoss", "pytorch_toolbelt.losses.JaccardLoss(mode, classes, log_loss, from_logits, smooth, eps)"),
            Call("smp.FocalLoss", "pytorch_toolbelt.losses.BinaryFocalLoss(alpha, gamma, ignore_index, reduction, normalized, reduced_threshold, class_weights)"),
            Call("smp.LovaszLoss", "pytorch_toolbelt.losses.BinaryLovaszLoss(per_image, ignore_index)", when="binary and multilabel modes"),
            Call("smp.LovaszLoss", "pytorch_toolbelt.losses.LovaszLoss(per_image, ignore=ignore_index)", when="multiclass mode"),
            Call("smp.SoftBCEWithLogitsLoss", "pytorch_toolbelt.losses.SoftBCEWithLogitsLoss(weight, ignore_index, reduction, smooth_factor, pos_weight)"),
            Call("smp.SoftCrossEntropyLoss", "pytorch_toolbelt.losses.SoftCrossEntropyLoss(reduction, smooth_factor, ignore_index)"),
        ],
    )
