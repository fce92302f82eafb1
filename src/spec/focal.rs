//! Focal loss, written once, and every anchor's focal loss as an instance of it; also smp's
//! `SoftCrossEntropyLoss`, an instance of the class-index cross entropy.
//!
//! ```text
//! FL = −α_t·(1 − p_t)^γ·log p_t
//! ```
//!
//! The anchors agree on this for hard targets and disagree on everything around it. Each
//! disagreement is a parameter here:
//!
//! * the activation: sigmoid per element ([`SigmoidFocal`]) or softmax over the class axis
//!   ([`SoftmaxFocal`]);
//! * how p_t and the modulating factor m = (1 − p_t)^γ are formed for a soft target
//!   ([`SoftTarget`]), and what happens to the gradient where 1 − p_t = 0 ([`Saturation`]);
//! * how α maps to elements or classes ([`Alpha`]);
//! * what the mean divides by and whether ignored positions count in it ([`Aggregation`], and
//!   smp's per-class composition in [`smp_focal`]);
//! * per-class weights (kornia, MONAI) and smp's class-weighted mean over classes.
//!
//! The quirks each anchor brings are stated on its instance: smp's multiclass focal is
//! one-vs-rest sigmoid; MONAI's `sum` sums spatial means and setting ignore_index rescales the mean;
//! kornia's mean divides by C × pixels and keeps ignored pixels in the denominator; MONAI computes in
//! float32 whatever the input; the gradient of (1 − p_t)^γ at saturation is NaN for γ < 1 in
//! torchvision, smp and MONAI-softmax but 0 in kornia.

use ndarray::{ArrayD, Axis, Dimension, IxDyn, Zip};

use super::binary::{
    bce_with_logits_element, broadcast_to, check_same_shape, elementwise, log_sigmoid, sigmoid,
    sigmoid_wide, two_product, two_sum,
};
use super::cross_entropy::{
    check_float_input, class_index_cross_entropy, float_input, ClassIndexCall, MeanOver,
};
use super::positions::Values;
use super::smp::SmpMode;
use super::softmax::{log_softmax, log_softmax_backward};
use super::{compensated_sum, monai, reshaped, LossOutput, Reduction};
use crate::error::Rejection;
use crate::spec::Result;
use crate::tensor::{DType, Tensor};

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

/// What the gradient of (1 − p_t)^γ is, for 0 < γ < 1, where the anchor's own rounded 1 − p_t is
/// 0 (a saturated prediction). Elsewhere, and for γ = 0 or γ ≥ 1, the reference differentiates the
/// exact 1 − p_t.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saturation {
    /// The chain rule evaluated literally: γ·0^(γ−1) is inf and inf·0 makes the gradient NaN
    /// (torchvision, smp, MONAI softmax).
    Literal,
    /// The factor is detached there, so its gradient is 0 (kornia).
    Detached,
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
    fn sigmoid_pair(&self, class: usize, t: f64) -> Option<(f64, f64)> {
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
    fn of_class(&self, class: usize) -> f64 {
        self.sigmoid_pair(class, 1.0)
            .map_or(1.0, |(alpha, _)| alpha)
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

/// The sigmoid focal loss of one element, FL(x, t) = α_t·m·BCE with the conventions above.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SigmoidFocal {
    /// γ ≥ 0 (not validated by any anchor; a negative γ is computed as given).
    pub gamma: f64,
    /// How p_t and m are formed.
    pub soft_target: SoftTarget,
}

/// The forward values of one element.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Element {
    /// The loss l.
    loss: f64,
    /// The modulating factor m (smp normalises by Σ m).
    modulation: f64,
}

