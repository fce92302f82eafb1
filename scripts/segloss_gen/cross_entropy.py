"""Cases for `torch.nn.functional.cross_entropy` and `nll_loss` (docs/semantics.md §1).

The catalog below lists every variant exactly as its id segment. `parse_variant` turns a segment into
`Options`, and `build_call` draws the call from them with the case's generator, always in the same
order: input, target, weight, then the logits an edge case poisons (-inf, NaN). Inputs are drawn in
float64 and cast to the case dtype; an error case then applies its mutation (`ERROR_MUTATIONS`) to
that valid call, so it differs from a valid call in exactly the way its name says.

Distributions: logits (and nll_loss inputs, which torch does not check to be log-probabilities)
are standard normal x 2; class targets uniform in [0, C); weights uniform in [0.2, 2.0];
probability targets Dirichlet(1, ..., 1) along the class axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np
import torch.nn.functional as F

from .common import DTYPES, Call, Case, GenerationError, expand_cases, flag, one_of, parse_shape, parse_variant

ANCHORS = {"cross_entropy": F.cross_entropy, "nll_loss": F.nll_loss}

REDUCTIONS = ("none", "mean", "sum")

MATRIX_SHAPES = ("C5", "N4C3", "N2C4W5", "N2C3H3W4", "N2C3D2H3W4", "N1C3T2D2H2W3")

#: Every dtype x matrix shape x reduction exists for each of these variants.
MATRIX_VARIANTS = {
    "cross_entropy": (
        "default",
        "weight",
        "ignore_index=1",
        "label_smoothing=0.1",
        "weight,ignore_index=1,label_smoothing=0.1",
        "target=uint8",
        "target=probs",
        "target=probs,label_smoothing=0.1",
        "target=probs,weight",
    ),
    "nll_loss": ("default", "weight", "ignore_index=1", "weight,ignore_index=1", "target=uint8"),
}

#: (loss, dtype, shape, reductions, variant)
EDGE_CASES = (
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "ignore_index=1,all_ignored"),
    ("cross_entropy", "f64", "N2C3H3W4", REDUCTIONS, "ignore_index=1,all_ignored"),
    ("cross_entropy", "f32", "N4C3", REDUCTIONS, "ignore_index=1,all_ignored"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "ignore_index=5"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "ignore_index=-1"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "weight=zeros_negatives"),
    ("cross_entropy", "f64", "N4C3", ("mean",), "weight=zero_sum"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "label_smoothing=0.0"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "label_smoothing=1.0"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "label_smoothing=-0.1"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "weight,label_smoothing=1.0"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "target=probs_unnormalized"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "target=probs,ignore_index=-1"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "target=uint8,ignore_index=255"),
    # Without smoothing, the weighted mean divides by a sum of weights that needs no gather, so
    # uint8 targets are accepted with a weight (with smoothing they are not: see ERROR_CASES).
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "target=uint8,weight"),
    ("cross_entropy", "f64", "N0C3", REDUCTIONS, "default"),
    ("cross_entropy", "f64", "N0C3H2W2", REDUCTIONS, "default"),
    ("cross_entropy", "f64", "N0C3", REDUCTIONS, "target=probs"),
    ("cross_entropy", "f64", "N0C3", REDUCTIONS, "weight"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "logits=1e4"),
    ("cross_entropy", "f32", "N4C3", REDUCTIONS, "logits=1e4"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "label_smoothing=0.1,logits=1e4"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "logits=neg_inf"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "label_smoothing=0.1,logits=neg_inf"),
    ("cross_entropy", "f64", "N4C3", REDUCTIONS, "ignore_index=1,label_smoothing=0.1,ignored_nan_logits"),
    ("nll_loss", "f64", "N4C3", REDUCTIONS, "ignore_index=1,all_ignored"),
    ("nll_loss", "f64", "N4C3", REDUCTIONS, "ignore_index=5"),
    ("nll_loss", "f64", "N4C3", REDUCTIONS, "weight=zeros_negatives"),
    ("nll_loss", "f64", "N0C3", REDUCTIONS, "default"),
    ("nll_loss", "f64", "N4C3", REDUCTIONS, "input=positive"),
)

#: (loss, shape, reduction, variant, segloss error kind); all f64.
ERROR_CASES = (
    ("cross_entropy", "N4C3", "mean", "error=target_too_large", "target_out_of_bounds"),
    ("cross_entropy", "N4C3", "mean", "error=target_negative", "target_out_of_bounds"),
    ("cross_entropy", "N2C3H3W4", "none", "error=target_too_large", "target_out_of_bounds"),
    ("cross_entropy", "N4C3", "mean", "error=target_too_large,label_smoothing=0.1", "target_out_of_bounds"),
    ("cross_entropy", "N4C3", "mean", "error=uint8_target_255", "target_out_of_bounds"),
    ("cross_entropy", "N4C3", "mean", "error=target_float", "target_dtype"),
    ("cross_entropy", "N4C3", "mean", "error=target_int32", "target_dtype"),
    ("cross_entropy", "N4C3", "mean", "error=target_bool", "target_dtype"),
    # The weighted mean of the smoothing term gathers weights by target, and gather refuses uint8.
    ("cross_entropy", "N4C3", "mean", "error=uint8_weighted_smoothing", "target_dtype"),
    ("cross_entropy", "N4C3", "mean", "error=batch_mismatch", "batch_size_mismatch"),
    ("cross_entropy", "N4C3", "mean", "error=target_2d", "target_rank"),
    ("cross_entropy", "N2C3H3W4", "mean", "error=target_4d", "target_rank"),
    ("cross_entropy", "N2C3H3W4", "mean", "error=spatial_mismatch", "target_shape_mismatch"),
    ("cross_entropy", "N2C4W5", "mean", "error=spatial_mismatch", "target_shape_mismatch"),
    ("cross_entropy", "N2C3D2H3W4", "mean", "error=spatial_mismatch", "target_shape_mismatch"),
    ("cross_entropy", "C5", "mean", "error=target_length_2", "target_shape_mismatch"),
    ("cross_entropy", "N4C3", "mean", "error=weight_length", "weight_length"),
    ("cross_entropy", "N2C3H3W4", "mean", "error=weight_length", "weight_length"),
    ("cross_entropy", "N4C3", "mean", "error=weight_length,target=probs", "weight_length"),
    ("cross_entropy", "N4C3", "mean", "error=weight_dtype", "weight_dtype"),
    ("cross_entropy", "N4C3", "mean", "error=integer_logits", "input_dtype"),
    ("cross_entropy", "N4C3", "mean", "error=probs_ignore_index", "ignore_index_with_probabilities"),
    ("cross_entropy", "N4C3", "mean", "error=probs_int64", "probability_target_dtype"),
    ("cross_entropy", "N4C3", "mean", "error=label_smoothing=1.5", "label_smoothing_range"),
    ("cross_entropy", "N4C3", "mean", "error=label_smoothing=1.5,target=probs", "label_smoothing_range"),
    ("cross_entropy", "N4C3", "avg", "error=reduction=avg", "invalid_reduction"),
    ("nll_loss", "N4C3", "mean", "error=target_too_large", "target_out_of_bounds"),
    ("nll_loss", "N4C3", "mean", "error=target_float", "target_dtype"),
    ("nll_loss", "N4C3", "mean", "error=batch_mismatch", "batch_size_mismatch"),
    # nll_loss has no probability-target path: a same-shape target fails the rank check first.
    ("nll_loss", "N4C3", "mean", "error=probs_float", "target_rank"),
    ("nll_loss", "N2C3H3W4", "mean", "error=spatial_mismatch", "target_shape_mismatch"),
    ("nll_loss", "N4C3", "mean", "error=weight_length", "weight_length"),
    ("nll_loss", "N4C3", "mean", "error=ignore_index_mismatch", "target_out_of_bounds"),
    ("nll_loss", "S", "mean", "error=scalar_input", "input_rank"),
    ("nll_loss", "N4C3", "avg", "error=reduction=avg", "invalid_reduction"),
)

#: torch takes uint8 class-index targets only for 1-D and 2-D inputs: the spatial kernel behind
#: larger inputs raises "expected scalar type Long but found Byte". The `target=uint8` matrix cases
#: of those shapes therefore record that error (kind target_dtype) instead of values.
UINT8_TARGET_MAX_INPUT_RANK = 2

#: Weights of the edge cases named `weight=<name>` (three classes).
FIXED_WEIGHTS = {"zeros_negatives": (0.0, -0.5, 1.5), "zero_sum": (1.0, -1.0, 0.5)}


@dataclass(frozen=True)
class Layout:
    """Where a case's axes are: shape token, input shape, class axis and the input's NumPy dtype.

    A 0-d input (token `S`) has no class axis; its 0-d target is drawn as if there were one class.
    """

    token: str
    shape: tuple[int, ...]
    class_axis: int | None
    dtype: type

    @classmethod
    def of(cls, token: str, dtype: str) -> Layout:
        axes, shape = parse_shape(token)
        return cls(token, shape, axes.index("C") if "C" in axes else None, DTYPES[dtype])

    @property
    def classes(self) -> int:
        return 1 if self.class_axis is None else self.shape[self.class_axis]

    @property
    def target_shape(self) -> tuple[int, ...]:
        """The shape of a class-index target: the input shape without the class axis."""
        return tuple(size for axis, size in enumerate(self.shape) if axis != self.class_axis)


@dataclass(frozen=True)
class Options:
    """A variant id segment, parsed (see `parse_variant`).

    `target` is "index" (int64 class indices) unless the id says `target=uint8`, `target=probs` or
    `target=probs_unnormalized`; `weight` is "uniform" for a plain `weight`, else the name of a
    `FIXED_WEIGHTS` entry; `ignore_index` and `label_smoothing` are passed to the anchor when set;
    `logits`, `input`, `all_ignored` and `ignored_nan_logits` are the edge-case tags.
    """

    error: str | None = None
    target: str = "index"
    weight: str | None = None
    ignore_index: int | None = None
    label_smoothing: float | None = None
    logits: str | None = None
    input: str | None = None
    all_ignored: bool = False
    ignored_nan_logits: bool = False

    def __post_init__(self) -> None:
        if (self.all_ignored or self.ignored_nan_logits) and self.ignore_index is None:
            raise GenerationError("all_ignored and ignored_nan_logits need an ignore_index")


# --- drawing a valid call -----------------------------------------------------------------------


def _input(rng: np.random.Generator, layout: Layout, options: Options) -> np.ndarray:
    if options.input == "positive":
        return rng.uniform(0.5, 5.0, layout.shape)
    if options.logits == "1e4":
        return rng.choice([-1e4, 0.0, 1e4], size=layout.shape)
    return np.asarray(rng.standard_normal(layout.shape) * 2)


def _class_indices(rng: np.random.Generator, layout: Layout, options: Options) -> np.ndarray:
    """Class-index target (int64). Edge cases pin some values:

    * `all_ignored`: every position is ignore_index;
    * `weight=zeros_negatives`: every class occurs, so every weight matters;
    * `weight=zero_sum`: classes alternate 0, 1, so the weights of the targets sum to 0;
    * an ignore_index, with at least 3 positions: a third of them hold it, the rest other classes.
    """
    shape, classes = layout.target_shape, layout.classes
    positions = math.prod(shape)
    if options.all_ignored:
        return np.full(shape, options.ignore_index, dtype=np.int64)
    if options.weight == "zeros_negatives":
        flat = np.concatenate([np.arange(classes), rng.integers(0, classes, positions - classes)])
        rng.shuffle(flat)
        return flat.reshape(shape)
    if options.weight == "zero_sum":
        return (np.arange(positions) % 2).reshape(shape)
    if options.ignore_index is not None and positions >= 3:
        flat = rng.choice(np.setdiff1d(np.arange(classes), [options.ignore_index]), size=positions)
        flat[rng.permutation(positions)[: positions // 3]] = options.ignore_index
        return flat.reshape(shape)
    return rng.integers(0, classes, shape)


def _probabilities(rng: np.random.Generator, layout: Layout) -> np.ndarray:
    """Probability target: each position's class distribution drawn from Dirichlet(1, ..., 1)."""
    rows = rng.dirichlet(np.ones(layout.classes), size=layout.target_shape)
    return np.moveaxis(rows, -1, layout.class_axis)


