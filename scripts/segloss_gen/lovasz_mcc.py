"""Cases for `smp.LovaszLoss`, `smp.MCCLoss`, `kornia.lovasz_softmax_loss` and
`kornia.lovasz_hinge_loss` (docs/semantics.md §4.4, §4.7, §6.5).

smp's losses are classes: the case's `params` are the constructor's keyword arguments and its
`tensors` the forward's (`y_pred`, `y_true`); kornia's are functions of `pred`, `target` and
`weight`. None has a `reduction`, so every id's reduction segment is `default`.

`build_call` draws the call from the parsed variant, always in the same order: prediction, target,
weight. Distributions: logits standard normal x 2; MCC predictions uniform in [0, 1); labels
uniform over {0, 1} (binary, multilabel) or over the C classes (multiclass); weights uniform in
[0.2, 2.0]. Labels are int64 unless the variant says otherwise. An error case then applies its
mutation (`ERROR_MUTATIONS`) to that valid call.

Lovász gradients depend on the order of the sorted errors, and the relu has a kink at 0. A value
case is therefore redrawn (from the same generator) until, in every group the anchor sorts, its
errors are at least `GAP` apart and away from 0, so float32 rounding cannot reorder them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import kornia
import numpy as np
import segmentation_models_pytorch as smp

from .common import DTYPES, Call, Case, GenerationError, flag, one_of, parse_shape, parse_variant


def smp_lovasz(y_pred, y_true, **params):
    """`smp.losses.LovaszLoss(**params)(y_pred, y_true)`."""
    return smp.losses.LovaszLoss(**params)(y_pred, y_true)


def smp_mcc(y_pred, y_true, **params):
    """`smp.losses.MCCLoss(**params)(y_pred, y_true)`."""
    return smp.losses.MCCLoss(**params)(y_pred, y_true)


#: loss id -> (anchor, prediction argument, target argument)
ANCHORS = {
    "smp.LovaszLoss": (smp_lovasz, "y_pred", "y_true"),
    "smp.MCCLoss": (smp_mcc, "y_pred", "y_true"),
    "kornia.lovasz_softmax_loss": (kornia.losses.lovasz_softmax_loss, "pred", "target"),
    "kornia.lovasz_hinge_loss": (kornia.losses.lovasz_hinge_loss, "pred", "target"),
}

REDUCTION = "default"

#: Smallest gap between two sorted errors of a group, and between an error and 0.
GAP = 1e-4

#: The label an `ignore_index=...` variant hides, and the one `unmatched_label` uses unignored.
VOID = 255

BINARY_SHAPES = ("N2C1H3W4", "N2C1D2H2W3")
CLASS_SHAPES = ("N2C3H3W4", "N2C3D2H2W3")

#: (loss, dtypes, shapes, variants): every combination is a case. smp's Lovász loss refuses float64,
#: so its f64 matrix cases record that error (`float32_only`) instead of values.
MATRICES = (
    *(
        ("smp.LovaszLoss", tuple(DTYPES), shapes, tuple(f"mode={mode}{extra}" for extra in ("", ",per_image", ",ignore_index=255", ",per_image,ignore_index=255")))
        for mode, shapes in (("binary", BINARY_SHAPES), ("multiclass", CLASS_SHAPES), ("multilabel", CLASS_SHAPES))
    ),
    ("smp.MCCLoss", tuple(DTYPES), (*BINARY_SHAPES, "N2C3H3W4"), ("default", "eps=0.1")),
    ("kornia.lovasz_softmax_loss", tuple(DTYPES), ("N2C3H3W4", "N3C4H2W5"), ("default", "weight")),
    ("kornia.lovasz_hinge_loss", tuple(DTYPES), ("N2C1H3W4", "N3C1H2W5"), ("default",)),
)

#: (loss, dtypes, shape, variant)
EDGE_CASES = (
    ("smp.LovaszLoss", ("f32",), "N2C1H3W4", "mode=binary,empty_target"),
    ("smp.LovaszLoss", ("f32",), "N2C1H3W4", "mode=binary,per_image,empty_target"),
    ("smp.LovaszLoss", ("f32",), "N2C1H3W4", "mode=binary,from_logits=False"),
    ("smp.LovaszLoss", ("f32",), "N2C1H3W4", "mode=binary,target=float"),
    ("smp.LovaszLoss", ("f32",), "N2C1H3W4", "mode=binary,target=channel"),
    ("smp.LovaszLoss", ("f32", "f64"), "N2C1H3W4", "mode=binary,ignore_index=255,all_ignored"),
    ("smp.LovaszLoss", ("f32",), "N2C1H3W4", "mode=binary,per_image,ignore_index=255,first_image_ignored"),
    ("smp.LovaszLoss", ("f32",), "N2C1H3W4", "mode=binary,per_image,extra_target_image"),
    ("smp.LovaszLoss", ("f32",), "N2C3H3W4", "mode=multilabel,empty_target"),
    ("smp.LovaszLoss", ("f32",), "N2C3H3W4", "mode=multiclass,absent_class"),
    ("smp.LovaszLoss", ("f32",), "N2C3H3W4", "mode=multiclass,per_image,absent_class"),
    ("smp.LovaszLoss", ("f32",), "N2C3H3W4", "mode=multiclass,from_logits=False"),
    ("smp.LovaszLoss", ("f32",), "N2C3H3W4", "mode=multiclass,unmatched_label"),
    ("smp.LovaszLoss", ("f32", "f64"), "N2C3H3W4", "mode=multiclass,ignore_index=255,all_ignored"),
    ("smp.LovaszLoss", ("f32",), "N2C3H3W4", "mode=multiclass,per_image,ignore_index=255,first_image_ignored"),
    ("smp.LovaszLoss", ("f32",), "N0C3H3W4", "mode=multiclass"),
    ("smp.MCCLoss", ("f32", "f64"), "N2C1H3W4", "empty_target"),
    ("smp.MCCLoss", ("f32", "f64"), "N2C1H3W4", "all_zero"),
    ("smp.MCCLoss", ("f64",), "N2C1H3W4", "perfect"),
    ("smp.MCCLoss", ("f64",), "N2C1H3W4", "target=channel"),
    ("smp.MCCLoss", ("f64",), "N2C1H3W4", "target=per_image"),
    ("smp.MCCLoss", ("f64",), "N2C1H3W4", "target=soft"),
    ("kornia.lovasz_softmax_loss", ("f32", "f64"), "N2C3H3W4", "absent_class"),
    ("kornia.lovasz_softmax_loss", ("f64",), "N2C3H3W4", "pred_batch=1"),
    ("kornia.lovasz_softmax_loss", ("f64",), "N2C3H3W4", "weight=column"),
    ("kornia.lovasz_hinge_loss", ("f32", "f64"), "N2C1H3W4", "empty_target"),
)

#: (loss, dtype, shape, variant, segloss error kind)
ERROR_CASES = (
    ("smp.LovaszLoss", "f32", "N2C1H3W4", "error=mode=softmax", "invalid_option"),
    ("smp.LovaszLoss", "f32", "N2C1H3W4", "error=bool_target,mode=binary", "bool_subtraction"),
    ("smp.LovaszLoss", "f32", "N2C1H3W4", "error=spatial_mismatch,mode=binary", "pairing_mismatch"),
    ("smp.LovaszLoss", "f32", "N2C1H3W4", "error=spatial_mismatch,mode=binary,ignore_index=255", "pairing_mismatch"),
    ("smp.LovaszLoss", "f32", "N2C3H3W4", "error=spatial_mismatch,mode=multiclass", "pairing_mismatch"),
    ("smp.LovaszLoss", "f32", "N2C3H3W4", "error=spatial_mismatch,mode=multiclass,ignore_index=255", "pairing_mismatch"),
    ("smp.LovaszLoss", "f32", "N2C1H3W4", "error=label_zero,mode=multiclass", "too_few_classes"),
    ("smp.LovaszLoss", "f32", "N2C3W12", "error=label_zero,mode=multiclass", "too_few_classes"),
    ("smp.LovaszLoss", "f32", "N2C3H3W4", "error=last_image_ignored,mode=multiclass,per_image,ignore_index=255", "void_after_scored"),
    ("smp.MCCLoss", "f64", "N2C3H3W4", "error=class_index_target", "pairing_mismatch"),
    ("smp.MCCLoss", "f64", "N2C1H3W4", "error=batch_mismatch", "pairing_mismatch"),
    ("smp.MCCLoss", "f64", "N2C1H3W4", "error=indivisible_batch", "pairing_mismatch"),
    ("smp.MCCLoss", "f64", "N2C1H3W4", "error=bool_target", "bool_subtraction"),
    ("smp.MCCLoss", "f64", "N2C1H3W4", "error=scalar_target", "unexpected_shape"),
    ("smp.MCCLoss", "f64", "N0C1H3W4", "error=empty_batch", "empty_reshape"),
    ("kornia.lovasz_softmax_loss", "f64", "N2C3D2H2W3", "error=spatial_3d", "unexpected_shape"),
    ("kornia.lovasz_softmax_loss", "f64", "N2C3H3W4", "error=target_4d", "unexpected_shape"),
    ("kornia.lovasz_softmax_loss", "f64", "N2C1H3W4", "error=one_class", "too_few_classes"),
    ("kornia.lovasz_softmax_loss", "f64", "N2C3H3W4", "error=spatial_mismatch", "target_shape_mismatch"),
    ("kornia.lovasz_softmax_loss", "f64", "N2C3H3W4", "error=batch_mismatch", "target_shape_mismatch"),
    ("kornia.lovasz_softmax_loss", "f64", "N2C3H3W4", "error=target_negative", "target_out_of_bounds"),
    ("kornia.lovasz_softmax_loss", "f64", "N2C3H3W4", "error=target_too_large", "target_out_of_bounds"),
    ("kornia.lovasz_softmax_loss", "f64", "N2C3H3W4", "error=weight_length", "weight_length"),
    ("kornia.lovasz_softmax_loss", "f64", "N2C3H3W4", "error=weight_scalar", "unexpected_shape"),
    ("kornia.lovasz_softmax_loss", "f64", "N0C3H3W4", "error=empty_batch", "empty_reshape"),
    ("kornia.lovasz_hinge_loss", "f64", "N2C1D2H2W3", "error=spatial_3d", "unexpected_shape"),
    ("kornia.lovasz_hinge_loss", "f64", "N2C3H3W4", "error=three_channels", "unexpected_shape"),
    ("kornia.lovasz_hinge_loss", "f64", "N2C1H3W4", "error=target_4d", "unexpected_shape"),
    ("kornia.lovasz_hinge_loss", "f64", "N2C1H3W4", "error=spatial_mismatch", "target_shape_mismatch"),
    ("kornia.lovasz_hinge_loss", "f64", "N2C1H3W4", "error=batch_mismatch", "target_shape_mismatch"),
    ("kornia.lovasz_hinge_loss", "f64", "N0C1H3W4", "error=empty_batch", "empty_reshape"),
)


@dataclass(frozen=True)
class Options:
    """A variant id segment, parsed (see `parse_variant`).

    `mode` is smp's Lovász mode (binary when unset: error cases draw binary tensors); `per_image`,
    `ignore_index`, `from_logits` and `eps` are passed to the anchor when set; `weight` is
    "uniform" for a plain `weight`, else its layout; the rest are the edge-case tags.
    """

    error: str | None = None
    mode: str | None = None
    per_image: bool = False
    ignore_index: int | None = None
    from_logits: bool | None = None
    eps: float | None = None
    weight: str | None = None
    target: str | None = None
    pred_batch: int | None = None
    empty_target: bool = False
    absent_class: bool = False
    unmatched_label: bool = False
    all_ignored: bool = False
    first_image_ignored: bool = False
    extra_target_image: bool = False
    all_zero: bool = False
    perfect: bool = False


@dataclass(frozen=True)
class Layout:
    """The prediction's shape (`N C spatial...`) and NumPy dtype, and the kind of label it takes."""

    loss: str
    shape: tuple[int, ...]
    dtype: type
    labels: str  # "classes" (indices, the prediction without its class axis), "binary" (the same, 0/1), "multilabel" (0/1, the prediction's shape)

    @classmethod
    def of(cls, loss: str, token: str, dtype: str, options: Options) -> Layout:
        axes, shape = parse_shape(token)
        if not axes.startswith("NC"):
            raise GenerationError(f"{token}: a prediction is (N, C, ...)")
        if loss == "smp.LovaszLoss":
            labels = {"multiclass": "classes", "multilabel": "multilabel"}.get(options.mode or "binary", "binary")
        elif loss == "smp.MCCLoss":
            labels = "binary" if shape[1] == 1 else "multilabel"
        else:
            labels = "classes" if loss == "kornia.lovasz_softmax_loss" else "binary"
        return cls(loss, shape, DTYPES[dtype], labels)

    @property
    def classes(self) -> int:
        return self.shape[1]

    @property
    def target_shape(self) -> tuple[int, ...]:
        return self.shape if self.labels == "multilabel" else (self.shape[0], *self.shape[2:])


