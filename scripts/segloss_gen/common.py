"""Machinery shared by every loss family: case definition, seeding, running the anchor, saving
tensors, and writing the manifest (see docs/fixture-format.md, the contract with the Rust side).

A loss family only describes its cases (`Case`): which anchor to call and how to build the call's
arguments from the case's random generator. Everything else happens here, identically for all.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import platform
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

SCHEMA_VERSION = 1

#: Generator sources, relative to this file's parent directory (scripts/), whose bytes make up
#: `generator.script_sha256`.
SCRIPTS_DIR = Path(__file__).resolve().parent.parent
ENTRY_POINT = "generate_fixtures.py"
PACKAGE = Path(__file__).resolve().parent.name

#: Third-party loss libraries whose versions the manifest records when they are importable.
LIBRARIES = ("torchvision", "segmentation_models_pytorch", "monai", "kornia")

#: Case dtype tokens and the NumPy dtype of the input (logits) they stand for.
DTYPES = {"f64": np.float64, "f32": np.float32}

#: smp checks some inputs with a bare `assert`: an AssertionError without a message, which only the
#: exception type identifies (kinds are matched against "<type>: <message>").
_BARE_ASSERTION = r"^AssertionError: $"

#: segloss error kinds and the regex "<exception type>: <message>" must match for a case to declare
#: that kind.
ERROR_KINDS = {
    kind: re.compile(pattern)
    for kind, pattern in {
        # torch's loss kernels; F.one_hot (smp, kornia); MONAI's one_hot scatter; smp's gather.
        "target_out_of_bounds": r"Target -?\d+ is out of bounds\.|Class values must be (smaller than num_classes|non-negative)\."
        r"|index -?\d+ is out of bounds for dimension",
        # The second form: the spatial kernel (inputs of 3 or more dimensions) takes int64 only.
        # The third form: gather() of the weights by uint8 targets (weighted mean label smoothing).
        "target_dtype": r"expected target dtype to be Long or Byte, but got \w+|expected scalar type Long but found Byte"
        r"|gather\(\): Expected dtype int32/int64 for index",
        "probability_target_dtype": r"Expected floating point type for target with class probabilities",
        "batch_size_mismatch": rf"Expected input batch_size \(\d+\) to match target batch_size \(\d+\)|{_BARE_ASSERTION}",
        "target_rank": r"0D or 1D target tensor expected|only batches of spatial targets supported"
        r"|the number of dimensions for input and target should be the same",
        "target_shape_mismatch": r"size mismatch \(got input|Expected target size|1D target must have size 1"
        r"|Using a target size|Target size \("
        r"|ground truth has differ(ent|ing) shape|labels should have a channel with length equal to one"
        r"|pred and target shapes must be the same|number of channels for target is neither 1"
        rf"|{_BARE_ASSERTION}",
        "weight_length": r"weight tensor should be defined either for all|The length of the `weight` sequence should be"
        r"|weight must hold one value per class|The size of tensor a \(\d+\) must match the size of tensor b",
        "weight_dtype": r"expected scalar type \w+ but found \w+",
        "input_dtype": r"not implemented for 'Long'",
        "input_rank": r"Expected 1 or more dimensions|Shape dimension mismatch",
        "ignore_index_with_probabilities": r"ignore_index is not supported for floating point target",
        "label_smoothing_range": r"label_smoothing must be between 0\.0 and 1\.0",
        "invalid_reduction": r"is not a valid value for reduction|Invalid Value for arg 'reduction'|Invalid reduction mode"
        r"|is not a valid LossReduction",
        # Binary cross entropy and focal losses.
        "probability_out_of_range": r"all elements of (input|target) should be between 0 and 1",
        "target_dtype_mismatch": r"Found dtype \w+ but expected \w+|can't be cast to the desired output type",
        "broadcast_shape": r"doesn't match the broadcast shape|Attempting to broadcast a dimension|must match the size of tensor b",
        "alpha_range": r"Invalid alpha value",
        "per_class_length": r"must match the number of (classes|output channels)|must hold one value per class",
        "negative_parameter": r"class_weight values must be non-negative|should be no less than 0",
        "unsupported_option": r"not supported with mode=binary|too many indices for tensor|not supported for single-channel outputs"
        r"|Incompatible values: more than 1 of",
        "class_index_dtype": r"labels must be of dtype torch\.int64|one_hot is only applicable to index tensor of type LongTensor",
        "missing_parameter": r"missing 1 required positional argument",
        "parameter_type": r"unsupported operand type\(s\) for /: 'NoneType'",
        # Overlap losses. A string option: smp asserts its mode without a message.
        "invalid_option": rf"Unsupported option '\w+', Available options are|The `average` has to be one of|{_BARE_ASSERTION}",
        "selected_class_out_of_bounds": r"IndexError: index -?\d+ is out of bounds for dimension 0",
        "input_shape": r"Invalid pred shape, we expect BxNxHxW",
        # Lovász and MCC losses.
        "float32_only": r"dot : expected both vectors to have same dtype",
        "bool_subtraction": r"Subtraction, the `-` operator, with a bool tensor is not supported",
        "too_few_classes": r"Sigmoid output possible only with 1 class|Invalid pred shape, we expect BxNxHxW, with N > 1",
        # kornia's shape checks, and `shape[0]` of a 0-d tensor.
        "unexpected_shape": r"Shape dimension mismatch: expected \d+ dimensions|Shape mismatch at dimension \d+: expected|tuple index out of range",
        "empty_reshape": r"cannot reshape tensor of 0 elements",
        # Broadcasting flattened tensors, boolean-mask indexing, reshaping into (B, 1, -1).
        "pairing_mismatch": r"The size of tensor a \(\d+\) must match the size of tensor b \(\d+\)|The shape of the mask \[\d+\] at index 0 does not match|shape '\[\d+, 1, -1\]' is invalid for input of size \d+",
        "void_after_scored": r"output with shape \[\] doesn't match the broadcast shape \[0, \d+\]",
    }.items()
}

_SHAPE_TOKEN = re.compile(r"(?:[A-Z]\d+)+")
_SHAPE_AXIS = re.compile(r"([A-Z])(\d+)")


class GenerationError(Exception):
    """The catalog and the anchor disagree; no fixture may be written."""


@dataclass
class Call:
    """The arguments of one anchor call.

    `tensors` are NumPy arrays keyed by the anchor's keyword names (`input`, `target`, `weight`, ...),
    already in their final dtypes; `params` are the other keyword arguments, exactly as passed.
    """

    tensors: dict[str, np.ndarray]
    params: dict[str, Any]


@dataclass(frozen=True)
class Case:
    """One fixture case: its id segments, the anchor to call, and how to build the call.

    `anchor` is called as `anchor(**tensors, **params)` with torch tensors; the gradient is taken
    with respect to `input`. `build` receives the case's seeded generator and must draw every random
    value from it. A case with `error_kind` must make the anchor raise an error of that kind.
    """

    loss: str
    dtype: str
    shape: str
    reduction: str
    variant: str
    anchor: Callable[..., torch.Tensor]
    build: Callable[[np.random.Generator], Call]
    error_kind: str | None = None
    #: The tensor argument the gradient is taken with respect to (the prediction): its gradient is
    #: saved as `grad_input`.
    prediction: str = "input"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise GenerationError(f"{self.id}: unknown dtype token {self.dtype!r}")
        if self.error_kind is not None and self.error_kind not in ERROR_KINDS:
            raise GenerationError(f"{self.id}: unknown error kind {self.error_kind!r}")

    @property
    def id(self) -> str:
        """`<loss>/<dtype>/<shape>/<reduction>/<variant>`, also the case's directory."""
        return f"{self.loss}/{self.dtype}/{self.shape}/{self.reduction}/{self.variant}"

    @property
    def seed(self) -> int:
        """The first four bytes (little-endian) of the sha256 of the case id."""
        return int.from_bytes(hashlib.sha256(self.id.encode()).digest()[:4], "little")


