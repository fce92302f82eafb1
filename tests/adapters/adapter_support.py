"""What the test adapters share (Python standard library only): answering a case with the
reference through `segloss eval` (the binary named by SEGLOSS_BIN), small .npy files, and a record
of the adapters' process ids for the tests that check none is left behind."""

import ast
import json
import os
import re
import struct
import subprocess
from pathlib import Path


def npy_shape(path):
    """The shape in a .npy header."""
    data = Path(path).read_bytes()
    header_len = struct.unpack("<H", data[8:10])[0]
    return ast.literal_eval(data[10:10 + header_len].decode("latin1"))["shape"]


def read_scalar(path):
    """The value of a 0-d float64 .npy file."""
    data = Path(path).read_bytes()
    return struct.unpack("<d", data[-8:])[0]


def write_npy(path, descr, shape, data):
    """A version 1.0 .npy file whose header claims `descr` and `shape`, followed by `data`."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    Path(path).write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + data)


def write_scalar(path, value):
    """A 0-d float64 .npy file."""
    write_npy(path, "<f8", (), struct.pack("<d", value))


def evaluate(message, params):
    """Runs `segloss eval` on a case request, writing its results into the request's `out`."""
    command = [os.environ["SEGLOSS_BIN"], "eval", message["loss"], "--out", message["out"]]
    for name, path in message["tensors"].items():
        command += ["--tensor", f"{name}={path}"] if name not in ("input", "target") else [f"--{name}", path]
    if message["grad_output"] is not None:
        command += ["--grad-output", message["grad_output"]]
    for name, value in params.items():
        command += ["--param", f"{name}={json.dumps(value)}"]
    return subprocess.run(command, capture_output=True, text=True)


def rejection(ran):
    """The protocol answer fields for a `segloss eval` that refused its input: its one-line
    message and the segloss error kind that line ends with."""
    message = ran.stderr.strip()
    stated = re.search(r"\(error kind: (\w+)\)$", message)
    return {"status": "error", "message": message, **({"kind": stated.group(1)} if stated else {})}


def record(role, text):
    """Appends `role text` to the file named by SEGLOSS_ADAPTER_PIDS, when it is set."""
    path = os.environ.get("SEGLOSS_ADAPTER_PIDS")
    if path:
        with open(path, "a") as lines:
            lines.write(f"{role} {text}\n")


def recorded(role):
    """How many records of `role` there are."""
    path = os.environ.get("SEGLOSS_ADAPTER_PIDS")
    if not path or not os.path.exists(path):
        return 0
    return sum(line.startswith(role + " ") for line in Path(path).read_text().split("\n"))


def record_pid(role):
    """Records this process's pid under `role` (see `record`)."""
    record(role, os.getpid())
