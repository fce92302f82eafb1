"""Certify ONNX's two loss operators as two runtimes execute them: ONNX Runtime's
`onnxruntime.InferenceSession` (CPU execution provider) and `onnx.reference.ReferenceEvaluator`,
the NumPy evaluator that ships with the onnx package. Both are forward-only: the loss is judged,
every gradient check is reported unsupported, saying why.

    segloss certify --cmd "scripts/.venv-impl/bin/python scripts/adapters/onnx_losses.py --runtime onnxruntime" \
        --known-failures scripts/adapters/known-failures/onnxruntime.json
    segloss certify --cmd "scripts/.venv-impl/bin/python scripts/adapters/onnx_losses.py --runtime reference" \
        --known-failures scripts/adapters/known-failures/onnx_reference.json

`scripts/.venv-impl` has onnxruntime 1.32.0 and onnx 1.23.2; the name each run reports carries the
installed versions, and the known-failure lists are for those.

Mapping. One single-node model per request, built with `onnx.helper` at opset 13 (the newest
SoftmaxCrossEntropyLoss; NegativeLogLikelihoodLoss-22 adds only bfloat16 and a load-time check of
the weight's length) and IR version 9 (ONNX Runtime 1.32.0 loads up to IR 14, onnx 1.23.2's
default, and refuses 15 and later), cached by loss, reduction, ignore_index, dtypes and ranks:

    cross_entropy  ->  SoftmaxCrossEntropyLoss(input, target[, weight])
    nll_loss       ->  NegativeLogLikelihoodLoss(input, target[, weight])

    reduction     the attribute, any string handed over as is (ONNX: none, sum, mean)
    ignore_index  the attribute; PyTorch's default -100 when the request has none (an ONNX node
                  without it ignores no class)
    weight        the optional third input

Every dimension of the model is symbolic and independent of the others (a model exported with
dynamic axes), so the operator as run, not load-time shape inference, decides whether input,
target and weight fit. Inputs (N, C, d1, ...) with targets (N, d1, ...) are handed over as they
are; PyTorch's unbatched (C) input with its 0-d target becomes (1, C) with (1) and the unreduced
loss is read back 0-d (plumbing: the operators need a batch axis). Every tensor keeps its dtype,
the target's and the weight's too (ONNX types class indices, Tind, as int32 or int64 and the weight
as the input's T): each runtime accepts or rejects other dtypes as it does, in its own words.

ONNX Runtime's inference build has no kernel of its own for these two operators: it runs their
ONNX function bodies (LogSoftmax, GatherElements, Gather, ReduceSum, ...), so what is certified
there is ONNX's function definition as ONNX Runtime executes it. The reference evaluator runs its
own NumPy code for each operator (onnx/reference/ops/op_*_loss.py).

What it cannot do:

* gradients: neither runtime has a backward (`ForwardOnly`: the gradient check is unsupported);
* label smoothing and probability targets (a target of the input's shape): the ONNX operators
  have neither, so those cases are unsupported;
* inputs of another float dtype than float32 and float64 (the corpus has none): unsupported;
* state a segloss error kind: it hands `serve` no kinds table, since the runtimes reject through
  ONNX's type constraints at load, the operators of a function body or NumPy's indexing, not a
  check that names PyTorch's reason, so a runtime that rejects an input for the anchor's reason in
  those words fails as a wrong rejection (the known-failure lists say which);
* every other loss id: unsupported.
"""

import argparse

import numpy as np
import onnx
from onnx import helper

from segloss_adapter import Call, ForwardOnly, Unsupported, serve

OPSET = 13
IR_VERSION = 9
OPERATORS = {"cross_entropy": "SoftmaxCrossEntropyLoss", "nll_loss": "NegativeLogLikelihoodLoss"}
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# torch.nn.functional.cross_entropy / nll_loss's default; ONNX without the attribute ignores nothing.
TORCH_IGNORE_INDEX = -100