def _target(rng: np.random.Generator, layout: Layout, options: Options) -> np.ndarray:
    if options.target == "probs":
        return _probabilities(rng, layout)
    if options.target == "probs_unnormalized":
        return rng.uniform(-0.5, 2.0, layout.shape)
    indices = _class_indices(rng, layout, options)
    return indices.astype(np.uint8) if options.target == "uint8" else indices


def _weight(rng: np.random.Generator, layout: Layout, kind: str) -> np.ndarray:
    if kind == "uniform":
        return rng.uniform(0.2, 2.0, layout.classes)
    weight = np.array(FIXED_WEIGHTS[kind])
    if weight.size != layout.classes:
        raise GenerationError(f"weight={kind} has {weight.size} entries, the input {layout.classes} classes")
    return weight


def _poison_logits(rng: np.random.Generator, layout: Layout, options: Options, logits: np.ndarray, target: np.ndarray) -> None:
    """In place: `logits=neg_inf` puts one -inf in each position's logits, never at its target class;
    `ignored_nan_logits` makes the logits of every ignored position NaN."""
    if options.logits != "neg_inf" and not options.ignored_nan_logits:
        return
    rows = np.moveaxis(logits, layout.class_axis, -1)  # a view: one row of logits per target position
    if options.logits == "neg_inf":
        for position in np.ndindex(target.shape):
            others = np.delete(np.arange(layout.classes), target[position])
            rows[position + (rng.choice(others),)] = -np.inf
    if options.ignored_nan_logits:
        rows[target == options.ignore_index] = np.nan


