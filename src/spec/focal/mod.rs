//! The focal family: focal loss written once, and every anchor's focal loss as an instance of it.
//!
//! ```text
//! FL = −α_t·(1 − p_t)^γ·log p_t
//! ```
//!
//! The anchors agree on this for hard targets and disagree on everything around it. Each
//! disagreement is a parameter of the core in this module:
//!
//! * the activation: sigmoid per element ([`SigmoidFocal`]) or softmax over the class axis
//!   ([`SoftmaxFocal`]);
//! * how p_t and the modulating factor m = (1 − p_t)^γ are formed for a soft target
//!   ([`SoftTarget`]), and which classes' softmax terms are formed ([`Untargeted`]);
//! * how α maps to elements or classes ([`Alpha`]);
//! * what the mean divides by and whether ignored positions count in it ([`Aggregation`], and
//!   smp's per-class composition in [`smp::loss`]);
//! * per-class weights (kornia, MONAI) and smp's class-weighted mean over classes.
//!
//! Each library's loss is a thin front end in its own module that checks the call as the library
//! does, maps its arguments onto the core (one loss map of sigmoid or softmax elements, or torchvision's
//! plain elementwise loss) and states its quirks:
//!
//! | instance | activation | p_t and m | α | the mean divides by | weights |
//! |---|---|---|---|---|---|
//! | [`torchvision::loss`] | sigmoid | [`SoftTarget::Linear`] | [`Alpha::Balanced`]; none for α = −1 | the elements | – |
//! | [`kornia::binary_with_logits`] | sigmoid | [`SoftTarget::Interpolated`] | [`Alpha::Balanced`] | the elements, ignored ones included | pos_weight_c, w_c |
//! | [`kornia::loss`] | softmax, [`Untargeted::Masked`] | (1 − p_c)^γ | [`Alpha::Background`] | B·C·pixels, ignored pixels included | w_c |
//! | [`monai::loss`], sigmoid | sigmoid | [`SoftTarget::LogSigmoid`] | [`Alpha::Balanced`]; a sequence: [`Alpha::PositivesPerClass`] | [`Aggregation::MonaiMean`]; `sum` is [`Aggregation::MonaiSum`] | w_c |
//! | [`monai::loss`], softmax | softmax, [`Untargeted::Formed`] | (1 − p_c)^γ | [`Alpha::Background`]; a sequence: [`Alpha::PerClass`] | [`Aggregation::MonaiMean`]; `sum` is [`Aggregation::MonaiSum`] | w_c |
//! | [`smp::loss`] | sigmoid, one-vs-rest in multiclass | [`SoftTarget::Geometric`] | [`Alpha::Balanced`] | the kept elements of each class (and Σ m when normalized), then the classes | class-weighted mean over classes |
//!
//! The quirks each anchor brings are stated on its instance: smp's multiclass focal is
//! one-vs-rest sigmoid; MONAI's `sum` sums spatial means and setting ignore_index rescales the mean;
//! kornia's mean divides by C × pixels and keeps ignored pixels in the denominator; MONAI computes in
//! float32 whatever the input. At saturation with 0 < γ < 1 the anchors' gradient of (1 − p_t)^γ
//! is NaN in torchvision, smp and MONAI-softmax and 0 in kornia, and several anchors' loss is 0
//! where 1 − p_t rounds to 0; the reference returns the exact values, finite and nonzero (the
//! anchor artefacts `saturated-focal-gradient` and `saturated-focal-loss`).

pub mod kornia;
pub mod monai;
pub mod smp;
pub mod torchvision;

use std::borrow::Cow;

use ndarray::{ArrayD, IxDyn};

use super::binary::{two_product, two_sum, Logit, Wide};
use super::positions::{sweep_blocks, Block, BlockLanes, Layout, Position, BLOCK_POSITIONS};
use super::softmax::LogitsBlock;
use super::trace::{self, number, Fact};
use super::{compensated_sum, CompensatedSum, LossOutput, Reduction};
use crate::error::Rejection;
use crate::spec::Result;

// --- the formula, per element --------------------------------------------------------------------

/// The sigmoid focal loss of one element: with logit x, target t ∈ [0, 1], p = σ(x) and
/// BCE = −t·log p − (1 − t)·log(1 − p),
///
/// ```text
/// FL(x, t) = α_t·m·BCE,   m = (1 − p_t)^γ
/// ```
///
/// which is −α_t·(1 − p_t)^γ·log p_t for t ∈ {0, 1}. How p_t and m are formed for a soft target
/// is [`SoftTarget`] (kornia's weights its positive and negative parts apart), α_t is [`Alpha`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SigmoidFocal {
    /// γ ≥ 0 (not validated by any anchor; a negative γ is computed as given).
    pub gamma: f64,
    /// How p_t and m are formed.
    pub soft_target: SoftTarget,
}

/// How a sigmoid focal loss forms p_t and the modulating factor m for a target t ∈ [0, 1], with
/// p = σ(x) and BCE = −t·log p − (1 − t)·log(1 − p). All four agree for t ∈ {0, 1}.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SoftTarget {
    /// torchvision: p_t = p·t + (1 − p)·(1 − t), l = BCE·(1 − p_t)^γ, with the power taken of
    /// probabilities (so 1 − p_t rounds to 0 at saturation).
    Linear,
    /// smp: p_t = exp(−BCE) = p^t·(1 − p)^(1 − t) (geometric), l = BCE·(1 − p_t)^γ. With a reduced
    /// threshold r: m = ((1 − p_t)/r)^γ where p_t ≥ r and m = 1 (no gradient) where p_t < r.
    Geometric {
        /// smp's `reduced_threshold`.
        reduced_threshold: Option<f64>,
    },
    /// MONAI: m = exp(γ·log σ(−x·(2t − 1))), l = (x − x·t − log σ(x))·m.
    LogSigmoid,
    /// kornia: the focal losses at t = 1 and t = 0 mixed linearly by t, each with its own α and
    /// the positive one with pos_weight:
    /// l = α₊·pw·t·(1 − p)^γ·(−log p) + α₋·(1 − t)·p^γ·(−log(1 − p)), powers as exp(γ·log σ(∓x)).
    Interpolated,
}

