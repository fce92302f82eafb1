"""The textbook re-implementation of nn.CrossEntropyLoss: an nn.LogSoftmax over the class axis
followed by nn.NLLLoss. Certification shows exactly which options it lacks: it has no label
smoothing and no probability targets, so those cases are unsupported.

    segloss certify --cmd "scripts/.venv/bin/python scripts/adapters/logsoftmax_nll_module.py" \
        --known-failures scripts/adapters/known-failures/logsoftmax_nll_module.json
"""

import torch
from torch import nn

from segloss_adapter import Call, Unsupported, serve


def compute(request):
    if request.loss not in ("cross_entropy", "nll_loss"):
        raise Unsupported(f"{request.loss}: only cross_entropy and nll_loss")
    params = dict(request.params)
    if params.pop("label_smoothing", 0.0) > 0.0:
        raise Unsupported("nn.NLLLoss has no label smoothing")
    tensors = {name: torch.from_numpy(array) for name, array in request.tensors.items()}
    logits, target = tensors["input"], tensors["target"]
    if target.shape == logits.shape and request.loss == "cross_entropy":
        raise Unsupported("nn.NLLLoss takes class indices, not probability targets")
    if logits.is_floating_point():
        logits.requires_grad_(True)
    class_axis = 0 if logits.dim() == 1 else 1
    criterion = nn.NLLLoss(weight=tensors.get("weight"), **params)
    log_probs = nn.LogSoftmax(dim=class_axis)(logits) if request.loss == "cross_entropy" else logits
    loss = criterion(log_probs, target)
    grad_output = torch.ones_like(loss) if request.grad_output is None else torch.from_numpy(request.grad_output).to(loss.dtype)
    (grad,) = torch.autograd.grad(loss, logits, grad_output)
    return loss.detach().numpy(), grad.numpy()


if __name__ == "__main__":
    serve(
        "LogSoftmax + NLLLoss module",
        compute,
        calls=[Call("cross_entropy", "nn.NLLLoss(weight, ignore_index, reduction)(nn.LogSoftmax(dim=1)(input), target)", when="class indices")],
    )