def onnx_type(dtype: np.dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def build_model(operator, reduction, ignore_index, input_dtype, target_dtype, weight_dtype, input_rank, target_rank):
    """One node, every dimension symbolic and independent, so that the operator itself (not the
    graph's declared shapes) judges whether input, target and weight fit together."""
    names = ["input", "target"] + (["weight"] if weight_dtype is not None else [])
    node = helper.make_node(operator, names, ["loss"], reduction=reduction, ignore_index=ignore_index)
    inputs = [
        helper.make_tensor_value_info("input", onnx_type(input_dtype), [f"i{k}" for k in range(input_rank)]),
        helper.make_tensor_value_info("target", onnx_type(target_dtype), [f"t{k}" for k in range(target_rank)]),
    ]
    if weight_dtype is not None:
        inputs.append(helper.make_tensor_value_info("weight", onnx_type(weight_dtype), ["w0"]))
    loss_shape = [f"t{k}" for k in range(target_rank)] if reduction == "none" else []
    output = helper.make_tensor_value_info("loss", onnx_type(input_dtype), loss_shape)
    graph = helper.make_graph([node], f"segloss_{operator}", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="segloss")
    model.ir_version = IR_VERSION
    return model


class OnnxRuntime:
    def __init__(self):
        import onnxruntime

        self.ort = onnxruntime
        onnxruntime.set_default_logger_severity(3)  # errors only, and those reach us as exceptions
        self.name = f"ONNX Runtime {onnxruntime.__version__} (InferenceSession, CPU; opset {OPSET} loss operators)"
        self.no_gradient = (
            f"ONNX Runtime's inference session has no backward for SoftmaxCrossEntropyLoss or "
            f"NegativeLogLikelihoodLoss (the gradient graphs are in its training build, the separate "
            f"onnxruntime-training package, last released as 1.19.2 while this is {onnxruntime.__version__})"
        )

    def session(self, model):
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = self.ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return lambda feeds: session.run(["loss"], feeds)[0]


class ReferenceEvaluator:
    def __init__(self):
        from onnx.reference import ReferenceEvaluator as Evaluator

        self.evaluator = Evaluator
        self.name = f"onnx {onnx.__version__} ReferenceEvaluator (opset {OPSET} loss operators)"
        self.no_gradient = (
            "onnx.reference.ReferenceEvaluator evaluates the forward graph only: ONNX's one way to a "
            "backward of SoftmaxCrossEntropyLoss or NegativeLogLikelihoodLoss is the generic "
            "ai.onnx.preview.training Gradient operator, which the evaluator does not implement (of "
            "that domain it has Adagrad, Adam and Momentum)"
        )

    def session(self, model):
        evaluator = self.evaluator(model)
        return lambda feeds: evaluator.run(["loss"], feeds)[0]


RUNTIMES = {"onnxruntime": OnnxRuntime, "reference": ReferenceEvaluator}


def make_compute(runtime):
    sessions = {}

    def compute(request):
        if request.loss not in OPERATORS:
            raise Unsupported(f"{request.loss}: ONNX has SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss only")
        params = dict(request.params)
        reduction = params.pop("reduction", "mean")
        ignore_index = params.pop("ignore_index", TORCH_IGNORE_INDEX)
        if params.pop("label_smoothing", 0.0) != 0.0:
            raise Unsupported(f"{OPERATORS[request.loss]} has no label smoothing")
        if params:
            raise Unsupported(f"{OPERATORS[request.loss]} has no option {', '.join(sorted(params))}")
        tensors = dict(request.tensors)
        logits, target, weight = tensors.pop("input"), tensors.pop("target"), tensors.pop("weight", None)
        if tensors:
            raise Unsupported(f"{OPERATORS[request.loss]} has no tensor argument {', '.join(sorted(tensors))}")
        if request.loss == "cross_entropy" and logits.ndim >= 1 and target.shape == logits.shape:
            raise Unsupported("SoftmaxCrossEntropyLoss takes class indices, not probability targets")
        if logits.dtype.kind == "f" and logits.dtype not in FLOAT_DTYPES:
            raise Unsupported(f"the adapter certifies float32 and float64 inputs, not {logits.dtype}")
        unbatched = logits.ndim == 1
        if unbatched:  # PyTorch's (C) input: ONNX's operators need the batch axis
            logits, target = logits[np.newaxis], target[np.newaxis]
        key = (
            request.loss, reduction, ignore_index, logits.dtype, target.dtype,
            None if weight is None else weight.dtype, logits.ndim, target.ndim,
        )
        if key not in sessions:
            sessions[key] = runtime.session(build_model(OPERATORS[request.loss], *key[1:]))
        feeds = {"input": logits, "target": target}
        if weight is not None:
            feeds["weight"] = weight
        loss = np.asarray(sessions[key](feeds))
        if unbatched and reduction == "none":
            loss = loss.reshape(())
        return ForwardOnly(loss, runtime.no_gradient)

    return compute


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", choices=sorted(RUNTIMES), required=True)
    args = parser.parse_args()
    runtime = RUNTIMES[args.runtime]()
    serve(
        runtime.name,
        make_compute(runtime),
        calls=[
            Call("cross_entropy", "SoftmaxCrossEntropyLoss(input, target[, weight]; reduction, ignore_index) at opset 13", when="class indices"),
            Call("nll_loss", "NegativeLogLikelihoodLoss(input, target[, weight]; reduction, ignore_index) at opset 13"),
        ],
    )


if __name__ == "__main__":
    main()