/// How α weights an element, given its target t (and class c).
#[derive(Debug, Clone, PartialEq)]
pub enum Alpha {
    /// No α weighting.
    None,
    /// α_t = α·t + (1 − α)·(1 − t): α for positives, 1 − α for negatives (torchvision, smp, MONAI
    /// scalar with sigmoid, kornia binary).
    Balanced(f64),
    /// α_t = α_c where t = 1 exactly, else 1 (MONAI's sequence α with sigmoid).
    PositivesPerClass(Vec<f64>),
    /// α_c per class (MONAI's sequence α with softmax).
    PerClass(Vec<f64>),
    /// α_0 = 1 − α for class 0 (background), α_c = α for every other class (kornia softmax, MONAI
    /// scalar α with softmax).
    Background(f64),
}

impl Alpha {
    /// (α₊, α₋): the weights of the positive and negative part of a sigmoid element of class c with
    /// target t; `None` when there is no α.
    pub(super) fn sigmoid_pair(&self, class: usize, t: f64) -> Option<(f64, f64)> {
        match self {
            Alpha::None => None,
            Alpha::Balanced(alpha) => Some((*alpha, 1.0 - alpha)),
            Alpha::PositivesPerClass(alphas) if t == 1.0 => Some((alphas[class], alphas[class])),
            Alpha::PositivesPerClass(_) => Some((1.0, 1.0)),
            Alpha::PerClass(alphas) => Some((alphas[class], alphas[class])),
            Alpha::Background(alpha) => {
                let alpha = if class == 0 { 1.0 - alpha } else { *alpha };
                Some((alpha, alpha))
            }
        }
    }

    /// α_c for a softmax element of class c.
    pub(super) fn of_class(&self, class: usize) -> f64 {
        self.sigmoid_pair(class, 1.0)
            .map_or(1.0, |(alpha, _)| alpha)
    }
}

/// One sigmoid focal element, formed once: everything its loss, its modulating factor and its
/// slope read ([`SigmoidFocal::element`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum SigmoidElement {
    /// l = α_t·m·BCE (every soft target but kornia's).
    Modulated {
        /// α_t = α₊·t + α₋·(1 − t), 1 without α.
        alpha_t: f64,
        /// BCE.
        bce: f64,
        /// ∂BCE/∂x.
        d_bce: f64,
        /// m.
        m: f64,
        /// ∂m/∂x.
        d_m: f64,
    },
    /// kornia's l = k₊·a₊ + k₋·a₋, a₊ = −m₊·log σ(x), a₋ = −m₋·log σ(−x), m₊ = σ(−x)^γ, m₋ = σ(x)^γ.
    Interpolated {
        /// t.
        t: f64,
        /// The positive part, weighted k₊ = pw·α₊·t.
        positive: Part,
        /// The negative part, weighted k₋ = α₋·(1 − t).
        negative: Part,
    },
}

/// One part a = −m·log q of kornia's interpolated element (q = σ(±x), m = (1 − q)^γ), with weight k.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Part {
    /// k.
    weight: f64,
    /// m.
    m: f64,
    /// ∂m/∂x.
    d_m: f64,
    /// log q.
    log: f64,
    /// ∂log q/∂x.
    d_log: f64,
}

