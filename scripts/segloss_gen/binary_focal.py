"""Cases for binary cross entropy and the focal losses (docs/semantics.md §2-§6, §8).

Anchors: torch's `binary_cross_entropy` and `binary_cross_entropy_with_logits`, torchvision's
`sigmoid_focal_loss`, smp's `FocalLoss`, `SoftBCEWithLogitsLoss` and `SoftCrossEntropyLoss`, MONAI's
`FocalLoss`, kornia's `focal_loss` and `binary_focal_loss_with_logits`. Class-based anchors are
called through `_module`: the case's params are the constructor's keywords (tensor-valued ones,
such as smp's `weight`, travel with the tensors), the forward arguments keep the forward's names.

A variant id segment is a comma-separated list of options, `name=value` or a bare flag; `build_call`
reads it with `_options` and each loss's builder turns the options into the anchor's arguments. Inputs
are drawn in float64 and cast to the case dtype; an `error=` variant then applies its mutation
(`ERROR_MUTATIONS`) to that valid call.

Distributions: logits standard normal x 2 (away from saturation); BCE probabilities uniform in
[0.05, 0.95]; hard targets uniform in {0, 1}; soft targets uniform in [0, 1]; class labels uniform in
[0, C); an ignore variant sets a third of the positions to the ignored value; per-class weights and
alphas are dyadic (exact in float32, since smp and MONAI cast them to float32). `logits=saturated`
puts every logit at +-50 on the side of its target, where 1 - p_t rounds to 0 in float32 and float64.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import kornia.losses
import monai.losses
import numpy as np
import segmentation_models_pytorch.losses as smp_losses
import torch.nn.functional as F
import torchvision.ops

from .common import DTYPES, Call, Case, GenerationError, expand_cases, parse_shape


def _module(cls: type, *forward: str) -> Callable[..., Any]:
    """Call a loss class: keywords named in `forward` go to its forward, the others to the constructor."""

    def call(**kwargs: Any) -> Any:
        arguments = [kwargs.pop(name) for name in forward]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(**kwargs)(*arguments)

    return call


#: loss id -> (anchor, the name of its prediction tensor)
ANCHORS: dict[str, tuple[Callable[..., Any], str]] = {
    "binary_cross_entropy": (F.binary_cross_entropy, "input"),
    "binary_cross_entropy_with_logits": (F.binary_cross_entropy_with_logits, "input"),
    "sigmoid_focal_loss": (torchvision.ops.sigmoid_focal_loss, "inputs"),
    "smp.FocalLoss": (_module(smp_losses.FocalLoss, "y_pred", "y_true"), "y_pred"),
    "smp.SoftBCEWithLogitsLoss": (_module(smp_losses.SoftBCEWithLogitsLoss, "y_pred", "y_true"), "y_pred"),
    "smp.SoftCrossEntropyLoss": (_module(smp_losses.SoftCrossEntropyLoss, "y_pred", "y_true"), "y_pred"),
    "monai.FocalLoss": (_module(monai.losses.FocalLoss, "input", "target"), "input"),
    "kornia.focal_loss": (kornia.losses.focal_loss, "pred"),
    "kornia.binary_focal_loss_with_logits": (kornia.losses.binary_focal_loss_with_logits, "pred"),
}

R = ("mean", "none", "sum")
SMP_R = ("batchwise_mean", "mean", "none", "sum")
F64, BOTH = ("f64",), tuple(DTYPES)
MAP_SHAPES = ("N2C3H3W4", "N1C3D2H3W2", "N2C1H3W4")
CLASS_SHAPES = ("N2C3H3W4", "N1C3D2H3W2")

#: (loss, dtypes, shapes, reductions, variants): every combination is a case.
MATRICES = (
    ("binary_cross_entropy", BOTH, MAP_SHAPES, R, ("default", "target=hard", "weight=last", "weight=channel")),
    (
        "binary_cross_entropy_with_logits",
        BOTH,
        MAP_SHAPES,
        R,
        ("default", "target=hard", "weight=channel", "pos_weight=channel", "weight=last,pos_weight=last"),
    ),
    ("sigmoid_focal_loss", BOTH, MAP_SHAPES, R, ("default", "target=soft", "alpha=-1", "alpha=0.5,gamma=0.5", "gamma=0")),
    (
        "smp.FocalLoss",
        BOTH,
        ("N2C1H3W4",),
        SMP_R,
        (
            "mode=binary",
            "mode=binary,alpha=0.25",
            "mode=binary,ignore_index=-1",
            "mode=binary,normalized",
            "mode=binary,reduced_threshold=0.5",
            "mode=binary,from_logits=false",
            "mode=binary,target=soft",
            "mode=binary,gamma=0.5",
        ),
    ),
    (
        "smp.FocalLoss",
        BOTH,
        CLASS_SHAPES,
        SMP_R,
        (
            "mode=multiclass",
            "mode=multiclass,alpha=0.25",
            "mode=multiclass,ignore_index=255",
            "mode=multiclass,normalized",
            "mode=multiclass,reduced_threshold=0.5",
            "mode=multiclass,from_logits=false",
        ),
    ),
    ("smp.FocalLoss", BOTH, CLASS_SHAPES, ("mean", "sum"), ("mode=multiclass,class_weights", "mode=multiclass,ignore_index=255,class_weights")),
    ("smp.FocalLoss", BOTH, ("N2C3H3W4",), SMP_R, ("mode=multilabel", "mode=multilabel,alpha=0.25", "mode=multilabel,target=soft")),
    ("smp.FocalLoss", BOTH, ("N2C3H3W4",), ("mean", "sum"), ("mode=multilabel,class_weights",)),
    (
        "smp.SoftBCEWithLogitsLoss",
        BOTH,
        ("N2C1H3W4", "N2C3H3W4"),
        R,
        (
            "default",
            "smooth_factor=0.1",
            "ignore_index=-1",
            "weight=channel,pos_weight=channel",
            "target=soft",
            "smooth_factor=0.1,target=int64",
            "smooth_factor=0.1,ignore_index=-1,target=int64",
        ),
    ),
    (
        "smp.SoftCrossEntropyLoss",
        BOTH,
        CLASS_SHAPES,
        R,
        ("smooth_factor=0.0", "smooth_factor=0.1", "smooth_factor=0.1,ignore_index=-1", "smooth_factor=0.1,ignore_index=None"),
    ),
    (
        "monai.FocalLoss",
        BOTH,
        ("N2C3H3W4",),
        R,
        (
            "default",
            "target=soft",
            "gamma=0.5",
            "alpha=0.25",
            "alpha=seq",
            "weight=seq",
            "weight=2.0",
            "include_background=false",
            "to_onehot_y",
            "to_onehot_y,ignore_index=1",
            "to_onehot_y,ignore_index=255",
            "ignore_index=-1",
            "use_softmax",
            "use_softmax,alpha=0.25",
            "use_softmax,alpha=seq",
            "use_softmax,include_background=false",
            "use_softmax,include_background=false,alpha=0.25",
            "use_softmax,to_onehot_y,ignore_index=1",
        ),
    ),
    ("monai.FocalLoss", BOTH, ("N1C3D2H3W2",), R, ("default", "use_softmax", "to_onehot_y,ignore_index=1")),
    (
        "kornia.focal_loss",
        BOTH,
        CLASS_SHAPES,
        R,
        (
            "alpha=0.25",
            "alpha=None",
            "alpha=0.25,weight",
            "alpha=0.25,ignore_index=-100",
            "alpha=0.25,gamma=0.5",
            "alpha=None,gamma=0",
        ),
    ),
    (
        "kornia.binary_focal_loss_with_logits",
        BOTH,
        MAP_SHAPES,
        R,
        ("default", "target=soft", "alpha=None", "pos_weight,weight", "ignore_index=-1", "gamma=0.5"),
    ),
)

#: (loss, dtypes, shape, reductions, variant)
EDGE_CASES = (
    ("binary_cross_entropy", BOTH, "N2C3H3W4", R, "input=extremes"),
    ("binary_cross_entropy_with_logits", BOTH, "N2C3H3W4", R, "logits=1e4"),
    ("binary_cross_entropy_with_logits", F64, "N2C3H3W4", R, "target=unbounded"),
    # A (C,) pos_weight aligns with the last axis (W), not the channels (pytorch/pytorch#27936).
    ("binary_cross_entropy_with_logits", F64, "N2C4H2W4", R, "pos_weight=per_class_vector"),
    ("sigmoid_focal_loss", F64, "N2C3H3W4", R, "alpha=-1,gamma=0"),
    ("sigmoid_focal_loss", BOTH, "N2C3H3W4", R, "gamma=0.5,logits=saturated"),
    ("smp.FocalLoss", F64, "N2C1H3W4", ("mean",), "mode=binary,ignore_index=-1,all_ignored"),
    ("smp.FocalLoss", BOTH, "N2C1H3W4", ("mean", "none"), "mode=binary,gamma=0.5,logits=saturated"),
    ("smp.FocalLoss", F64, "N2C3H3W4", ("mean",), "mode=multiclass,gamma=0.5,logits=saturated"),
    ("smp.FocalLoss", F64, "N2C1H3W4", ("avg",), "mode=binary"),
    ("monai.FocalLoss", BOTH, "N2C3H3W4", R, "use_softmax,gamma=0.5,logits=saturated"),
    ("monai.FocalLoss", F64, "N2C3H3W4", R, "gamma=0.5,logits=saturated"),
    ("kornia.focal_loss", BOTH, "N2C3H3W4", R, "alpha=0.25,gamma=0.5,logits=saturated"),
    ("kornia.focal_loss", F64, "N2C3H3W4", R, "alpha=0.25,ignore_index=-100,ignored_nan_logits"),
    ("kornia.binary_focal_loss_with_logits", BOTH, "N2C3H3W4", R, "gamma=0.5,logits=saturated"),
)

#: (loss, shape, reduction, variant, segloss error kind); all f64.
ERROR_CASES = (
    ("binary_cross_entropy", "N2C3H3W4", "mean", "error=input_above_one", "probability_out_of_range"),
    ("binary_cross_entropy", "N2C3H3W4", "mean", "error=input_nan", "probability_out_of_range"),
    ("binary_cross_entropy", "N2C3H3W4", "mean", "error=target_negative", "probability_out_of_range"),
    ("binary_cross_entropy", "N2C3H3W4", "mean", "error=shape_mismatch", "target_shape_mismatch"),
    ("binary_cross_entropy", "N2C3H3W4", "mean", "error=target_int64", "target_dtype_mismatch"),
    ("binary_cross_entropy", "N2C3H3W4", "mean", "error=target_f32", "target_dtype_mismatch"),
    ("binary_cross_entropy", "N2C3H3W4", "mean", "error=weight_not_broadcastable", "broadcast_shape"),
    ("binary_cross_entropy", "N2C3H3W4", "mean", "error=weight_too_many_dims", "broadcast_shape"),
    ("binary_cross_entropy", "N2C3H3W4", "avg", "error=reduction=avg", "invalid_reduction"),
    ("binary_cross_entropy_with_logits", "N2C3H3W4", "mean", "error=shape_mismatch", "target_shape_mismatch"),
    ("binary_cross_entropy_with_logits", "N2C3H3W4", "mean", "error=target_int64", "target_dtype_mismatch"),
    ("binary_cross_entropy_with_logits", "N2C3H3W4", "mean", "error=pos_weight_per_class", "broadcast_shape"),
    ("binary_cross_entropy_with_logits", "N2C3H3W4", "mean", "error=weight_too_many_dims", "broadcast_shape"),
    ("binary_cross_entropy_with_logits", "N2C3H3W4", "avg", "error=reduction=avg", "invalid_reduction"),
    ("sigmoid_focal_loss", "N2C3H3W4", "none", "error=alpha=-0.5", "alpha_range"),
    ("sigmoid_focal_loss", "N2C3H3W4", "none", "error=alpha=1.5", "alpha_range"),
    ("sigmoid_focal_loss", "N2C3H3W4", "none", "error=shape_mismatch", "target_shape_mismatch"),
    ("sigmoid_focal_loss", "N2C3H3W4", "none", "error=target_int64", "target_dtype_mismatch"),
    ("sigmoid_focal_loss", "N2C3H3W4", "avg", "error=reduction=avg", "invalid_reduction"),
    ("smp.FocalLoss", "N2C1H3W4", "mean", "error=mode=invalid,mode=binary", "invalid_option"),
    ("smp.FocalLoss", "N2C1H3W4", "mean", "error=class_weights,mode=binary", "unsupported_option"),
    ("smp.FocalLoss", "N2C3H3W4", "mean", "error=ignore_index=-1,mode=multilabel", "unsupported_option"),
    ("smp.FocalLoss", "N2C3H3W4", "none", "error=class_weights,mode=multiclass", "broadcast_shape"),
    ("smp.SoftBCEWithLogitsLoss", "N2C1H3W4", "mean", "error=target_without_channel", "target_shape_mismatch"),
    ("smp.SoftBCEWithLogitsLoss", "N2C1H3W4", "mean", "error=target_int64", "target_dtype_mismatch"),
    ("smp.SoftCrossEntropyLoss", "N2C3H3W4", "mean", "error=smooth_factor_default", "parameter_type"),
    ("smp.SoftCrossEntropyLoss", "N2C3H3W4", "mean", "error=label_too_large,smooth_factor=0.1", "target_out_of_bounds"),
    ("monai.FocalLoss", "N2C3H3W4", "mean", "error=alpha_length", "per_class_length"),
    ("monai.FocalLoss", "N2C3H3W4", "mean", "error=alpha_length,use_softmax", "per_class_length"),
    ("monai.FocalLoss", "N2C3H3W4", "mean", "error=weight_length", "per_class_length"),
    ("monai.FocalLoss", "N2C3H3W4", "mean", "error=weight_negative", "negative_parameter"),
    ("monai.FocalLoss", "N2C1H3W4", "mean", "error=weight_single_channel", "unsupported_option"),
    ("monai.FocalLoss", "N2C3H3W4", "mean", "error=shape_mismatch", "target_shape_mismatch"),
    ("monai.FocalLoss", "N2C3H3W4", "mean", "error=label_too_large,to_onehot_y", "target_out_of_bounds"),
    ("monai.FocalLoss", "N2C3H3W4", "avg", "error=reduction=avg", "invalid_reduction"),
    ("kornia.focal_loss", "N2C3H3W4", "mean", "error=target_int32,alpha=0.25", "class_index_dtype"),
    ("kornia.focal_loss", "N2C3H3W4", "mean", "error=label_too_large,alpha=0.25", "target_out_of_bounds"),
    ("kornia.focal_loss", "N2C3H3W4", "none", "error=label_negative,alpha=0.25,ignore_index=None", "target_out_of_bounds"),
    ("kornia.focal_loss", "N2C3H3W4", "mean", "error=shape_mismatch,alpha=0.25", "target_shape_mismatch"),
    ("kornia.focal_loss", "N2C3H3W4", "none", "error=weight_length,alpha=0.25", "per_class_length"),
    ("kornia.focal_loss", "N2C3H3W4", "mean", "error=alpha_missing", "missing_parameter"),
    ("kornia.focal_loss", "C3", "none", "error=pred_1d,alpha=0.25", "input_rank"),
    ("kornia.focal_loss", "N2C3H3W4", "avg", "error=reduction=avg,alpha=0.25", "invalid_reduction"),
    ("kornia.binary_focal_loss_with_logits", "N2C3H3W4", "none", "error=pos_weight_length,pos_weight", "per_class_length"),
    ("kornia.binary_focal_loss_with_logits", "N2C3H3W4", "none", "error=weight_length,weight", "per_class_length"),
    ("kornia.binary_focal_loss_with_logits", "N2C3H3W4", "none", "error=shape_mismatch", "target_shape_mismatch"),
    ("kornia.binary_focal_loss_with_logits", "C3", "none", "error=pred_1d", "input_rank"),
    ("kornia.binary_focal_loss_with_logits", "N2C3H3W4", "avg", "error=reduction=avg", "invalid_reduction"),
)

#: Per-class weights and alphas for three classes, dyadic so that float32 holds them exactly.
CLASS_VALUES = {"weight": (0.5, 1.25, 2.0), "pos_weight": (2.0, 0.75, 1.5), "alpha": (0.25, 0.5, 0.75)}


@dataclass(frozen=True)
class Layout:
    """A shape token read as (N, C, spatial...): the shape, the class count and the position shape."""

    token: str
    shape: tuple[int, ...]
    dtype: type

    @classmethod
    def of(cls, token: str, dtype: str) -> Layout:
        return cls(token, parse_shape(token)[1], DTYPES[dtype])

    @property
    def classes(self) -> int:
        return self.shape[1] if len(self.shape) > 1 else self.shape[0]

    @property
    def positions(self) -> tuple[int, ...]:
        """The shape without the class axis."""
        return self.shape[:1] + self.shape[2:]

    def per_class(self, name: str, classes: int | None = None) -> np.ndarray:
        """`CLASS_VALUES[name]` for `classes` (default: the layout's) classes."""
        count = self.classes if classes is None else classes
        values = CLASS_VALUES[name]
        return np.array([values[index % len(values)] for index in range(count)])


def _options(variant: str) -> dict[str, str]:
    """`a=1,b` -> {"a": "1", "b": ""}; `default` -> {}."""
    if variant == "default":
        return {}
    options = {}
    for part in variant.split(","):
        key, _, value = part.partition("=")
        if key in options:
            raise GenerationError(f"variant {variant!r}: repeated option {key!r}")
        options[key] = value
    return options


def _value(text: str) -> Any:
    """An option value as the anchor takes it: None, a bool, an int, a float."""
    if text == "None":
        return None
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        return float(text)


# --- drawing ------------------------------------------------------------------------------------------


def _logits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape) * 2