def build_call(rng: np.random.Generator, *, layout: Layout, reduction: str, options: Options) -> Call:
    """Draw the call of one case: a valid call from the options, then the error mutation if any."""
    logits = _input(rng, layout, options)
    target = _target(rng, layout, options)
    tensors = {"input": logits, "target": target}
    if options.weight is not None:
        tensors["weight"] = _weight(rng, layout, options.weight)
    _poison_logits(rng, layout, options, logits, target)
    params: dict[str, Any] = {"reduction": reduction}
    if options.ignore_index is not None:
        params["ignore_index"] = options.ignore_index
    if options.label_smoothing is not None:
        params["label_smoothing"] = options.label_smoothing
    floating = {name: np.asarray(array, dtype=layout.dtype) for name, array in tensors.items() if array.dtype.kind == "f"}
    call = Call({**tensors, **floating}, params)
    if options.error is not None:
        ERROR_MUTATIONS[options.error](call, rng, layout)
    return call


# --- error mutations: each turns a valid call into the failing one its name describes -----------

Mutation = Callable[[Call, np.random.Generator, Layout], None]


def _chain(*mutations: Mutation) -> Mutation:
    def mutate(call: Call, rng: np.random.Generator, layout: Layout) -> None:
        for mutation in mutations:
            mutation(call, rng, layout)

    return mutate