impl SigmoidFocal {
    /// The element at logit x, target t, α pair (α₊, α₋) and pos_weight pw (only
    /// [`SoftTarget::Interpolated`] reads pw; the others take α_t = α₊·t + α₋·(1 − t)), every
    /// function of x taken from one [`Logit`], its σ(±x) from their wide forms
    /// ([`Logit::widened`]): BCE = t·softplus(−x) + (1 − t)·softplus(x) and
    /// ∂BCE = (1 − t)·σ(x) − t·σ(−x) ([`Logit::bce`]), never (1 − t)·x − log σ(x), which cancels on
    /// confident-correct logits. m and ∂m/∂x:
    ///
    /// * Linear: m = (1 − p_t)^γ of [`linear_complement`], ∂m = γ·m·(1 − 2t)·ρ with
    ///   ρ = σ(x)σ(−x)/(1 − p_t) = 1/(1 + t·e^{−x} + (1 − t)·e^{x}) (∂(1 − p_t) = (1 − 2t)·σ(x)σ(−x)),
    ///   e^{±x} from e = exp(−|x|) and its reciprocal.
    /// * Geometric: [`Geometric`].
    /// * LogSigmoid: with s = 2t − 1, m = exp(γ·log σ(−x·s)) = exp(−γ·softplus(x·s)) and
    ///   ∂m = −m·γ·σ(x·s)·s (x·s is ±x for t ∈ {0, 1}, read from the same [`Logit`]).
    /// * Interpolated: m₊ = σ(−x)^γ, m₋ = σ(x)^γ ([`sigmoid_power`]), ∂m₊ = −γ·m₊·σ(x),
    ///   ∂m₋ = γ·m₋·σ(−x), ∂log σ(x) = σ(−x), ∂log σ(−x) = −σ(x).
    ///
    /// At saturation, where the anchors' own rounded 1 − p_t is 0 and γ < 1, torchvision's and smp's
    /// chains give NaN (γ·0^(γ−1) = ∞ times 0); the exact gradient is finite, and that is what the
    /// reference returns (the anchor artefact `saturated-focal-gradient`).
    pub(super) fn element(
        &self,
        x: f64,
        t: f64,
        alpha: Option<(f64, f64)>,
        pw: f64,
    ) -> SigmoidElement {
        let gamma = self.gamma;
        let (logit, (sigmoid, sigmoid_neg)) = Logit::new(x).widened();
        let modulated = |m: f64, d_m: f64| {
            let (bce, d_bce) = logit.bce(t, 1.0 - t, 1.0, 1.0);
            SigmoidElement::Modulated {
                alpha_t: alpha.map_or(1.0, |(positive, negative)| {
                    positive * t + negative * (1.0 - t)
                }),
                bce,
                d_bce,
                m,
                d_m,
            }
        };
        match self.soft_target {
            SoftTarget::Linear => {
                let m = power_wide(linear_complement(sigmoid, sigmoid_neg, t), gamma);
                let (exp_neg, exp_pos) = if x >= 0.0 {
                    (logit.e, 1.0 / logit.e)
                } else {
                    (1.0 / logit.e, logit.e)
                };
                let weighted = |weight: f64, value: f64| {
                    if weight == 0.0 {
                        0.0
                    } else {
                        weight * value
                    }
                };
                let rho = 1.0 / (1.0 + weighted(t, exp_neg) + weighted(1.0 - t, exp_pos));
                let d_m = if gamma == 0.0 {
                    0.0
                } else {
                    gamma * m * (1.0 - 2.0 * t) * rho
                };
                modulated(m, d_m)
            }
            SoftTarget::Geometric { reduced_threshold } => {
                let (bce, d_bce) = logit.bce(t, 1.0 - t, 1.0, 1.0);
                let wide = (sigmoid, sigmoid_neg);
                let geometric = Geometric::new(&logit, wide, t, bce, gamma, reduced_threshold);
                modulated(geometric.m, geometric.d_m(d_bce))
            }
            SoftTarget::LogSigmoid => {
                let sign = t * 2.0 - 1.0;
                let mirrored = if sign == 1.0 {
                    logit
                } else if sign == -1.0 {
                    logit.mirrored()
                } else {
                    Logit::new(x * sign)
                };
                let m = (-mirrored.softplus * gamma).exp();
                modulated(m, -(m * gamma * mirrored.sigmoid * sign))
            }
            SoftTarget::Interpolated => {
                let (positive, negative) = alpha.unwrap_or((1.0, 1.0));
                let m_pos = sigmoid_power(sigmoid_neg, -logit.softplus, gamma);
                let m_neg = sigmoid_power(sigmoid, -logit.softplus_neg, gamma);
                SigmoidElement::Interpolated {
                    t,
                    positive: Part {
                        weight: pw * positive * t,
                        m: m_pos,
                        d_m: -(m_pos * gamma * logit.sigmoid),
                        log: -logit.softplus_neg,
                        d_log: logit.sigmoid_neg,
                    },
                    negative: Part {
                        weight: negative * (1.0 - t),
                        m: m_neg,
                        d_m: m_neg * gamma * logit.sigmoid_neg,
                        log: -logit.softplus,
                        d_log: -logit.sigmoid,
                    },
                }
            }
        }
    }
}

impl SigmoidElement {
    /// The loss l: α_t·m·BCE, or kornia's k₊·(−m₊·log σ(x)) + k₋·(−m₋·log σ(−x)).
    pub(super) fn loss(&self) -> f64 {
        match self {
            SigmoidElement::Modulated {
                alpha_t, bce, m, ..
            } => alpha_t * (m * bce),
            SigmoidElement::Interpolated {
                positive, negative, ..
            } => {
                positive.weight * -(positive.m * positive.log)
                    + negative.weight * -(negative.m * negative.log)
            }
        }
    }

    /// The modulating factor m (smp normalises by Σ m): kornia's is t·m₊ + (1 − t)·m₋.
    pub(super) fn modulation(&self) -> f64 {
        match self {
            SigmoidElement::Modulated { m, .. } => *m,
            SigmoidElement::Interpolated {
                t,
                positive,
                negative,
            } => t * positive.m + (1.0 - t) * negative.m,
        }
    }

    /// ∂/∂x of upstream_loss·l + upstream_modulation·m. With u = upstream_loss·α_t and
    /// g_m = u·BCE + upstream_modulation:
    ///
    /// ```text
    /// ∂ = u·m·∂BCE + g_m·∂m
    /// ```
    ///
    /// kornia's: upstream_loss·(k₊·∂a₊ + k₋·∂a₋) + upstream_modulation·(t·∂m₊ + (1 − t)·∂m₋), with
    /// ∂a = −(∂m·log q + m·∂log q).
    pub(super) fn slope(&self, upstream_loss: f64, upstream_modulation: f64) -> f64 {
        match self {
            SigmoidElement::Modulated {
                alpha_t,
                bce,
                d_bce,
                m,
                d_m,
            } => {
                let u = upstream_loss * alpha_t;
                let g_m = u * bce + upstream_modulation;
                u * m * d_bce + g_m * d_m
            }
            SigmoidElement::Interpolated {
                t,
                positive,
                negative,
            } => {
                let d_part =
                    |part: &Part| -part.weight * (part.d_m * part.log + part.m * part.d_log);
                upstream_loss * (d_part(positive) + d_part(negative))
                    + upstream_modulation * (t * positive.d_m + (1.0 - t) * negative.d_m)
            }
        }
    }
}

