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

use ndarray::{ArrayD, Axis, Dimension, IxDyn};

use super::binary::{
    bce_with_logits_element, log_sigmoid, sigmoid, sigmoid_wide, two_product, two_sum,
};
use super::softmax::{log_softmax, log_softmax_backward};
use super::{compensated_sum, LossOutput, Reduction};
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

/// The forward values of one element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Element {
    /// The loss l.
    pub(super) loss: f64,
    /// The modulating factor m (smp normalises by Σ m).
    pub(super) modulation: f64,
}

impl SigmoidFocal {
    /// l and m for logit x, target t, α pair (α₊, α₋) and pos_weight pw (only
    /// [`SoftTarget::Interpolated`] reads pw; the others take α_t = α₊·t + α₋·(1 − t)).
    ///
    /// BCE is t·softplus(−x) + (1 − t)·softplus(x) ([`bce_with_logits_element`]), never
    /// (1 − t)·x − log σ(x), which cancels on confident-correct logits.
    pub(super) fn forward(&self, x: f64, t: f64, alpha: Option<(f64, f64)>, pw: f64) -> Element {
        let gamma = self.gamma;
        let alpha_t = |loss: f64| match alpha {
            Some((positive, negative)) => loss * (positive * t + negative * (1.0 - t)),
            None => loss,
        };
        let (bce, _) = bce_with_logits_element(x, t, 1.0 - t, 1.0, 1.0);
        match self.soft_target {
            SoftTarget::Linear => {
                let m = power_wide(linear_complement(x, t), gamma);
                Element {
                    loss: alpha_t(bce * m),
                    modulation: m,
                }
            }
            SoftTarget::Geometric { reduced_threshold } => {
                let m = Geometric::new(x, t, bce, gamma, reduced_threshold).m;
                Element {
                    loss: alpha_t(m * bce),
                    modulation: m,
                }
            }
            SoftTarget::LogSigmoid => {
                let m = (log_sigmoid(-x * (t * 2.0 - 1.0)) * gamma).exp();
                Element {
                    loss: alpha_t(m * bce),
                    modulation: m,
                }
            }
            SoftTarget::Interpolated => {
                let (positive, negative) = alpha.unwrap_or((1.0, 1.0));
                let (log_p, log_q) = (log_sigmoid(x), log_sigmoid(-x));
                let (m_pos, m_neg) = (sigmoid_power(-x, gamma), sigmoid_power(x, gamma));
                Element {
                    loss: pw * positive * -(m_pos * t * log_p)
                        + negative * -(m_neg * (1.0 - t) * log_q),
                    modulation: t * m_pos + (1.0 - t) * m_neg,
                }
            }
        }
    }

    /// ∂/∂x of upstream_loss·l + upstream_modulation·m. With u = upstream_loss·α_t,
    /// g_m = u·BCE + upstream_modulation and ∂BCE = (1 − t)·σ(x) − t·σ(−x):
    ///
    /// * Linear: ∂ = u·m·∂BCE + g_m·γ·m·(1 − 2t)·ρ, ρ = σ(x)σ(−x)/(1 − p_t)
    ///   = 1/(1 + t·e^{−x} + (1 − t)·e^{x}) (∂(1 − p_t) = (1 − 2t)·σ(x)σ(−x)).
    /// * Geometric: ∂ = (u·m + g_m·γ·base^(γ−1)/r·p_t)·∂BCE (∂p_t = −p_t·∂BCE).
    /// * LogSigmoid: ∂ = u·m·∂BCE − g_m·m·γ·σ(x(2t − 1))·(2t − 1).
    /// * Interpolated: the derivative of each term, with ∂log σ(x) = σ(−x), ∂log σ(−x) = −σ(x).
    ///
    /// At saturation, where the anchors' own rounded 1 − p_t is 0 and γ < 1, torchvision's and smp's
    /// chains give NaN (γ·0^(γ−1) = ∞ times 0); the exact gradient is finite, and that is what the
    /// reference returns (the anchor artefact `saturated-focal-gradient`).
    pub(super) fn backward(
        &self,
        x: f64,
        t: f64,
        alpha: Option<(f64, f64)>,
        pw: f64,
        upstream_loss: f64,
        upstream_modulation: f64,
    ) -> f64 {
        let gamma = self.gamma;
        let u = match (alpha, self.soft_target) {
            (Some((positive, negative)), soft) if soft != SoftTarget::Interpolated => {
                upstream_loss * (positive * t + negative * (1.0 - t))
            }
            _ => upstream_loss,
        };
        let (bce, d_bce) = bce_with_logits_element(x, t, 1.0 - t, 1.0, 1.0);
        let g_m = u * bce + upstream_modulation;
        match self.soft_target {
            SoftTarget::Linear => {
                let m = power_wide(linear_complement(x, t), gamma);
                let weighted_exp =
                    |weight: f64, y: f64| if weight == 0.0 { 0.0 } else { weight * y.exp() };
                let rho = 1.0 / (1.0 + weighted_exp(t, -x) + weighted_exp(1.0 - t, x));
                let d_m = if gamma == 0.0 {
                    0.0
                } else {
                    gamma * m * (1.0 - 2.0 * t) * rho
                };
                u * m * d_bce + g_m * d_m
            }
            SoftTarget::Geometric { reduced_threshold } => {
                let geometric = Geometric::new(x, t, bce, gamma, reduced_threshold);
                geometric.backward(u, g_m, d_bce)
            }
            SoftTarget::LogSigmoid => {
                let sign = t * 2.0 - 1.0;
                let m = (log_sigmoid(-x * sign) * gamma).exp();
                u * m * d_bce - g_m * m * gamma * sigmoid(x * sign) * sign
            }
            SoftTarget::Interpolated => {
                let (positive, negative) = alpha.unwrap_or((1.0, 1.0));
                let (log_p, log_q) = (log_sigmoid(x), log_sigmoid(-x));
                let (m_pos, m_neg) = (sigmoid_power(-x, gamma), sigmoid_power(x, gamma));
                let (d_log_p, d_log_q) = (sigmoid(-x), -sigmoid(x));
                let (d_m_pos, d_m_neg) = (m_pos * gamma * d_log_q, m_neg * gamma * d_log_p);
                let d_pos = -(pw * positive * t) * (d_m_pos * log_p + m_pos * d_log_p);
                let d_neg = -(negative * (1.0 - t)) * (d_m_neg * log_q + m_neg * d_log_q);
                u * (d_pos + d_neg) + upstream_modulation * (t * d_m_pos + (1.0 - t) * d_m_neg)
            }
        }
    }
}

