"""Unit tests of the Python protocol helper, the segloss_adapter package in python/src: how `serve`
answers a rejection, with the error kind a `Rejected` exception or the adapter's kinds table states,
and how it keeps stdout for the protocol. Standard library only (tests/certify.rs runs it with
python3): the cases here carry no tensors and end in rejections, so no array is loaded or saved,
and a stand-in module takes NumPy's place when NumPy is not installed."""

import base64
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import types
import unittest
from pathlib import Path
from unittest import mock

try:
    import numpy  # noqa: F401
except ImportError:  # the helper imports NumPy, and uses it here for nothing but annotations
    sys.modules["numpy"] = types.SimpleNamespace(ndarray=object)

# The helper as it is in the repository, whether or not it is installed.
HELPER = Path(__file__).resolve().parents[2] / "python" / "src"
sys.path.insert(0, str(HELPER))

from segloss_adapter import PROTOCOL, Call, Rejected, Unsupported, serve  # noqa: E402

KINDS = {
    "invalid_reduction": [r"^ValueError: Unsupported reduction: ", r"^ValueError: Invalid value for argument `reduction`"],
    "target_shape_mismatch": [r"^ValueError: Shape mismatch: got "],
    # Matches every ValueError: listed after the others, so that they win where they match.
    "unexpected_shape": [r"^ValueError: "],
}


def case(seq):
    return {"type": "case", "seq": seq, "loss": "cross_entropy", "params": {}, "tensors": {},
            "prediction": "input", "grad_output": None, "out": "unused"}


def run(raises, kinds=None):
    """The answers `serve` gives to a hello and to one case per exception in `raises`, raised by
    `compute` in turn."""
    errors = iter(raises)

    def compute(request):
        raise next(errors)

    lines = [{"type": "hello", "protocol": PROTOCOL, "version": 1}]
    lines += [case(seq) for seq in range(len(raises))]
    stdin = io.StringIO("".join(json.dumps(line) + "\n" for line in lines))
    stdout = io.StringIO()
    with mock.patch.object(sys, "stdin", stdin), mock.patch.object(sys, "stdout", stdout):
        serve("test adapter", compute, **({} if kinds is None else {"kinds": kinds}))
    hello, *answers = [json.loads(line) for line in stdout.getvalue().splitlines()]
    # segloss version 1 offers no other version: the helper speaks version 1 to it.
    assert hello == {"type": "hello", "protocol": PROTOCOL, "version": 1, "name": "test adapter"}
    return answers


def error(seq, message, kind=None):
    answer = {"type": "result", "seq": seq, "status": "error", "message": message}
    return answer if kind is None else {**answer, "kind": kind}


class StatingKinds(unittest.TestCase):
    def test_without_a_table_a_rejection_states_no_kind(self):
        self.assertEqual(run([ValueError("Unsupported reduction: avg")]),
                         [error(0, "ValueError: Unsupported reduction: avg")])

    def test_rejected_states_its_kind_with_its_message(self):
        answers = run([Rejected("target_dtype", "TypeError: labels must be integers\nsecond line")], KINDS)
        self.assertEqual(answers, [error(0, "TypeError: labels must be integers", "target_dtype")])

    def test_rejected_is_not_matched_against_the_table(self):
        answers = run([Rejected("input_dtype", "ValueError: Unsupported reduction: avg")], KINDS)
        self.assertEqual(answers, [error(0, "ValueError: Unsupported reduction: avg", "input_dtype")])

    def test_the_table_states_the_kind_whose_pattern_matches_type_and_first_line(self):
        answers = run([
            ValueError("Unsupported reduction: avg"),
            ValueError("Invalid value for argument `reduction`. Expected one of ...\nmore"),
            ValueError("Shape mismatch: got (2, 3) and (2, 1)."),
        ], KINDS)
        self.assertEqual(answers, [
            error(0, "ValueError: Unsupported reduction: avg", "invalid_reduction"),
            error(1, "ValueError: Invalid value for argument `reduction`. Expected one of ...", "invalid_reduction"),
            error(2, "ValueError: Shape mismatch: got (2, 3) and (2, 1).", "target_shape_mismatch"),
        ])

    def test_the_first_kind_in_the_table_that_matches_wins(self):
        answers = run([ValueError("Shape mismatch: got (2,) and (3,)."), ValueError("anything else")], KINDS)
        self.assertEqual([answer["kind"] for answer in answers], ["target_shape_mismatch", "unexpected_shape"])

    def test_a_rejection_no_pattern_matches_states_no_kind(self):
        answers = run([TypeError("Unsupported reduction: avg"), RuntimeError("")], KINDS)
        self.assertEqual(answers, [error(0, "TypeError: Unsupported reduction: avg"), error(1, "RuntimeError: ")])

    def test_later_lines_of_a_message_are_neither_sent_nor_matched(self):
        answers = run([TypeError("first line\nUnsupported reduction: avg")], {"invalid_reduction": [r"Unsupported reduction"]})
        self.assertEqual(answers, [error(0, "TypeError: first line")])

    def test_unsupported_stays_unsupported_whatever_the_table_says(self):
        answers = run([Unsupported("Unsupported reduction: avg")], {"invalid_reduction": [r"Unsupported reduction"]})
        self.assertEqual(answers, [{"type": "result", "seq": 0, "status": "unsupported",
                                    "reason": "Unsupported reduction: avg"}])

    def test_a_malformed_table_fails_before_the_hello(self):
        malformed = [({"Invalid Reduction": [r"x"]}, ValueError), ({"invalid_reduction": r"x"}, ValueError),
                     ({"invalid_reduction": [r"("]}, re.error)]
        for kinds, raised in malformed:
            hello = json.dumps({"type": "hello", "protocol": PROTOCOL, "version": 1}) + "\n"
            stdout = io.StringIO()
            with self.subTest(kinds=kinds), mock.patch.object(sys, "stdin", io.StringIO(hello)), \
                    mock.patch.object(sys, "stdout", stdout), self.assertRaises(raised):
                serve("test adapter", lambda request: None, kinds=kinds)
            self.assertEqual(stdout.getvalue(), "")