/// torchvision's 1 − p_t = 1 − [p·t + (1 − p)·(1 − t)] (and smp's for t ∈ {0, 1}), formed as
/// t·σ(−x) + (1 − t)·σ(x): the same value without subtracting from 1, so it keeps its digits
/// where p rounds to 1. A power multiplies the base's relative error by γ, so the base is carried
/// as hi + lo, from exact products and sums of the wide σ(x), σ(−x) ([`Logit::sigmoid_wide`]).
fn linear_complement((p, p_lo): Wide, (q, q_lo): Wide, t: f64) -> Wide {
    let (t_bar, t_bar_lo) = two_sum(1.0, -t);
    let (positive, positive_lo) = two_product(t, q);
    let (negative, negative_lo) = two_product(t_bar, p);
    let (base, sum_lo) = two_sum(positive, negative);
    let lo = sum_lo + positive_lo + t * q_lo + negative_lo + t_bar * p_lo + t_bar_lo * p;
    two_sum(base, lo)
}

/// (hi + lo)^γ = hi^γ·(1 + γ·lo/hi), the first-order correction added to hi^γ.
fn power_wide((hi, lo): Wide, gamma: f64) -> f64 {
    let m = power(hi, gamma);
    if hi == 0.0 || gamma == 0.0 {
        m
    } else {
        m + m * (gamma * lo / hi)
    }
}

/// base^γ: base·base for the usual γ = 2 and base itself for γ = 1 (each correctly rounded, where
/// powf may be off by its last bit), powf otherwise.
fn power(base: f64, gamma: f64) -> f64 {
    if gamma == 2.0 {
        base * base
    } else if gamma == 1.0 {
        base
    } else {
        base.powf(gamma)
    }
}

/// σ^γ of a sigmoid given wide and as its log: from the wide σ where σ is a normal number, else as
/// exp(γ·log σ), which holds where σ itself underflows.
fn sigmoid_power(wide: Wide, log: f64, gamma: f64) -> f64 {
    if wide.0 >= f64::MIN_POSITIVE {
        power_wide(wide, gamma)
    } else {
        (gamma * log).exp()
    }
}

/// smp's modulating factor from BCE: p_t = exp(−BCE), m = ((1 − p_t)/r)^γ (r = 1 without a
/// threshold), m = 1 where p_t < r. For t ∈ {0, 1} p_t is σ(±x) and 1 − p_t is
/// [`linear_complement`]; for a soft target 1 − p_t = −expm1(−BCE), formed without subtraction.
struct Geometric {
    /// m.
    m: f64,
    /// p_t.
    pt: f64,
    /// ∂m/∂(1 − p_t) = γ·base^(γ−1)/r, 0 where m is the constant 1.
    slope: f64,
    /// Whether m is the constant 1 (p_t below the reduced threshold).
    constant: bool,
    /// 1 − p_t.
    complement: f64,
}

impl Geometric {
    fn new(
        logit: &Logit,
        (sigmoid, sigmoid_neg): (Wide, Wide),
        t: f64,
        bce: f64,
        gamma: f64,
        reduced_threshold: Option<f64>,
    ) -> Geometric {
        let hard = t == 0.0 || t == 1.0;
        let pt = if t == 1.0 {
            logit.sigmoid
        } else if t == 0.0 {
            logit.sigmoid_neg
        } else {
            (-bce).exp()
        };
        let r = match reduced_threshold {
            Some(r) if pt < r => {
                return Geometric {
                    m: 1.0,
                    pt,
                    slope: 0.0,
                    constant: true,
                    complement: f64::NAN,
                }
            }
            Some(r) => r,
            None => 1.0,
        };
        let (complement, complement_lo) = if hard {
            linear_complement(sigmoid, sigmoid_neg, t)
        } else {
            (-(-bce).exp_m1(), 0.0)
        };
        let base = complement / r;
        let base_lo = ((-base).mul_add(r, complement) + complement_lo) / r;
        let m = power_wide((base, base_lo), gamma);
        let slope = if base > 0.0 && gamma != 0.0 {
            gamma * power_wide((base, base_lo), gamma - 1.0) / r
        } else {
            pow_slope(base, gamma) / r
        };
        Geometric {
            m,
            pt,
            slope,
            constant: false,
            complement,
        }
    }

    /// ∂m/∂x = slope·∂(1 − p_t) with ∂(1 − p_t) = p_t·∂BCE; 0 where m is the constant 1. Where
    /// 1 − p_t underflows to 0 (a logit beyond ±745) slope·∂BCE is ∞·0 literally, but exactly
    /// (1 − 2t)·γ·m = 0 for a hard target (∂BCE = (1 − 2t)·(1 − p_t) there); a soft target's
    /// 1 − p_t ≥ its entropy never underflows. The anchors' NaN at a merely rounded-away 1 − p_t is
    /// not copied: slope is taken of the exact 1 − p_t, finite (the anchor artefact
    /// `saturated-focal-gradient`).
    fn d_m(&self, d_bce: f64) -> f64 {
        if self.constant || self.complement == 0.0 {
            0.0
        } else {
            self.slope * self.pt * d_bce
        }
    }
}