def expand_cases(
    make_case: Callable[..., Case],
    matrices: Iterable[tuple[str, Iterable[str], Iterable[str], Iterable[str], Iterable[str]]],
    edge_cases: Iterable[tuple[str, str, str, Iterable[str], str]],
    error_cases: Iterable[tuple[str, str, str, str, str]],
) -> list[Case]:
    """A family's cases: every combination of each (loss, dtypes, shapes, reductions, variants)
    matrix, each (loss, dtype, shape, reductions, variant) edge case once per reduction, and each
    (loss, shape, reduction, variant, error kind) error case in f64. `make_case(loss, dtype, shape,
    reduction, variant[, error_kind])` builds one case."""
    matrix = [
        make_case(loss, dtype, shape, reduction, variant)
        for loss, dtypes, shapes, reductions, variants in matrices
        for dtype in dtypes
        for shape in shapes
        for reduction in reductions
        for variant in variants
    ]
    edges = [
        make_case(loss, dtype, shape, reduction, variant)
        for loss, dtype, shape, reductions, variant in edge_cases
        for reduction in reductions
    ]
    errors = [make_case(loss, "f64", shape, reduction, variant, kind) for loss, shape, reduction, variant, kind in error_cases]
    return matrix + edges + errors


def parse_shape(token: str) -> tuple[str, tuple[int, ...]]:
    """Split a shape token into its axis letters and sizes: `N2C3H3W4` -> ("NCHW", (2, 3, 3, 4)).

    The token `S` stands for a 0-d tensor: ("", ()).
    """
    if token == "S":
        return "", ()
    if not _SHAPE_TOKEN.fullmatch(token):
        raise GenerationError(f"malformed shape token {token!r}")
    axes = _SHAPE_AXIS.findall(token)
    return "".join(letter for letter, _ in axes), tuple(int(size) for _, size in axes)


