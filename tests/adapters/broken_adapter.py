"""A deliberately broken adapter for the certification tests; needs only the Python standard
library and the segloss binary (SEGLOSS_BIN). It answers every case with `segloss eval` (the
reference), except for one misbehaviour chosen by its argument:

  wrong-mean  for reduction mean, divides the sum by the number of target positions (ignoring
              class weights and ignore_index) instead of the convention's denominator
  crash       exits on cases with a weight
  hang        never answers cases with reduction sum
  garbage     answers cases with reduction none with a line that is not JSON
"""

import ast
import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

MODE = sys.argv[1]
BINARY = os.environ["SEGLOSS_BIN"]


def npy_shape(path):
    """The shape in a .npy header."""
    data = Path(path).read_bytes()
    header_len = struct.unpack("<H", data[8:10])[0]
    return ast.literal_eval(data[10:10 + header_len].decode("latin1"))["shape"]


def read_scalar(path):
    """The value of a 0-d float64 .npy file."""
    data = Path(path).read_bytes()
    return struct.unpack("<d", data[-8:])[0]


def write_scalar(path, value):
    """A 0-d float64 .npy file."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (), }"
    header = header + " " * (64 - 10 - len(header) - 1) + "\n"
    Path(path).write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + struct.pack("<d", value))


def evaluate(message, params):
    command = [BINARY, "eval", message["loss"], "--out", message["out"]]
    for name, path in message["tensors"].items():
        command += ["--tensor", f"{name}={path}"] if name not in ("input", "target") else [f"--{name}", path]
    if message["grad_output"] is not None:
        command += ["--grad-output", message["grad_output"]]
    for name, value in params.items():
        command += ["--param", f"{name}={json.dumps(value)}"]
    return subprocess.run(command, capture_output=True, text=True)


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
        # `segloss eval` ends its one-line error with the segloss error kind.
        stated = re.search(r"\(error kind: (\w+)\)$", ran.stderr.strip())
        kind = {"kind": stated.group(1)} if stated else {}
        return json.dumps({**result, "status": "error", "message": ran.stderr.strip(), **kind})
    if scale != 1.0:
        out = Path(message["out"])
        # The gradient is left as for the sum: wrong too, and the loss shows the denominator.
        write_scalar(out / "loss.npy", read_scalar(out / "loss.npy") * scale)
    return json.dumps({**result, "status": "ok"})


for line in sys.stdin:
    message = json.loads(line)
    if message["type"] == "hello":
        reply = json.dumps({"type": "hello", "protocol": "segloss-certify", "version": 1, "name": f"broken ({MODE})"})
    else:
        reply = answer(message)
    sys.stdout.write(reply + "\n")
    sys.stdout.flush()