/// d(base^γ)/d(base) as PyTorch's pow backward computes it: 0 for γ = 0, else γ·base^(γ−1) (inf at
/// base = 0 for γ < 1).
fn pow_slope(base: f64, gamma: f64) -> f64 {
    if gamma == 0.0 {
        0.0
    } else {
        gamma * power(base, gamma - 1.0)
    }
}

// --- the formula, per class under a softmax ------------------------------------------------------

/// The softmax focal loss of one class c at one position: with log p_c from log_softmax over the
/// class axis and target t_c,
///
/// ```text
/// l_c = −α_c·(1 − p_c)^γ·log p_c·t_c
/// ∂l_c/∂log p_c = −α_c·t_c·[(1 − p_c)^γ − γ·(1 − p_c)^(γ−1)·p_c·log p_c]
///               = −α_c·t_c·m·(1 − γ·p_c·ρ),   m = (1 − p_c)^γ,   ρ = log p_c/(1 − p_c) ∈ (−∞, −1]
/// ```
///
/// with p_c and 1 − p_c from the lane's log-softmax
/// ([`SoftmaxLane::prob`](super::softmax::SoftmaxLane::prob): 1 − p_c is −expm1(log p_c) where
/// p_c > ½), and ρ = −1 where 1 − p_c underflows to 0 (its limit): the
/// gradient stays finite at a saturated p_c, where the anchors' chain through (1 − p_c)^(γ−1)
/// gives NaN (MONAI) or drops the factor's term (kornia) — the anchor artefact
/// `saturated-focal-gradient`. 1 − γ·p_c·ρ adds two non-negative terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftmaxFocal {
    /// γ.
    pub gamma: f64,
    /// Which classes' terms are formed.
    pub untargeted: Untargeted,
}

/// What happens to the term of a class whose target t_c is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untargeted {
    /// Formed as t_c·(…) = 0, so a −∞ log p_c there gives 0·∞ = NaN (MONAI).
    Formed,
    /// Masked out (kornia's `masked_fill(target_one_hot == 0, 0)`): 0, with no gradient.
    Masked,
}

impl SoftmaxFocal {
    /// l_c (without α) and ∂l_c/∂log p_c for log-probability `log_p`, p_c and 1 − p_c
    /// ([`SoftmaxLane::prob`](super::softmax::SoftmaxLane::prob)) and target `t`: the formulas above, from one m.
    fn term(&self, log_p: f64, (p, complement): (f64, f64), t: f64) -> (f64, f64) {
        let m = power(complement, self.gamma);
        let rho = if complement == 0.0 {
            -1.0
        } else {
            log_p / complement
        };
        (-m * log_p * t, -t * m * (1.0 - self.gamma * p * rho))
    }
}

// --- over a loss map -----------------------------------------------------------------------------

/// How the loss map of a focal loss is reduced, with its gradient; MONAI's mask holds 1 for
/// counted and 0 for ignored positions (shape (B, 1, spatial…), broadcast over classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// The loss map as is; ignored elements hold 0.
    None,
    /// Σ l over every element.
    Sum,
    /// Σ l / (number of elements of the map): every class and every ignored pixel counts (torchvision,
    /// kornia: C × pixels).
    MeanOverElements,
    /// MONAI `mean`: Σ l / (B·C·spatial) without ignore_index, but Σ l / max(Σ mask, ε_f32) with it —
    /// the mask has one entry per position, not per class, so merely setting ignore_index multiplies
    /// the mean by C.
    MonaiMean,
    /// MONAI `sum`: Σ_{b,c} of the spatial mean, Σ_sp l / (spatial count) without ignore_index and
    /// Σ_sp l / max(Σ_sp mask, ε_f32) with it — not the plain sum.
    MonaiSum,
}

impl Aggregation {
    /// The plain reduction: none, sum, or the mean over every element of the loss map.
    pub(super) fn plain(reduction: Reduction) -> Aggregation {
        match reduction {
            Reduction::None => Aggregation::None,
            Reduction::Sum => Aggregation::Sum,
            Reduction::Mean => Aggregation::MeanOverElements,
        }
    }
}

/// The upstream gradient on each element of a focal loss map.
enum MapUpstream<'a> {
    /// The same on every element.
    Scalar(f64),
    /// One per image b (MONAI's `sum`).
    PerImage(Vec<f64>),
    /// grad_output itself (`none`), in the map's row-major order.
    PerElement(Cow<'a, [f64]>),
}

impl MapUpstream<'_> {
    /// The upstream of class c at `position` of `map`.
    #[inline]
    fn at(&self, map: &Layout, position: Position, class: usize) -> f64 {
        match self {
            MapUpstream::Scalar(value) => *value,
            MapUpstream::PerImage(values) => values[position.n],
            MapUpstream::PerElement(values) => values[position.element(map, class)],
        }
    }
}

/// A focal map's reduction, settled before the pass ([`aggregate`]): the upstream gradient of
/// every element, and how the sum of the position losses becomes the reduced loss.
pub(super) struct Reducer<'a> {
    aggregation: Aggregation,
    upstream: MapUpstream<'a>,
    /// What Σ l is divided by (1 but for the means).
    denominator: f64,
    /// MONAI's `sum`: the weight 1/d_b of image b's losses.
    image_scale: Option<Vec<f64>>,
}