def one_of(*allowed: str) -> Callable[[str | None], str]:
    """A variant option parser that accepts exactly the listed values."""

    def parse(value: str | None) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {allowed}")
        return value

    return parse


def flag(value: str | None) -> bool:
    """A variant option parser for an option written without `=value`."""
    if value is not None:
        raise ValueError("a flag takes no value")
    return True


def split_variant(variant: str, order: list[str]) -> list[tuple[str, str | None]]:
    """The options of a variant id segment such as `weight,ignore_index=1`, as (key, value) pairs,
    the value None for an option written without "=value"; `default` has none.

    Fails on options not in `order`, and on repeated options or options out of that order.
    """
    if variant == "default":
        return []
    options = []
    previous = -1
    for part in variant.split(","):
        key, has_value, value = part.partition("=")
        if key not in order or order.index(key) <= previous:
            raise GenerationError(f"variant {variant!r}: unknown, repeated or misplaced option {key!r}")
        previous = order.index(key)
        options.append((key, value if has_value else None))
    return options


def parse_variant(variant: str, parsers: dict[str, Callable[[str | None], Any]], options: Callable[..., Any]) -> Any:
    """Parse a variant id segment such as `weight,ignore_index=1` into `options(**fields)`.

    `parsers` lists the option keys in the order a variant must list them, each with the parser of
    its value (given None when the option is written without "=value"); `default` means no option.
    Fails on unknown options or values and on options out of order.
    """
    fields: dict[str, Any] = {}
    for key, value in split_variant(variant, list(parsers)):
        try:
            fields[key] = parsers[key](value)
        except (TypeError, ValueError) as error:
            raise GenerationError(f"variant {variant!r}: option {key!r}: {error}") from error
    return options(**fields)


def configure_torch() -> None:
    """Make every anchor call reproducible: deterministic kernels, one CPU thread."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def _release(version: str) -> str:
    """Drop a local version suffix: "2.15.0+cu132" -> "2.15.0"."""
    return version.split("+", 1)[0]


def _source_files() -> list[str]:
    """The generator's source files, as sorted paths relative to scripts/."""
    package = [f"{PACKAGE}/{path.name}" for path in (SCRIPTS_DIR / PACKAGE).glob("*.py")]
    return sorted([ENTRY_POINT, *package])


def generator_info() -> dict[str, Any]:
    """The manifest's `generator` object: source hash and the versions of everything involved."""
    digest = hashlib.sha256()
    for relative in _source_files():
        digest.update((SCRIPTS_DIR / relative).read_bytes())
    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = _release(importlib.import_module(name).__version__)
        except ImportError:
            continue
    return {
        "script": f"scripts/{ENTRY_POINT}",
        "script_sha256": digest.hexdigest(),
        "python": platform.python_version(),
        "torch": _release(torch.__version__),
        "numpy": np.__version__,
        "device": "cpu",
        "libraries": libraries,
    }


