"""Python side of the segloss certification protocol (docs/certify-protocol.md, version 1).

An adapter is one function, `compute(request) -> (loss, grad_input)` over NumPy arrays, handed to
`serve(name, compute)`. It raises `Unsupported` for a loss or option it does not have, returns an
`Emulated` result when it reaches an option by emulation, a `ForwardOnly` result when it has no
gradient (a forward-only runtime: the gradient check is then unsupported, the forward judged), and
any other exception is reported as the implementation rejecting the input.
"""

import json
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROTOCOL = "segloss-certify"
VERSION = 1


class Unsupported(Exception):
    """The implementation does not have this loss or option; the message says which."""


@dataclass
class Request:
    """One case: the loss id, keyword parameters, tensors by keyword name, and the gradient's
    prediction name and grad_output (None for ones)."""

    loss: str
    params: dict
    tensors: dict
    prediction: str
    grad_output: "np.ndarray | None"


@dataclass
class Emulated:
    """A result reached by emulating an option the implementation lacks (`how` says how)."""

    loss: np.ndarray
    grad_input: np.ndarray
    how: str


@dataclass
class ForwardOnly:
    """The loss alone, from an implementation without a gradient (`why` says why); `how` says
    how an option was emulated, if one was."""

    loss: np.ndarray
    why: str
    how: "str | None" = None


def _reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _answer(compute, message: dict) -> dict:
    request = Request(
        loss=message["loss"],
        params=message["params"],
        tensors={name: np.load(path) for name, path in message["tensors"].items()},
        prediction=message["prediction"],
        grad_output=None if message["grad_output"] is None else np.load(message["grad_output"]),
    )
    result = {"type": "result", "seq": message["seq"]}
    try:
        outcome = compute(request)
    except Unsupported as reason:
        return {**result, "status": "unsupported", "reason": str(reason)}
    except Exception as error:  # the implementation rejecting the input is an answer, not a crash
        lines = str(error).splitlines()
        return {**result, "status": "error", "message": f"{type(error).__name__}: {lines[0] if lines else ''}"}
    out = Path(message["out"])
    if isinstance(outcome, ForwardOnly):
        np.save(out / "loss.npy", np.asarray(outcome.loss))
        answer = {**result, "status": "ok", "no_gradient": outcome.why}
        return answer if outcome.how is None else {**answer, "emulated": outcome.how}
    loss, grad_input = (outcome.loss, outcome.grad_input) if isinstance(outcome, Emulated) else outcome
    np.save(out / "loss.npy", np.asarray(loss))
    np.save(out / "grad_input.npy", np.asarray(grad_input))
    if isinstance(outcome, Emulated):
        return {**result, "status": "ok", "emulated": outcome.how}
    return {**result, "status": "ok"}


def serve(name: str, compute) -> None:
    """Answer requests on stdin until it closes."""
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("type") == "hello":
            _reply({"type": "hello", "protocol": PROTOCOL, "version": VERSION, "name": name})
        elif message.get("type") == "case":
            try:
                _reply(_answer(compute, message))
            except Exception:  # a bug in the adapter itself: say so on stderr and let segloss see the exit
                traceback.print_exc()
                sys.exit(1)