def _set_params(**params: Any) -> Mutation:
    def mutate(call: Call, rng: np.random.Generator, layout: Layout) -> None:
        call.params.update(params)

    return mutate


def _one_target(value: int) -> Mutation:
    """Set one randomly chosen target position to `value`."""

    def mutate(call: Call, rng: np.random.Generator, layout: Layout) -> None:
        target = call.tensors["target"].copy()
        target.flat[rng.integers(target.size)] = value
        call.tensors["target"] = target

    return mutate


def _cast_target(dtype: type) -> Mutation:
    def mutate(call: Call, rng: np.random.Generator, layout: Layout) -> None:
        call.tensors["target"] = call.tensors["target"].astype(dtype)

    return mutate


def _redraw_target(shapes: dict[str, tuple[int, ...]]) -> Mutation:
    """Replace the target by uniform class indices of the shape listed for the case's shape token."""

    def mutate(call: Call, rng: np.random.Generator, layout: Layout) -> None:
        call.tensors["target"] = rng.integers(0, layout.classes, shapes[layout.token])

    return mutate


def _draw_weight(extra_classes: int = 0, dtype: type | None = None) -> Mutation:
    """Add a uniform weight with `extra_classes` more entries than classes, in `dtype` (default: the input's)."""

    def mutate(call: Call, rng: np.random.Generator, layout: Layout) -> None:
        weight = rng.uniform(0.2, 2.0, layout.classes + extra_classes)
        call.tensors["weight"] = weight.astype(dtype or layout.dtype)

    return mutate


def _drop_last_target(call: Call, rng: np.random.Generator, layout: Layout) -> None:
    call.tensors["target"] = call.tensors["target"][:-1]


def _insert_target_axis(call: Call, rng: np.random.Generator, layout: Layout) -> None:
    """(N, d1, ...) -> (N, 1, d1, ...)."""
    call.tensors["target"] = call.tensors["target"][:, np.newaxis]