def _save(out: Path, case_id: str, name: str, array: np.ndarray) -> dict[str, Any]:
    """Write `array` to `cases/<case_id>/<name>.npy` under `out`; return its manifest entry."""
    array = np.asarray(array, order="C")
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    data = buffer.getvalue()
    relative = f"cases/{case_id}/{name}.npy"
    path = out / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {
        "path": relative,
        "sha256": hashlib.sha256(data).hexdigest(),
        "dtype": str(array.dtype),
        "shape": list(array.shape),
    }


def _to_torch(name: str, array: np.ndarray, prediction: str) -> torch.Tensor:
    """A torch copy of `array`; a floating-point prediction requires grad."""
    tensor = torch.from_numpy(np.array(array, order="C"))
    if name == prediction and tensor.is_floating_point():
        tensor.requires_grad_(True)
    return tensor


def _values(case: Case, call: Call, inputs: dict[str, torch.Tensor], rng: np.random.Generator, out: Path) -> dict[str, Any]:
    """Run the anchor forward and backward; save grad_output, loss and grad_input."""
    loss = case.anchor(**inputs, **call.params)
    loss_values = loss.detach().numpy()
    # The loss's own dtype: some anchors compute in float32 whatever the prediction's dtype.
    dtype = loss_values.dtype
    if loss.dim() == 0:
        grad_output = np.asarray(rng.uniform(0.5, 2.0), dtype=dtype)
    else:
        grad_output = rng.standard_normal(tuple(loss.shape)).astype(dtype)
    (grad_input,) = torch.autograd.grad(loss, inputs[case.prediction], torch.from_numpy(grad_output.copy()))
    return {
        "outcome": "values",
        "grad_output": _save(out, case.id, "grad_output", grad_output),
        "loss": _save(out, case.id, "loss", loss_values),
        "grad_input": _save(out, case.id, "grad_input", grad_input.numpy()),
    }


def _error(case: Case, call: Call, inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Run the anchor, insist that it raises an error of the declared kind, and record it."""
    try:
        result = case.anchor(**inputs, **call.params)
    except Exception as error:  # whatever the anchor raises is the datum
        lines = str(error).splitlines()
        message = lines[0] if lines else ""
        if not ERROR_KINDS[case.error_kind].search(f"{type(error).__name__}: {message}"):
            raise GenerationError(
                f"{case.id}: declared {case.error_kind}, but the anchor raised "
                f"{type(error).__name__}: {message}"
            ) from error
        return {"outcome": "error", "kind": case.error_kind, "type": type(error).__name__, "message": message}
    raise GenerationError(f"{case.id}: declared {case.error_kind}, but the anchor returned {result}")


def run_case(case: Case, out: Path) -> dict[str, Any]:
    """Build, run and save one case under `out`; return its manifest entry."""
    rng = np.random.default_rng(case.seed)
    call = case.build(rng)
    inputs = {name: _to_torch(name, array, case.prediction) for name, array in call.tensors.items()}
    tensors = {name: _save(out, case.id, name, array) for name, array in call.tensors.items()}
    if case.error_kind is None:
        expected = _values(case, call, inputs, rng, out)
    else:
        expected = _error(case, call, inputs)
    return {
        "id": case.id,
        "loss": case.loss,
        "dtype": case.dtype,
        "shape": case.shape,
        "reduction": case.reduction,
        "variant": case.variant,
        "seed": case.seed,
        "params": call.params,
        "tensors": tensors,
        "expected": expected,
    }


def generate(cases: list[Case], out: Path) -> dict[str, Any]:
    """Write every case and the manifest into `out`, which must not exist or be empty.

    Returns the manifest. Any disagreement between a case and the anchor aborts the run.
    """
    counts = Counter(case.id for case in cases)
    duplicates = sorted(case_id for case_id, count in counts.items() if count > 1)
    if duplicates:
        raise GenerationError(f"duplicate case ids: {duplicates}")
    if out.exists() and any(out.iterdir()):
        raise GenerationError(f"output directory {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for case in sorted(cases, key=lambda case: case.id):
        try:
            entries.append(run_case(case, out))
        except GenerationError:
            raise
        except Exception as error:
            raise GenerationError(f"{case.id}: {type(error).__name__}: {error}") from error
    manifest = {"schema_version": SCHEMA_VERSION, "generator": generator_info(), "cases": entries}
    with open(out / "manifest.json", "w", encoding="utf-8") as file:
        json.dump(manifest, file, sort_keys=True, indent=2)
        file.write("\n")
    return manifest
