"""Certify fvcore 0.1.5.post20221221's `fvcore.nn.sigmoid_focal_loss` (the RetinaNet focal loss
torchvision's `sigmoid_focal_loss` was copied from) against the catalog's `sigmoid_focal_loss`
(torchvision.ops), with gradients from torch autograd.

    segloss certify --cmd "scripts/.venv-impl/bin/python scripts/adapters/fvcore_losses.py" \
        --tier float32 --known-failures scripts/adapters/known-failures/fvcore.json

`--tier float32`: fvcore's focal loss starts with inputs.float() and targets.float(), so it
computes, and returns, float32 whatever the input's dtype (the gradient flows back to a float64
input through the cast); its float64 cases are judged at the float32 tolerances, as burn's are.

Mapping: catalog `sigmoid_focal_loss` (torchvision.ops.sigmoid_focal_loss(inputs, targets,
alpha=0.25, gamma=2, reduction="none")) -> fvcore.nn.sigmoid_focal_loss(inputs, targets, alpha,
gamma, reduction). The defaults differ (fvcore's alpha is -1, no weighting; torchvision's 0.25), so
the adapter always passes alpha explicitly: the request's, or torchvision's 0.25 when the request
leaves it to the default; gamma (2 in both) and reduction ("none" in both) are passed as given.
Nothing is emulated. Every other loss id is unsupported.

Left out: fvcore.nn.sigmoid_focal_loss_star (FL*, -log(sigmoid(gamma * x * (2t - 1))) / gamma,
from the RetinaNet paper's appendix): no catalog id computes it. The TorchScript copies
(sigmoid_focal_loss_jit, sigmoid_focal_loss_star_jit) are not certified separately.
"""

import warnings

import torch

from segloss_adapter import Call, Unsupported, serve

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # fvcore.nn scripts its losses at import (torch.jit.script is deprecated)
    import fvcore
    from fvcore.nn import sigmoid_focal_loss

assert fvcore.__version__ == "0.1.5.post20221221", fvcore.__version__

TORCHVISION_ALPHA = 0.25


def compute(request):
    if request.loss != "sigmoid_focal_loss":
        raise Unsupported(f"fvcore.nn has no counterpart of {request.loss}")
    params = dict(request.params)
    kwargs = {"alpha": params.pop("alpha", TORCHVISION_ALPHA)}
    for name in ("gamma", "reduction"):
        if name in params:
            kwargs[name] = params.pop(name)
    if params:
        raise Unsupported(f"fvcore's sigmoid_focal_loss has no {', '.join(sorted(params))}")
    if set(request.tensors) != {"inputs", "targets"}:
        raise Unsupported(f"unexpected tensors {sorted(request.tensors)}")
    tensors = {name: torch.from_numpy(array) for name, array in request.tensors.items()}
    prediction = tensors[request.prediction]
    if prediction.is_floating_point():
        prediction.requires_grad_(True)
    loss = sigmoid_focal_loss(tensors["inputs"], tensors["targets"], **kwargs)
    weights = torch.ones_like(loss) if request.grad_output is None else torch.from_numpy(request.grad_output).to(loss.dtype)
    (grad,) = torch.autograd.grad(loss, prediction, weights)
    return loss.detach().numpy(), grad.numpy()


if __name__ == "__main__":
    serve(
        "fvcore 0.1.5.post20221221 (fvcore.nn.sigmoid_focal_loss)",
        compute,
        calls=[Call("sigmoid_focal_loss", "fvcore.nn.sigmoid_focal_loss(inputs, targets, alpha=alpha (0.25 when unset), gamma, reduction)")],
    )