/// How the loss map `map` (B, C, S) is reduced by `aggregation`, worked out before any loss is
/// formed; `mask` is MONAI's position mask (B·S values), whose sums are the denominators of its
/// reductions with ignore_index; `grad_output` must have the reduced loss's shape (`map_shape`
/// for `none`). With ε = ε_f32 and g the scalar grad_output:
///
/// ```text
/// none:              l as is,                     upstream grad_output
/// sum:               Σ l,                          upstream g
/// MeanOverElements:  Σ l / (B·C·S),                upstream g / (B·C·S)
/// MonaiMean:         Σ l / max(Σ mask, ε) with a mask, else as MeanOverElements
/// MonaiSum:          Σ_b Σ_{c,s} l / d_b,          upstream g·(1/d_b),  d_b = max(Σ_s mask_b, ε) or S
/// ```
pub(super) fn aggregate<'a>(
    map: Layout,
    map_shape: &[usize],
    mask: Option<&[f64]>,
    aggregation: Aggregation,
    grad_output: Option<&'a ArrayD<f64>>,
) -> Result<Reducer<'a>> {
    let epsilon = f64::from(f32::EPSILON);
    let compensated = |values: &[f64]| compensated_sum(values.iter().copied());
    let reducer = |upstream, denominator| Reducer {
        aggregation,
        upstream,
        denominator,
        image_scale: None,
    };
    if aggregation == Aggregation::None {
        let upstream = match grad_output {
            Some(given) if given.shape() != map_shape => {
                return Err(Rejection::GradOutputShape {
                    expected: map_shape.to_vec(),
                    got: given.shape().to_vec(),
                })
            }
            Some(given) => MapUpstream::PerElement(match given.as_slice() {
                Some(values) => Cow::Borrowed(values),
                None => Cow::Owned(given.iter().copied().collect()),
            }),
            None => MapUpstream::Scalar(1.0),
        };
        return Ok(reducer(upstream, 1.0));
    }
    let g = grad_output_scalar(grad_output)?;
    let elements = map.elements() as f64;
    Ok(match (aggregation, mask) {
        (Aggregation::MonaiSum, mask) => {
            let scale: Vec<f64> = (0..map.batch)
                .map(|b| {
                    let denominator = match mask {
                        Some(mask) => {
                            compensated(&mask[b * map.spatial..(b + 1) * map.spatial]).max(epsilon)
                        }
                        None => map.spatial as f64,
                    };
                    1.0 / denominator
                })
                .collect();
            Reducer {
                aggregation,
                upstream: MapUpstream::PerImage(scale.iter().map(|scale| g * scale).collect()),
                denominator: 1.0,
                image_scale: Some(scale),
            }
        }
        (Aggregation::MonaiMean, Some(mask)) => {
            let denominator = compensated(mask).max(epsilon);
            reducer(MapUpstream::Scalar(g / denominator), denominator)
        }
        (Aggregation::MeanOverElements | Aggregation::MonaiMean, _) => {
            reducer(MapUpstream::Scalar(g / elements), elements)
        }
        (Aggregation::None | Aggregation::Sum, _) => reducer(MapUpstream::Scalar(g), 1.0),
    })
}

/// The grad_output of a scalar loss (1 when absent).
pub(super) fn grad_output_scalar(grad_output: Option<&ArrayD<f64>>) -> Result<f64> {
    Reduction::Sum
        .upstream(grad_output, &[], 1.0)
        .map(|upstream| super::scalar(&upstream))
}

/// What a pass over a focal map writes into each position's lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The loss of each class (`none`'s loss map).
    Losses,
    /// The gradient of each class.
    Gradient,
}

/// A block's lanes in a focal map pass: class c of the map is class c + `first` of the input.
struct MapBlock<'a, 'c, 'g> {
    lanes: &'a mut BlockLanes<'c, 'g>,
    first: usize,
}

impl MapBlock<'_, '_, '_> {
    /// Class c of the map at the block's positions.
    #[inline]
    fn run(&mut self, class: usize) -> &mut [f64] {
        self.lanes.run(class + self.first)
    }
}

/// A focal loss map (B, C, S) of logits (B, first + C, S) over its positions, a block at a time:
/// `kernel` writes the C classes' gradients (or losses) at the block's positions and each
/// position's Σ_c l_c into the slice it gets, with a scratch of its own type. The input's first
/// `first` channels (MONAI's dropped background) get a zero gradient. `none` takes a second pass
/// that writes the loss map; the other reductions sum the positions' losses (each image's
/// weighted by the reducer's scale) and divide by its denominator.
fn over_positions<S, K>(
    map: Layout,
    first: usize,
    map_shape: &[usize],
    reducer: &Reducer,
    kernel: K,
) -> LossOutput
where
    S: Default,
    K: Fn(Block, Pass, &mut MapBlock, &mut S, &mut [f64]) + Sync,
{
    let input = Layout {
        classes: map.classes + first,
        ..map
    };
    let scale = |n: usize| reducer.image_scale.as_ref().map_or(1.0, |scale| scale[n]);
    let pass = |layout, first, pass| {
        sweep_blocks(layout, false, |block, lanes, scratch, losses| {
            let mut sums = [0.0; BLOCK_POSITIONS];
            let sums = &mut sums[..block.width];
            kernel(block, pass, &mut MapBlock { lanes, first }, scratch, sums);
            for (loss, &sum) in losses.iter_mut().zip(&*sums) {
                *loss = (sum * scale(block.n), 0.0);
            }
        })
    };
    let swept = pass(input, first, Pass::Gradient);
    let loss = if reducer.aggregation == Aggregation::None {
        let losses = pass(map, 0, Pass::Losses);
        ArrayD::from_shape_vec(IxDyn(map_shape), losses.gradient).unwrap_or_default()
    } else {
        ArrayD::from_elem(vec![], swept.total / reducer.denominator)
    };
    let mut input_shape = map_shape.to_vec();
    input_shape[1] += first;
    LossOutput {
        loss,
        grad_input: ArrayD::from_shape_vec(IxDyn(&input_shape), swept.gradient).unwrap_or_default(),
    }
}

