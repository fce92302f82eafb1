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

#: segloss error kinds and the regex "<exception type>: <message>" must match for a case to declare
#: that kind. The table is shared with segloss certify, which judges rejections by it.
ERROR_KINDS_FILE = Path(__file__).resolve().parent / "error_kinds.json"
ERROR_KINDS = {
    kind: re.compile("|".join(patterns))
    for kind, patterns in json.loads(ERROR_KINDS_FILE.read_text(encoding="utf-8"))["kinds"].items()
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
    """The generator's source files (its Python modules and data tables), as sorted paths relative
    to scripts/."""
    package_dir = SCRIPTS_DIR / PACKAGE
    package = [f"{PACKAGE}/{path.name}" for pattern in ("*.py", "*.json") for path in package_dir.glob(pattern)]
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


def _values(
    case: Case,
    call: Call,
    inputs: dict[str, torch.Tensor],
    rng: np.random.Generator,
    out: Path,
    anchor: Callable[..., torch.Tensor] | None = None,
    prefix: str = "",
    grad_output: np.ndarray | None = None,
) -> dict[str, Any]:
    """Run the anchor (or `anchor`) forward and backward; save grad_output, loss and grad_input,
    their file names starting with `prefix`. The grad_output is drawn from `rng` unless given."""
    loss = (anchor or case.anchor)(**inputs, **call.params)
    loss_values = loss.detach().numpy()
    # The loss's own dtype: some anchors compute in float32 whatever the prediction's dtype.
    dtype = loss_values.dtype
    if grad_output is not None:
        grad_output = grad_output.astype(dtype)
    elif loss.dim() == 0:
        grad_output = np.asarray(rng.uniform(0.5, 2.0), dtype=dtype)
    else:
        grad_output = rng.standard_normal(tuple(loss.shape)).astype(dtype)
    (grad_input,) = torch.autograd.grad(loss, inputs[case.prediction], torch.from_numpy(grad_output.copy()))
    return {
        "outcome": "values",
        "grad_output": _save(out, case.id, f"{prefix}grad_output", grad_output),
        "loss": _save(out, case.id, f"{prefix}loss", loss_values),
        "grad_input": _save(out, case.id, f"{prefix}grad_input", grad_input.numpy()),
    }


def _alternative(
    case: Case, defect: Any, call: Call, inputs: dict[str, torch.Tensor], expected: dict[str, Any], rng: np.random.Generator, out: Path
) -> dict[str, Any] | None:
    """The corrected outcome of an upstream defect (defects.Defect) at the case, for the anchor's
    grad_output when it returned values; insists that it differs from the anchor's outcome. None
    where the anchor raised and the corrected anchor raises too: the input is invalid either way,
    so the case does not show the defect."""

    def corrected(**arguments: Any) -> torch.Tensor:
        return defect.corrected(case.loss, **arguments)

    anchor_values = expected["outcome"] == "values"
    grad_output = np.load(out / expected["grad_output"]["path"]) if anchor_values else None
    try:
        values = _values(case, call, inputs, rng, out, corrected, f"{defect.id}.", grad_output)
    except Exception:
        if anchor_values:
            raise
        return None
    del values["outcome"]
    if anchor_values and all(
        np.array_equal(np.load(out / expected[name]["path"]), np.load(out / values[name]["path"]), equal_nan=True)
        for name in ("loss", "grad_input")
    ):
        raise GenerationError(f"{case.id}: defect {defect.id} is attached, but the corrected anchor gives the anchor's values")
    return {"defect": defect.about(), "values": values}


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


def run_case(case: Case, out: Path, defects: Callable[[str, Call], list[Any]]) -> dict[str, Any]:
    """Build, run and save one case under `out`; return its manifest entry. `defects(loss, call)`
    lists the upstream defects the case shows, whose corrected outcomes the entry records."""
    rng = np.random.default_rng(case.seed)
    call = case.build(rng)
    inputs = {name: _to_torch(name, array, case.prediction) for name, array in call.tensors.items()}
    tensors = {name: _save(out, case.id, name, array) for name, array in call.tensors.items()}
    if case.error_kind is None:
        expected = _values(case, call, inputs, rng, out)
    else:
        expected = _error(case, call, inputs)
    entry = {
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
    alternatives = [
        alternative
        for defect in defects(case.loss, call)
        if (alternative := _alternative(case, defect, call, inputs, expected, rng, out)) is not None
    ]
    if alternatives:
        entry["alternatives"] = alternatives
    return entry


def generate(
    cases: list[Case],
    out: Path,
    defects: Callable[[str, Call], list[Any]],
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Write every case and the manifest into `out`, which must not exist or be empty;
    `defects(loss, call)` lists the upstream defects a case shows (`run_case`). Cases run in the
    order of their ids, so one loss's cases follow each other: `progress(loss, its cases, cases
    done)`, when given, is called after each loss's last case.

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
    ordered = sorted(cases, key=lambda case: case.id)
    first_of_loss = 0
    for done, case in enumerate(ordered, start=1):
        try:
            entries.append(run_case(case, out, defects))
        except GenerationError:
            raise
        except Exception as error:
            raise GenerationError(f"{case.id}: {type(error).__name__}: {error}") from error
        if done == len(ordered) or ordered[done].loss != case.loss:
            if progress is not None:
                progress(case.loss, done - first_of_loss, done)
            first_of_loss = done
    manifest = {"schema_version": SCHEMA_VERSION, "generator": generator_info(), "cases": entries}
    with open(out / "manifest.json", "w", encoding="utf-8") as file:
        json.dump(manifest, file, sort_keys=True, indent=2)
        file.write("\n")
    return manifest