# --- drawing a valid call -----------------------------------------------------------------------


def _prediction(rng: np.random.Generator, layout: Layout, options: Options) -> np.ndarray:
    shape = (1, *layout.shape[1:]) if options.pred_batch == 1 else layout.shape
    if layout.loss != "smp.MCCLoss":
        return rng.standard_normal(shape) * 2
    return rng.uniform(0.0, 1.0, shape)


def _labels(rng: np.random.Generator, layout: Layout, options: Options) -> np.ndarray:
    """int64 labels; the edge tags pin some of them:

    * `empty_target`: all 0; `absent_class`: the last class never occurs;
    * `unmatched_label`: a third are 255 (no class, not ignored); an `ignore_index`: a third hold it;
    * `all_ignored` / `first_image_ignored`: every label / the first image's labels are ignore_index;
    * `extra_target_image`: one image more than the prediction.
    """
    shape = layout.target_shape
    if options.extra_target_image:
        shape = (shape[0] + 1, *shape[1:])
    high = 2 if layout.labels != "classes" else layout.classes - int(options.absent_class)
    labels = np.zeros(shape, dtype=np.int64) if options.empty_target else rng.integers(0, high, shape)
    hidden = VOID if options.unmatched_label else options.ignore_index
    if hidden is not None and labels.size >= 3:
        labels.flat[rng.permutation(labels.size)[: labels.size // 3]] = hidden
    if options.all_ignored:
        labels[...] = options.ignore_index
    if options.first_image_ignored:
        labels[0] = options.ignore_index
    return labels


def _target(rng: np.random.Generator, layout: Layout, options: Options, prediction: np.ndarray) -> np.ndarray:
    """The target in its final form: labels, or the MCC edge targets, reshaped or cast per `target=`."""
    if options.all_zero:
        prediction[...] = 0.0
        return np.zeros(layout.target_shape, dtype=np.int64)
    if options.target == "per_image":  # one label per image, both labels present
        return rng.permutation(layout.shape[0]) % 2
    if options.target == "soft":
        return rng.uniform(0.0, 1.0, layout.target_shape).astype(layout.dtype)
    labels = _labels(rng, layout, options)
    if options.perfect:
        prediction[...] = labels.reshape(prediction.shape)
    if options.target == "channel":
        return labels.reshape(layout.shape)
    if options.target == "float":
        return labels.astype(layout.dtype)
    return labels


def _weight(rng: np.random.Generator, layout: Layout, kind: str) -> np.ndarray:
    weight = rng.uniform(0.2, 2.0, layout.classes)
    return weight.reshape(-1, 1) if kind == "column" else weight


def _params(options: Options, loss: str) -> dict[str, Any]:
    if loss == "smp.LovaszLoss":
        params = {"mode": options.mode or "binary", "per_image": options.per_image, "ignore_index": options.ignore_index}
        if options.from_logits is not None:
            params["from_logits"] = options.from_logits
        return params
    if options.eps is not None:
        return {"eps": options.eps}
    return {}


def _draw(rng: np.random.Generator, layout: Layout, options: Options) -> Call:
    _, pred_name, target_name = ANCHORS[layout.loss]
    prediction = _prediction(rng, layout, options)
    target = _target(rng, layout, options, prediction)
    tensors = {pred_name: prediction.astype(layout.dtype), target_name: target}
    if options.weight is not None:
        tensors["weight"] = _weight(rng, layout, options.weight).astype(layout.dtype)
    return Call(tensors, _params(options, layout.loss))


# --- keeping Lovász gradient fixtures away from ties and kinks ----------------------------------


def _sorted_groups(call: Call, layout: Layout, options: Options) -> list[np.ndarray]:
    """The error vectors the anchor sorts, from the call's (cast) inputs in float64.

    Groups are every image and, unless per image, the pooled batch; softmax groups hold one vector
    per class. Ignored labels are left in (a superset of what the anchor sorts).
    """
    _, pred_name, target_name = ANCHORS[layout.loss]
    pred = call.tensors[pred_name].astype(np.float64)
    labels = call.tensors[target_name].astype(np.float64)
    # kornia scores a prediction batch of 1 against every image; smp's zip stops at the shorter batch.
    images = labels.shape[0] if pred.shape[0] == 1 else min(pred.shape[0], labels.shape[0])
    pred = np.broadcast_to(pred, (images, *pred.shape[1:]))
    labels = labels[:images]
    if layout.labels == "classes":
        shifted = np.exp(pred - pred.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
        classes = np.arange(layout.classes).reshape(1, -1, *([1] * (pred.ndim - 2)))
        errors = np.abs((labels[:, None] == classes) - probs).swapaxes(0, 1).reshape(layout.classes, images, labels[0:1].size)
    else:
        per_image = pred[0:1].size
        errors = (1.0 - pred.reshape(images, per_image) * (2.0 * labels.reshape(images, per_image) - 1.0))[None]
    groups = [errors[:, image] for image in range(images)]
    if not options.per_image and layout.loss == "smp.LovaszLoss":
        groups.append(errors.reshape(errors.shape[0], -1))
    return [vector for group in groups for vector in group]


def _away_from_ties_and_kinks(vectors: list[np.ndarray]) -> bool:
    for vector in vectors:
        ordered = np.sort(vector)
        if np.any(np.abs(ordered) < GAP) or np.any(np.diff(ordered) < GAP):
            return False
    return True


MAX_DRAWS = 1000


def build_call(rng: np.random.Generator, *, layout: Layout, options: Options) -> Call:
    """Draw a valid call (Lovász value cases: until its errors are separated), then mutate it."""
    lovasz = layout.loss != "smp.MCCLoss" and options.error is None
    for _ in range(MAX_DRAWS):
        call = _draw(rng, layout, options)
        if not lovasz or _away_from_ties_and_kinks(_sorted_groups(call, layout, options)):
            break
    else:
        raise GenerationError(f"no draw with errors {GAP} apart in {MAX_DRAWS} attempts")
    if options.error is not None:
        ERROR_MUTATIONS[options.error](call, rng, layout)
    return call


# --- error mutations: each turns a valid call into the failing one its name describes -----------

Mutation = Callable[[Call, np.random.Generator, Layout], None]


def _target_name(layout: Layout) -> str:
    return ANCHORS[layout.loss][2]


def _set_target(make: Callable[[np.ndarray, np.random.Generator, Layout], np.ndarray]) -> Mutation:
    """Replace the target by `make(target, rng, layout)`."""

    def mutate(call: Call, rng: np.random.Generator, layout: Layout) -> None:
        name = _target_name(layout)
        call.tensors[name] = make(call.tensors[name], rng, layout)

    return mutate


def _set_param(name: str, value: Any) -> Mutation:
    def mutate(call: Call, rng: np.random.Generator, layout: Layout) -> None:
        call.params[name] = value

    return mutate


def _one_label(value: int) -> Callable[[np.ndarray, np.random.Generator, Layout], np.ndarray]:
    def make(target: np.ndarray, rng: np.random.Generator, layout: Layout) -> np.ndarray:
        target = target.copy()
        target.flat[rng.integers(target.size)] = value
        return target

    return make


def _wider(target: np.ndarray, rng: np.random.Generator, layout: Layout) -> np.ndarray:
    """One more column: the last axis one longer."""
    return rng.integers(0, 2, (*target.shape[:-1], target.shape[-1] + 1))


def _more_images(target: np.ndarray, rng: np.random.Generator, layout: Layout) -> np.ndarray:
    return rng.integers(0, 2, (target.shape[0] + 1, *target.shape[1:]))


def _last_image_ignored(target: np.ndarray, rng: np.random.Generator, layout: Layout) -> np.ndarray:
    target = target.copy()
    target[-1] = VOID
    return target


def _unchanged(call: Call, rng: np.random.Generator, layout: Layout) -> None:
    """No change: the case's shape token alone makes the call fail."""


def _weight_of_shape(shape: tuple[int, ...]) -> Mutation:
    def mutate(call: Call, rng: np.random.Generator, layout: Layout) -> None:
        call.tensors["weight"] = rng.uniform(0.2, 2.0, shape).astype(layout.dtype)

    return mutate


def _weight_length(call: Call, rng: np.random.Generator, layout: Layout) -> None:
    _weight_of_shape((layout.classes + 1,))(call, rng, layout)


ERROR_MUTATIONS: dict[str, Mutation] = {
    "mode=softmax": _set_param("mode", "softmax"),
    "bool_target": _set_target(lambda target, rng, layout: target.astype(np.bool_)),
    "spatial_mismatch": _set_target(_wider),
    "batch_mismatch": _set_target(_more_images),
    # 5 images cannot split the 24 predictions of N2C1H3W4.
    "indivisible_batch": _set_target(lambda target, rng, layout: rng.integers(0, 2, (5,))),
    "label_zero": _set_target(_one_label(0)),
    "last_image_ignored": _set_target(_last_image_ignored),
    "class_index_target": _set_target(lambda target, rng, layout: rng.integers(0, layout.classes, target.shape[:1] + target.shape[2:])),
    "scalar_target": _set_target(lambda target, rng, layout: np.asarray(1, dtype=np.int64)),
    "target_4d": _set_target(lambda target, rng, layout: target[:, np.newaxis]),
    "target_negative": _set_target(_one_label(-1)),
    "target_too_large": _set_target(_one_label(3)),  # = C of N2C3H3W4
    "weight_length": _weight_length,
    "weight_scalar": _weight_of_shape(()),
    # The case's shape token alone makes these calls fail.
    **{name: _unchanged for name in ("empty_batch", "spatial_3d", "one_class", "three_channels")},
}


# --- variant ids ----------------------------------------------------------------------------------


def _false(value: str | None) -> bool:
    if value != "False":
        raise ValueError("only =False is a variant")
    return False


#: Option keys in the order a variant id must list them, each with the parser of its value.
_OPTION_PARSERS: dict[str, Callable[[str | None], Any]] = {
    "error": one_of(*ERROR_MUTATIONS),
    "mode": one_of("binary", "multiclass", "multilabel"),
    "per_image": flag,
    "ignore_index": int,
    "from_logits": _false,
    "eps": float,
    "weight": lambda value: "uniform" if value is None else one_of("column")(value),
    "target": one_of("float", "channel", "per_image", "soft"),
    "pred_batch": int,
    **{tag: flag for tag in ("empty_target", "absent_class", "unmatched_label", "all_ignored", "first_image_ignored", "extra_target_image", "all_zero", "perfect")},
}


# --- the catalog -----------------------------------------------------------------------------------


def _case(loss: str, dtype: str, shape: str, variant: str, error_kind: str | None = None) -> Case:
    """One case; `error_kind` is declared exactly for the `error=` variants, and smp's Lovász
    float64 cases record `float32_only` unless nothing gets to its float32 dot product."""
    options = parse_variant(variant, _OPTION_PARSERS, Options)
    if (options.error is None) != (error_kind is None):
        raise GenerationError(f"{loss}/{dtype}/{shape}/{REDUCTION}/{variant}: an error variant needs an error kind")
    if loss == "smp.LovaszLoss" and dtype == "f64" and not options.all_ignored and error_kind is None:
        error_kind = "float32_only"
    layout = Layout.of(loss, shape, dtype, options)
    anchor, prediction, _ = ANCHORS[loss]
    build = partial(build_call, layout=layout, options=options)
    return Case(loss, dtype, shape, REDUCTION, variant, anchor, build, error_kind, prediction)


def cases() -> list[Case]:
    """The matrices, the edge cases and the error cases of the four losses."""
    matrix = [
        _case(loss, dtype, shape, variant)
        for loss, dtypes, shapes, variants in MATRICES
        for dtype in dtypes
        for shape in shapes
        for variant in variants
    ]
    edges = [_case(loss, dtype, shape, variant) for loss, dtypes, shape, variant in EDGE_CASES for dtype in dtypes]
    errors = [_case(*error_case) for error_case in ERROR_CASES]
    return matrix + edges + errors
