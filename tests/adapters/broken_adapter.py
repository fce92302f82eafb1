"""A deliberately broken adapter for the certification tests; needs only the Python standard
library and the segloss binary (SEGLOSS_BIN). It answers every case with `segloss eval` (the
reference), except for one misbehaviour chosen by its argument:

  wrong-mean  for reduction mean, divides the sum by the number of target positions (ignoring
              class weights and ignore_index) instead of the convention's denominator
  crash       exits on cases with a weight
  hang        never answers cases with reduction sum
  garbage     answers cases with reduction none with a line that is not JSON
  forward-only  answers with the reference's loss alone and `no_gradient` (a forward-only runtime)
  bad-calls   declares a call of a loss the catalog does not have in its hello
  v2          speaks protocol version 2: takes the arrays segloss sends inline, and answers the
              cases of even sequence number inline, the others with files
  v2-lazy     speaks version 2, and answers every third case (sequence number 1 mod 3) "ok"
              without writing any result, inline or as a file

In every other mode its hello declares the calls it makes (the reference's, through `segloss eval`).
"""

import base64
import json
import sys
import tempfile
import time
from pathlib import Path

from adapter_support import evaluate, rejection, npy_shape, read_scalar, record_pid, write_scalar

MODE = sys.argv[1]


def materialized(message, scratch):
    """The request with its inline arrays (version 2) written to files in `scratch`, as
    `segloss eval` reads them."""
    def path_of(name, reference):
        if isinstance(reference, str):
            return reference
        path = Path(scratch) / f"{name}.npy"
        path.write_bytes(base64.b64decode(reference["npy"]))
        return str(path)
    grad_output = message["grad_output"]
    return {**message,
            "tensors": {name: path_of(name, ref) for name, ref in message["tensors"].items()},
            "grad_output": None if grad_output is None else path_of("grad_output", grad_output)}


def answer(message):
    if MODE.startswith("v2"):
        with tempfile.TemporaryDirectory() as scratch:
            return answer_v2(materialized(message, scratch))
    params = dict(message["params"])
    reduction = params.get("reduction", "mean")
    if MODE == "crash" and "weight" in message["tensors"]:
        sys.exit("deliberate crash on a weighted case")
    if MODE == "hang" and reduction == "sum":
        time.sleep(3600)
    if MODE == "garbage" and reduction == "none":
        return "this is not a JSON answer"
    scale = 1.0
    if MODE == "wrong-mean" and reduction == "mean":
        params["reduction"] = "sum"
        positions = 1
        for size in npy_shape(message["tensors"]["target"]):
            positions *= size
        scale = 1.0 / positions
    ran = evaluate(message, params)
    result = {"type": "result", "seq": message["seq"]}
    if ran.returncode != 0:
        return json.dumps({**result, **rejection(ran)})
    if MODE == "forward-only":
        (Path(message["out"]) / "grad_input.npy").unlink()
        return json.dumps({**result, "status": "ok", "no_gradient": "a forward-only runtime"})
    if scale != 1.0:
        out = Path(message["out"])
        # The gradient is left as for the sum: wrong too, and the loss shows the denominator.
        write_scalar(out / "loss.npy", read_scalar(out / "loss.npy") * scale)
    return json.dumps({**result, "status": "ok"})


def answer_v2(message):
    ran = evaluate(message, dict(message["params"]))
    result = {"type": "result", "seq": message["seq"]}
    if ran.returncode != 0:
        return json.dumps({**result, **rejection(ran)})
    out = Path(message["out"])
    if MODE == "v2-lazy" and message["seq"] % 3 == 1:
        for name in ("loss.npy", "grad_input.npy"):
            (out / name).unlink()
        return json.dumps({**result, "status": "ok"})
    if MODE == "v2" and message["seq"] % 2 == 0:
        inline = {name: {"npy": base64.b64encode((out / f"{name}.npy").read_bytes()).decode()}
                  for name in ("loss", "grad_input")}
        for name in ("loss.npy", "grad_input.npy"):
            (out / name).unlink()
        return json.dumps({**result, "status": "ok", **inline})
    return json.dumps({**result, "status": "ok"})


record_pid("adapter")
for line in sys.stdin:
    message = json.loads(line)
    if message["type"] == "hello":
        loss = "no_such_loss" if MODE == "bad-calls" else "cross_entropy"
        calls = [{"loss": loss, "call": "segloss eval cross_entropy", "when": "every case"},
                 {"loss": "nll_loss", "call": "segloss eval nll_loss"}]
        version = 2 if MODE.startswith("v2") and 2 in message.get("versions", []) else 1
        reply = json.dumps({"type": "hello", "protocol": "segloss-certify", "version": version,
                            "name": f"broken ({MODE})", "calls": calls})
    else:
        reply = answer(message)
    sys.stdout.write(reply + "\n")
    sys.stdout.flush()