/// One element of a sigmoid focal map as its front end reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Inputs {
    /// The logit x.
    pub(super) x: f64,
    /// The target t.
    pub(super) t: f64,
    /// 1 for a counted element, 0 for an ignored one (MONAI's mask value, which may lie between).
    pub(super) kept: f64,
}

/// The sigmoid focal loss over a map (B, C, S) of logits (B, first + C, S), elementwise, with
/// `inputs(position, c)` the element of map class c:
///
/// ```text
/// l = FL(x, t)·kept·w_c,   ∂l/∂x = ∂FL(x, t)·(u·w_c·kept)·kept
/// ```
///
/// with α by class c, pos_weight pw_c and weight w_c per class, u the reducer's upstream; the
/// second `kept` is the chain through x·kept, as MONAI multiplies its input by the mask.
#[allow(clippy::too_many_arguments)]
pub(super) fn sigmoid_map(
    map: Layout,
    first: usize,
    map_shape: &[usize],
    inputs: impl Fn(Position, usize) -> Inputs + Sync,
    focal: &SigmoidFocal,
    alpha: &Alpha,
    pos_weight: Option<&[f64]>,
    weight: Option<&[f64]>,
    reducer: &Reducer,
) -> LossOutput {
    trace::record(|| {
        let given = |values: Option<&[f64]>, what: &str| match values {
            Some(values) if values.iter().any(|&value| value != 1.0) => {
                format!("{what} {}", numbers(values))
            }
            _ => "none".to_string(),
        };
        let mut facts = focal.facts("logits, sigmoid of each element", alpha);
        facts.extend([
            Fact::new("pos_weight", given(pos_weight, "per class")),
            Fact::new("class weights", given(weight, "per class")),
            Fact::new("classes scored", scored(first)),
            Fact::new("reduction", reducer.aggregation.words()),
        ]);
        facts
    });
    let per_class = |values: Option<&[f64]>, class: usize| values.map_or(1.0, |v| v[class]);
    let kernel = |block: Block, pass, lanes: &mut MapBlock, _: &mut (), sums: &mut [f64]| {
        for (j, sum) in sums.iter_mut().enumerate() {
            let position = block.position(j);
            let mut total = CompensatedSum::default();
            for class in 0..map.classes {
                let Inputs { x, t, kept } = inputs(position, class);
                let w = per_class(weight, class);
                let element = focal.element(
                    x,
                    t,
                    alpha.sigmoid_pair(class, t),
                    per_class(pos_weight, class),
                );
                let loss = element.loss() * kept * w;
                total.add(loss);
                lanes.run(class)[j] = match pass {
                    Pass::Losses => loss,
                    Pass::Gradient => {
                        let g = reducer.upstream.at(&map, position, class) * w * kept;
                        element.slope(g, 0.0) * kept
                    }
                };
            }
            *sum = total.total();
        }
    };
    over_positions(map, first, map_shape, reducer, kernel)
}

/// The softmax focal loss over a map (B, C, S) of logits (B, first + C, S), with
/// `inputs(block, logits, targets)` writing the C logits and targets of a block's positions (class
/// by class: entry c·W + j is class c of position j) and `mask` MONAI's position mask (B·S values,
/// 1 without one): l_c = k_c·FL_c·mask with k_c = α_c·w_c (`class_weight`), the gradient
/// g_c = ∂FL_c/∂log p_c·(u·mask·k_c) through the log-softmax backward
/// ([`SoftmaxBlock::backward`](super::softmax::SoftmaxBlock::backward)), times the mask once more
/// (MONAI multiplies its input by it). A position whose g is all zero has the exact gradient 0; a
/// position without a log-softmax has NaN throughout.
#[allow(clippy::too_many_arguments)]
pub(super) fn softmax_map(
    map: Layout,
    first: usize,
    map_shape: &[usize],
    inputs: impl Fn(Block, &mut [f64], &mut [f64]) + Sync,
    mask: Option<&[f64]>,
    focal: &SoftmaxFocal,
    class_weight: impl Fn(usize) -> f64 + Sync,
    reducer: &Reducer,
) -> LossOutput {
    trace::record(|| {
        let untargeted = match focal.untargeted {
            Untargeted::Formed => "",
            Untargeted::Masked => ", classes with t_c = 0 masked out",
        };
        vec![
            Fact::new("prediction", "logits, softmax over the classes"),
            Fact::new(
                "focal term",
                format!(
                    "−(1 − p_c)^γ·log p_c·t_c per class, γ = {}{untargeted}",
                    number(focal.gamma)
                ),
            ),
            Fact::new("classes scored", scored(first)),
            Fact::new("reduction", reducer.aggregation.words()),
        ]
    });
    let classes = map.classes;
    let skip = |t: f64| t == 0.0 && focal.untargeted == Untargeted::Masked;
    let kernel = |block: Block,
                  pass,
                  lanes: &mut MapBlock,
                  scratch: &mut SoftmaxScratch,
                  sums: &mut [f64]| {
        let width = block.width;
        let block_mask = mask.map(|mask| &mask[block.index..block.index + width]);
        let mask_at = |j: usize| block_mask.map_or(1.0, |mask| mask[j]);
        let SoftmaxScratch {
            block: logits_block,
            targets,
            grads,
            totals,
        } = scratch;
        logits_block.resize(classes, width);
        let LogitsBlock {
            logits,
            exps,
            softmax,
            ..
        } = logits_block;
        targets.resize(classes * width, 0.0);
        grads.clear();
        grads.resize(classes * width, 0.0);
        totals.clear();
        totals.resize(width, CompensatedSum::default());
        inputs(block, logits, targets);
        softmax.form(logits, width, exps);
        for class in 0..classes {
            let k = class_weight(class);
            let row = class * width..(class + 1) * width;
            for (j, total) in totals.iter_mut().enumerate() {
                let element = row.start + j;
                let t = targets[element];
                if skip(t) {
                    continue;
                }
                let logit = logits[element];
                let (log_p, prob) = softmax
                    .lane(j)
                    .map_or((f64::NAN, (f64::NAN, f64::NAN)), |lane| {
                        (lane.log_prob(logit), lane.prob(class, exps[element]))
                    });
                let (l, d) = focal.term(log_p, prob, t);
                let loss = k * l * mask_at(j);
                total.add(loss);
                match pass {
                    Pass::Losses => lanes.run(class)[j] = loss,
                    Pass::Gradient => {
                        let u = reducer.upstream.at(&map, block.position(j), class);
                        grads[element] = d * (u * mask_at(j) * k);
                    }
                }
            }
        }
        if pass == Pass::Gradient {
            softmax.backward(exps, grads);
            for (class, grads) in grads.chunks_exact(width).enumerate() {
                let run = lanes.run(class);
                match block_mask {
                    None => run.copy_from_slice(grads),
                    Some(mask) => {
                        for ((out, &grad), &kept) in run.iter_mut().zip(grads).zip(mask) {
                            *out = grad * kept;
                        }
                    }
                }
            }
        }
        for (sum, total) in sums.iter_mut().zip(totals.iter()) {
            *sum = total.total();
        }
    };
    over_positions(map, first, map_shape, reducer, kernel)
}