/// torchvision's 1 − p_t = 1 − [p·t + (1 − p)·(1 − t)] (and smp's for t ∈ {0, 1}), formed as
/// t·σ(−x) + (1 − t)·σ(x): the same value without subtracting from 1, so it keeps its digits
/// where p rounds to 1. A power multiplies the base's relative error by γ, so the base is carried
/// as hi + lo, from exact products and sums of [`sigmoid_wide`].
fn linear_complement(x: f64, t: f64) -> (f64, f64) {
    let (q, q_lo) = sigmoid_wide(-x);
    let (p, p_lo) = sigmoid_wide(x);
    let (t_bar, t_bar_lo) = two_sum(1.0, -t);
    let (positive, positive_lo) = two_product(t, q);
    let (negative, negative_lo) = two_product(t_bar, p);
    let (base, sum_lo) = two_sum(positive, negative);
    let lo = sum_lo + positive_lo + t * q_lo + negative_lo + t_bar * p_lo + t_bar_lo * p;
    two_sum(base, lo)
}

/// (hi + lo)^γ = hi^γ·(1 + γ·lo/hi), the first-order correction fused into the product.
fn power_wide((hi, lo): (f64, f64), gamma: f64) -> f64 {
    let m = hi.powf(gamma);
    if hi == 0.0 || gamma == 0.0 {
        m
    } else {
        m.mul_add(gamma * lo / hi, m)
    }
}

/// σ(x)^γ: from the wide σ where σ(x) is a normal number, else as exp(γ·log σ(x)), which holds
/// where σ(x) itself underflows.
fn sigmoid_power(x: f64, gamma: f64) -> f64 {
    let wide = sigmoid_wide(x);
    if wide.0 >= f64::MIN_POSITIVE {
        power_wide(wide, gamma)
    } else {
        (gamma * log_sigmoid(x)).exp()
    }
}