impl SigmoidFocal {
    /// l and m for logit x, target t, α pair (α₊, α₋) and pos_weight pw (only
    /// [`SoftTarget::Interpolated`] reads pw; the others take α_t = α₊·t + α₋·(1 − t)).
    ///
    /// BCE is t·softplus(−x) + (1 − t)·softplus(x) ([`bce_with_logits_element`]), never
    /// (1 − t)·x − log σ(x), which cancels on confident-correct logits.
    fn forward(&self, x: f64, t: f64, alpha: Option<(f64, f64)>, pw: f64) -> Element {
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
    /// Where smp's own rounded 1 − p_t is 0 and γ < 1 ([`anchor_saturates`]), the Geometric
    /// gradient is smp's NaN. torchvision's NaN there (its 1 − p_t rounds to 0 too) is an anchor
    /// artefact the reference does not copy (`saturated-focal-gradient`): the Linear gradient is
    /// the exact one, finite.
    fn backward(
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
                if geometric.saturates {
                    return f64::NAN;
                }
                (u * geometric.m + g_m * geometric.slope * geometric.pt) * d_bce
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

/// Whether an anchor's chain meets 0^(γ−1) = inf: its own rounded 1 − p_t is 0 and 0 ≠ γ < 1.
/// PyTorch's pow backward then multiplies inf by 0 and the anchor's gradient is NaN, although the
/// exact gradient is finite (about 1e-27 at x = 50, t = 1, γ = ½). The reference keeps the
/// anchor's NaN there, an anchor artefact its fixtures record.
fn anchor_saturates(rounded_complement: f64, gamma: f64) -> bool {
    rounded_complement == 0.0 && gamma < 1.0 && gamma != 0.0
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
    /// smp's own 1 − p_t rounds to 0 with γ < 1 ([`anchor_saturates`]).
    saturates: bool,
}

impl Geometric {
    fn new(x: f64, t: f64, bce: f64, gamma: f64, reduced_threshold: Option<f64>) -> Geometric {
        let pt = (-bce).exp();
        let saturates = anchor_saturates(1.0 - pt, gamma);
        let r = match reduced_threshold {
            Some(r) if pt < r => {
                return Geometric {
                    m: 1.0,
                    pt,
                    slope: 0.0,
                    saturates: false,
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
            saturates,
        }
    }
}

/// The softmax focal loss of one class c at one position: with log p_c from log_softmax over the
/// class axis and target t_c,
///
/// ```text
/// l_c = −α_c·(1 − p_c)^γ·log p_c·t_c
/// ∂l_c/∂log p_c = −α_c·t_c·[(1 − p_c)^γ − log p_c·γ(1 − p_c)^(γ−1)·p_c]
/// ```
///
/// with 1 − p_c = −expm1(log p_c). Where the anchor's own 1 − exp(log p_c) rounds to 0 and
/// 0 < γ < 1 the gradient is MONAI's NaN whatever t_c ([`Saturation::Literal`]) or has kornia's 0
/// from the detached factor ([`Saturation::Detached`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftmaxFocal {
    /// γ.
    pub gamma: f64,
    /// The gradient at p_c = 1.
    pub saturation: Saturation,
}

impl SoftmaxFocal {
    /// l_c (without α) for log-probability `log_p` and target `t`.
    fn forward(&self, log_p: f64, t: f64) -> f64 {
        -(-log_p.exp_m1()).powf(self.gamma) * log_p * t
    }

    /// ∂(g·l_c)/∂log p_c.
    fn backward(&self, log_p: f64, t: f64, g: f64) -> f64 {
        let rounded_complement = 1.0 - log_p.exp();
        let slope = match self.saturation {
            Saturation::Literal if anchor_saturates(rounded_complement, self.gamma) => {
                return f64::NAN
            }
            Saturation::Detached if anchor_saturates(rounded_complement, self.gamma) => 0.0,
            _ => pow_slope(-log_p.exp_m1(), self.gamma),
        };
        let m = (-log_p.exp_m1()).powf(self.gamma);
        let g_a = g * t;
        g_a * -m + g_a * log_p * slope * log_p.exp()
    }
}

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
fn grad_output_scalar(grad_output: Option<&ArrayD<f64>>) -> Result<f64> {
    Reduction::Sum
        .upstream(grad_output, &[], 1.0)
        .map(|upstream| super::scalar(&upstream))
}

/// `torchvision.ops.sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction='none')`.
///
/// ```text
/// l = α_t·BCE(x, t)·(1 − p_t)^γ,  p_t = p·t + (1 − p)·(1 − t)      (SoftTarget::Linear)
/// α_t = α·t + (1 − α)·(1 − t), or 1 when α = −1                    (Alpha::Balanced / None)
/// mean = Σ l / (number of elements)
/// ```
///
/// α must lie in [0, 1] or be exactly −1.
pub fn sigmoid_focal_loss(
    inputs: &Tensor,
    targets: &Tensor,
    alpha: f64,
    gamma: f64,
    reduction: Reduction,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    if !(0.0..=1.0).contains(&alpha) && alpha != -1.0 {
        return Err(Rejection::AlphaRange { value: alpha });
    }
    check_same_shape(inputs, targets)?;
    if !targets.dtype().is_floating() {
        return Err(Rejection::TargetDtypeMismatch {
            expected: inputs.dtype(),
            got: targets.dtype(),
        });
    }
    check_float_input(inputs)?;
    let (x, t) = (Values::read(inputs), Values::read(targets));
    let focal = SigmoidFocal {
        gamma,
        soft_target: SoftTarget::Linear,
    };
    let alpha = if alpha >= 0.0 {
        Alpha::Balanced(alpha)
    } else {
        Alpha::None
    };
    elementwise(inputs.shape(), reduction, grad_output, |i| {
        let (x, t) = (x.at(i), t.at(i));
        let pair = alpha.sigmoid_pair(0, t);
        let loss = focal.forward(x, t, pair, 1.0).loss;
        (loss, focal.backward(x, t, pair, 1.0, 1.0, 0.0))
    })
}

/// The elements a sigmoid focal map leaves out.
struct Kept<'a> {
    /// 1 for a counted element, 0 for an ignored one; the map's shape.
    elements: &'a ArrayD<f64>,
    /// The (B, 1, spatial…) mask MONAI's means divide by; `None` for the plain reductions.
    positions: Option<&'a ArrayD<f64>>,
}

/// The sigmoid focal loss over a map (B, C, spatial…) — or any shape when neither per-class
/// tensors nor `kept` are given — elementwise: l_e = w_c·FL(x_e, t_e), with α by class c = index 1,
/// pos_weight pw_c and weight w_c per class, and l_e = 0 (no gradient) where `kept` is 0. Then
/// reduced by `aggregation` (MONAI's means divide by the kept positions).
#[allow(clippy::too_many_arguments)]
fn sigmoid_map(
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

/// The non-tensor arguments of kornia's `focal_loss` and `binary_focal_loss_with_logits`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KorniaOptions {
    /// α (`focal_loss` requires it, the binary loss defaults to 0.25); `None` means no α.
    pub alpha: Option<f64>,
    /// γ (default 2).
    pub gamma: f64,
    /// none (default) / mean / sum.
    pub reduction: Reduction,
    /// Targets equal to this contribute 0 and stay in the mean (default −100); `None` ignores none.
    pub ignore_index: Option<i64>,
}

impl Aggregation {
    /// The plain reduction: none, sum, or the mean over every element of the loss map.
    fn plain(reduction: Reduction) -> Aggregation {
        match reduction {
            Reduction::None => Aggregation::None,
            Reduction::Sum => Aggregation::Sum,
            Reduction::Mean => Aggregation::MeanOverElements,
        }
    }
}

/// `kornia.losses.binary_focal_loss_with_logits(pred, target, alpha=0.25, gamma=2.0,
/// reduction='none', pos_weight=None, weight=None, ignore_index=-100)` on (B, C, *) logits:
///
/// ```text
/// l = w_c·[α·pw_c·t·(1 − p)^γ·(−log p) + (1 − α)·(1 − t)·p^γ·(−log(1 − p))]   (SoftTarget::Interpolated)
/// mean = Σ l / (number of elements)                  (ignored elements are 0 and still counted)
/// ```
///
/// pos_weight and weight are `(C,)` along axis 1 (not PyTorch's right-aligned broadcasting). The
/// powers are exp(γ·log σ(∓x)), so the gradient is finite at saturation.
pub fn kornia_binary_focal_loss_with_logits(
    pred: &Tensor,
    target: &Tensor,
    pos_weight: Option<&Tensor>,
    weight: Option<&Tensor>,
    options: &KorniaOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    check_batched(pred)?;
    check_same_shape(pred, target)?;
    let x = float_input(pred)?;
    let mut t = target.to_f64();
    let kept = t.mapv(|value| match options.ignore_index {
        Some(ignored) if value == ignored as f64 => 0.0,
        _ => 1.0,
    });
    t.zip_mut_with(&kept, |value, &kept| *value *= kept);
    let classes = pred.shape()[1];
    let pos_weight = kornia_per_class("pos_weight", pos_weight, classes)?;
    let weight = kornia_per_class("weight", weight, classes)?;
    let focal = SigmoidFocal {
        gamma: options.gamma,
        soft_target: SoftTarget::Interpolated,
    };
    let alpha = options.alpha.map_or(Alpha::None, Alpha::Balanced);
    let aggregation = Aggregation::plain(options.reduction);
    let kept = Kept {
        elements: &kept,
        positions: None,
    };
    sigmoid_map(
        &x,
        &t,
        Some(kept),
        &focal,
        &alpha,
        pos_weight.as_deref(),
        weight.as_deref(),
        aggregation,
        grad_output,
    )
}

/// kornia's `KORNIA_CHECK_SHAPE(pred, ["B", "C", "*"])`: at least two axes.
fn check_batched(pred: &Tensor) -> Result<()> {
    if pred.shape().len() < 2 {
        return Err(Rejection::InputRank {
            got: pred.shape().len(),
            min: 2,
        });
    }
    Ok(())
}

/// A kornia per-class tensor: `shape[0] == C` and C elements.
fn kornia_per_class(
    name: &str,
    tensor: Option<&Tensor>,
    classes: usize,
) -> Result<Option<Vec<f64>>> {
    let Some(tensor) = tensor else {
        return Ok(None);
    };
    let count: usize = tensor.shape().iter().product();
    if tensor.shape().first() != Some(&classes) || count != classes {
        return Err(Rejection::PerClassLength {
            name: name.to_string(),
            classes,
            got: count,
        });
    }
    Ok(Some(tensor.to_f64().iter().copied().collect()))
}

/// `kornia.losses.focal_loss(pred, target, alpha, gamma=2.0, reduction='none', weight=None,
/// ignore_index=-100)`: softmax focal over (B, C, *) logits and int64 labels (B, *):
///
/// ```text
/// l[b, c] = −α_c·w_c·(1 − p_c)^γ·log p_c·[c = y]      α_0 = 1 − α, α_c = α (Alpha::Background)
/// mean = Σ l / (B·C·pixels)                            (ignored pixels are 0 and still counted)
/// ```
///
/// The logits of ignored pixels are set to 0 before the softmax (NaN there does not propagate) and
/// their gradient is 0. At saturation the modulating factor is detached (Saturation::Detached), so
/// the gradient is 0 where PyTorch's literal chain would give NaN.
pub fn kornia_focal_loss(
    pred: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    options: &KorniaOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    check_batched(pred)?;
    let mut expected = pred.shape().to_vec();
    expected.remove(1);
    if target.shape() != expected.as_slice() {
        return Err(Rejection::TargetShapeMismatch {
            expected,
            got: target.shape().to_vec(),
        });
    }
    let labels = match target {
        Tensor::Int64(labels) => labels,
        other => return Err(Rejection::ClassIndexDtype { got: other.dtype() }),
    };
    let classes = pred.shape()[1];
    let ignored = |label: i64| Some(label) == options.ignore_index;
    if let Some(&value) = labels
        .iter()
        .find(|&&label| !ignored(label) && (label < 0 || label as usize >= classes))
    {
        return Err(Rejection::TargetOutOfBounds { value, classes });
    }
    let weight = kornia_per_class("weight", weight, classes)?;
    let mut x = float_input(pred)?;
    let mut one_hot = ArrayD::zeros(x.raw_dim());
    for (index, value) in x.indexed_iter_mut() {
        let label = labels[at_position(index.slice())];
        if ignored(label) {
            *value = 0.0;
        } else if label as usize == index[1] {
            one_hot[&index] = 1.0;
        }
    }
    let focal = SoftmaxFocal {
        gamma: options.gamma,
        saturation: Saturation::Detached,
    };
    let alpha = options.alpha.map_or(Alpha::None, Alpha::Background);
    let aggregation = Aggregation::plain(options.reduction);
    let class_weight =
        |class: usize| alpha.of_class(class) * weight.as_ref().map_or(1.0, |w| w[class]);
    softmax_map(
        &x,
        &one_hot,
        None,
        &focal,
        class_weight,
        aggregation,
        grad_output,
    )
}

/// The index of a (B, spatial…) position from a (B, C, spatial…) index.
fn at_position(index: &[usize]) -> IxDyn {
    let mut position = index.to_vec();
    position.remove(1);
    IxDyn(&position)
}

/// The softmax focal loss over (B, C, spatial…) logits `x` and targets `t` of the same shape:
/// l[b, c] = k_c·FL_c with k_c = α_c·w_c (`class_weight`), then ·mask, reduced by `aggregation`;
/// the gradient is multiplied by the mask once more (MONAI multiplies its input by the mask). Where
/// t = 0 a term is 0 with a zero gradient, except along MONAI's literal chain.
fn softmax_map(
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
    let skip = |te: f64| te == 0.0 && focal.saturation == Saturation::Detached;
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

/// A MONAI argument that is one number for every class or a sequence of one per class.
#[derive(Debug, Clone, PartialEq)]
pub enum PerClass {
    /// One value.
    Scalar(f64),
    /// One value per class.
    List(Vec<f64>),
}

/// The constructor arguments of `monai.losses.FocalLoss`, with MONAI's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct MonaiFocalOptions {
    /// Keep channel 0 (default true); false slices it off input and target before anything else.
    pub include_background: bool,
    /// One-hot encode a (B, 1, *) label target (default false).
    pub to_onehot_y: bool,
    /// γ (default 2).
    pub gamma: f64,
    /// α: a scalar or one per class (default none).
    pub alpha: Option<PerClass>,
    /// Class weights: a scalar or one per class, non-negative (default none).
    pub weight: Option<PerClass>,
    /// none / mean (default) / sum.
    pub reduction: Reduction,
    /// Softmax focal over the channels instead of sigmoid per element (default false).
    pub use_softmax: bool,
    /// Label (or sentinel) whose positions are masked out (default none).
    pub ignore_index: Option<i64>,
}

impl Default for MonaiFocalOptions {
    fn default() -> Self {
        MonaiFocalOptions {
            include_background: true,
            to_onehot_y: false,
            gamma: 2.0,
            alpha: None,
            weight: None,
            reduction: Reduction::Mean,
            use_softmax: false,
            ignore_index: None,
        }
    }
}

/// A value rounded to float32, as MONAI's `.float()` casts leave it.
fn to_f32(value: f64) -> f64 {
    f64::from(value as f32)
}

/// `monai.losses.FocalLoss(...)(input, target)` on (B, C, *) logits.
///
/// 1. `to_onehot_y` (C > 1): a (B, 1, *) label target becomes one-hot, a label equal to an
///    ignore_index outside [0, C) first becoming 0 (a target of fewer than two axes gains trailing
///    axes of size 1 first, so a (B,) label vector is read as (B, 1)). `include_background=False`
///    (C > 1) then drops channel 0 of input and target, *before* any softmax; a target without a
///    channel axis is rejected there (MONAI's `target[:, 1:]` fails), and with ignore_index at
///    the mask (MONAI reads `target.shape[1]`).
/// 2. With ignore_index, a mask m of shape (B, 1, *) from the original target: label ≠ ii for a
///    one-channel target; 1 − t_ii for a one-hot target when 0 ≤ ii < C; else \[Σ_c t_c > 0\].
///    Input and target are multiplied by m.
/// 3. Everything is cast to float32: the reference rounds the masked input, target, mask, α and
///    weights to float32 and computes in f64 from there (MONAI's arithmetic itself is float32).
/// 4. Sigmoid: l = α_t·m_t·(x − x·t − log σ(x)) with m_t = exp(γ·log σ(−x(2t − 1)))
///    ([`SoftTarget::LogSigmoid`]); a scalar α is [`Alpha::Balanced`], a sequence α_c applies only
///    where t = 1 ([`Alpha::PositivesPerClass`]). The gradient is finite at saturation.
///    Softmax: l_c = −α_c·(1 − p_c)^γ·log p_c·t_c per channel (not summed over classes); a scalar α
///    is [`Alpha::Background`] — and is ignored when include_background is false — a sequence is
///    α_c. At saturation with γ < 1 the gradient is NaN ([`Saturation::Literal`]).
/// 5. l·m, then l·w_c (scalar or per channel, all ≥ 0).
/// 6. `mean`: Σ l / (B·C·spatial), but Σ l / max(Σ m, ε_f32) with ignore_index (not divided by C);
///    `sum`: Σ_{b,c} of spatial means ([`Aggregation::MonaiSum`]); `none`: the (B, C, *) map.
pub fn monai_focal_loss(
    input: &Tensor,
    target: &Tensor,
    options: &MonaiFocalOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    check_batched(input)?;
    let full_logits = float_input(input)?;
    let channels = input.shape()[1];
    let original = target.to_f64();
    let mut t = original.clone();
    let mut one_hot = None;
    if options.to_onehot_y && channels > 1 {
        // MONAI's one_hot first gives a target of fewer than two axes trailing axes of size 1.
        while t.ndim() < 2 {
            t.insert_axis_inplace(Axis(t.ndim()));
        }
        one_hot = Some(monai::OneHot::new(&t, channels, options.ignore_index)?);
    }
    let first = usize::from(!options.include_background && channels > 1);
    if first == 1 && t.ndim() < 2 {
        return Err(Rejection::UnsupportedOption {
            option: "include_background=False".into(),
            context: format!(
                "for a target of shape {:?}: MONAI slices target[:, 1:], which needs a channel axis",
                t.shape()
            ),
        });
    }
    let x = full_logits.slice_axis(Axis(1), (first..).into()).to_owned();
    let mask = match options.ignore_index {
        Some(ignored) => Some(monai::ignore_mask(&original, ignored)?.mapv(to_f32)),
        None => None,
    };
    // The one-hot target is built only once its shape is known to be the input's.
    let t = match one_hot {
        Some(encoded) if encoded.shape() != input.shape() => {
            let mut got = encoded.shape().to_vec();
            got[1] -= first;
            return Err(Rejection::TargetShapeMismatch {
                expected: x.shape().to_vec(),
                got,
            });
        }
        Some(encoded) => encoded.build(),
        None => t,
    };
    let t = if first == 1 {
        // Python's slice 1: of an empty axis is empty.
        let start = first.min(t.shape()[1]);
        t.slice_axis(Axis(1), (start..).into()).to_owned()
    } else {
        t
    };
    if t.shape() != x.shape() {
        return Err(Rejection::TargetShapeMismatch {
            expected: x.shape().to_vec(),
            got: t.shape().to_vec(),
        });
    }
    let kept = match &mask {
        Some(mask) => mask
            .broadcast(x.raw_dim())
            .map(|view| view.to_owned())
            .ok_or_else(|| Rejection::TargetShapeMismatch {
                expected: x.shape().to_vec(),
                got: original.shape().to_vec(),
            })?,
        None => ArrayD::ones(x.raw_dim()),
    };
    let x = (&x * &kept).mapv(to_f32);
    let t = (&t * &kept).mapv(to_f32);
    let classes = x.shape()[1];
    let alpha = monai_alpha(options, classes)?;
    let weight = monai_class_weight(options.weight.as_ref(), classes)?;
    let aggregation = match options.reduction {
        Reduction::None => Aggregation::None,
        Reduction::Sum => Aggregation::MonaiSum,
        Reduction::Mean => Aggregation::MonaiMean,
    };
    let output = if options.use_softmax {
        let focal = SoftmaxFocal {
            gamma: options.gamma,
            saturation: Saturation::Literal,
        };
        let class_weight = |class: usize| alpha.of_class(class) * weight[class];
        softmax_map(
            &x,
            &t,
            mask.as_ref(),
            &focal,
            class_weight,
            aggregation,
            grad_output,
        )?
    } else {
        let focal = SigmoidFocal {
            gamma: options.gamma,
            soft_target: SoftTarget::LogSigmoid,
        };
        let kept = mask.as_ref().map(|mask| Kept {
            elements: &kept,
            positions: Some(mask),
        });
        sigmoid_map(
            &x,
            &t,
            kept,
            &focal,
            &alpha,
            None,
            Some(&weight),
            aggregation,
            grad_output,
        )?
    };
    let mut grad_input = ArrayD::zeros(full_logits.raw_dim());
    grad_input
        .slice_axis_mut(Axis(1), (first..).into())
        .assign(&output.grad_input);
    Ok(LossOutput {
        loss: output.loss,
        grad_input,
    })
}

/// MONAI's α for `classes` channels (after slicing), rounded to float32.
fn monai_alpha(options: &MonaiFocalOptions, classes: usize) -> Result<Alpha> {
    Ok(match &options.alpha {
        None => Alpha::None,
        Some(PerClass::Scalar(_)) if options.use_softmax && !options.include_background => {
            Alpha::None
        }
        Some(PerClass::Scalar(alpha)) if options.use_softmax => Alpha::Background(to_f32(*alpha)),
        Some(PerClass::Scalar(alpha)) => Alpha::Balanced(to_f32(*alpha)),
        Some(PerClass::List(alphas)) => {
            if alphas.len() != classes {
                return Err(Rejection::PerClassLength {
                    name: "alpha".into(),
                    classes,
                    got: alphas.len(),
                });
            }
            let alphas = alphas.iter().copied().map(to_f32).collect();
            if options.use_softmax {
                Alpha::PerClass(alphas)
            } else {
                Alpha::PositivesPerClass(alphas)
            }
        }
    })
}

/// MONAI's class weights for `classes` channels, rounded to float32 (ones without weight).
fn monai_class_weight(weight: Option<&PerClass>, classes: usize) -> Result<Vec<f64>> {
    let weights = match weight {
        None => return Ok(vec![1.0; classes]),
        Some(PerClass::Scalar(weight)) => vec![*weight; classes],
        Some(PerClass::List(weights)) => {
            if classes == 1 {
                return Err(Rejection::UnsupportedOption {
                    option: "a per-class weight".into(),
                    context: "for single-channel outputs".into(),
                });
            }
            if weights.len() != classes {
                return Err(Rejection::PerClassLength {
                    name: "weight".into(),
                    classes,
                    got: weights.len(),
                });
            }
            weights.clone()
        }
    };
    match weights.iter().find(|&&weight| weight < 0.0) {
        Some(&value) => Err(Rejection::NegativeParameter {
            name: "weight".into(),
            value,
        }),
        None => Ok(weights.into_iter().map(to_f32).collect()),
    }
}

/// smp's focal reductions: mean, sum, batchwise_mean (a sum over the first axis); any other string
/// leaves the loss unreduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmpReduction {
    /// Σ l / n.
    Mean,
    /// Σ l.
    Sum,
    /// Σ over axis 0.
    BatchwiseMean,
    /// No reduction.
    Unreduced,
}

impl SmpReduction {
    /// smp's reading of a reduction string.
    pub fn parse(name: &str) -> SmpReduction {
        match name {
            "mean" => SmpReduction::Mean,
            "sum" => SmpReduction::Sum,
            "batchwise_mean" => SmpReduction::BatchwiseMean,
            _ => SmpReduction::Unreduced,
        }
    }

    /// The reduced values of a group's loss array.
    fn reduce(self, values: &ArrayD<f64>) -> ArrayD<f64> {
        let total = || ArrayD::from_elem(vec![], compensated_sum(values.iter().copied()));
        match self {
            SmpReduction::Mean => total() / values.len() as f64,
            SmpReduction::Sum => total(),
            SmpReduction::BatchwiseMean => {
                values.map_axis(Axis(0), |lane| compensated_sum(lane.iter().copied()))
            }
            SmpReduction::Unreduced => values.clone(),
        }
    }

    /// The upstream gradient on each element of a group of `shape`, from the gradient on its
    /// reduced values.
    fn expand(self, upstream: &ArrayD<f64>, shape: &[usize]) -> ArrayD<f64> {
        let count: usize = shape.iter().product();
        let mut expanded = ArrayD::zeros(shape);
        for (index, value) in expanded.indexed_iter_mut() {
            *value = match self {
                SmpReduction::Mean => super::scalar(upstream) / count as f64,
                SmpReduction::Sum => super::scalar(upstream),
                SmpReduction::BatchwiseMean => upstream[&index.slice()[1..]],
                SmpReduction::Unreduced => upstream[&index],
            };
        }
        expanded
    }
}

/// The constructor arguments of `smp.losses.FocalLoss`, with smp's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SmpFocalOptions {
    /// binary / multiclass / multilabel (required).
    pub mode: SmpMode,
    /// α (default none: no weighting).
    pub alpha: Option<f64>,
    /// γ (default 2).
    pub gamma: f64,
    /// Targets equal to this are dropped (default none).
    pub ignore_index: Option<i64>,
    /// Logits (default) or probabilities.
    pub from_logits: bool,
    /// Probabilities are clamped to [eps, 1 − eps] (default 1e-7).
    pub eps: f64,
    /// The reduction of each focal call.
    pub reduction: SmpReduction,
    /// Divide by Σ m (clamped at 1e-6) per focal call.
    pub normalized: bool,
    /// r: the reduced focal loss.
    pub reduced_threshold: Option<f64>,
    /// Per-class weights of the mean over classes (not in binary mode).
    pub class_weights: Option<Vec<f64>>,
}

/// The elements one call of smp's `focal_loss_with_logits` sees: where they are in y_pred, their
/// targets, and the shape of the tensor they form.
struct Group {
    indices: Vec<IxDyn>,
    targets: Vec<f64>,
    shape: Vec<usize>,
}

/// `segmentation_models_pytorch.losses.FocalLoss(mode, ...)(y_pred, y_true)`.
///
/// Every mode calls one sigmoid focal function ([`SoftTarget::Geometric`]: p_t = exp(−BCE)) on
/// groups of elements:
///
/// ```text
/// l_i = α_t·m_i·BCE_i,  m_i = (1 − p_t)^γ  (or ((1 − p_t)/r)^γ, 1 below r)   α_t = α·t + (1 − α)(1 − t)
/// normalized: l_i / max(Σ_group m, 1e-6)
/// reduction per group: mean (Σ/n) | sum | batchwise_mean (Σ over axis 0) | anything else: none
/// ```
///
/// * binary: one group, every element flattened, ignored targets dropped; `none` gives the
///   flattened 1-D tensor of kept elements.
/// * multiclass: **one-vs-rest sigmoid**, not softmax: group c is y_pred[:, c] against [y = c];
///   multilabel: y_pred[:, c] against y_true[:, c]. The reduced groups are stacked (C, …) and
///   averaged — `Σ(stack·w)/Σw` with class_weights (float32, broadcast right-aligned, so they only
///   fit a (C,) stack) — so the result is a scalar even for `none`. With ignore_index a group is
///   1-D (the kept positions). Multilabel with ignore_index fails in smp (a 4-D mask indexes a 3-D
///   target).
/// * from_logits=False: p is clamped to [eps, 1 − eps] (no gradient outside) and turned into
///   log(p/(1 − p)) (binary, multilabel) or log p (multiclass, then fed to the *sigmoid* focal).
/// * All elements ignored: the mean of nothing, NaN. γ < 1 at saturation: NaN gradient.
pub fn smp_focal(
    y_pred: &Tensor,
    y_true: &Tensor,
    options: &SmpFocalOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    if options.mode == SmpMode::Binary && options.class_weights.is_some() {
        return Err(Rejection::UnsupportedOption {
            option: "class_weights".into(),
            context: "with mode=binary".into(),
        });
    }
    let raw = float_input(y_pred)?;
    let (logits, slope) = smp_logits(&raw, options);
    let groups = smp_groups(y_pred, y_true, options)?;
    let focal = SigmoidFocal {
        gamma: options.gamma,
        soft_target: SoftTarget::Geometric {
            reduced_threshold: options.reduced_threshold,
        },
    };
    let alpha = options.alpha.map(|alpha| (alpha, 1.0 - alpha));
    let normalizer = 1e-6;
    // Forward: each group's loss array (normalised) and its normaliser.
    let mut forwards = Vec::new();
    for group in &groups {
        let elements: Vec<Element> = group
            .indices
            .iter()
            .zip(&group.targets)
            .map(|(index, &t)| focal.forward(logits[index], t, alpha, 1.0))
            .collect();
        let norm = if options.normalized {
            compensated_sum(elements.iter().map(|element| element.modulation)).max(normalizer)
        } else {
            1.0
        };
        let losses = elements
            .iter()
            .map(|element| element.loss)
            .collect::<Vec<_>>();
        let values = ArrayD::from_shape_vec(
            group.shape.clone(),
            losses.iter().map(|l| l / norm).collect(),
        )
        .map_err(|_| shape_error(y_pred, y_true))?;
        let modulation_sum = compensated_sum(elements.iter().map(|element| element.modulation));
        forwards.push((values, losses, norm, modulation_sum));
    }
    let reduced: Vec<ArrayD<f64>> = forwards
        .iter()
        .map(|(values, ..)| options.reduction.reduce(values))
        .collect();
    // Compose the groups and find the upstream gradient on each group's reduced values.
    let (loss, group_upstreams) = if options.mode == SmpMode::Binary {
        let upstream = Reduction::None.upstream(grad_output, reduced[0].shape(), 1.0)?;
        (reduced[0].clone(), vec![upstream])
    } else {
        let views: Vec<_> = reduced.iter().map(|values| values.view()).collect();
        let stack = ndarray::stack(Axis(0), &views).map_err(|_| shape_error(y_pred, y_true))?;
        let g = grad_output_scalar(grad_output)?;
        let (weights, total) = match &options.class_weights {
            Some(weights) => {
                let weights: Vec<f64> = weights.iter().copied().map(to_f32).collect();
                let total = to_f32(compensated_sum(weights.iter().copied()));
                let tensor = Tensor::Float64(
                    ArrayD::from_shape_vec(vec![weights.len()], weights)
                        .map_err(|_| shape_error(y_pred, y_true))?,
                );
                (
                    broadcast_to("class_weights", &tensor, stack.shape())?,
                    total,
                )
            }
            None => (ArrayD::ones(stack.shape()), stack.len() as f64),
        };
        let loss = compensated_sum(stack.iter().zip(&weights).map(|(l, w)| l * w)) / total;
        let upstream = weights.mapv(|w| g * w / total);
        let per_group = upstream.outer_iter().map(|view| view.to_owned()).collect();
        (ArrayD::from_elem(vec![], loss), per_group)
    };
    let mut grad_input = ArrayD::zeros(raw.raw_dim());
    for ((group, (_, losses, norm, modulation_sum)), upstream) in
        groups.iter().zip(&forwards).zip(&group_upstreams)
    {
        let element_upstream = options.reduction.expand(upstream, &group.shape);
        let upstream_modulation = if options.normalized && *modulation_sum >= normalizer {
            -compensated_sum(element_upstream.iter().zip(losses).map(|(u, l)| u * l))
                / (norm * norm)
        } else {
            0.0
        };
        for ((index, &t), &u) in group
            .indices
            .iter()
            .zip(&group.targets)
            .zip(&element_upstream)
        {
            if let Some(slope) = slope[index] {
                grad_input[index] +=
                    focal.backward(logits[index], t, alpha, 1.0, u / norm, upstream_modulation)
                        * slope;
            }
        }
    }
    Ok(LossOutput { loss, grad_input })
}

/// The shape error of an smp call whose target does not fit the prediction.
fn shape_error(y_pred: &Tensor, y_true: &Tensor) -> Rejection {
    Rejection::TargetShapeMismatch {
        expected: y_pred.shape().to_vec(),
        got: y_true.shape().to_vec(),
    }
}

/// The logits smp's focal sees and their derivative with respect to y_pred: y_pred itself, or for
/// probabilities p = clamp(y_pred, eps, 1 − eps) → log(p/(1 − p)) (slope 1/(p(1 − p))) or, in
/// multiclass mode, log p (slope 1/p). Where the clamp is active — everywhere for eps > ½, when
/// torch's clamp gives 1 − eps — the slope is `None`: torch's clamp backward selects 0 there, so
/// not even a NaN from the focal term passes.
fn smp_logits(raw: &ArrayD<f64>, options: &SmpFocalOptions) -> (ArrayD<f64>, ArrayD<Option<f64>>) {
    if options.from_logits {
        return (raw.clone(), ArrayD::from_elem(raw.raw_dim(), Some(1.0)));
    }
    let (low, high) = (options.eps, 1.0 - options.eps);
    let p = raw.mapv(|value| torch_clamp(value, low, high));
    let multiclass = options.mode == SmpMode::Multiclass;
    let slope = Zip::from(raw).and(&p).map_collect(|&value, &p| {
        let inside = value >= low && value <= high;
        inside.then(|| {
            if multiclass {
                1.0 / p
            } else {
                1.0 / (p * (1.0 - p))
            }
        })
    });
    if multiclass {
        (p.mapv(f64::ln), slope)
    } else {
        (p.mapv(|p| (p / (1.0 - p)).ln()), slope)
    }
}

/// `torch.clamp(x, low, high)` = min(max(x, low), high): NaN (in x or a bound) stays NaN, and
/// low > high gives high everywhere.
fn torch_clamp(x: f64, low: f64, high: f64) -> f64 {
    if x.is_nan() || low.is_nan() || high.is_nan() {
        f64::NAN
    } else {
        x.max(low).min(high)
    }
}

/// The groups of one smp focal call per mode (see [`smp_focal`]).
fn smp_groups(y_pred: &Tensor, y_true: &Tensor, options: &SmpFocalOptions) -> Result<Vec<Group>> {
    let pred_shape = y_pred.shape();
    let targets = y_true.to_f64();
    let kept = |label: f64| {
        options
            .ignore_index
            .is_none_or(|ignored| label != ignored as f64)
    };
    match options.mode {
        SmpMode::Binary => {
            if targets.len() != raw_len(pred_shape) {
                return Err(shape_error(y_pred, y_true));
            }
            let flat_pred: Vec<IxDyn> = ndarray::indices(pred_shape).into_iter().collect();
            let (indices, labels): (Vec<IxDyn>, Vec<f64>) = flat_pred
                .into_iter()
                .zip(targets.iter().copied())
                .filter(|(_, label)| kept(*label))
                .unzip();
            let shape = vec![labels.len()];
            Ok(vec![Group {
                indices,
                targets: labels,
                shape,
            }])
        }
        SmpMode::Multiclass | SmpMode::Multilabel => {
            if pred_shape.len() < 2 {
                return Err(Rejection::InputRank {
                    got: pred_shape.len(),
                    min: 2,
                });
            }
            let multilabel = options.mode == SmpMode::Multilabel;
            if multilabel && options.ignore_index.is_some() {
                return Err(Rejection::UnsupportedOption {
                    option: "ignore_index".into(),
                    context: "with mode=multilabel (smp indexes each class's 3-D target with the 4-D mask)".into(),
                });
            }
            let mut position_shape = pred_shape.to_vec();
            position_shape.remove(1);
            let expected: &[usize] = if multilabel {
                pred_shape
            } else {
                &position_shape
            };
            if targets.shape() != expected {
                return Err(shape_error(y_pred, y_true));
            }
            let positions: Vec<IxDyn> = ndarray::indices(position_shape.as_slice())
                .into_iter()
                .collect();
            let groups = (0..pred_shape[1])
                .map(|class| {
                    let mut group = Group {
                        indices: Vec::new(),
                        targets: Vec::new(),
                        shape: Vec::new(),
                    };
                    for position in &positions {
                        let mut index = position.slice().to_vec();
                        index.insert(1, class);
                        let index = IxDyn(&index);
                        let label = if multilabel {
                            targets[&index]
                        } else {
                            targets[position]
                        };
                        if !multilabel && !kept(label) {
                            continue;
                        }
                        let t = if multilabel {
                            label
                        } else {
                            f64::from(u8::from(label == class as f64))
                        };
                        group.indices.push(index);
                        group.targets.push(t);
                    }
                    group.shape = if options.ignore_index.is_some() {
                        vec![group.targets.len()]
                    } else {
                        position_shape.clone()
                    };
                    group
                })
                .collect();
            Ok(groups)
        }
    }
}

/// The number of elements of a shape.
fn raw_len(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The constructor arguments of `smp.losses.SoftCrossEntropyLoss` (`dim` is always 1 here).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftCrossEntropyOptions {
    /// none / mean / sum (smp reduces only mean and sum; anything else is none).
    pub reduction: Reduction,
    /// ε (smp's default `None` crashes; no range check, no clamp).
    pub smooth_factor: f64,
    /// Labels equal to this contribute 0 and stay in the mean (default −100); `None`: none.
    pub ignore_index: Option<i64>,
}

/// `segmentation_models_pytorch.losses.SoftCrossEntropyLoss(reduction, smooth_factor,
/// ignore_index)(y_pred, y_true)`: fairseq's label-smoothed NLL over log_softmax on axis 1, the
/// class-index cross entropy without weights (`class_index_loss`) with one change:
///
/// ```text
/// l_n = (1 − ε)·(−log p_{n,y_n}) + (ε/C)·Σ_c(−log p_{n,c}),  0 where y_n = ignore_index
/// mean = Σ_n l_n / (number of positions)          (ignored positions stay in the denominator)
/// ```
///
/// `none` returns (N, 1, *) when ignore_index is set and (N, *) when it is `None`. A label outside
/// [0, C) that is not ignored fails (PyTorch's gather). With ε = 0 the smoothing term is skipped
/// (smp would multiply an infinite term by 0 and give NaN for a −inf logit).
pub fn smp_soft_cross_entropy(
    y_pred: &Tensor,
    y_true: &Tensor,
    options: &SoftCrossEntropyOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    check_batched(y_pred)?;
    let classes = y_pred.shape()[1];
    let mut positions = y_pred.shape().to_vec();
    positions.remove(1);
    let mut unsqueezed = positions.clone();
    unsqueezed.insert(1, 1);
    let labels = match y_true {
        Tensor::Int64(labels) => labels,
        other => return Err(Rejection::ClassIndexDtype { got: other.dtype() }),
    };
    if labels.shape() != positions.as_slice() && labels.shape() != unsqueezed.as_slice() {
        return Err(Rejection::TargetShapeMismatch {
            expected: positions,
            got: labels.shape().to_vec(),
        });
    }
    let call = ClassIndexCall {
        targets: reshaped(labels.clone(), IxDyn(&positions))
            .ok_or_else(|| shape_error(y_pred, y_true))?,
        weights: ndarray::Array1::ones(classes),
        weighted: false,
        target_dtype: DType::Int64,
        class_axis: 1,
    };
    let output_shape = if options.ignore_index.is_some() && options.reduction == Reduction::None {
        unsqueezed
    } else {
        positions.clone()
    };
    let grad_output = match (grad_output, options.reduction) {
        (Some(given), Reduction::None) => {
            if given.shape() != output_shape.as_slice() {
                return Err(Rejection::GradOutputShape {
                    expected: output_shape,
                    got: given.shape().to_vec(),
                });
            }
            Some(
                reshaped(given.clone(), IxDyn(&positions))
                    .ok_or_else(|| shape_error(y_pred, y_true))?,
            )
        }
        (given, _) => given.cloned(),
    };
    check_float_input(y_pred)?;
    let LossOutput { loss, grad_input } = class_index_cross_entropy(
        y_pred,
        &call,
        options.ignore_index,
        options.smooth_factor,
        MeanOver::Positions,
        options.reduction,
        grad_output.as_ref(),
    )?;
    let loss = if options.reduction == Reduction::None {
        reshaped(loss, IxDyn(&output_shape)).ok_or_else(|| shape_error(y_pred, y_true))?
    } else {
        loss
    };
    Ok(LossOutput { loss, grad_input })
}
