"""Python side of the segloss certification protocol (docs/certify-protocol.md, versions 1 and 2:
version 2, spoken whenever segloss offers it, carries small arrays inline in the messages instead
of files).

An adapter is one function, `compute(request) -> (loss, grad_input)` over NumPy arrays, handed to
`serve(name, compute)`. It raises `Unsupported` for a loss or option it does not have, returns an
`Emulated` result when it reaches an option by emulation, a `ForwardOnly` result when it has no
gradient (a forward-only runtime: the gradient check is then unsupported, the forward judged), and
any other exception is reported as the implementation rejecting the input.
python/examples/template_adapter.py is a complete adapter to start from.

Stdout is the protocol's: from the moment `serve` starts until it returns, whatever the adapter
writes to stdout (`print`, a library's progress output, even a C extension or a child process
writing to file descriptor 1) goes to stderr instead, where segloss quotes it when the adapter
fails; only `serve` writes to the real stdout. Print nothing to stdout before calling `serve`:
segloss reads the first line as the answer to its hello.

A rejection is sent as `"<exception type>: <first line of its message>"`, and segloss passes it
only for the anchor's reason: a rejection may state that reason as a segloss error kind
(`invalid_reduction`, `target_dtype`, ...; scripts/segloss_gen/error_kinds.json lists them), and
one that states none is matched against that table's patterns for the anchor's kind. A library
that rejects for the anchor's reason in its own words can say so in two ways:

* raise `Rejected(kind, message)` from `compute`, for a rejection the adapter recognises where
  it happens;
* hand `serve` a table of the library's messages, each kind with regular expressions searched
  (`re.search`) in the `"<exception type>: <first line>"` of any other exception:

      serve(name, compute, kinds={"invalid_reduction": [r"^ValueError: Unsupported reduction: "]})

  the first kind, in the table's order, with a matching pattern is stated; a rejection that none
  matches states no kind.

State a kind only for a library check that names that reason (its own reduction, dtype or shape
check), never for a failure that merely happens on such an input (a broadcasting or indexing
error): a stated kind other than the anchor's fails as a wrong rejection.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, Tuple, Union

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

__all__ = [
    "PROTOCOL",
    "VERSION",
    "Call",
    "Compute",
    "Emulated",
    "ForwardOnly",
    "Outcome",
    "Rejected",
    "Request",
    "Unsupported",
    "serve",
]
__version__ = "0.1.0"

PROTOCOL = "segloss-certify"
VERSION = 2


class Unsupported(Exception):
    """The implementation does not have this loss or option; the message says which."""


class Rejected(Exception):
    """The implementation rejected the input for the reason `kind` names, a segloss error kind
    (scripts/segloss_gen/error_kinds.json); `message` is sent as it is (its first line), so give
    the library's own words, e.g. `Rejected("target_dtype", f"{type(error).__name__}: {error}")`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class Request:
    """One case: the catalog loss id (`segloss list`), the anchor's keyword parameters
    (`reduction`, `ignore_index`, ...), its tensor arguments by keyword name (`input`, `target`,
    `weight`, ... as NumPy arrays in the fixture's dtype), the name of the tensor to differentiate
    with respect to, and the vector of the vector-Jacobian product (float64, the loss's shape;
    None for ones)."""

    loss: str
    params: dict[str, Any]
    tensors: dict[str, NDArray[Any]]
    prediction: str
    grad_output: NDArray[np.float64] | None


@dataclass(frozen=True)
class Call:
    """A call the implementation makes for a catalog loss, as its users write it, declared in the
    hello so that reports and the Rosetta page (docs/rosetta.md) can show it beside the anchors':
    `Call("cross_entropy", "keras.losses.SparseCategoricalCrossentropy(from_logits=True)",
    when="class indices")`. `loss` must be a catalog id (segloss refuses the hello otherwise);
    `when` says for which cases, when not all."""

    loss: str
    call: str
    when: str | None = None

    def message(self) -> dict[str, str]:
        """The call as the hello carries it."""
        for field in ("loss", "call", "when"):
            value = getattr(self, field)
            if (value is not None or field != "when") and (not isinstance(value, str) or not value):
                raise ValueError(f"Call.{field} must be a non-empty string, not {value!r}")
        declared = {"loss": self.loss, "call": self.call}
        return declared if self.when is None else {**declared, "when": self.when}


@dataclass
class Emulated:
    """A result reached by emulating an option the implementation lacks (`how` says how)."""

    loss: ArrayLike
    grad_input: ArrayLike
    how: str


