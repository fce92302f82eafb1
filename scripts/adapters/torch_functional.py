"""Certify PyTorch itself: the anchors the fixtures were generated from, called through the
protocol. It must pass every case; that proves the harness and the protocol right.

    segloss certify --cmd "scripts/.venv/bin/python scripts/adapters/torch_functional.py"

The `--library` option restricts it to one anchor library (torch, torchvision, smp, monai,
kornia), answering `unsupported` for the others' losses.
"""

import argparse
import inspect
import warnings

import torch

# One thread, as the generator computes the fixtures (scripts/segloss_gen/common.py): the cases are
# tiny, and a pool of threads per process only competes with the others under `certify --jobs`.
torch.set_num_threads(1)

from segloss_adapter import Unsupported, serve

LIBRARIES = ("torch", "torchvision", "smp", "monai", "kornia")


def library_of(loss: str) -> str:
    """torch.nn.functional names have no prefix; torchvision.ops ones are known by name."""
    if "." in loss:
        return loss.split(".", 1)[0]
    return "torchvision" if loss == "sigmoid_focal_loss" else "torch"


def anchor(loss: str):
    """The callable for a loss id, taking the case's tensors and params as keyword arguments."""
    library = library_of(loss)
    if library == "torch":
        return getattr(torch.nn.functional, loss)
    if library == "torchvision":
        import torchvision.ops

        return getattr(torchvision.ops, loss)
    name = loss.split(".", 1)[1]
    if library == "kornia":
        import kornia.losses

        return getattr(kornia.losses, name)
    if library == "smp":
        import segmentation_models_pytorch.losses as module
    elif library == "monai":
        import monai.losses as module
    else:
        raise Unsupported(f"unknown library of {loss}")
    loss_class = getattr(module, name)
    forward_arguments = set(inspect.signature(loss_class.forward).parameters) - {"self"}

    def call(params, tensors):
        # Tensor-valued constructor arguments (smp's weight, pos_weight) travel with the tensors.
        forward = {name: tensor for name, tensor in tensors.items() if name in forward_arguments}
        constructor = {name: tensor for name, tensor in tensors.items() if name not in forward_arguments}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return loss_class(**params, **constructor)(**forward)

    return call


def make_compute(libraries):
    def compute(request):
        if library_of(request.loss) not in libraries:
            raise Unsupported(f"{request.loss} is not in {', '.join(libraries)}")
        function = anchor(request.loss)
        tensors = {name: torch.from_numpy(array) for name, array in request.tensors.items()}
        prediction = tensors[request.prediction]
        if prediction.is_floating_point():
            prediction.requires_grad_(True)
        if "." in request.loss and not request.loss.startswith("kornia."):
            loss = function(request.params, tensors)
        else:
            loss = function(**tensors, **request.params)
        grad_output = torch.ones_like(loss) if request.grad_output is None else torch.from_numpy(request.grad_output).to(loss.dtype)
        (grad,) = torch.autograd.grad(loss, prediction, grad_output)
        return loss.detach().numpy(), grad.numpy()

    return compute


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", choices=LIBRARIES, action="append")
    args = parser.parse_args()
    libraries = args.library or list(LIBRARIES)
    name = "PyTorch functional" if libraries == ["torch"] else " + ".join(libraries)
    # torch imports most of autograd's machinery on the first backward (about 0.4 s): take it
    # here, before the hello, so that it counts as start-up rather than as the first case's time.
    leaf = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    torch.autograd.grad(torch.nn.functional.softplus(leaf).sum(), leaf)
    serve(name, make_compute(libraries))


if __name__ == "__main__":
    main()
