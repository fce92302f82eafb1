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

In every other mode its hello declares the calls it makes (the reference's, through `segloss eval`).
"""

import json
import sys
import time
from pathlib import Path

from adapter_support import evaluate, rejection, npy_shape, read_scalar, record_pid, write_scalar

MODE = sys.argv[1]


def answer(message):
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


record_pid("adapter")
for line in sys.stdin:
    message = json.loads(line)
    if message["type"] == "hello":
        loss = "no_such_loss" if MODE == "bad-calls" else "cross_entropy"
        calls = [{"loss": loss, "call": "segloss eval cross_entropy", "when": "every case"},
                 {"loss": "nll_loss", "call": "segloss eval nll_loss"}]
        reply = json.dumps({"type": "hello", "protocol": "segloss-certify", "version": 1, "name": f"broken ({MODE})",
                            "calls": calls})
    else:
        reply = answer(message)
    sys.stdout.write(reply + "\n")
    sys.stdout.flush()