@dataclass
class ForwardOnly:
    """The loss alone, from an implementation without a gradient (`why` says why); `how` says
    how an option was emulated, if one was."""

    loss: ArrayLike
    why: str
    how: str | None = None


# What `compute` returns: `(loss, grad_input)` (anything `np.asarray` takes: the loss 0-d for the
# `mean` and `sum` reductions, the gradient of the prediction's shape; float32 or float64), or an
# `Emulated` or `ForwardOnly` result.
Outcome = Union[Tuple["ArrayLike", "ArrayLike"], Emulated, ForwardOnly]
# An adapter's function from one case to its outcome; it raises `Unsupported`, `Rejected` or the
# library's own exception.
Compute = Callable[[Request], Outcome]

# The form of a segloss error kind (snake_case).
_KIND = re.compile(r"[a-z][a-z0-9_]*")

# A kinds table as `serve` compiles it: (kind, pattern) pairs in the table's order.
_Table = Sequence[Tuple[str, "re.Pattern[str]"]]


def _reply(protocol: TextIO, message: dict[str, Any]) -> None:
    protocol.write(json.dumps(message) + "\n")
    protocol.flush()


def _first_line(text: str) -> str:
    lines = text.splitlines()
    return lines[0] if lines else ""


def _compile_kinds(kinds: Mapping[str, Sequence[str]] | None) -> _Table:
    """The kinds table as (kind, compiled pattern) pairs, in order; a kind that is not a snake_case
    identifier, a bare string instead of a list of patterns, or a pattern that does not compile is
    the adapter's bug and raises here, before the hello."""
    compiled: list[tuple[str, re.Pattern[str]]] = []
    for kind, patterns in (kinds or {}).items():
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise ValueError(f"kinds: {kind!r} is not a segloss error kind (snake_case)")
        if isinstance(patterns, str):
            raise ValueError(f"kinds: {kind} maps to a string, not a list of patterns")
        compiled.extend((kind, re.compile(pattern)) for pattern in patterns)
    return compiled


def _rejection(error: Exception, kinds: _Table) -> dict[str, Any]:
    """The `error` answer for an exception: `Rejected` states its own kind; any other exception is
    described as "<type>: <first line>" and states the first kind of the table that matches it."""
    if isinstance(error, Rejected):
        return {"status": "error", "message": _first_line(error.message), "kind": error.kind}
    said = f"{type(error).__name__}: {_first_line(str(error))}"
    kind = next((kind for kind, pattern in kinds if pattern.search(said)), None)
    answer = {"status": "error", "message": said}
    return answer if kind is None else {**answer, "kind": kind}


# The header segloss writes: its little-endian or byte descr, C order, the shape.
_SEGLOSS_HEADER = re.compile(r"\{'descr': '([<|][a-z][0-9])', 'fortran_order': False, 'shape': \(([0-9, ]*)\), \} *\n")


def _from_npy(data: bytes) -> NDArray[Any]:
    """The array of .npy bytes. segloss's own headers are read directly (np.load parses a header
    with ast.literal_eval, which costs more than a small array); anything else goes to np.load."""
    if data[:8] == b"\x93NUMPY\x01\x00" and len(data) >= 10:
        end = 10 + int.from_bytes(data[8:10], "little")
        match = _SEGLOSS_HEADER.fullmatch(data[10:end].decode("latin-1"))
        if match is not None:
            shape = tuple(int(size) for size in match[2].split(",") if size.strip())
            count = int(np.prod(shape, dtype=np.int64))
            return np.frombuffer(data, dtype=np.dtype(match[1]), count=count, offset=end).reshape(shape).copy()
    return np.load(io.BytesIO(data))


def _array(reference: str | dict[str, str]) -> NDArray[Any]:
    """A request's array: a path to a .npy file, or (version 2) {"npy": base64 of its bytes}."""
    if isinstance(reference, dict):
        return _from_npy(base64.b64decode(reference["npy"]))
    return np.load(reference)