/// smp's modulating factor from BCE: p_t = exp(−BCE), m = ((1 − p_t)/r)^γ (r = 1 without a
/// threshold), m = 1 where p_t < r. 1 − p_t is formed without subtraction: as
/// [`linear_complement`] for t ∈ {0, 1} (where exp(−BCE) is σ(±x)), else as −expm1(−BCE).
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
    fn new(x: f64, t: f64, bce: f64, gamma: f64, reduced_threshold: Option<f64>) -> Geometric {
        let pt = (-bce).exp();
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
        let (complement, complement_lo) = if t == 0.0 || t == 1.0 {
            linear_complement(x, t)
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

    /// ∂(u·m·BCE)/∂x with g_m = ∂(u·m·BCE + …)/∂m: u·m·∂BCE + g_m·∂m, where ∂m = slope·∂(1 − p_t)
    /// and ∂(1 − p_t) = p_t·∂BCE, so (u·m + g_m·slope·p_t)·∂BCE. Where 1 − p_t underflows to 0 (a
    /// logit beyond ±745) slope·∂BCE is ∞·0 literally, but exactly (1 − 2t)·γ·m = 0 for a hard
    /// target (∂BCE = (1 − 2t)·(1 − p_t) there); a soft target's 1 − p_t ≥ its entropy never
    /// underflows. The anchors' NaN at a merely rounded-away 1 − p_t is not copied: slope is taken of
    /// the exact 1 − p_t, finite (the anchor artefact `saturated-focal-gradient`).
    fn backward(&self, u: f64, g_m: f64, d_bce: f64) -> f64 {
        if self.constant || self.complement == 0.0 {
            u * self.m * d_bce
        } else {
            (u * self.m + g_m * self.slope * self.pt) * d_bce
        }
    }
}

/// d(base^γ)/d(base) as PyTorch's pow backward computes it: 0 for γ = 0, else γ·base^(γ−1) (inf at
/// base = 0 for γ < 1).
fn pow_slope(base: f64, gamma: f64) -> f64 {
    if gamma == 0.0 {
        0.0
    } else {
        gamma * base.powf(gamma - 1.0)
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
/// with 1 − p_c = −expm1(log p_c), and ρ = −1 where 1 − p_c underflows to 0 (its limit): the
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
    /// l_c (without α) for log-probability `log_p` and target `t`.
    fn forward(&self, log_p: f64, t: f64) -> f64 {
        -(-log_p.exp_m1()).powf(self.gamma) * log_p * t
    }

    /// ∂(g·l_c)/∂log p_c.
    fn backward(&self, log_p: f64, t: f64, g: f64) -> f64 {
        let complement = -log_p.exp_m1();
        let rho = if complement == 0.0 {
            -1.0
        } else {
            log_p / complement
        };
        let m = complement.powf(self.gamma);
        -(g * t) * m * (1.0 - self.gamma * log_p.exp() * rho)
    }
}

// --- over a loss map -----------------------------------------------------------------------------

/// How the loss map of a focal loss is reduced, with its gradient: `mask` holds 1 for counted and
/// 0 for ignored positions (shape (B, 1, spatial…), broadcast over classes).
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

/// Reduces the loss map `loss` (B, C, spatial…) by `aggregation`; returns the reduced loss and the
/// upstream gradient on every map element.
fn aggregate(
    loss: &ArrayD<f64>,
    mask: Option<&ArrayD<f64>>,
    aggregation: Aggregation,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<(ArrayD<f64>, ArrayD<f64>)> {
    let epsilon = f64::from(f32::EPSILON);
    let shape = loss.shape();
    let (reduction, denominator) = match (aggregation, mask) {
        (Aggregation::None, _) => (Reduction::None, 1.0),
        (Aggregation::Sum, _) => (Reduction::Sum, 1.0),
        (Aggregation::MonaiMean, Some(mask)) => (
            Reduction::Mean,
            compensated_sum(mask.iter().copied()).max(epsilon),
        ),
        (Aggregation::MeanOverElements | Aggregation::MonaiMean, _) => {
            (Reduction::Mean, loss.len() as f64)
        }
        (Aggregation::MonaiSum, mask) => {
            // Σ over (b, c) of Σ_spatial l / d_b, d_b the spatial count or clamped mask sum.
            let spatial: usize = shape[2..].iter().product();
            let per_batch: Vec<f64> = (0..shape[0])
                .map(|b| match mask {
                    Some(mask) => {
                        compensated_sum(mask.index_axis(Axis(0), b).iter().copied()).max(epsilon)
                    }
                    None => spatial as f64,
                })
                .collect();
            let scale = |index: &[usize]| 1.0 / per_batch[index[0]];
            let total = compensated_sum(
                loss.indexed_iter()
                    .map(|(index, &value)| value * scale(index.slice())),
            );
            let g = grad_output_scalar(grad_output)?;
            let mut upstream = ArrayD::zeros(shape);
            for (index, value) in upstream.indexed_iter_mut() {
                *value = g * scale(index.slice());
            }
            return Ok((ArrayD::from_elem(vec![], total), upstream));
        }
    };
    let upstream = reduction.upstream(grad_output, shape, denominator)?;
    Ok((reduction.reduce(loss.clone(), denominator), upstream))
}

/// The grad_output of a scalar loss (1 when absent).
pub(super) fn grad_output_scalar(grad_output: Option<&ArrayD<f64>>) -> Result<f64> {
    Reduction::Sum
        .upstream(grad_output, &[], 1.0)
        .map(|upstream| super::scalar(&upstream))
}

/// The elements a sigmoid focal map leaves out.
pub(super) struct Kept<'a> {
    /// 1 for a counted element, 0 for an ignored one; the map's shape.
    pub(super) elements: &'a ArrayD<f64>,
    /// The (B, 1, spatial…) mask MONAI's means divide by; `None` for the plain reductions.
    pub(super) positions: Option<&'a ArrayD<f64>>,
}

/// The sigmoid focal loss over a map (B, C, spatial…) — or any shape when neither per-class
/// tensors nor `kept` are given — elementwise: l_e = w_c·FL(x_e, t_e), with α by class c = index 1,
/// pos_weight pw_c and weight w_c per class, and l_e = 0 (no gradient) where `kept` is 0. Then
/// reduced by `aggregation` (MONAI's means divide by the kept positions).
#[allow(clippy::too_many_arguments)]
pub(super) fn sigmoid_map(
    x: &ArrayD<f64>,
    t: &ArrayD<f64>,
    kept: Option<Kept>,
    focal: &SigmoidFocal,
    alpha: &Alpha,
    pos_weight: Option<&[f64]>,
    weight: Option<&[f64]>,
    aggregation: Aggregation,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let class_of = |index: &IxDyn| if index.ndim() > 1 { index[1] } else { 0 };
    let per_class =
        |values: Option<&[f64]>, index: &IxDyn| values.map_or(1.0, |v| v[class_of(index)]);
    let kept_at = |index: &IxDyn| kept.as_ref().map_or(1.0, |kept| kept.elements[index]);
    let mut loss = ArrayD::zeros(x.raw_dim());
    for (index, value) in loss.indexed_iter_mut() {
        let (xe, te) = (x[&index], t[&index]);
        let element = focal.forward(
            xe,
            te,
            alpha.sigmoid_pair(class_of(&index), te),
            per_class(pos_weight, &index),
        );
        *value = element.loss * kept_at(&index) * per_class(weight, &index);
    }
    let mask = kept.as_ref().and_then(|kept| kept.positions);
    let (reduced, upstream) = aggregate(&loss, mask, aggregation, grad_output)?;
    let mut grad_input = ArrayD::zeros(x.raw_dim());
    for (index, value) in grad_input.indexed_iter_mut() {
        let (xe, te) = (x[&index], t[&index]);
        let g = upstream[&index] * per_class(weight, &index) * kept_at(&index);
        *value = focal.backward(
            xe,
            te,
            alpha.sigmoid_pair(class_of(&index), te),
            per_class(pos_weight, &index),
            g,
            0.0,
        ) * kept_at(&index);
    }
    Ok(LossOutput {
        loss: reduced,
        grad_input,
    })
}

/// The softmax focal loss over (B, C, spatial…) logits `x` and targets `t` of the same shape:
/// l[b, c] = k_c·FL_c with k_c = α_c·w_c (`class_weight`), then ·mask, reduced by `aggregation`;
/// the gradient is multiplied by the mask once more (MONAI multiplies its input by the mask).
pub(super) fn softmax_map(
    x: &ArrayD<f64>,
    t: &ArrayD<f64>,
    mask: Option<&ArrayD<f64>>,
    focal: &SoftmaxFocal,
    class_weight: impl Fn(usize) -> f64,
    aggregation: Aggregation,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let log_probs = log_softmax(x, 1);
    let mask_at = |index: &IxDyn| {
        mask.map_or(1.0, |mask| {
            let mut position = index.slice().to_vec();
            position[1] = 0;
            mask[IxDyn(&position)]
        })
    };
    let skip = |te: f64| te == 0.0 && focal.untargeted == Untargeted::Masked;
    let mut loss = ArrayD::zeros(x.raw_dim());
    for (index, value) in loss.indexed_iter_mut() {
        let te = t[&index];
        if !skip(te) {
            *value =
                class_weight(index[1]) * focal.forward(log_probs[&index], te) * mask_at(&index);
        }
    }
    let (reduced, upstream) = aggregate(&loss, mask, aggregation, grad_output)?;
    let mut grad_log_probs = ArrayD::zeros(x.raw_dim());
    for (index, value) in grad_log_probs.indexed_iter_mut() {
        let te = t[&index];
        if !skip(te) {
            let g = upstream[&index] * mask_at(&index) * class_weight(index[1]);
            *value = focal.backward(log_probs[&index], te, g);
        }
    }
    let mut grad_input = log_softmax_backward(x, &grad_log_probs, 1);
    if mask.is_some() {
        for (index, value) in grad_input.indexed_iter_mut() {
            *value *= mask_at(&index);
        }
    }
    Ok(LossOutput {
        loss: reduced,
        grad_input,
    })
}

/// A value rounded to float32, as MONAI's `.float()` casts and smp's float32 class weights leave it.
pub(super) fn to_f32(value: f64) -> f64 {
    f64::from(value as f32)
}
