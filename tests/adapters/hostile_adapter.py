"""A hostile adapter for the certification tests; needs only the Python standard library and the
segloss binary (SEGLOSS_BIN). It answers every case with `segloss eval` (the reference), except the
case whose seq is its second argument (0 when not given), on which it misbehaves as its first
argument says:

  no-hello                never answers the hello (from the first start on)
  garbage-hello           answers the hello with a line that is not a hello
  no-hello-after-restart  exits on the case; adapters started after a case was asked never
                          answer the hello
  garbage                 answers with a line that is not JSON
  wrong-seq               answers with a seq that is not the case's
  extra-line              answers, then writes a log line and the answer again; and starts the
                          next case's answer with a repeat of this one
  endless-line            writes a line that never ends
  header-bomb             answers ok with a grad_input.npy whose header claims 2^40 elements
  fifo                    answers ok with loss.npy a FIFO
  dev-zero                answers ok with loss.npy a symbolic link to /dev/zero
  sleep                   sleeps for an hour
  exit                    exits with status 3
  fork                    starts a child that sleeps holding stdout, and exits
  no-files                answers ok without writing any file
  int64-grad              answers ok with an int64 grad_input.npy
  wrong-grad-shape        answers ok with grad_input.npy flattened to one dimension

Every adapter process and every child it starts records its pid (see adapter_support.record), and
`sleeping` before it sleeps; every case's `out` directory is recorded too.
"""

import json
import os
import struct
import sys
import time
from pathlib import Path

from adapter_support import evaluate, rejection, npy_shape, record, record_pid, recorded, write_npy

MODE = sys.argv[1]
SEQ = int(sys.argv[2]) if len(sys.argv) > 2 else 0
# Whether an earlier adapter of this run was asked a case.
RESTARTED = recorded("out") > 0
record_pid("adapter")


def send(line):
    """Writes one stdout line (a dict as JSON) and flushes it."""
    sys.stdout.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    sys.stdout.flush()


def sleep():
    record_pid("sleeping")
    time.sleep(3600)


def reference(message):
    """The reference's answer to a case, its results written."""
    ran = evaluate(message, message["params"])
    result = {"type": "result", "seq": message["seq"]}
    if ran.returncode != 0:
        return {**result, **rejection(ran)}
    return {**result, "status": "ok"}


def misbehave(message):
    out = Path(message["out"])
    seq = message["seq"]
    if MODE in ("no-hello-after-restart", "exit"):
        print(f"deliberate exit on case {seq}", file=sys.stderr)
        sys.exit(3)
    if MODE == "garbage":
        return send("this is not a JSON answer")
    if MODE == "wrong-seq":
        return send({**reference(message), "seq": seq + 7})
    if MODE == "endless-line":
        while True:
            sys.stdout.write("x" * 65536)
            sys.stdout.flush()
    if MODE == "sleep":
        return sleep()
    if MODE == "fork":
        if os.fork() == 0:
            sleep()
        os._exit(4)
    if MODE == "no-files":
        return send({"type": "result", "seq": seq, "status": "ok"})
    answer = reference(message)
    if MODE == "extra-line":
        # One write: the extra lines are there before the next request.
        line = json.dumps(answer)
        return send(f"{line}\na log line on stdout\n{line}")
    grad_input = out / "grad_input.npy"
    if MODE == "header-bomb":
        write_npy(grad_input, "<f8", (2 ** 40,), b"")
    if MODE in ("fifo", "dev-zero"):
        (out / "loss.npy").unlink()
        os.mkfifo(out / "loss.npy") if MODE == "fifo" else os.symlink("/dev/zero", out / "loss.npy")
    if MODE in ("int64-grad", "wrong-grad-shape"):
        shape = npy_shape(grad_input)
        count = 1
        for size in shape:
            count *= size
        if MODE == "int64-grad":
            write_npy(grad_input, "<i8", shape, struct.pack(f"<{count}q", *[0] * count))
        else:
            write_npy(grad_input, "<f8", (count,), struct.pack(f"<{count}d", *[0.0] * count))
    send(answer)


def hello():
    if MODE == "no-hello" or (MODE == "no-hello-after-restart" and RESTARTED):
        sleep()
    if MODE == "garbage-hello":
        return send("hello?")
    send({"type": "hello", "protocol": "segloss-certify", "version": 1, "name": f"hostile ({MODE})"})


for line in sys.stdin:
    message = json.loads(line)
    if message["type"] == "hello":
        hello()
        continue
    record("out", message["out"])
    if message["seq"] == SEQ:
        misbehave(message)
    else:
        if MODE == "extra-line" and message["seq"] == SEQ + 1:
            send({"type": "result", "seq": SEQ, "status": "ok"})
        send(reference(message))
