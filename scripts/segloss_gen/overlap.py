"""Cases for the overlap losses: Dice, Jaccard (IoU), Tversky and generalized Dice of smp, MONAI and
kornia, and segloss's own textbook soft Dice and soft IoU (docs/semantics.md §4, §5, §6, §8.3).

A variant id lists the anchor's own keyword arguments in its signature order, `name` for True and
`name=value` otherwise, then data tags (`TAGS`); `default` when there are none; error cases start
with `error=<mutation>`. Three arguments are too long for an id and are written by name only:
`class_weights` and `weight` (drawn per class, uniform in [0.2, 2.0], rounded to 3 decimals) and
`classes` ([0, 2]).

Every call is drawn in the same order: logits (standard normal x 2), then the target. Where the
anchor takes probabilities (smp `from_logits=false`, MONAI without an activation flag, the textbook
losses), the prediction is the softmax (class-index or one-hot targets) or sigmoid of those logits,
computed in NumPy. Targets:

* class indices (smp multiclass, kornia: `(N, *spatial)`; MONAI `to_onehot_y`: `(N, 1, *spatial)`),
  uniform in [0, C);
* one-hot (`target=onehot`) or multi-hot (every other same-shape target, each element 1 with
  probability 1/2), in the prediction's dtype;
* soft (`target=soft`): uniform in [0.05, 0.95], moved 0.05 away from the prediction's probability
  where they come closer than that, so gradient fixtures stay off the |p − t| kink of the L1
  intersection;
* `empty`: all zero; `absent`: the last class never occurs (last channel zero);
* with an `ignore_index`, a third of the positions hold it (smp multilabel: a third of the
  elements); `all_ignored`: all of them.

Class-based anchors are called through `_module`: constructor keyword arguments are the case's
`params`, the forward's tensors are the case's tensors under the forward's own argument names
(smp: y_pred, y_true; MONAI: input, target); any other tensor (MONAI DiceCELoss's `weight`) goes to
the constructor.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import kornia.losses
import monai.losses
import numpy as np
import segmentation_models_pytorch.losses as smp_losses
import torch

from .common import DTYPES, Call, Case, GenerationError, expand_cases, parse_shape, split_variant


def _module(cls: type, forward_args: tuple[str, str]) -> Callable[..., torch.Tensor]:
    """`cls(**constructor arguments)(*forward tensors)`: the tensors named in `forward_args` go to
    forward, everything else to the constructor. Warnings (MONAI's "single channel prediction") are
    part of the anchor's documented behaviour and silenced here."""

    def call(**arguments: Any) -> torch.Tensor:
        forward = [arguments.pop(name) for name in forward_args]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(**arguments)(*forward)

    return call


def soft_dice(input: torch.Tensor, target: torch.Tensor, smooth: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """segloss.soft_dice, the textbook soft Dice loss, NOT an anchor: its fixtures are this literal
    expression, 1 − (2Σpt + s)/(Σp + Σt + s) per image and class over the spatial axes."""
    dims = tuple(range(2, input.dim()))
    loss = 1 - (2 * (input * target).sum(dims) + smooth) / (input.sum(dims) + target.sum(dims) + smooth)
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def soft_iou(input: torch.Tensor, target: torch.Tensor, smooth: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """segloss.soft_iou, the textbook soft IoU (Jaccard) loss, NOT an anchor: its fixtures are this
    literal expression, 1 − (Σpt + s)/(Σp + Σt − Σpt + s) per image and class over the spatial axes."""
    dims = tuple(range(2, input.dim()))
    intersection = (input * target).sum(dims)
    loss = 1 - (intersection + smooth) / (input.sum(dims) + target.sum(dims) - intersection + smooth)
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@dataclass(frozen=True)
class Anchor:
    """How to call one loss: the callable, its tensor names, its keyword arguments in signature
    order (the order variant ids list them in), and which reductions ids use."""

    call: Callable[..., torch.Tensor]
    prediction: str
    target: str
    params: tuple[str, ...]
    family: str  # "smp", "monai", "kornia" or "textbook": how targets and predictions are drawn
    #: Name-only arguments (`weight`) the anchor takes as a tensor of the prediction's dtype
    #: rather than as a list.
    tensor_params: tuple[str, ...] = ()


SMP_PARAMS = ("mode", "classes", "log_loss", "from_logits", "smooth", "ignore_index", "eps")
MONAI_ACTIVATION = ("include_background", "to_onehot_y", "sigmoid", "softmax")
MONAI_SMOOTHING = ("reduction", "smooth_nr", "smooth_dr", "batch")

ANCHORS = {
    "segloss.soft_dice": Anchor(soft_dice, "input", "target", ("smooth", "reduction"), "textbook"),
    "segloss.soft_iou": Anchor(soft_iou, "input", "target", ("smooth", "reduction"), "textbook"),
    "smp.DiceLoss": Anchor(
        _module(smp_losses.DiceLoss, ("y_pred", "y_true")), "y_pred", "y_true", SMP_PARAMS + ("class_weights",), "smp"
    ),
    "smp.JaccardLoss": Anchor(
        _module(smp_losses.JaccardLoss, ("y_pred", "y_true")),
        "y_pred",
        "y_true",
        SMP_PARAMS + ("class_weights",),
        "smp",
    ),
    "smp.TverskyLoss": Anchor(
        _module(smp_losses.TverskyLoss, ("y_pred", "y_true")),
        "y_pred",
        "y_true",
        SMP_PARAMS + ("alpha", "beta", "gamma", "class_weights"),
        "smp",
    ),
    "monai.DiceLoss": Anchor(
        _module(monai.losses.DiceLoss, ("input", "target")),
        "input",
        "target",
        MONAI_ACTIVATION + ("squared_pred", "jaccard") + MONAI_SMOOTHING + ("weight", "soft_label", "ignore_index"),
        "monai",
    ),
    "monai.GeneralizedDiceLoss": Anchor(
        _module(monai.losses.GeneralizedDiceLoss, ("input", "target")),
        "input",
        "target",
        MONAI_ACTIVATION + ("w_type",) + MONAI_SMOOTHING + ("soft_label",),
        "monai",
    ),
    "monai.TverskyLoss": Anchor(
        _module(monai.losses.TverskyLoss, ("input", "target")),
        "input",
        "target",
        MONAI_ACTIVATION + ("alpha", "beta") + MONAI_SMOOTHING + ("soft_label", "ignore_index"),
        "monai",
    ),
    "monai.DiceCELoss": Anchor(
        _module(monai.losses.DiceCELoss, ("input", "target")),
        "input",
        "target",
        MONAI_ACTIVATION
        + ("squared_pred", "jaccard")
        + MONAI_SMOOTHING
        + ("weight", "lambda_dice", "lambda_ce", "label_smoothing"),
        "monai",
        ("weight",),
    ),
    "monai.DiceFocalLoss": Anchor(
        _module(monai.losses.DiceFocalLoss, ("input", "target")),
        "input",
        "target",
        MONAI_ACTIVATION
        + ("squared_pred", "jaccard")
        + MONAI_SMOOTHING
        + ("gamma", "weight", "lambda_dice", "lambda_focal", "alpha"),
        "monai",
    ),
    "kornia.dice_loss": Anchor(
        kornia.losses.dice_loss, "pred", "target", ("average", "eps", "weight", "ignore_index"), "kornia", ("weight",)
    ),
    "kornia.tversky_loss": Anchor(
        kornia.losses.tversky_loss, "pred", "target", ("alpha", "beta", "eps", "ignore_index"), "kornia"
    ),
}

#: Data tags, in the order a variant lists them after the anchor's arguments.
TAGS = ("target", "empty", "absent", "all_ignored")
TARGET_KINDS = ("onehot", "soft")

#: Arguments written by name only, and what they stand for (see the module docstring).
CLASS_SUBSET = [0, 2]


# --- variants ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """A parsed variant id: the anchor's arguments as written (values still to be drawn for the
    name-only ones), the data tags, and the error mutation if any."""

    params: dict[str, Any] = field(default_factory=dict)
    target: str | None = None
    empty: bool = False
    absent: bool = False
    all_ignored: bool = False
    error: str | None = None


def _value(text: str) -> Any:
    """A variant value: JSON (numbers, true/false, null) where it parses, else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_variant(anchor: Anchor, variant: str) -> Variant:
    """Parse `error=...,name=value,...,tag,...`; fails on unknown names and on misplaced ones."""
    if variant == "default":
        return Variant()
    fields: dict[str, Any] = {"params": {}}
    for key, text in split_variant(variant, ["error", *anchor.params, *TAGS]):
        value = True if text is None else _value(text)
        if key == "error":
            fields["error"] = text
        elif key == "target":
            if value not in TARGET_KINDS:
                raise GenerationError(f"variant {variant!r}: target must be one of {TARGET_KINDS}")
            fields["target"] = value
        elif key in TAGS:
            fields[key] = True
        else:
            fields["params"][key] = value
    return Variant(**fields)


# --- drawing a valid call ---------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """The prediction's shape (N, C, *spatial) and dtype."""

    shape: tuple[int, ...]
    dtype: type

    @classmethod
    def of(cls, token: str, dtype: str) -> Layout:
        axes, shape = parse_shape(token)
        if axes[:2] != "NC":
            raise GenerationError(f"overlap shapes are (N, C, *spatial), got {token}")
        return cls(shape, DTYPES[dtype])

    @property
    def classes(self) -> int:
        return self.shape[1]


def _target_kind(anchor: Anchor, variant: Variant, classes: int) -> str:
    """`labels` (class indices), `label_map` (indices with a channel axis of 1), `onehot`,
    `multihot` or `soft`, from the anchor's arguments and the `target=` tag."""
    params = variant.params
    if variant.target is not None:
        return variant.target
    if anchor.family == "kornia" or (anchor.family == "smp" and params.get("mode") == "multiclass"):
        return "labels"
    if anchor.family == "monai" and params.get("to_onehot_y") and classes > 1:
        return "label_map"
    return "multihot"


def _takes_probabilities(anchor: Anchor, variant: Variant) -> bool:
    params = variant.params
    if anchor.family == "smp":
        return params.get("from_logits") is False
    if anchor.family == "monai":
        return not (params.get("sigmoid") or params.get("softmax"))
    return anchor.family == "textbook"


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def _ignored_positions(rng: np.random.Generator, shape: tuple[int, ...], variant: Variant) -> np.ndarray:
    """A boolean mask of the positions (or elements) that hold ignore_index: a third, or all."""
    count = int(np.prod(shape))
    mask = np.zeros(count, dtype=bool)
    mask[rng.permutation(count)[: count if variant.all_ignored else count // 3]] = True
    return mask.reshape(shape)


def _target(rng: np.random.Generator, anchor: Anchor, variant: Variant, layout: Layout, probs: np.ndarray) -> np.ndarray:
    """Draw the target (see the module docstring); `probs` is the prediction as probabilities."""
    kind = _target_kind(anchor, variant, layout.classes)
    classes = layout.classes
    spatial = (layout.shape[0],) + layout.shape[2:]
    ignore_index = variant.params.get("ignore_index")
    if kind in ("labels", "label_map", "onehot"):
        labels = rng.integers(0, classes - 1 if variant.absent else classes, spatial)
        if kind == "onehot":
            return np.moveaxis(np.eye(classes)[labels], -1, 1).astype(layout.dtype)
        if ignore_index is not None:
            labels[_ignored_positions(rng, spatial, variant)] = ignore_index
        return labels if kind == "labels" else labels[:, np.newaxis]
    if kind == "soft":
        target = rng.uniform(0.05, 0.95, layout.shape)
        close = np.abs(target - probs) < 0.05
        target[close] = np.where(probs[close] < 0.5, probs[close] + 0.05, probs[close] - 0.05)
    else:
        target = (rng.uniform(size=layout.shape) < 0.5).astype(np.float64)
    if variant.empty:
        target[:] = 0.0
    if variant.absent:
        target[:, -1] = 0.0
    per_element = anchor.family == "smp" and classes > 1
    if ignore_index is not None and (classes == 1 or per_element):
        target[_ignored_positions(rng, layout.shape, variant)] = ignore_index
    return target.astype(layout.dtype)


def _class_values(rng: np.random.Generator, classes: int) -> list[float]:
    return [round(float(value), 3) for value in rng.uniform(0.2, 2.0, classes)]


def build_call(rng: np.random.Generator, *, anchor: Anchor, layout: Layout, reduction: str, variant: Variant) -> Call:
    """Draw the call of one case: a valid call from the variant, then the error mutation if any."""
    logits = rng.standard_normal(layout.shape) * 2
    kind = _target_kind(anchor, variant, layout.classes)
    exclusive = kind in ("labels", "label_map", "onehot") or (
        anchor.family == "monai" and variant.params.get("softmax")
    )
    probs = _softmax(logits) if exclusive and layout.classes > 1 else _sigmoid(logits)
    prediction = probs if _takes_probabilities(anchor, variant) else logits
    target = _target(rng, anchor, variant, layout, probs)
    tensors: dict[str, np.ndarray] = {anchor.prediction: prediction.astype(layout.dtype), anchor.target: target}
    params = dict(variant.params)
    for name in ("class_weights", "weight"):
        if params.get(name) is True:
            # MONAI DiceLoss wants no background weight without the background; DiceCELoss (a
            # tensor weight) takes all classes and slices the weight itself.
            without_background = params.get("include_background") is False and name not in anchor.tensor_params
            values = _class_values(rng, layout.classes - without_background)
            if name in anchor.tensor_params:
                tensors[name] = np.asarray(values, dtype=layout.dtype)
                del params[name]
            else:
                params[name] = values
    if params.get("classes") is True:
        params["classes"] = CLASS_SUBSET
    if reduction != "default":
        params["reduction"] = reduction
    call = Call(tensors, params)
    if variant.error is not None:
        ERROR_MUTATIONS[variant.error](call, rng, anchor, layout)
    return call


# --- error mutations: each turns a valid call into the failing one its name describes ----------

Mutation = Callable[[Call, np.random.Generator, Anchor, Layout], None]


def _set_params(**params: Any) -> Mutation:
    def mutate(call: Call, rng: np.random.Generator, anchor: Anchor, layout: Layout) -> None:
        call.params.update(params)

    return mutate


def _unchanged(call: Call, rng: np.random.Generator, anchor: Anchor, layout: Layout) -> None:
    """The case's shape or reduction segment alone makes the call fail."""


def _one_label(value: int) -> Mutation:
    """Set one randomly chosen element of the target to `value`."""

    def mutate(call: Call, rng: np.random.Generator, anchor: Anchor, layout: Layout) -> None:
        target = call.tensors[anchor.target].copy()
        target.flat[rng.integers(target.size)] = value
        call.tensors[anchor.target] = target

    return mutate


def _cast_target(dtype: type) -> Mutation:
    def mutate(call: Call, rng: np.random.Generator, anchor: Anchor, layout: Layout) -> None:
        call.tensors[anchor.target] = call.tensors[anchor.target].astype(dtype)

    return mutate


def _reshape_target(reshape: Callable[[np.ndarray], np.ndarray]) -> Mutation:
    def mutate(call: Call, rng: np.random.Generator, anchor: Anchor, layout: Layout) -> None:
        call.tensors[anchor.target] = reshape(call.tensors[anchor.target])

    return mutate


def _redraw_labels(channels: int | None) -> Mutation:
    """Replace the target by class indices of shape (N, channels, *spatial), or (N, *spatial) for None."""

    def mutate(call: Call, rng: np.random.Generator, anchor: Anchor, layout: Layout) -> None:
        spatial = layout.shape[2:]
        shape = (layout.shape[0], *spatial) if channels is None else (layout.shape[0], channels, *spatial)
        call.tensors[anchor.target] = rng.integers(0, layout.classes, shape)

    return mutate


def _weight_entries(extra: int) -> Mutation:
    """Give the class-weight argument (list or tensor) `extra` more entries than there are classes."""

    def mutate(call: Call, rng: np.random.Generator, anchor: Anchor, layout: Layout) -> None:
        values = _class_values(rng, layout.classes + extra)
        for name in ("class_weights", "weight"):
            if name in call.params:
                call.params[name] = values
            if name in call.tensors:
                call.tensors[name] = np.asarray(values, dtype=layout.dtype)

    return mutate


def _negative_weight(call: Call, rng: np.random.Generator, anchor: Anchor, layout: Layout) -> None:
    call.params["weight"] = [*call.params["weight"][:-1], -0.5]


ERROR_MUTATIONS: dict[str, Mutation] = {
    "mode": _set_params(mode="foo"),
    "classes": _set_params(classes=[0]),
    "class_weights": _set_params(class_weights=[1.0]),
    "class_out_of_range": _set_params(classes=[3]),
    "label_int32": _cast_target(np.int32),
    "label_float": _cast_target(np.float32),
    "label_too_large": _one_label(3),
    "label_negative": _one_label(-1),
    "batch_mismatch": _reshape_target(lambda target: target[:-1]),
    "spatial_mismatch": _reshape_target(lambda target: target[..., :-1]),
    "weight_length": _weight_entries(1),
    "weight_negative": _negative_weight,
    "reduction": _unchanged,
    "spatial_3d": _unchanged,
    "sigmoid_and_softmax": _set_params(softmax=True),
    "label_channels": _redraw_labels(3),
    "label_map_without_onehot": _redraw_labels(1),
    "labels_without_channel": _redraw_labels(None),
    "w_type": _set_params(w_type="foo"),
    "average": _set_params(average="weighted"),
    "lambda_negative": _set_params(lambda_ce=-1.0),
    "lambda_focal_negative": _set_params(lambda_focal=-1.0),
    "single_channel_weight": _unchanged,
}


# --- the catalog ----------------------------------------------------------------------------------

MONAI_REDUCTIONS = ("none", "mean", "sum")
DICE_CE_REDUCTIONS = ("mean", "sum")
DEFAULT = ("default",)

BINARY_2D, BINARY_3D = "N2C1H3W4", "N1C1D2H3W2"
CLASSES_2D, CLASSES_3D = "N2C3H3W4", "N1C3D2H3W2"
#: kornia takes a binary task as two softmax channels.
TWO_CLASSES_2D = "N2C2H3W4"


ALL_DTYPES = tuple(DTYPES)
SHAPES_2D_3D = (BINARY_2D, BINARY_3D, CLASSES_2D, CLASSES_3D)
SMP_LOSSES = ("smp.DiceLoss", "smp.JaccardLoss", "smp.TverskyLoss")
MONAI_DICE_LIKE = ("monai.DiceLoss", "monai.GeneralizedDiceLoss", "monai.TverskyLoss")


def _smp_options(mode: str, options: tuple[str, ...]) -> tuple[str, ...]:
    return (f"mode={mode}",) + tuple(f"mode={mode},{option}" for option in options)


#: (loss, dtypes, shapes, reductions, variants): every combination exists. Each loss has a core
#: (every dtype, 2-D and 3-D, every reduction) and its options in 2-D with one reduction.
MATRICES: list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = []
for _loss in ("segloss.soft_dice", "segloss.soft_iou"):
    MATRICES += [
        (_loss, ALL_DTYPES, SHAPES_2D_3D, MONAI_REDUCTIONS, ("smooth=1.0",)),
        (_loss, ALL_DTYPES, (CLASSES_2D, CLASSES_3D), ("mean",), ("smooth=1.0,target=onehot", "smooth=0.5,target=soft")),
    ]
SMP_OPTIONS = ("log_loss", "from_logits=false", "smooth=1.0", "ignore_index=255")
SMP_CLASS_OPTIONS = ("classes", "class_weights")
for _loss in SMP_LOSSES:
    _extra = ("alpha=0.3,beta=0.7", "gamma=2.0") if _loss == "smp.TverskyLoss" else ()
    MATRICES += [
        (_loss, ALL_DTYPES, (BINARY_2D,), DEFAULT, _smp_options("binary", SMP_OPTIONS + _extra)),
        (_loss, ALL_DTYPES, (CLASSES_2D,), DEFAULT, _smp_options("multiclass", SMP_OPTIONS + SMP_CLASS_OPTIONS + _extra)),
        (_loss, ALL_DTYPES, (CLASSES_2D,), DEFAULT, _smp_options("multilabel", SMP_OPTIONS + SMP_CLASS_OPTIONS + _extra)),
        (_loss, ALL_DTYPES, (BINARY_3D,), DEFAULT, ("mode=binary",)),
        (_loss, ALL_DTYPES, (CLASSES_3D,), DEFAULT, ("mode=multiclass", "mode=multilabel")),
    ]
#: MONAI's binary (one sigmoid channel), multiclass (softmax, label map made one-hot) and multilabel
#: (sigmoid channels, multi-hot target) calls.
for _loss in MONAI_DICE_LIKE:
    MATRICES += [
        (_loss, ALL_DTYPES, (BINARY_2D, BINARY_3D), MONAI_REDUCTIONS, ("sigmoid",)),
        (_loss, ALL_DTYPES, (CLASSES_2D, CLASSES_3D), MONAI_REDUCTIONS, ("to_onehot_y,softmax", "sigmoid")),
    ]
MATRICES += [
    ("monai.DiceLoss", ALL_DTYPES, (BINARY_2D,), ("mean",), (
        "default", "sigmoid,squared_pred", "sigmoid,jaccard", "sigmoid,soft_label,target=soft", "sigmoid,ignore_index=255",
    )),
    ("monai.DiceLoss", ALL_DTYPES, (CLASSES_2D,), ("mean",), (
        "to_onehot_y", "to_onehot_y,softmax,squared_pred", "to_onehot_y,softmax,jaccard", "to_onehot_y,softmax,weight",
        "to_onehot_y,softmax,ignore_index=255", "include_background=false,to_onehot_y,softmax",
        "softmax,target=onehot", "softmax,squared_pred,target=onehot", "sigmoid,weight",
        "sigmoid,soft_label,target=soft", "sigmoid,ignore_index=1",
    )),
    ("monai.DiceLoss", ALL_DTYPES, (CLASSES_2D,), MONAI_REDUCTIONS, ("to_onehot_y,softmax,batch",)),
    ("monai.GeneralizedDiceLoss", ALL_DTYPES, (CLASSES_2D,), ("mean",), (
        "to_onehot_y,softmax,w_type=simple", "to_onehot_y,softmax,w_type=uniform", "include_background=false,to_onehot_y,softmax",
        "sigmoid,soft_label,target=soft",
    )),
    ("monai.GeneralizedDiceLoss", ALL_DTYPES, (CLASSES_2D,), MONAI_REDUCTIONS, ("to_onehot_y,softmax,batch",)),
    ("monai.TverskyLoss", ALL_DTYPES, (BINARY_2D,), ("mean",), ("sigmoid,alpha=0.3,beta=0.7",)),
    ("monai.TverskyLoss", ALL_DTYPES, (CLASSES_2D,), ("mean",), (
        "to_onehot_y,softmax,alpha=0.3,beta=0.7", "to_onehot_y,softmax,ignore_index=255",
        "include_background=false,to_onehot_y,softmax", "sigmoid,soft_label,target=soft",
    )),
    ("monai.TverskyLoss", ALL_DTYPES, (CLASSES_2D,), MONAI_REDUCTIONS, ("to_onehot_y,softmax,batch",)),
    ("monai.DiceCELoss", ALL_DTYPES, (CLASSES_2D, CLASSES_3D), DICE_CE_REDUCTIONS, ("to_onehot_y,softmax", "sigmoid")),
    ("monai.DiceCELoss", ALL_DTYPES, (CLASSES_2D,), ("mean",), (
        "to_onehot_y,softmax,weight", "to_onehot_y,softmax,jaccard", "to_onehot_y,softmax,lambda_dice=0.7,lambda_ce=0.4",
        "to_onehot_y,softmax,label_smoothing=0.1", "include_background=false,to_onehot_y,softmax,weight",
        "softmax,target=onehot",
    )),
    ("monai.DiceCELoss", ALL_DTYPES, (BINARY_2D, BINARY_3D), DICE_CE_REDUCTIONS, ("sigmoid",)),
    ("monai.DiceCELoss", ALL_DTYPES, (BINARY_2D,), ("mean",), ("default", "sigmoid,weight", "sigmoid,lambda_dice=0.7,lambda_ce=0.4")),
    ("monai.DiceFocalLoss", ALL_DTYPES, (BINARY_2D, BINARY_3D), MONAI_REDUCTIONS, ("sigmoid",)),
    ("monai.DiceFocalLoss", ALL_DTYPES, (CLASSES_2D, CLASSES_3D), MONAI_REDUCTIONS, ("to_onehot_y,softmax", "sigmoid")),
    ("monai.DiceFocalLoss", ALL_DTYPES, (BINARY_2D,), ("mean",), (
        "default", "to_onehot_y,sigmoid", "sigmoid,squared_pred", "sigmoid,gamma=1.5,alpha=0.25", "sigmoid,weight=0.5",
    )),
    ("monai.DiceFocalLoss", ALL_DTYPES, (CLASSES_2D,), ("mean",), (
        "default", "to_onehot_y,softmax,squared_pred", "to_onehot_y,softmax,jaccard", "to_onehot_y,softmax,gamma=0.5",
        "to_onehot_y,softmax,weight", "to_onehot_y,softmax,alpha=0.25", "to_onehot_y,softmax,lambda_dice=0.7,lambda_focal=0.4",
        "softmax,target=onehot", "sigmoid,weight=0.5",
    )),
    ("monai.DiceFocalLoss", ALL_DTYPES, (CLASSES_2D,), MONAI_REDUCTIONS, (
        "to_onehot_y,softmax,batch", "include_background=false,to_onehot_y,softmax,weight",
    )),
    ("kornia.dice_loss", ALL_DTYPES, (CLASSES_2D, TWO_CLASSES_2D), DEFAULT, ("default", "average=macro")),
    ("kornia.dice_loss", ALL_DTYPES, (CLASSES_2D,), DEFAULT, (
        "weight", "average=macro,weight", "ignore_index=255", "average=macro,ignore_index=255",
    )),
    ("kornia.tversky_loss", ALL_DTYPES, (CLASSES_2D, TWO_CLASSES_2D), DEFAULT, ("alpha=0.5,beta=0.5", "alpha=0.3,beta=0.7")),
    ("kornia.tversky_loss", ALL_DTYPES, (CLASSES_2D,), DEFAULT, ("alpha=0.3,beta=0.7,ignore_index=255",)),
]

#: (loss, dtype, shape, reductions, variant)
EDGE_CASES: list[tuple[str, str, str, tuple[str, ...], str]] = []
for _loss in ("segloss.soft_dice", "segloss.soft_iou"):
    EDGE_CASES += [
        (_loss, "f64", BINARY_2D, ("mean",), "smooth=1.0,empty"),
        (_loss, "f64", CLASSES_2D, ("mean",), "smooth=1.0,target=onehot,absent"),
        (_loss, "f64", CLASSES_2D, ("mean",), "smooth=0.0"),
    ]
for _loss in SMP_LOSSES:
    EDGE_CASES += [
        (_loss, "f64", BINARY_2D, DEFAULT, "mode=binary,empty"),
        (_loss, "f64", BINARY_2D, DEFAULT, "mode=binary,smooth=1.0,empty"),
        (_loss, "f64", BINARY_2D, DEFAULT, "mode=binary,target=soft"),
        (_loss, "f64", BINARY_2D, DEFAULT, "mode=binary,ignore_index=255,all_ignored"),
        (_loss, "f64", CLASSES_2D, DEFAULT, "mode=multiclass,absent"),
        (_loss, "f32", CLASSES_2D, DEFAULT, "mode=multiclass,absent"),
        (_loss, "f64", CLASSES_2D, DEFAULT, "mode=multiclass,log_loss,absent"),
        (_loss, "f64", CLASSES_2D, DEFAULT, "mode=multiclass,smooth=1.0,absent"),
        (_loss, "f64", CLASSES_2D, DEFAULT, "mode=multiclass,ignore_index=255,all_ignored"),
        (_loss, "f64", CLASSES_2D, DEFAULT, "mode=multilabel,absent"),
        (_loss, "f64", CLASSES_2D, DEFAULT, "mode=multilabel,target=soft"),
        (_loss, "f32", CLASSES_2D, DEFAULT, "mode=multilabel,target=soft"),
        (_loss, "f64", CLASSES_2D, DEFAULT, "mode=multilabel,classes,class_weights"),
        (_loss, "f64", CLASSES_3D, DEFAULT, "mode=multiclass,ignore_index=255"),
    ]
for _loss in MONAI_DICE_LIKE:
    EDGE_CASES += [
        (_loss, "f64", BINARY_2D, MONAI_REDUCTIONS, "sigmoid,empty"),
        (_loss, "f64", CLASSES_2D, MONAI_REDUCTIONS, "to_onehot_y,softmax,absent"),
        (_loss, "f64", CLASSES_2D, ("mean",), "sigmoid,empty"),
        (_loss, "f32", CLASSES_2D, ("mean",), "to_onehot_y,softmax,absent"),
    ]
EDGE_CASES += [
    ("smp.TverskyLoss", "f64", CLASSES_2D, DEFAULT, "mode=multiclass,alpha=0.3,beta=0.7,gamma=2.0,class_weights,absent"),
    ("monai.DiceLoss", "f64", CLASSES_2D, ("mean",), "to_onehot_y,softmax,ignore_index=255,all_ignored"),
    ("monai.DiceLoss", "f64", CLASSES_2D, ("mean",), "to_onehot_y,softmax,smooth_nr=0.0,smooth_dr=0.001"),
    ("monai.DiceLoss", "f64", CLASSES_2D, MONAI_REDUCTIONS, "to_onehot_y,softmax,squared_pred,jaccard,batch,weight"),
    ("monai.DiceLoss", "f64", CLASSES_2D, ("mean",), "include_background=false,to_onehot_y,softmax,weight,ignore_index=0"),
    ("monai.DiceLoss", "f64", CLASSES_2D, ("mean",), "sigmoid,ignore_index=255"),
    ("monai.DiceLoss", "f64", CLASSES_2D, ("mean",), "sigmoid,jaccard,soft_label,target=soft"),
    ("monai.DiceLoss", "f64", CLASSES_3D, ("mean",), "to_onehot_y,softmax,ignore_index=255"),
    ("monai.GeneralizedDiceLoss", "f64", CLASSES_2D, ("mean",), "to_onehot_y,softmax,batch,absent"),
    ("monai.TverskyLoss", "f64", CLASSES_2D, ("mean",), "to_onehot_y,softmax,ignore_index=255,all_ignored"),
    ("monai.TverskyLoss", "f64", CLASSES_3D, ("mean",), "to_onehot_y,softmax,ignore_index=255"),
    ("monai.DiceCELoss", "f64", CLASSES_2D, ("mean",), "to_onehot_y,softmax,absent"),
    ("monai.DiceCELoss", "f64", CLASSES_2D, ("mean",), "to_onehot_y,softmax,squared_pred,batch,weight"),
    ("monai.DiceCELoss", "f64", BINARY_2D, DICE_CE_REDUCTIONS, "sigmoid,empty"),
    ("monai.DiceFocalLoss", "f64", BINARY_2D, MONAI_REDUCTIONS, "sigmoid,empty"),
    ("monai.DiceFocalLoss", "f64", CLASSES_2D, MONAI_REDUCTIONS, "to_onehot_y,softmax,absent"),
    ("monai.DiceFocalLoss", "f64", CLASSES_2D, ("mean",), "sigmoid,empty"),
    ("monai.DiceFocalLoss", "f32", CLASSES_2D, ("mean",), "to_onehot_y,softmax,absent"),
    ("monai.DiceFocalLoss", "f64", CLASSES_2D, MONAI_REDUCTIONS, "to_onehot_y,softmax,squared_pred,jaccard,batch,weight"),
    ("monai.DiceFocalLoss", "f64", CLASSES_3D, ("mean",), "include_background=false,to_onehot_y,softmax,weight,absent"),
    ("kornia.dice_loss", "f64", CLASSES_2D, DEFAULT, "absent"),
    ("kornia.dice_loss", "f64", CLASSES_2D, DEFAULT, "average=macro,absent"),
    ("kornia.dice_loss", "f64", CLASSES_2D, DEFAULT, "average=macro,weight,absent"),
    ("kornia.dice_loss", "f64", CLASSES_2D, DEFAULT, "ignore_index=255,all_ignored"),
    ("kornia.dice_loss", "f64", CLASSES_2D, DEFAULT, "average=macro,ignore_index=255,all_ignored"),
    ("kornia.dice_loss", "f64", CLASSES_2D, DEFAULT, "eps=0.0"),
    ("kornia.tversky_loss", "f64", CLASSES_2D, DEFAULT, "alpha=0.3,beta=0.7,absent"),
    ("kornia.tversky_loss", "f64", CLASSES_2D, DEFAULT, "alpha=0.3,beta=0.7,ignore_index=255,all_ignored"),
]

#: (loss, shape, reduction, variant, segloss error kind); all f64.
ERROR_CASES = (
    ("smp.DiceLoss", CLASSES_2D, "default", "error=mode,mode=multiclass", "invalid_option"),
    ("smp.DiceLoss", BINARY_2D, "default", "error=classes,mode=binary", "unsupported_option"),
    ("smp.DiceLoss", BINARY_2D, "default", "error=class_weights,mode=binary", "unsupported_option"),
    ("smp.JaccardLoss", BINARY_2D, "default", "error=class_weights,mode=binary", "unsupported_option"),
    ("smp.TverskyLoss", BINARY_2D, "default", "error=classes,mode=binary", "unsupported_option"),
    ("smp.DiceLoss", CLASSES_2D, "default", "error=class_out_of_range,mode=multiclass", "selected_class_out_of_bounds"),
    ("smp.DiceLoss", CLASSES_2D, "default", "error=label_int32,mode=multiclass", "class_index_dtype"),
    ("smp.DiceLoss", CLASSES_2D, "default", "error=label_too_large,mode=multiclass", "target_out_of_bounds"),
    ("smp.DiceLoss", CLASSES_2D, "default", "error=label_negative,mode=multiclass", "target_out_of_bounds"),
    ("smp.JaccardLoss", CLASSES_2D, "default", "error=label_too_large,mode=multiclass,ignore_index=255", "target_out_of_bounds"),
    ("smp.DiceLoss", CLASSES_2D, "default", "error=batch_mismatch,mode=multiclass", "batch_size_mismatch"),
    ("smp.DiceLoss", CLASSES_2D, "default", "error=spatial_mismatch,mode=multilabel", "target_shape_mismatch"),
    ("smp.DiceLoss", CLASSES_2D, "default", "error=weight_length,mode=multiclass,class_weights", "weight_length"),
    ("monai.DiceLoss", CLASSES_2D, "avg", "error=reduction,to_onehot_y,softmax", "invalid_reduction"),
    ("monai.DiceLoss", CLASSES_2D, "mean", "error=sigmoid_and_softmax,to_onehot_y,sigmoid", "unsupported_option"),
    ("monai.DiceLoss", CLASSES_2D, "mean", "error=label_too_large,to_onehot_y,softmax", "target_out_of_bounds"),
    ("monai.DiceLoss", CLASSES_2D, "mean", "error=label_channels,to_onehot_y,softmax", "target_shape_mismatch"),
    ("monai.DiceLoss", CLASSES_2D, "mean", "error=label_map_without_onehot,softmax", "target_shape_mismatch"),
    ("monai.DiceLoss", CLASSES_2D, "mean", "error=weight_length,to_onehot_y,softmax,weight", "weight_length"),
    ("monai.DiceLoss", CLASSES_2D, "mean", "error=weight_negative,to_onehot_y,softmax,weight", "negative_parameter"),
    ("monai.GeneralizedDiceLoss", CLASSES_2D, "mean", "error=w_type,to_onehot_y,softmax", "invalid_option"),
    ("monai.GeneralizedDiceLoss", CLASSES_2D, "avg", "error=reduction,to_onehot_y,softmax", "invalid_reduction"),
    ("monai.GeneralizedDiceLoss", CLASSES_2D, "mean", "error=label_map_without_onehot,softmax", "target_shape_mismatch"),
    ("monai.TverskyLoss", CLASSES_2D, "avg", "error=reduction,to_onehot_y,softmax", "invalid_reduction"),
    ("monai.TverskyLoss", CLASSES_2D, "mean", "error=sigmoid_and_softmax,to_onehot_y,sigmoid", "unsupported_option"),
    ("monai.TverskyLoss", CLASSES_2D, "mean", "error=label_map_without_onehot,softmax", "target_shape_mismatch"),
    ("monai.DiceCELoss", CLASSES_2D, "none", "error=reduction,to_onehot_y,softmax", "invalid_option"),
    ("monai.DiceCELoss", CLASSES_2D, "mean", "error=lambda_negative,to_onehot_y,softmax", "negative_parameter"),
    ("monai.DiceCELoss", CLASSES_2D, "mean", "error=labels_without_channel,to_onehot_y,softmax", "target_rank"),
    ("monai.DiceCELoss", CLASSES_2D, "mean", "error=label_channels,to_onehot_y,softmax", "target_shape_mismatch"),
    ("monai.DiceFocalLoss", CLASSES_2D, "avg", "error=reduction,to_onehot_y,softmax", "invalid_reduction"),
    ("monai.DiceFocalLoss", CLASSES_2D, "mean", "error=sigmoid_and_softmax,to_onehot_y,sigmoid", "unsupported_option"),
    ("monai.DiceFocalLoss", CLASSES_2D, "mean", "error=lambda_focal_negative,to_onehot_y,softmax", "negative_parameter"),
    ("monai.DiceFocalLoss", CLASSES_2D, "mean", "error=labels_without_channel,to_onehot_y,softmax", "target_rank"),
    ("monai.DiceFocalLoss", CLASSES_2D, "mean", "error=label_channels,to_onehot_y,softmax", "target_shape_mismatch"),
    ("monai.DiceFocalLoss", CLASSES_2D, "mean", "error=label_too_large,to_onehot_y,softmax", "target_out_of_bounds"),
    ("monai.DiceFocalLoss", CLASSES_2D, "mean", "error=label_map_without_onehot,softmax", "target_shape_mismatch"),
    ("monai.DiceFocalLoss", CLASSES_2D, "mean", "error=weight_length,to_onehot_y,softmax,weight", "weight_length"),
    ("monai.DiceFocalLoss", CLASSES_2D, "mean", "error=weight_negative,to_onehot_y,softmax,weight", "negative_parameter"),
    ("monai.DiceFocalLoss", BINARY_2D, "mean", "error=single_channel_weight,sigmoid,weight", "unsupported_option"),
    ("kornia.dice_loss", CLASSES_3D, "default", "error=spatial_3d", "input_shape"),
    ("kornia.dice_loss", CLASSES_2D, "default", "error=average", "invalid_option"),
    ("kornia.dice_loss", CLASSES_2D, "default", "error=label_int32", "class_index_dtype"),
    ("kornia.dice_loss", CLASSES_2D, "default", "error=label_too_large", "target_out_of_bounds"),
    ("kornia.dice_loss", CLASSES_2D, "default", "error=label_negative", "target_out_of_bounds"),
    ("kornia.dice_loss", CLASSES_2D, "default", "error=spatial_mismatch", "target_shape_mismatch"),
    ("kornia.dice_loss", CLASSES_2D, "default", "error=weight_length,weight", "weight_length"),
    ("kornia.tversky_loss", CLASSES_3D, "default", "error=spatial_3d,alpha=0.5,beta=0.5", "input_shape"),
    ("kornia.tversky_loss", CLASSES_2D, "default", "error=label_float,alpha=0.5,beta=0.5", "class_index_dtype"),
    ("kornia.tversky_loss", CLASSES_2D, "default", "error=label_too_large,alpha=0.5,beta=0.5", "target_out_of_bounds"),
)


def _case(loss: str, dtype: str, shape: str, reduction: str, variant: str, error_kind: str | None = None) -> Case:
    """One case; `error_kind` is declared exactly for the `error=` variants."""
    anchor = ANCHORS[loss]
    parsed = parse_variant(anchor, variant)
    if (parsed.error is None) != (error_kind is None):
        raise GenerationError(f"{loss}/{dtype}/{shape}/{reduction}/{variant}: an error variant needs an error kind")
    if parsed.error is not None and parsed.error not in ERROR_MUTATIONS:
        raise GenerationError(f"{loss}/{dtype}/{shape}/{reduction}/{variant}: unknown mutation {parsed.error!r}")
    build = partial(build_call, anchor=anchor, layout=Layout.of(shape, dtype), reduction=reduction, variant=parsed)
    return Case(loss, dtype, shape, reduction, variant, anchor.call, build, error_kind, prediction=anchor.prediction)


def cases() -> list[Case]:
    """The matrices, the edge cases and the error cases of the overlap losses."""
    return expand_cases(_case, MATRICES, EDGE_CASES, ERROR_CASES)
