//! Anchor artefacts: where an anchor returns NaN, ±∞ or 0 although the exact value of its own
//! formula at the same inputs is finite and different. The fixture keeps the anchor's value (it is
//! what the anchor does); the reference returns the exact value; a check passes with either, and
//! says which ("accepted: anchor artefact: …").
//!
//! Each rule names the cases and the check it covers and why the anchor's value is not the
//! formula's. The accepted alternative is the exact value, as the oracle ([`crate::oracle`])
//! evaluates the case, compared under the same tolerance as the anchor's value. A rule is only
//! as wide as the cases it names: a case it covers whose loss the oracle does not evaluate gets no
//! alternative, and the anchor's value alone decides.

use crate::compare::{matches_pattern, Check};

/// One anchor artefact: the cases and check where the anchor's value is not the exact one.
#[derive(Debug, PartialEq, Eq)]
pub struct AnchorArtefact {
    /// A short stable name, as reports print it.
    pub id: &'static str,
    /// Case ids this rule covers (a prefix pattern, `*` standing for any run of characters).
    pub case_pattern: &'static str,
    /// The check it covers.
    pub check: Check,
    /// What the anchor returns, in a few words ("torchvision returns NaN").
    pub anchor_returns: &'static str,
    /// Why the anchor's value is not the formula's exact value.
    pub reason: &'static str,
}

impl AnchorArtefact {
    /// The label a check accepted under this rule carries.
    pub fn label(&self) -> String {
        format!("anchor artefact {}: {}", self.id, self.anchor_returns)
    }
}

const IGNORED_NAN_LOGITS: &str = "an ignored position does not enter the loss, so its exact \
     gradient is 0 whatever its logits; PyTorch's log_softmax backward still reads the position's \
     log-probabilities and turns a NaN logit into a NaN row (grad − p·Σgrad with p = NaN)";

const SATURATED_POWER: &str = "with γ < 1 the gradient of (1 − p_t)^γ is γ·(1 − p_t)^(γ−1) times \
     ∂(1 − p_t)/∂x = ∓(1 − p_t)·p_t: the exact product γ·(1 − p_t)^γ·p_t is finite and tiny; \
     the anchor forms 1 − p_t from p, which rounds to 1, so 0^(γ−1) = ∞ and ∞·0 = NaN";

const SATURATED_LOSS: &str = "at a saturated logit x the exact loss (1 − p_t)^γ·(−log p_t) is \
     about e^(−(1 + γ)|x|), small but not 0; the anchor forms 1 − p_t from p, which rounds to 1, \
     and returns 0";

const SATURATED_FACTOR_DETACHED: &str =
    "kornia detaches (1 − p)^γ where its rounded 1 − exp(log p) is \
     0, so that factor's gradient term drops out; the exact term is γ·(1 − p)^γ·p·log p/(1 − p), \
     tiny but nonzero at a saturated logit";

const MONAI_FLOAT32_CANCELS: &str =
    "MONAI forms the sigmoid focal loss's BCE as x − x·t − log σ(x) in \
     float32, which cancels to 0 (and its gradient with it) at a saturated logit x = −50, t = 0, \
     where the exact loss −t·log σ(x) − (1 − t)·log σ(−x) is about e^−75";

/// Every anchor artefact the reference does not copy. Several rules may share an id: the same
/// artefact in several anchors.
pub const ANCHOR_ARTEFACTS: &[AnchorArtefact] = &[
    AnchorArtefact {
        id: "ignored-nan-logits",
        case_pattern: "cross_entropy/*ignored_nan_logits",
        check: Check::Gradient,
        anchor_returns: "PyTorch returns NaN gradient rows at ignored positions",
        reason: IGNORED_NAN_LOGITS,
    },
    AnchorArtefact {
        id: "saturated-focal-gradient",
        case_pattern: "sigmoid_focal_loss/*gamma=0.5,logits=saturated",
        check: Check::Gradient,
        anchor_returns: "torchvision returns NaN",
        reason: SATURATED_POWER,
    },
    AnchorArtefact {
        id: "saturated-focal-gradient",
        case_pattern: "smp.FocalLoss/*gamma=0.5,logits=saturated",
        check: Check::Gradient,
        anchor_returns: "smp returns NaN",
        reason: SATURATED_POWER,
    },
    AnchorArtefact {
        id: "saturated-focal-gradient",
        case_pattern: "monai.FocalLoss/*use_softmax,gamma=0.5,logits=saturated",
        check: Check::Gradient,
        anchor_returns: "MONAI returns NaN",
        reason: SATURATED_POWER,
    },
    AnchorArtefact {
        id: "saturated-focal-gradient",
        case_pattern: "kornia.focal_loss/*gamma=0.5,logits=saturated",
        check: Check::Gradient,
        anchor_returns: "kornia returns 0",
        reason: SATURATED_FACTOR_DETACHED,
    },
    AnchorArtefact {
        id: "saturated-focal-loss",
        case_pattern: "sigmoid_focal_loss/*gamma=0.5,logits=saturated",
        check: Check::Forward,
        anchor_returns: "torchvision returns 0",
        reason: SATURATED_LOSS,
    },
    AnchorArtefact {
        id: "saturated-focal-loss",
        case_pattern: "smp.FocalLoss/*mode=binary,gamma=0.5,logits=saturated",
        check: Check::Forward,
        anchor_returns: "smp returns 0",
        reason: SATURATED_LOSS,
    },
    AnchorArtefact {
        id: "saturated-focal-loss",
        case_pattern: "monai.FocalLoss/*use_softmax,gamma=0.5,logits=saturated",
        check: Check::Forward,
        anchor_returns: "MONAI returns 0",
        reason: SATURATED_LOSS,
    },
    AnchorArtefact {
        id: "saturated-focal-loss",
        case_pattern: "kornia.focal_loss/*gamma=0.5,logits=saturated",
        check: Check::Forward,
        anchor_returns: "kornia returns 0",
        reason: SATURATED_LOSS,
    },
    AnchorArtefact {
        id: "saturated-focal-loss",
        case_pattern: "monai.FocalLoss/*/gamma=0.5,logits=saturated",
        check: Check::Forward,
        anchor_returns: "MONAI returns 0",
        reason: MONAI_FLOAT32_CANCELS,
    },
    AnchorArtefact {
        id: "saturated-focal-gradient",
        case_pattern: "monai.FocalLoss/*/gamma=0.5,logits=saturated",
        check: Check::Gradient,
        anchor_returns: "MONAI returns 0",
        reason: MONAI_FLOAT32_CANCELS,
    },
];

/// The rules covering a case's check.
pub fn artefacts_for(
    case_id: &str,
    check: Check,
) -> impl Iterator<Item = &'static AnchorArtefact> + '_ {
    ANCHOR_ARTEFACTS
        .iter()
        .filter(move |rule| rule.check == check && matches_pattern(case_id, rule.case_pattern))
}
