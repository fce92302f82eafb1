"""Upstream defects the pinned anchors exhibit, attached to the cases that show them.

A case that shows a defect keeps the anchor's outcome as its expected value: it is what the anchor
does. Its manifest entry also records the corrected outcome, with the upstream reference, under
`alternatives` (docs/fixture-format.md): certification accepts either and says which an
implementation gave, so doing the right thing is never marked failing.

Each defect was read in the installed package's source and is checked again on every case it is
attached to: the generator insists that the anchor's outcome (a value or an error) differs from the
corrected one there, and that every defect is shown by at least one case.
"""

from dataclasses import dataclass
from typing import Any, Callable

import monai.losses
import numpy as np
import segmentation_models_pytorch.losses as smp_losses
import torch

from .common import Call, GenerationError


@dataclass(frozen=True)
class Defect:
    """One upstream defect: where it shows and what the corrected anchor computes.

    `shows(loss, call)` tells whether a case of `loss` with this call exhibits it; `corrected` is
    called exactly as the anchor is (`corrected(loss, **tensors, **params)`) and returns the loss
    the anchor would return without the defect.
    """

    id: str
    upstream: str
    anchor_does: str
    accepted: str
    shows: Callable[[str, Call], bool]
    corrected: Callable[..., torch.Tensor]

    def about(self) -> dict[str, str]:
        """The manifest's description of the defect."""
        return {"id": self.id, "upstream": self.upstream, "anchor_does": self.anchor_does, "accepted": self.accepted}


SOFT_LOSSES = {"smp.SoftBCEWithLogitsLoss": smp_losses.SoftBCEWithLogitsLoss, "smp.SoftCrossEntropyLoss": smp_losses.SoftCrossEntropyLoss}


def _smp_soft(loss: str, **arguments: Any) -> torch.Tensor:
    """smp's soft loss `loss` called as the anchor is (constructor keywords, then y_pred, y_true)."""
    y_pred, y_true = arguments.pop("y_pred"), arguments.pop("y_true")
    return SOFT_LOSSES[loss](**arguments)(y_pred, y_true)


def _smooth_factor_unset(loss: str, call: Call) -> bool:
    return loss == "smp.SoftCrossEntropyLoss" and call.params.get("smooth_factor") is None


def _smooth_factor_zero(loss: str, **arguments: Any) -> torch.Tensor:
    return _smp_soft(loss, **{**arguments, "smooth_factor": 0.0})


def _ignored_in_mean(loss: str, call: Call) -> bool:
    ignore_index = call.params.get("ignore_index", -100)
    return (
        loss in SOFT_LOSSES
        and call.params.get("reduction", "mean") == "mean"
        and call.params.get("smooth_factor", 0.0) is not None
        and ignore_index is not None
        and bool(np.any(call.tensors["y_true"] == ignore_index))
    )


def _mean_over_counted(loss: str, **arguments: Any) -> torch.Tensor:
    """The sum over every element divided by the number of elements whose target is not ignored."""
    counted = (arguments["y_true"] != arguments.get("ignore_index", -100)).sum()
    return _smp_soft(loss, **{**arguments, "reduction": "sum"}) / counted


class _PerClassFocalTversky(smp_losses.TverskyLoss):
    """smp's TverskyLoss with γ applied to each class's loss before the mean (smp PR #737)."""

    def aggregate_loss(self, loss: torch.Tensor) -> torch.Tensor:
        focal = loss**self.gamma
        if self.class_weights is None:
            return focal.mean()
        weights = self.class_weights.to(loss.device)
        if self.classes is not None:
            weights = weights[self.classes]
        return (focal * weights).sum() / weights.sum()


def _tversky_gamma(loss: str, call: Call) -> bool:
    """γ ≠ 1 over more than one class (with one, the mean is the class's loss)."""
    classes = call.params.get("classes")
    several = call.params.get("mode") != "binary" and (classes is None or len(classes) > 1)
    return loss == "smp.TverskyLoss" and call.params.get("gamma", 1.0) != 1.0 and several


def _per_class_gamma(loss: str, **arguments: Any) -> torch.Tensor:
    y_pred, y_true = arguments.pop("y_pred"), arguments.pop("y_true")
    return _PerClassFocalTversky(**arguments)(y_pred, y_true)


def _dice_focal_softmax(loss: str, call: Call) -> bool:
    return loss == "monai.DiceFocalLoss" and bool(call.params.get("softmax")) and call.params.get("lambda_focal", 1.0) != 0.0


def _focal_with_softmax(loss: str, **arguments: Any) -> torch.Tensor:
    """MONAI's DiceFocalLoss whose focal term takes the softmax its Dice term takes."""
    prediction, target = arguments.pop("input"), arguments.pop("target")
    combined = monai.losses.DiceFocalLoss(**arguments)
    combined.focal.use_softmax = True
    return combined(prediction, target)


DEFECTS = (
    Defect(
        id="smp-soft-ce-smooth-factor-unset",
        upstream="qubvel-org/segmentation_models.pytorch#372",
        anchor_does="smp.SoftCrossEntropyLoss() with its default smooth_factor=None raises TypeError (None / C)",
        accepted="the loss without smoothing, as smooth_factor=0 gives it",
        shows=_smooth_factor_unset,
        corrected=_smooth_factor_zero,
    ),
    Defect(
        id="smp-soft-loss-ignored-in-mean",
        upstream="qubvel-org/segmentation_models.pytorch#852",
        anchor_does="smp's soft BCE and CE keep ignored elements (as 0) in the mean's denominator",
        accepted="the mean over the elements whose target is not ignore_index",
        shows=_ignored_in_mean,
        corrected=_mean_over_counted,
    ),
    Defect(
        id="smp-tversky-gamma-on-mean",
        upstream="qubvel-org/segmentation_models.pytorch#734",
        anchor_does="smp.TverskyLoss raises the mean of the class losses to gamma",
        accepted="the mean of each class's loss raised to gamma, as the focal Tversky paper (Eq. 4) and PR #737 have it",
        shows=_tversky_gamma,
        corrected=_per_class_gamma,
    ),
    Defect(
        id="monai-dice-focal-ignores-softmax",
        upstream="Project-MONAI/MONAI#8242",
        anchor_does="monai.DiceFocalLoss(softmax=True) never passes use_softmax to its FocalLoss, whose term stays sigmoid",
        accepted="the focal term over the softmax, as the Dice term takes it",
        shows=_dice_focal_softmax,
        corrected=_focal_with_softmax,
    ),
)


def shown(loss: str, call: Call) -> list[Defect]:
    """The defects a case of `loss` with `call` exhibits."""
    return [defect for defect in DEFECTS if defect.shows(loss, call)]


def check_every_defect_shown(manifest_cases: list[dict[str, Any]]) -> None:
    """Insist that each defect is attached to at least one case."""
    attached = {alternative["defect"]["id"] for case in manifest_cases for alternative in case.get("alternatives", ())}
    missing = [defect.id for defect in DEFECTS if defect.id not in attached]
    if missing:
        raise GenerationError(f"no case shows the defects {missing}: add a case that does, or drop the defect")