def _integer_input(call: Call, rng: np.random.Generator, layout: Layout) -> None:
    call.tensors["input"] = np.rint(call.tensors["input"]).astype(np.int64)


def _probability_target(call: Call, rng: np.random.Generator, layout: Layout) -> None:
    call.tensors["target"] = _probabilities(rng, layout).astype(layout.dtype)


def _one_hot_target(call: Call, rng: np.random.Generator, layout: Layout) -> None:
    """The class-index target as an int64 one-hot tensor of the input's shape."""
    one_hot = np.eye(layout.classes, dtype=np.int64)[call.tensors["target"]]
    call.tensors["target"] = np.moveaxis(one_hot, -1, layout.class_axis)


def _unchanged(call: Call, rng: np.random.Generator, layout: Layout) -> None:
    """The case's shape token alone makes the call fail."""


ERROR_MUTATIONS: dict[str, Mutation] = {
    "target_too_large": _one_target(3),  # = C for every case using it
    "target_negative": _one_target(-1),
    "uint8_target_255": _chain(_cast_target(np.uint8), _one_target(255), _set_params(ignore_index=-1)),
    "target_float": _cast_target(np.float64),
    "target_int32": _cast_target(np.int32),
    "target_bool": _cast_target(np.bool_),
    "uint8_weighted_smoothing": _chain(_cast_target(np.uint8), _draw_weight(), _set_params(label_smoothing=0.1)),
    "batch_mismatch": _drop_last_target,
    "target_2d": _insert_target_axis,
    "target_4d": _insert_target_axis,
    "spatial_mismatch": _redraw_target({"N2C4W5": (2, 4), "N2C3H3W4": (2, 3, 5), "N2C3D2H3W4": (2, 2, 3, 3)}),
    "target_length_2": _redraw_target({"C5": (2,)}),
    "weight_length": _draw_weight(extra_classes=1),
    "weight_dtype": _draw_weight(dtype=np.float32),
    "integer_logits": _integer_input,
    "probs_ignore_index": _chain(_probability_target, _set_params(ignore_index=0)),
    "probs_int64": _one_hot_target,
    "probs_float": _probability_target,
    "label_smoothing=1.5": _set_params(label_smoothing=1.5),
    "reduction=avg": _set_params(reduction="avg"),
    "ignore_index_mismatch": _chain(_one_target(-100), _set_params(ignore_index=255)),
    "scalar_input": _unchanged,
}


# --- variant ids ----------------------------------------------------------------------------------


def _weight_option(value: str | None) -> str:
    return "uniform" if value is None else one_of(*FIXED_WEIGHTS)(value)


#: Option keys in the order a variant id must list them, each with the parser of its value
#: (None when the option is written without "=value").
_OPTION_PARSERS: dict[str, Callable[[str | None], Any]] = {
    "error": one_of(*ERROR_MUTATIONS),
    "target": one_of("uint8", "probs", "probs_unnormalized"),
    "weight": _weight_option,
    "ignore_index": int,
    "label_smoothing": float,
    "logits": one_of("1e4", "neg_inf"),
    "input": one_of("positive"),
    "all_ignored": flag,
    "ignored_nan_logits": flag,
}


# --- the catalog -----------------------------------------------------------------------------------


def _case(loss: str, dtype: str, shape: str, reduction: str, variant: str, error_kind: str | None = None) -> Case:
    """One case; `error_kind` is declared exactly for the `error=` variants."""
    options = parse_variant(variant, _OPTION_PARSERS, Options)
    if (options.error is None) != (error_kind is None):
        raise GenerationError(f"{loss}/{dtype}/{shape}/{reduction}/{variant}: an error variant needs an error kind")
    layout = Layout.of(shape, dtype)
    if options.target == "uint8" and len(layout.shape) > UINT8_TARGET_MAX_INPUT_RANK:
        error_kind = "target_dtype"
    build = partial(build_call, layout=layout, reduction=reduction, options=options)
    return Case(loss, dtype, shape, reduction, variant, ANCHORS[loss], build, error_kind)


def cases() -> list[Case]:
    """The matrix, the edge cases and the error cases of cross_entropy and nll_loss."""
    matrices = [(loss, DTYPES, MATRIX_SHAPES, REDUCTIONS, variants) for loss, variants in MATRIX_VARIANTS.items()]
    return expand_cases(_case, matrices, EDGE_CASES, ERROR_CASES)