/// What the softmax focal map keeps per block: the logits of its positions and their
/// log-softmaxes, their targets and gradients (class by class), and each position's running
/// Σ_c l_c.
#[derive(Default)]
struct SoftmaxScratch {
    block: LogitsBlock,
    targets: Vec<f64>,
    grads: Vec<f64>,
    totals: Vec<CompensatedSum>,
}

/// The classes a map scores when its input's first `first` channels are dropped, in words.
fn scored(first: usize) -> &'static str {
    if first == 0 {
        "every class"
    } else {
        "every class but the first (background)"
    }
}

/// Numbers as a list in words.
fn numbers(values: &[f64]) -> String {
    let values: Vec<String> = values.iter().map(|&value| number(value)).collect();
    format!("[{}]", values.join(", "))
}

impl SigmoidFocal {
    /// The conventions of the prediction (`prediction`, in words), the focal term and α.
    pub(super) fn facts(&self, prediction: &str, alpha: &Alpha) -> Vec<Fact> {
        vec![
            Fact::new("prediction", prediction),
            Fact::new("focal term", self.words()),
            Fact::new("α", alpha.words()),
        ]
    }

    /// The focal term in words.
    fn words(&self) -> String {
        let gamma = number(self.gamma);
        match self.soft_target {
            SoftTarget::Linear => {
                format!("BCE·(1 − p_t)^γ, p_t = p·t + (1 − p)·(1 − t), γ = {gamma}")
            }
            SoftTarget::Geometric { reduced_threshold } => format!(
                "BCE·(1 − p_t)^γ, p_t = exp(−BCE), γ = {gamma}{}",
                reduced_threshold.map_or(String::new(), |r| format!(
                    ", ((1 − p_t)/r)^γ above r = {} and 1 below",
                    number(r)
                ))
            ),
            SoftTarget::LogSigmoid => format!("BCE·exp(γ·log σ(−x·(2t − 1))), γ = {gamma}"),
            SoftTarget::Interpolated => {
                format!("t·(1 − p)^γ·(−log p) + (1 − t)·p^γ·(−log(1 − p)), γ = {gamma}")
            }
        }
    }
}

impl Alpha {
    /// α in words.
    fn words(&self) -> String {
        match self {
            Alpha::None => "none".to_string(),
            Alpha::Balanced(alpha) => {
                format!("{} on positives, 1 − α on negatives", number(*alpha))
            }
            Alpha::PositivesPerClass(alphas) => {
                format!("α_c {} on positives (t = 1), 1 elsewhere", numbers(alphas))
            }
            Alpha::PerClass(alphas) => format!("α_c {} per class", numbers(alphas)),
            Alpha::Background(alpha) => format!(
                "1 − α for the first class (background), α = {} for the others",
                number(*alpha)
            ),
        }
    }
}

impl Aggregation {
    /// The reduction in words.
    pub(super) fn words(self) -> &'static str {
        match self {
            Aggregation::None => "none: the loss of every element",
            Aggregation::Sum => "sum over every element",
            Aggregation::MeanOverElements => "mean over every element (N·C·positions)",
            Aggregation::MonaiMean => {
                "mean over every element, or Σl / Σmask (positions) with ignore_index"
            }
            Aggregation::MonaiSum => "sum over (image, class) of the mean over the positions",
        }
    }
}

/// A value rounded to float32, as MONAI's `.float()` casts and smp's float32 class weights leave it.
pub(super) fn to_f32(value: f64) -> f64 {
    f64::from(value as f32)
}