def _hard(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 2, shape).astype(np.float64)


def _binary_target(rng: np.random.Generator, shape: tuple[int, ...], options: dict[str, str]) -> np.ndarray:
    """Soft targets in [0, 1], or hard 0/1 targets (as int64 labels with `target=int64`)."""
    if options.get("target") == "soft":
        return rng.uniform(0.0, 1.0, shape)
    hard = _hard(rng, shape)
    return hard.astype(np.int64) if options.get("target") == "int64" else hard


def _ignore_some(rng: np.random.Generator, array: np.ndarray, value: float, every: bool = False) -> np.ndarray:
    """A copy with a third of the elements (all with `every`) set to `value`."""
    array = array.copy()
    flat = array.reshape(-1)
    chosen = np.arange(flat.size) if every else rng.permutation(flat.size)[: flat.size // 3]
    flat[chosen] = value
    return array


def _saturate(target: np.ndarray) -> np.ndarray:
    """Logits of +-50 on the side of each (hard) target element."""
    return np.where(target > 0.5, 50.0, -50.0)


def _saturate_classes(layout: Layout, labels: np.ndarray) -> np.ndarray:
    """Logits 50 at each position's labelled class and 0 elsewhere: p = 1 exactly."""
    one_hot = np.moveaxis(np.eye(layout.classes)[np.clip(labels, 0, layout.classes - 1)], -1, 1)
    return one_hot * 50.0


# --- builders: options -> (tensors, params) ----------------------------------------------------------

Built = tuple[dict[str, np.ndarray], dict[str, Any]]


def _spread(layout: Layout, kind: str, name: str) -> np.ndarray:
    """A weight for right-aligned broadcasting: `last` is (W,), `channel` is (C, 1, ..., 1)."""
    if kind == "last":
        return np.linspace(0.5, 2.0, layout.shape[-1])
    return layout.per_class(name).reshape((layout.classes,) + (1,) * (len(layout.shape) - 2))


def _bce(rng: np.random.Generator, layout: Layout, options: dict[str, str]) -> Built:
    if options.get("input") == "extremes":
        probabilities = rng.choice([0.0, 1.0, 1e-50, 0.3, 1.0 - 1e-12], size=layout.shape)
        target = _hard(rng, layout.shape)
    else:
        probabilities = rng.uniform(0.05, 0.95, layout.shape)
        target = _hard(rng, layout.shape) if options.get("target") == "hard" else rng.uniform(0.0, 1.0, layout.shape)
    tensors = {"input": probabilities, "target": target}
    if "weight" in options:
        tensors["weight"] = _spread(layout, options["weight"], "weight")
    return tensors, {}


def _bce_with_logits(rng: np.random.Generator, layout: Layout, options: dict[str, str]) -> Built:
    logits = rng.choice([-1e4, 0.0, 1e4], size=layout.shape) if options.get("logits") == "1e4" else _logits(rng, layout.shape)
    if options.get("target") == "unbounded":
        target = rng.uniform(-2.0, 3.0, layout.shape)
    else:
        target = _hard(rng, layout.shape) if options.get("target") == "hard" else rng.uniform(0.0, 1.0, layout.shape)
    tensors = {"input": logits, "target": target}
    for name in ("weight", "pos_weight"):
        if options.get(name) == "per_class_vector":
            tensors[name] = layout.per_class(name, layout.classes) * 1.0
        elif name in options:
            tensors[name] = _spread(layout, options[name], name)
    return tensors, {}


def _torchvision(rng: np.random.Generator, layout: Layout, options: dict[str, str]) -> Built:
    target = _binary_target(rng, layout.shape, options)
    logits = _logits(rng, layout.shape)
    if options.get("logits") == "saturated":
        logits = _saturate(target)
    params = {name: _value(options[name]) for name in ("alpha", "gamma") if name in options}
    return {"inputs": logits, "targets": target}, params


def _smp_focal(rng: np.random.Generator, layout: Layout, options: dict[str, str]) -> Built:
    mode = options["mode"]
    from_logits = options.get("from_logits") != "false"
    prediction = _logits(rng, layout.shape) if from_logits else rng.uniform(0.02, 0.98, layout.shape)
    if mode == "multiclass":
        target = rng.integers(0, layout.classes, layout.positions)
    else:
        target = _binary_target(rng, layout.shape, options)
    if options.get("logits") == "saturated":
        prediction = _saturate_classes(layout, target) if mode == "multiclass" else _saturate(target)
    params: dict[str, Any] = {"mode": mode}
    for name in ("alpha", "gamma", "ignore_index", "reduced_threshold"):
        if name in options:
            params[name] = _value(options[name])
    if "ignore_index" in options:
        target = _ignore_some(rng, target, params["ignore_index"], every="all_ignored" in options)
    if "normalized" in options:
        params["normalized"] = True
    if not from_logits:
        params["from_logits"] = False
    if "class_weights" in options:
        params["class_weights"] = list(layout.per_class("weight"))
    return {"y_pred": prediction, "y_true": target}, params


def _smp_soft_bce(rng: np.random.Generator, layout: Layout, options: dict[str, str]) -> Built:
    target = _binary_target(rng, layout.shape, options)
    params = {name: _value(options[name]) for name in ("smooth_factor", "ignore_index") if name in options}
    if "ignore_index" in options:
        target = _ignore_some(rng, target, params["ignore_index"])
    tensors = {"y_pred": _logits(rng, layout.shape), "y_true": target}
    for name in ("weight", "pos_weight"):
        if name in options:
            tensors[name] = _spread(layout, options[name], name)
    return tensors, params


def _smp_soft_ce(rng: np.random.Generator, layout: Layout, options: dict[str, str]) -> Built:
    labels = rng.integers(0, layout.classes, layout.positions)
    params = {name: _value(options[name]) for name in ("smooth_factor", "ignore_index") if name in options}
    if params.get("ignore_index") is not None:
        labels = _ignore_some(rng, labels, params["ignore_index"])
    return {"y_pred": _logits(rng, layout.shape), "y_true": labels}, params


def _monai(rng: np.random.Generator, layout: Layout, options: dict[str, str]) -> Built:
    labels = rng.integers(0, layout.classes, (layout.shape[0], 1) + layout.shape[2:])
    params: dict[str, Any] = {}
    for name in ("include_background", "gamma", "ignore_index"):
        if name in options:
            params[name] = _value(options[name])
    for name in ("to_onehot_y", "use_softmax"):
        if name in options:
            params[name] = True
    for name in ("alpha", "weight"):
        if name in options:
            params[name] = list(layout.per_class(name)) if options[name] == "seq" else _value(options[name])
    ignored = params.get("ignore_index")
    if ignored is not None:
        labels = _ignore_some(rng, labels, ignored)
    one_hot = np.moveaxis(np.eye(layout.classes)[np.clip(labels[:, 0], 0, layout.classes - 1)], -1, 1)
    if ignored is not None and not 0 <= ignored < layout.classes:
        one_hot = one_hot * (labels != ignored)  # sentinel: ignored pixels are all-zero
    if "to_onehot_y" in params:
        target = labels
    elif options.get("target") == "soft":
        target = rng.uniform(0.0, 1.0, layout.shape)
    else:
        target = one_hot
    logits = _logits(rng, layout.shape)
    if options.get("logits") == "saturated":
        logits = one_hot * 100.0 - 50.0 if "use_softmax" not in params else one_hot * 50.0
    return {"input": logits, "target": target}, params


def _kornia(rng: np.random.Generator, layout: Layout, options: dict[str, str]) -> Built:
    labels = rng.integers(0, layout.classes, layout.positions)
    logits = _logits(rng, layout.shape)
    params = {name: _value(options[name]) for name in ("alpha", "gamma", "ignore_index") if name in options}
    if params.get("ignore_index") is not None:
        labels = _ignore_some(rng, labels, params["ignore_index"])
    if options.get("logits") == "saturated":
        logits = _saturate_classes(layout, labels)
    if "ignored_nan_logits" in options:
        rows = np.moveaxis(logits, 1, -1)
        rows[labels == params["ignore_index"]] = np.nan
    tensors = {"pred": logits, "target": labels}
    if "weight" in options:
        tensors["weight"] = layout.per_class("weight")
    return tensors, params


def _kornia_binary(rng: np.random.Generator, layout: Layout, options: dict[str, str]) -> Built:
    target = _binary_target(rng, layout.shape, options)
    logits = _logits(rng, layout.shape)
    params = {name: _value(options[name]) for name in ("alpha", "gamma", "ignore_index") if name in options}
    if "ignore_index" in options:
        target = _ignore_some(rng, target, params["ignore_index"])
    if options.get("logits") == "saturated":
        logits = _saturate(target)
    tensors = {"pred": logits, "target": target}
    for name in ("pos_weight", "weight"):
        if name in options:
            tensors[name] = layout.per_class(name)
    return tensors, params


BUILDERS: dict[str, Callable[[np.random.Generator, Layout, dict[str, str]], Built]] = {
    "binary_cross_entropy": _bce,
    "binary_cross_entropy_with_logits": _bce_with_logits,
    "sigmoid_focal_loss": _torchvision,
    "smp.FocalLoss": _smp_focal,
    "smp.SoftBCEWithLogitsLoss": _smp_soft_bce,
    "smp.SoftCrossEntropyLoss": _smp_soft_ce,
    "monai.FocalLoss": _monai,
    "kornia.focal_loss": _kornia,
    "kornia.binary_focal_loss_with_logits": _kornia_binary,
}

# --- error mutations: each turns a valid call into the failing one its name describes -------------------

Mutation = Callable[[Call, Layout, str, str], None]


def _set(**params: Any) -> Mutation:
    def mutate(call: Call, layout: Layout, prediction: str, target: str) -> None:
        call.params.update(params)

    return mutate


def _set_element(value: float, name: str | None = None) -> Mutation:
    """Set the first element of the prediction (or of tensor `name`, or of the target) to `value`."""

    def mutate(call: Call, layout: Layout, prediction: str, target: str) -> None:
        key = {"prediction": prediction, "target": target}.get(name or "prediction", name)
        array = call.tensors[key].copy()
        array.flat[0] = value
        call.tensors[key] = array

    return mutate


def _cast(which: str, dtype: type) -> Mutation:
    def mutate(call: Call, layout: Layout, prediction: str, target: str) -> None:
        key = target if which == "target" else prediction
        call.tensors[key] = call.tensors[key].astype(dtype)

    return mutate


def _trim_target(call: Call, layout: Layout, prediction: str, target: str) -> None:
    """Drop the last element of the target's last axis."""
    call.tensors[target] = call.tensors[target][..., :-1]


def _drop_target_channel(call: Call, layout: Layout, prediction: str, target: str) -> None:
    call.tensors[target] = call.tensors[target][:, 0]


def _tensor(name: str, shape: Callable[[Layout], tuple[int, ...]]) -> Mutation:
    def mutate(call: Call, layout: Layout, prediction: str, target: str) -> None:
        call.tensors[name] = np.linspace(0.5, 1.5, math.prod(shape(layout))).reshape(shape(layout)).astype(layout.dtype)

    return mutate


def _param_list(name: str, length: int, value: float = 0.5) -> Mutation:
    def mutate(call: Call, layout: Layout, prediction: str, target: str) -> None:
        call.params[name] = [value] * length

    return mutate


def _drop_param(name: str) -> Mutation:
    def mutate(call: Call, layout: Layout, prediction: str, target: str) -> None:
        call.params.pop(name, None)

    return mutate


def _chain(*mutations: Mutation) -> Mutation:
    def mutate(call: Call, layout: Layout, prediction: str, target: str) -> None:
        for mutation in mutations:
            mutation(call, layout, prediction, target)

    return mutate


ERROR_MUTATIONS: dict[str, Mutation] = {
    "input_above_one": _set_element(1.5),
    "input_nan": _set_element(np.nan),
    "target_negative": _set_element(-0.5, "target"),
    "shape_mismatch": _trim_target,
    "target_int64": _cast("target", np.int64),
    "target_int32": _cast("target", np.int32),
    "target_f32": _cast("target", np.float32),
    "weight_not_broadcastable": _tensor("weight", lambda layout: (layout.shape[-1] - 1,)),
    "weight_too_many_dims": _tensor("weight", lambda layout: (1,) + layout.shape),
    "pos_weight_per_class": _tensor("pos_weight", lambda layout: (layout.classes,)),
    "reduction=avg": _set(reduction="avg"),
    "alpha=-0.5": _set(alpha=-0.5),
    "alpha=1.5": _set(alpha=1.5),
    "mode=invalid": _set(mode="binry"),
    "class_weights": _param_list("class_weights", 3),
    "ignore_index=-1": _set(ignore_index=-1),
    "target_without_channel": _drop_target_channel,
    "smooth_factor_default": _drop_param("smooth_factor"),
    "label_too_large": _set_element(3, "target"),
    "label_negative": _set_element(-1, "target"),
    "alpha_length": _param_list("alpha", 2),
    "weight_length": _tensor("weight", lambda layout: (layout.classes - 1,)),
    "pos_weight_length": _tensor("pos_weight", lambda layout: (layout.classes + 1,)),
    "weight_negative": _set(weight=[1.0, -0.5, 1.0]),
    "weight_single_channel": _set(weight=[1.0, 2.0]),
    "alpha_missing": _drop_param("alpha"),
    "pred_1d": _chain(),
}

#: Mutations that replace a MONAI param rather than a tensor (`weight` is a constructor list there).
_MONAI_PARAM_MUTATIONS = {"weight_length": _param_list("weight", 2, 1.0)}


# --- cases --------------------------------------------------------------------------------------------


def build_call(rng: np.random.Generator, *, loss: str, layout: Layout, reduction: str, variant: str) -> Call:
    """Draw the call of one case: a valid call from the options, then the error mutation if any."""
    options = _options(variant)
    error = options.pop("error", None)
    if layout.token == "C3":
        # A 1-D prediction: draw the 2-D call and take its first row.
        full = Layout("N1C3", (1, 3), layout.dtype)
        tensors, params = BUILDERS[loss](rng, full, options)
        tensors = {name: array[0] if array.ndim > 1 else array for name, array in tensors.items()}
    else:
        tensors, params = BUILDERS[loss](rng, layout, options)
    if reduction != "default":
        params = {**params, "reduction": reduction}
    floating = {name: np.asarray(array, dtype=layout.dtype) for name, array in tensors.items() if array.dtype.kind == "f"}
    call = Call({**tensors, **floating}, params)
    if error is not None:
        prediction = ANCHORS[loss][1]
        target = next(name for name in call.tensors if name != prediction and name not in ("weight", "pos_weight"))
        mutation = _MONAI_PARAM_MUTATIONS.get(error) if loss == "monai.FocalLoss" else None
        (mutation or ERROR_MUTATIONS[error])(call, layout, prediction, target)
    return call


def _case(loss: str, dtype: str, shape: str, reduction: str, variant: str, error_kind: str | None = None) -> Case:
    if variant.startswith("error=") != (error_kind is not None):
        raise GenerationError(f"{loss}/{dtype}/{shape}/{reduction}/{variant}: an error variant needs an error kind")
    anchor, prediction = ANCHORS[loss]
    build = partial(build_call, loss=loss, layout=Layout.of(shape, dtype), reduction=reduction, variant=variant)
    return Case(loss, dtype, shape, reduction, variant, anchor, build, error_kind, prediction=prediction)


def cases() -> list[Case]:
    """The matrices, the edge cases and the error cases of the binary and focal losses."""
    edges = [
        (loss, dtype, shape, reductions, variant)
        for loss, dtypes, shape, reductions, variant in EDGE_CASES
        for dtype in dtypes
    ]
    return expand_cases(_case, MATRICES, edges, ERROR_CASES)