class DeclaredCalls(unittest.TestCase):
    def hello(self, calls):
        line = json.dumps({"type": "hello", "protocol": PROTOCOL, "version": 1}) + "\n"
        stdout = io.StringIO()
        with mock.patch.object(sys, "stdin", io.StringIO(line)), mock.patch.object(sys, "stdout", stdout):
            serve("test adapter", lambda request: None, calls=calls)
        return json.loads(stdout.getvalue())

    def test_the_hello_declares_the_calls_in_order(self):
        hello = self.hello([Call("cross_entropy", "lib.ce(logits, labels)", when="class indices"),
                            Call("nll_loss", "lib.nll(log_probs, labels)")])
        self.assertEqual(hello["calls"], [
            {"loss": "cross_entropy", "call": "lib.ce(logits, labels)", "when": "class indices"},
            {"loss": "nll_loss", "call": "lib.nll(log_probs, labels)"},
        ])

    def test_without_calls_the_hello_has_none(self):
        self.assertNotIn("calls", self.hello(()))

    def test_a_malformed_call_fails_before_the_hello(self):
        for call in (Call("", "f()"), Call("cross_entropy", None), Call("cross_entropy", "f()", when="")):
            line = json.dumps({"type": "hello", "protocol": PROTOCOL, "version": 1}) + "\n"
            stdout = io.StringIO()
            with self.subTest(call=call), mock.patch.object(sys, "stdin", io.StringIO(line)), \
                    mock.patch.object(sys, "stdout", stdout), self.assertRaises(ValueError):
                serve("test adapter", lambda request: None, calls=[call])
            self.assertEqual(stdout.getvalue(), "")