def _result(out: Path, name: str, values: ArrayLike, inline_bytes: int) -> dict[str, Any]:
    """Writes a result: inline in the answer (version 2) when its .npy bytes are at most
    `inline_bytes` (0 in version 1), else as `name`.npy in `out`; returns the answer's entry."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values))
    if len(buffer.getbuffer()) <= inline_bytes:
        return {name: {"npy": base64.b64encode(buffer.getvalue()).decode("ascii")}}
    (out / f"{name}.npy").write_bytes(buffer.getvalue())
    return {}


def _answer(compute: Compute, message: dict[str, Any], kinds: _Table = ()) -> dict[str, Any]:
    request = Request(
        loss=message["loss"],
        params=message["params"],
        tensors={name: _array(reference) for name, reference in message["tensors"].items()},
        prediction=message["prediction"],
        grad_output=None if message["grad_output"] is None else _array(message["grad_output"]),
    )
    inline_bytes = int(message.get("inline_bytes", 0))
    result = {"type": "result", "seq": message["seq"]}
    try:
        outcome = compute(request)
    except Unsupported as reason:
        return {**result, "status": "unsupported", "reason": str(reason)}
    except Exception as error:  # the implementation rejecting the input is an answer, not a crash
        return {**result, **_rejection(error, kinds)}
    out = Path(message["out"])
    if isinstance(outcome, ForwardOnly):
        answer = {**result, "status": "ok", "no_gradient": outcome.why,
                  **_result(out, "loss", outcome.loss, inline_bytes)}
        return answer if outcome.how is None else {**answer, "emulated": outcome.how}
    loss, grad_input = (outcome.loss, outcome.grad_input) if isinstance(outcome, Emulated) else outcome
    answer = {**result, "status": "ok", **_result(out, "loss", loss, inline_bytes),
              **_result(out, "grad_input", grad_input, inline_bytes)}
    if isinstance(outcome, Emulated):
        return {**answer, "emulated": outcome.how}
    return answer


def _fileno(stream: TextIO | None) -> int | None:
    """The stream's file descriptor, or None for a stream without one (a test's StringIO)."""
    try:
        return None if stream is None else stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


@contextlib.contextmanager
def _protocol_stdout() -> Iterator[TextIO]:
    """Yields the stream for protocol lines, the real stdout, and sends everything else written to
    stdout meanwhile to stderr: `sys.stdout` is `sys.stderr`, and where both are file descriptors
    the stdout descriptor becomes a copy of stderr's (so that C extensions and child processes
    write there too) while the protocol keeps a private, non-inheritable copy of the original.
    Everything is restored on the way out."""
    real = sys.stdout
    out_fd, err_fd = _fileno(real), _fileno(sys.stderr)
    if out_fd is None or err_fd is None or out_fd == err_fd:
        if sys.stderr is not None:
            sys.stdout = sys.stderr
        try:
            yield real
        finally:
            sys.stdout = real
        return
    real.flush()
    saved = os.dup(out_fd)
    protocol = open(saved, "w", encoding="utf-8", newline="\n", closefd=True)
    os.dup2(err_fd, out_fd)
    sys.stdout = sys.stderr
    try:
        yield protocol
    finally:
        sys.stdout = real
        with contextlib.suppress(OSError):
            real.flush()
        with contextlib.suppress(OSError):
            protocol.flush()
        os.dup2(saved, out_fd)
        protocol.close()


def serve(
    name: str,
    compute: Compute,
    kinds: Mapping[str, Sequence[str]] | None = None,
    calls: Sequence[Call] = (),
) -> None:
    """Answer requests on stdin until it closes, naming the implementation `name` in the hello.
    `compute` answers one case (see `Request` and `Outcome`). `kinds` maps segloss error kinds to
    regular expressions over a rejection's "<exception type>: <first line>" (see the module's
    docstring): the first kind with a matching pattern is stated with the rejection. `calls` are
    the calls the implementation makes for the catalog losses it has (see `Call`), declared in the
    hello. While it runs, anything else written to stdout goes to stderr."""
    table = _compile_kinds(kinds)
    hello = {"type": "hello", "protocol": PROTOCOL, "name": name}
    declared = [call.message() for call in calls]
    if declared:
        hello["calls"] = declared
    with _protocol_stdout() as protocol:
        for line in sys.stdin:
            message = json.loads(line)
            if message.get("type") == "hello":
                # Version 2 when segloss offers it (a segloss that speaks only version 1 does not).
                version = VERSION if VERSION in message.get("versions", [1]) else 1
                _reply(protocol, {**hello, "version": version})
            elif message.get("type") == "case":
                try:
                    _reply(protocol, _answer(compute, message, table))
                except Exception:  # a bug in the adapter itself: say so on stderr and let segloss see the exit
                    traceback.print_exc()
                    sys.exit(1)