class ProtocolVersion2(unittest.TestCase):
    """Version 2, spoken when segloss offers it: arrays inline both ways, files beyond the limit.
    Needs NumPy (CI's python3 has none: skipped there; `cargo test --test certify -- --ignored`
    runs the template adapter through it with the generator's virtualenv)."""

    def setUp(self):
        if isinstance(sys.modules["numpy"], types.SimpleNamespace):
            self.skipTest("needs NumPy")

    @staticmethod
    def inline(array):
        import numpy as np
        buffer = io.BytesIO()
        np.save(buffer, array)
        return {"npy": base64.b64encode(buffer.getvalue()).decode()}

    @staticmethod
    def decoded(reference):
        import numpy as np
        return np.load(io.BytesIO(base64.b64decode(reference["npy"])))

    def test_arrays_travel_inline_and_large_results_as_files(self):
        import numpy as np
        seen = {}

        def compute(request):
            seen.update(request.tensors)
            return np.float64(request.tensors["input"].sum()), np.full_like(request.tensors["input"], 2.0)

        with tempfile.TemporaryDirectory() as out:
            x = np.arange(6, dtype=np.float32).reshape(2, 3)
            lines = [{"type": "hello", "protocol": PROTOCOL, "version": 1, "versions": [1, 2]}]
            for seq, inline_bytes in enumerate([1 << 16, 100]):
                lines.append({"type": "case", "seq": seq, "loss": "cross_entropy", "params": {},
                              "tensors": {"input": self.inline(x), "target": self.inline(np.array([0, 2]))},
                              "prediction": "input", "grad_output": None, "out": out,
                              "inline_bytes": inline_bytes})
            stdin = io.StringIO("".join(json.dumps(line) + "\n" for line in lines))
            stdout = io.StringIO()
            with mock.patch.object(sys, "stdin", stdin), mock.patch.object(sys, "stdout", stdout):
                serve("test adapter", compute)
            hello, small, large = [json.loads(line) for line in stdout.getvalue().splitlines()]
            self.assertEqual(hello["version"], 2)
            np.testing.assert_array_equal(seen["input"], x)
            np.testing.assert_array_equal(seen["target"], [0, 2])
            self.assertEqual(self.decoded(small["loss"]), 15.0)
            np.testing.assert_array_equal(self.decoded(small["grad_input"]), np.full((2, 3), 2.0, np.float32))
            # Beyond inline_bytes (100: a .npy header alone is 128 bytes) the results are files.
            self.assertNotIn("loss", large)
            self.assertEqual(float(np.load(Path(out) / "loss.npy")), 15.0)
            self.assertEqual(np.load(Path(out) / "grad_input.npy").shape, (2, 3))


# An adapter whose `compute` writes to stdout in every way a library can, around `serve`.
NOISY_ADAPTER = textwrap.dedent("""
    import os, subprocess, sys, types
    try:
        import numpy
    except ImportError:
        sys.modules["numpy"] = types.SimpleNamespace(ndarray=object)
    sys.path.insert(0, sys.argv[1])
    from segloss_adapter import Unsupported, serve

    def compute(request):
        print("a stray print")
        sys.stdout.write("a write to sys.stdout\\n")
        os.write(1, b"a write to file descriptor 1\\n")
        subprocess.run([sys.executable, "-c", "print('a child process')"], check=True)
        raise Unsupported("nothing")

    serve("noisy", compute)
    print("after serve")
""")


class StdoutIsTheProtocols(unittest.TestCase):
    def test_prints_in_compute_go_to_stderr_and_stdout_comes_back(self):
        def compute(request):
            print("a stray print")
            raise Unsupported("nothing")

        lines = [{"type": "hello", "protocol": PROTOCOL, "version": 1}, case(0)]
        stdin = io.StringIO("".join(json.dumps(line) + "\n" for line in lines))
        stdout, stderr = io.StringIO(), io.StringIO()
        with mock.patch.object(sys, "stdin", stdin), mock.patch.object(sys, "stdout", stdout), \
                mock.patch.object(sys, "stderr", stderr):
            serve("test adapter", compute)
            self.assertIs(sys.stdout, stdout)
        self.assertEqual([json.loads(line)["type"] for line in stdout.getvalue().splitlines()], ["hello", "result"])
        self.assertEqual(stderr.getvalue(), "a stray print\n")

    def test_writes_to_file_descriptor_1_and_from_child_processes_go_to_stderr(self):
        lines = [{"type": "hello", "protocol": PROTOCOL, "version": 1}, case(0), case(1)]
        ran = subprocess.run([sys.executable, "-c", NOISY_ADAPTER, str(HELPER)], text=True, capture_output=True,
                             input="".join(json.dumps(line) + "\n" for line in lines), timeout=60,
                             env={**os.environ, "PYTHONUNBUFFERED": ""})
        self.assertEqual(ran.returncode, 0, ran.stderr)
        *protocol, after = ran.stdout.splitlines()
        self.assertEqual([json.loads(line) for line in protocol], [
            {"type": "hello", "protocol": PROTOCOL, "version": 1, "name": "noisy"},
            {"type": "result", "seq": 0, "status": "unsupported", "reason": "nothing"},
            {"type": "result", "seq": 1, "status": "unsupported", "reason": "nothing"},
        ])
        self.assertEqual(after, "after serve")
        for stray in ["a stray print", "a write to sys.stdout", "a write to file descriptor 1", "a child process"]:
            self.assertEqual(ran.stderr.count(stray), 2, ran.stderr)


if __name__ == "__main__":
    unittest.main()
