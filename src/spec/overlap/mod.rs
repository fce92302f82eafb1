//! The overlap family: Dice, Jaccard (IoU), Tversky and generalized Dice.
//!
//! Every library writes these as one ratio of sums, and differs in which sums, which constants,
//! and how the ratios are averaged. `overlap` is that ratio once, with every convention an explicit
//! field of [`Convention`]. Each library's loss is a thin front end in its own module that
//! validates the call as the library does, turns its prediction and target into the operands
//! (probabilities `p` and targets `t` of shape `(N, C, S)`, `S` the flattened spatial axes, with an
//! optional position mask), and picks a convention:
//!
//! | instance | intersection | score (k·I + nr)/(k·I + α·FP + β·FN + dr) | groups | absent classes | weights |
//! |---|---|---|---|---|---|
//! | [`textbook::loss`] soft Dice / IoU | Σpt | k=2, α=β=1 / k=1, α=β=1; nr=dr=smooth | image × class | kept | – |
//! | [`smp::loss`] Dice / Jaccard / Tversky | Σmin(p,t) (L1) | k=1; α=β=½ / α=β=1 / α, β; nr=dr=smooth; D clamped ≥ eps | class, pooled over the batch | zeroed, still averaged | normalised Σwl/Σw; then (·)^γ |
//! | [`monai::loss`] Dice / Jaccard | Σpt; Σmin (soft_label); Σp², Σt² (squared_pred) | k=2, α=β=1 / α=β=2 | image × class (or class, `batch`) | kept | w·l, plain mean |
//! | [`monai::loss`] Tversky | Σpt; Σmin (soft_label) | k=1, α, β | image × class (or class) | kept | – |
//! | [`monai::loss`] generalized Dice | Σpt; Σmin (soft_label) | k=2, α=β=1 over Σ_c w_c·(…) | image (or batch) | weight 1/T² → max | w_c from T, float32 |
//! | [`kornia::dice`] micro / macro | Σpt | k=2, α=β=1, nr=0, dr=eps | image (classes pooled / per class) | – / dropped | inside the sums / Σ_{present} wl / Σ_{present} w |
//! | [`kornia::tversky`] | Σpt | k=1, α, β, nr=0, dr=eps | image × class | dropped | – |
//!
//! FP = P − I and FN = T − I, with P, T the prediction and target sums (sums of squares for MONAI's
//! `squared_pred`). MONAI's Tversky and kornia's compute FP = Σp(1−t) and FN = Σ(1−p)t directly,
//! which is the same quantity.
//!
//! # Numerics
//!
//! Near a perfect match the score is within a few ulps of 1, and 1 − s, written so, keeps only
//! the rounding errors of s. The loss is computed instead as the shortfall over the denominator,
//!
//! ```text
//! 1 − s = (D − N)/D = (α·FP + β·FN + dr − nr)/D
//! ```
//!
//! with FP and FN summed from their own per-element terms (p·(1 − t), max(p − t, 0), …; see
//! [`Intersection`]), never as P − I. For probabilities these terms are non-negative (with
//! `squared_pred`, the mismatch α·(p − t)² is), so nothing cancels. The sums are compensated, and
//! the few operations per score are carried in double-double, so that the loss and the two
//! gradient coefficients of each score are rounded to f64 once.
//!
//! Each operand comes with its complement q = 1 − p, computed by the activation without a
//! subtraction (σ(−x) for the sigmoid, Σ_{c'≠c} e_c'/Z for the softmax; see `operands`), and every
//! term that needs 1 − p takes q: fn = t·q, and p − t = (1 − t) − q where p > ½, which also decides
//! the side of the L1 kink p = t as the exact p does. A p that rounds to 1 thus keeps its
//! shortfall, and so do the activations' backward passes σ′ = σ(x)·σ(−x) and the softmax's
//! p_k·(g_k·q_k − Σ_{c≠k} p_c·g_c).

pub mod kornia;
pub mod monai;
mod operands;
pub mod smp;
pub mod textbook;
mod wide;

use std::thread;

use ndarray::{Array2, ArrayD, IxDyn, Zip};

use super::positions::{threads_for, Layout, Position};
use super::trace::{number, Fact};
use super::{compensated_sum, reshaped, Reduction};
use crate::error::Rejection;
use crate::spec::binary::two_sum;
use crate::spec::Result;
use operands::{Element, Operands};
use wide::Wide;

/// What one element contributes to the intersection I, the false positives FP and the false
/// negatives FN of its (group, class), and to the target size T.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intersection {
    /// i = p·t, fp = p·(1 − t), fn = t·(1 − p), size t: I = Σpt, P = Σp, T = Σt.
    /// ∂i/∂p = t, ∂fp/∂p = 1 − t.
    Product,
    /// i = min(p, t), fp = max(p − t, 0), fn = max(t − p, 0), size t: smp ≥ 0.6 and MONAI
    /// `soft_label` write I = (Σp + Σt − Σ|p − t|)/2, FP = Σp − I, FN = Σt − I, the same sums.
    /// ∂i/∂p = (1 − sign(p − t))/2 with sign(0) = 0 and ∂fp/∂p = 1 − ∂i/∂p, so ½ each at the kink
    /// p = t (torch's subgradient of |·| at 0), where the product form would give t.
    ///
    /// MONAI writes P = ‖p‖₁ = Σ|p|, equal to Σp for p ≥ 0; its gradient sign(p) differs from 1
    /// only where p = 0, which happens at masked positions, whose gradient the mask zeroes anyway.
    L1,
    /// i = p·t, fp = p·(p − t), fn = t·(t − p), size t²: I = Σpt, P = Σp², T = Σt² (MONAI
    /// `squared_pred`, which forms I as (P + T − Σ(p − t)²)/2, the same quantity).
    /// ∂i/∂p = t, ∂fp/∂p = 2p − t. The mismatch α·fp + β·fn is formed as (p − t)·(α·p − β·t),
    /// which is α·(p − t)² for MONAI's α = β.
    Squared,
}

impl Intersection {
    /// One element's (i, α·fp + β·fn, size), from p, its complement q = 1 − p and t.
    #[inline]
    fn terms(self, element: &Element, alpha: f64, beta: f64) -> (f64, f64, f64) {
        let Element { p, q, t } = *element;
        match self {
            Intersection::Product => (p * t, alpha * (p * (1.0 - t)) + beta * (t * q), t),
            Intersection::L1 => {
                let excess = excess(element);
                // excess is 0 or NaN in the last arm; a NaN reaches both parts.
                let (i, over, under) = if excess > 0.0 {
                    (t, excess, 0.0)
                } else if excess < 0.0 {
                    (p, 0.0, -excess)
                } else {
                    (p, excess, excess)
                };
                (i, alpha * over + beta * under, t)
            }
            Intersection::Squared => {
                // α·p − β·t = α·(p − t) + (α − β)·t.
                let excess = excess(element);
                (p * t, excess * (alpha * excess + (alpha - beta) * t), t * t)
            }
        }
    }

    /// One element's (∂fp/∂p, ∂i/∂p); ∂fn/∂p = −∂i/∂p, T being constant.
    #[inline]
    fn slopes(self, element: &Element) -> (f64, f64) {
        let Element { p, t, .. } = *element;
        match self {
            Intersection::Product => (1.0 - t, t),
            Intersection::L1 => {
                let excess = excess(element);
                if excess > 0.0 {
                    (1.0, 0.0)
                } else if excess < 0.0 {
                    (0.0, 1.0)
                } else {
                    (0.5, 0.5)
                }
            }
            Intersection::Squared => (2.0 * p - t, t),
        }
    }
}

/// p − t, from q = 1 − p where p > ½: (1 − t) − q with 1 − t carried exactly, so that near
/// p = t = 1 the difference keeps q's digits instead of p's rounding error, and its sign (the
/// side of the kink p = t) is the exact p's.
fn excess(element: &Element) -> f64 {
    let Element { p, q, t } = *element;
    if p > 0.5 {
        let (one_minus_t, rounding) = two_sum(1.0, -t);
        (one_minus_t - q) + rounding
    } else {
        p - t
    }
}

/// What protects the score's denominator D.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Guard {
    /// D as it is (MONAI and the textbook rely on dr > 0; kornia's Tversky on present classes).
    None,
    /// max(D, ε) (smp's `clamp_min(eps)`): where D ≤ ε the score is (k·I + nr)/ε and no gradient
    /// flows through D; at D = ε exactly none flows either (torch's clamp_min passes the gradient
    /// only where D > ε).
    ClampMin(f64),
    /// Score 0 with a zero gradient where D − dr = 0, i.e. where the sums are all zero (kornia's
    /// `masked_fill` of an empty cardinality).
    ZeroIfEmpty,
}

/// The score s = (k·I + nr) / guard(D), D = k·I + α·FP + β·FN + dr.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    /// k, the intersection's multiplicity: 2 for Dice written as 2I/(P + T), 1 for Jaccard/Tversky.
    pub k: f64,
    /// α, the weight of the false positives FP = P − I.
    pub alpha: f64,
    /// β, the weight of the false negatives FN = T − I.
    pub beta: f64,
    /// nr, added to the numerator.
    pub smooth_nr: f64,
    /// dr, added to the denominator.
    pub smooth_dr: f64,
    /// What protects the denominator.
    pub guard: Guard,
}

/// A score, its complement and their slopes, in double-double.
struct Score {
    /// s.
    score: Wide,
    /// 1 − s, formed without the subtraction.
    miss: Wide,
    /// ∂(1 − s)/∂E with E = α·FP + β·FN.
    by_mismatch: Wide,
    /// ∂(1 − s)/∂I.
    by_intersection: Wide,
}

impl Ratio {
    /// The score of a (group, class) from its sums I and E = α·FP + β·FN:
    ///
    /// ```text
    /// N = k·I + nr,  D = k·I + E + dr,  s = N/D
    /// 1 − s = L/D with L = E + dr − nr, the shortfall D − N formed from its parts
    /// ∂(1 − s)/∂E = N/D² = s/D,  ∂(1 − s)/∂I = −k·L/D² = −k·(1 − s)/D
    /// ```
    ///
    /// Under [`Guard::ClampMin`] with D ≤ ε: s = N/ε, 1 − s = (ε − D + L)/ε, ∂(1 − s)/∂E = 0,
    /// ∂(1 − s)/∂I = −k/ε; under [`Guard::ZeroIfEmpty`] with D = dr and no sum: s = 0 and both
    /// slopes 0.
    fn score(&self, intersection: Wide, mismatch: Wide) -> Score {
        let numerator = intersection * self.k + self.smooth_nr;
        let bare = intersection * self.k + mismatch;
        let denominator = bare + self.smooth_dr;
        let shortfall = mismatch + (Wide::from(self.smooth_dr) - self.smooth_nr);
        match self.guard {
            Guard::ClampMin(eps) if denominator.value() <= eps => Score {
                score: numerator / eps,
                miss: (Wide::from(eps) - denominator + shortfall) / eps,
                by_mismatch: Wide::ZERO,
                by_intersection: Wide::from(-self.k) / eps,
            },
            Guard::ZeroIfEmpty if bare.value() == 0.0 => Score {
                score: Wide::ZERO,
                miss: Wide::ONE,
                by_mismatch: Wide::ZERO,
                by_intersection: Wide::ZERO,
            },
            _ => {
                let score = numerator / denominator;
                let miss = shortfall / denominator;
                Score {
                    score,
                    miss,
                    by_mismatch: score / denominator,
                    by_intersection: -(miss * self.k) / denominator,
                }
            }
        }
    }
}

/// MONAI's generalized-Dice class weights, from the target sum T of each (group, class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    /// w = 1/T² (`square`, the default).
    Square,
    /// w = 1/T (`simple`).
    Simple,
    /// w = 1 (`uniform`).
    Uniform,
}

/// How the classes of a group make its score(s).
#[derive(Debug, Clone, PartialEq)]
pub enum ClassPooling {
    /// One score per class.
    PerClass,
    /// One score per group from X = Σ_c v_c·X_c for X ∈ {I, FP, FN, T} (kornia's micro Dice).
    Weighted(Vec<f64>),
    /// One score per group from X = Σ_c v_gc·X_gc with v_gc = f(T_gc) computed in float32
    /// (MONAI: `w_func(ground_o.float())`): f = 1/T², 1/T or 1 as [`WeightType`] says. An infinite
    /// weight (T = 0) becomes the largest finite weight of its group's classes (of all groups'
    /// classes with `batch`), or 0 when there is none. The weights are constants for the gradient.
    Generalized(WeightType),
}

/// How a score becomes a loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScoreLoss {
    /// l = 1 − s.
    OneMinus,
    /// l = −ln max(s, ε) (smp's `log_loss`): ∂l/∂s = −1/s where s > ε, 0 elsewhere. Where
    /// 1 − s ≤ ½ it is −ln1p(−(1 − s)), with the complement as the score gives it.
    NegLog(f64),
}

impl ScoreLoss {
    /// l and ∂l/∂(1 − s).
    fn loss(self, score: &Score) -> (f64, Wide) {
        match self {
            ScoreLoss::OneMinus => (score.miss.value(), Wide::ONE),
            ScoreLoss::NegLog(eps) if score.score.value() > eps => {
                let miss = score.miss.value();
                let loss = if miss <= 0.5 {
                    -(-miss).ln_1p()
                } else {
                    -score.score.value().ln()
                };
                (loss, Wide::ONE / score.score)
            }
            ScoreLoss::NegLog(eps) => (-eps.ln(), Wide::ZERO),
        }
    }
}
/// What happens to a class absent from a group's target (T = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// Its loss counts like any other (MONAI, the textbook).
    Kept,
    /// Its loss is set to 0 but it still counts in the mean over classes (smp).
    ZeroedCounted,
    /// It leaves the mean over classes (kornia macro and Tversky).
    Dropped,
}

/// How the per-(group, score) losses l_gj become the returned loss.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregation {
    /// f_gj = w_j·l_gj (w ≡ 1 without weights), then `reduction` over all (group, class) pairs:
    /// `none` returns f in `shape` (G·J elements), `mean` is Σ f/(G·J), `sum` Σ f (MONAI, the
    /// textbook). Weights are not normalised.
    Each {
        /// w_j, one per score.
        weights: Option<Vec<f64>>,
        /// none / mean / sum.
        reduction: Reduction,
        /// The shape of the unreduced loss.
        shape: Vec<usize>,
    },
    /// Per group L_g = Σ_j ω_gj·l_gj / Σ_j ω_gj with ω_gj = w_j (times \[T_gj > 0\] when absent
    /// classes are dropped), or `empty` with a zero gradient when Σ_j ω_gj = 0 (0/0 = NaN without
    /// it); then the mean over groups, raised to γ: L = (Σ_g L_g / G)^γ (smp, kornia).
    ClassMean {
        /// w_j, one per score.
        weights: Option<Vec<f64>>,
        /// The group loss where no class has weight.
        empty: Option<f64>,
        /// γ (smp's Tversky `gamma`), 1 elsewhere.
        gamma: f64,
    },
}

/// Every convention an overlap loss fixes, in the order they apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Convention {
    /// Which sums.
    pub intersection: Intersection,
    /// Whether a group is the whole batch (smp; MONAI `batch=True`) rather than one image.
    pub pool_batch: bool,
    /// One score per class, or classes pooled into one score per group.
    pub class_pooling: ClassPooling,
    /// The score.
    pub ratio: Ratio,
    /// Score to loss.
    pub score_loss: ScoreLoss,
    /// Classes absent from a group's target.
    pub absent: Absent,
    /// Losses to the result.
    pub aggregation: Aggregation,
}

impl Convention {
    /// The conventions in words, the ratio normalised to k = 1 (so that Dice written as
    /// 2I/(P + T) and as I/(I + ½FP + ½FN) read the same): what [`crate::spec::trace`] records.
    fn facts(&self) -> Vec<Fact> {
        let Ratio {
            k,
            alpha,
            beta,
            smooth_nr,
            smooth_dr,
            guard,
        } = self.ratio;
        let guard = match guard {
            Guard::None => "none".to_string(),
            Guard::ClampMin(eps) => format!("the denominator clamped at {}", number(eps / k)),
            Guard::ZeroIfEmpty => "score 0 where I, FP and FN are all 0".to_string(),
        };
        let weights = |weights: &Option<Vec<f64>>| {
            weights.as_ref().map_or(String::new(), |weights| {
                let weights: Vec<String> = weights.iter().map(|&w| number(w)).collect();
                format!(" weighted [{}]", weights.join(", "))
            })
        };
        vec![
            Fact::new(
                "sums over",
                if self.pool_batch {
                    "the whole batch's positions"
                } else {
                    "each image's positions"
                },
            ),
            Fact::new(
                "intersection",
                match self.intersection {
                    Intersection::Product => "I = Σp·t, FP = Σp·(1 − t), FN = Σ(1 − p)·t",
                    Intersection::L1 => "I = Σmin(p, t), FP = Σmax(p − t, 0), FN = Σmax(t − p, 0)",
                    Intersection::Squared => "I = Σp·t, FP = Σp·(p − t), FN = Σt·(t − p) (squared)",
                },
            ),
            Fact::new(
                "classes pooled",
                match &self.class_pooling {
                    ClassPooling::PerClass => "no: one score per class".to_string(),
                    ClassPooling::Weighted(v) => {
                        format!(
                            "one score from the classes' sums{}",
                            weights(&Some(v.clone()))
                        )
                    }
                    ClassPooling::Generalized(w) => {
                        format!(
                            "one score from the classes' sums weighted {w:?} from T (generalized)"
                        )
                    }
                },
            ),
            Fact::new(
                "score",
                format!(
                    "(I + {})/(I + {}·FP + {}·FN + {})",
                    number(smooth_nr / k),
                    number(alpha / k),
                    number(beta / k),
                    number(smooth_dr / k)
                ),
            ),
            Fact::new("denominator guard", guard),
            Fact::new(
                "loss of a score",
                match self.score_loss {
                    ScoreLoss::OneMinus => "1 − score".to_string(),
                    ScoreLoss::NegLog(eps) => format!("−ln max(score, {})", number(eps)),
                },
            ),
            Fact::new(
                "classes absent from the target",
                match self.absent {
                    Absent::Kept => "scored like the others",
                    Absent::ZeroedCounted => "loss 0, still counted in the mean",
                    Absent::Dropped => "left out of the mean",
                },
            ),
            Fact::new(
                "reduction",
                match &self.aggregation {
                    Aggregation::Each {
                        weights: w,
                        reduction,
                        ..
                    } => format!("{reduction} over every (group, class) loss{}", weights(w)),
                    Aggregation::ClassMean {
                        weights: w, gamma, ..
                    } => {
                        let power = if *gamma == 1.0 {
                            String::new()
                        } else {
                            format!(", raised to {}", number(*gamma))
                        };
                        format!(
                            "mean over the classes{} (Σwl/Σw), then over the groups{power}",
                            weights(w)
                        )
                    }
                },
            ),
        ]
    }
}

/// The sums of every (group, class), each `(G, C)`.
struct Sums {
    /// I.
    intersection: Array2<Wide>,
    /// E = α·FP + β·FN.
    mismatch: Array2<Wide>,
    /// T.
    target: Array2<Wide>,
}

impl Sums {
    /// I, E and T of every (group, class): sums over its positions, and over the batch when
    /// pooled. Each chunk of positions ([`position_chunks`]) sums its elements with compensation,
    /// on every core; the chunks' sums are added in chunk order in double-double, so the result
    /// does not depend on the number of cores. `gradient` (the `(N, C, S)` gradient, not yet
    /// written) is the operands' to keep what the backward will read again ([`Operands::sum`]).
    fn new(convention: &Convention, operands: &Operands, gradient: &mut [f64]) -> Sums {
        let layout = operands.layout();
        let classes = operands.selected();
        let groups = if convention.pool_batch {
            1
        } else {
            layout.batch
        };
        let Ratio { alpha, beta, .. } = convention.ratio;
        let chunks = position_chunks(layout);
        let rows = chunk_rows(gradient, layout);
        let partials = in_parallel(
            layout.elements(),
            chunks.iter().zip(rows).collect(),
            |(chunk, mut rows)| {
                operands.sum(chunk, &mut Vec::new(), &mut rows, |element| {
                    let (i, e, size) = convention.intersection.terms(element, alpha, beta);
                    [i, e, size]
                })
            },
        );
        let mut totals = Array2::from_elem((groups, classes), [Wide::ZERO; 3]);
        for (chunk, sums) in chunks.iter().zip(partials) {
            let g = if convention.pool_batch { 0 } else { chunk.n };
            for (total, sums) in totals.row_mut(g).iter_mut().zip(sums) {
                for (total, sum) in total.iter_mut().zip(sums) {
                    *total = *total + Wide::from(sum);
                }
            }
        }
        let sum = |which: usize| totals.mapv(|totals| totals[which]);
        Sums {
            intersection: sum(0),
            mismatch: sum(1),
            target: sum(2),
        }
    }

    /// X_g = Σ_c v_gc·X_gc for each sum, `(G, 1)`.
    fn pooled(&self, weights: &Array2<f64>) -> Sums {
        let pool = |values: &Array2<Wide>| {
            Array2::from_shape_fn((values.nrows(), 1), |(g, _)| {
                (0..values.ncols())
                    .fold(Wide::ZERO, |sum, c| sum + values[(g, c)] * weights[(g, c)])
            })
        };
        Sums {
            intersection: pool(&self.intersection),
            mismatch: pool(&self.mismatch),
            target: pool(&self.target),
        }
    }
}

/// The overlap loss of the operands' probabilities p and targets t (masked, of the selected
/// channels), and its gradient ∂L/∂x for `grad_output` (ones when absent), in the prediction's
/// `(N, C, S)` order:
///
/// ```text
/// sums      I_gc, E_gc = α·FP_gc + β·FN_gc, T_gc over the positions of group g
///           (one image, or the batch)                                                — Intersection
/// pooling   per class, or X_g = Σ_c v_gc·X_gc                                         — ClassPooling
/// score     s = (k·I + nr) / guard(k·I + E + dr), and 1 − s = (E + dr − nr)/D       — Ratio
/// loss      l = 1 − s, or −ln max(s, ε)                                               — ScoreLoss
/// absent    T = 0: kept, zeroed but counted, or dropped                               — Absent
/// result    w·l unreduced / mean / sum, or the (weighted) mean over classes, groups, ^γ — Aggregation
/// ```
///
/// The gradient runs the same chain backwards: ∂L/∂l from the aggregation, ∂l/∂(1 − s), then
/// ∂L/∂E and ∂L/∂I per score, spread over the pooled classes (×v_gc) and images. Per element, as
/// FN = T − I with T constant,
///
/// ```text
/// ∂L/∂p = ∂L/∂FP·∂fp/∂p + (∂L/∂I − ∂L/∂FN)·∂i/∂p,  ∂L/∂FP = α·∂L/∂E,  ∂L/∂FN = β·∂L/∂E
/// ```
///
/// whose two coefficients are formed per (group, class) in double-double and rounded once. For
/// the product form and a hard target that is one coefficient per element: α·N/D² where t = 0,
/// −(k·L + β·N)/D² where t = 1 (for l = 1 − s), with no cancellation. The operands take ∂L/∂p
/// through the mask and the activation to ∂L/∂x.
///
/// Two passes over the positions, each on every core in fixed chunks: the sums, then the
/// gradient; the prediction is activated in both and nothing of its size is kept but the
/// gradient.
fn overlap(
    convention: &Convention,
    operands: &Operands,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<(ArrayD<f64>, Vec<f64>)> {
    let layout = operands.layout();
    let mut gradient = vec![0.0; layout.elements()];
    let sums = Sums::new(convention, operands, &mut gradient);
    let classes = sums.target.ncols();
    let pool = pooling_weights(
        &convention.class_pooling,
        &sums.target.mapv(Wide::value),
        convention.pool_batch,
    );
    let pooled = match &pool {
        None => sums,
        Some(weights) => sums.pooled(weights),
    };

    let scores = Zip::from(&pooled.intersection)
        .and(&pooled.mismatch)
        .map_collect(|&intersection, &mismatch| convention.ratio.score(intersection, mismatch));
    let present = pooled.target.mapv(|target| target.value() > 0.0);
    let zeroed = present.mapv(|present| convention.absent == Absent::ZeroedCounted && !present);
    let mut losses = Array2::<f64>::zeros(scores.raw_dim());
    let mut by_miss = Array2::from_elem(scores.raw_dim(), Wide::ZERO);
    for ((g, j), score) in scores.indexed_iter() {
        if !zeroed[(g, j)] {
            (losses[(g, j)], by_miss[(g, j)]) = convention.score_loss.loss(score);
        }
    }

    let (loss, upstream) = aggregate(
        &convention.aggregation,
        convention.absent,
        &losses,
        &present,
        grad_output,
    )?;
    // Dropped, weightless or zeroed scores may be 0/0 = NaN; nothing flows from them.
    let flows = aggregate_mask(&convention.aggregation, convention.absent, &present);
    let Ratio { alpha, beta, .. } = convention.ratio;
    // Per score: (∂L/∂FP, ∂L/∂I − ∂L/∂FN).
    let coefficients = Array2::from_shape_fn(scores.raw_dim(), |(g, j)| {
        if !flows[(g, j)] || zeroed[(g, j)] {
            return (Wide::ZERO, Wide::ZERO);
        }
        let score = &scores[(g, j)];
        let by_miss = by_miss[(g, j)] * upstream[(g, j)];
        let by_mismatch = by_miss * score.by_mismatch;
        (
            by_mismatch * alpha,
            by_miss * score.by_intersection - by_mismatch * beta,
        )
    });
    let groups = coefficients.nrows();
    let per_class = Array2::from_shape_fn((groups, classes), |(g, c)| match &pool {
        None => coefficients[(g, c)],
        Some(weights) => {
            let (by_fp, by_hit) = coefficients[(g, 0)];
            (by_fp * weights[(g, c)], by_hit * weights[(g, c)])
        }
    })
    .mapv(|(by_fp, by_hit)| (by_fp.value(), by_hit.value()));

    let intersection = convention.intersection;
    let chunks = position_chunks(layout);
    let rows = chunk_rows(&mut gradient, layout);
    in_parallel(
        layout.elements(),
        chunks.iter().zip(rows).collect(),
        |(chunk, mut rows)| {
            let coefficients = per_class.row(if convention.pool_batch { 0 } else { chunk.n });
            let grad = |j: usize, element: &Element| {
                let (by_fp, by_hit) = coefficients[j];
                let (fp, hit) = intersection.slopes(element);
                by_fp * fp + by_hit * hit
            };
            operands.backward(chunk, grad, &mut Vec::new(), &mut rows);
        },
    );
    Ok((loss, gradient))
}

/// About this many positions make a chunk.
const CHUNK_POSITIONS: usize = 8192;

/// A span of one image's positions: s0..s0 + len of image n.
struct Chunk {
    n: usize,
    s0: usize,
    len: usize,
}

impl Chunk {
    /// The chunk's positions, in order.
    fn positions(&self, layout: Layout) -> impl Iterator<Item = Position> + '_ {
        (self.s0..self.s0 + self.len).map(move |s| Position {
            n: self.n,
            s,
            index: self.n * layout.spatial + s,
        })
    }
}

/// The positions of every image cut into spans of at most [`CHUNK_POSITIONS`], image by image;
/// fixed by the layout alone.
fn position_chunks(layout: Layout) -> Vec<Chunk> {
    (0..layout.batch)
        .flat_map(|n| {
            (0..layout.spatial)
                .step_by(CHUNK_POSITIONS)
                .map(move |s0| Chunk {
                    n,
                    s0,
                    len: CHUNK_POSITIONS.min(layout.spatial - s0),
                })
        })
        .collect()
}

/// The gradient `(N, C, S)` cut along [`position_chunks`]: for each chunk, the span of each of
/// its image's C class rows.
fn chunk_rows(gradient: &mut [f64], layout: Layout) -> Vec<Vec<&mut [f64]>> {
    let spans = layout.spatial.div_ceil(CHUNK_POSITIONS);
    let mut rows: Vec<Vec<&mut [f64]>> = (0..layout.batch * spans).map(|_| Vec::new()).collect();
    if layout.spatial == 0 {
        return rows;
    }
    for (row, values) in gradient.chunks_mut(layout.spatial).enumerate() {
        let n = row / layout.classes;
        for (k, span) in values.chunks_mut(CHUNK_POSITIONS).enumerate() {
            rows[n * spans + k].push(span);
        }
    }
    rows
}

/// `work` of every item, the items shared in contiguous runs among the cores (one for a pass
/// over fewer elements than is worth a thread, see [`threads_for`]); the results in item order.
fn in_parallel<I: Send, T: Send>(
    elements: usize,
    items: Vec<I>,
    work: impl Fn(I) -> T + Sync,
) -> Vec<T> {
    let threads = threads_for(elements, items.len());
    if threads <= 1 {
        return items.into_iter().map(work).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let work = &work;
    let mut items = items.into_iter();
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let share: Vec<I> = items.by_ref().take(per_thread).collect();
                scope.spawn(move || share.into_iter().map(work).collect::<Vec<T>>())
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(results) => results,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// The class-pooling weights v_gc, `(G, C)`, or `None` for one score per class.
fn pooling_weights(
    pooling: &ClassPooling,
    target_sums: &Array2<f64>,
    pool_batch: bool,
) -> Option<Array2<f64>> {
    match pooling {
        ClassPooling::PerClass => None,
        ClassPooling::Weighted(weights) => {
            Some(Array2::from_shape_fn(target_sums.raw_dim(), |(_, c)| {
                weights[c]
            }))
        }
        ClassPooling::Generalized(weight_type) => {
            let mut weights = target_sums.mapv(|sum| {
                let sum = sum as f32;
                f64::from(match weight_type {
                    WeightType::Square => 1.0 / (sum * sum),
                    WeightType::Simple => 1.0 / sum,
                    WeightType::Uniform => 1.0,
                })
            });
            let finite_max = |values: &mut dyn Iterator<Item = f64>| {
                values
                    .filter(|weight| weight.is_finite())
                    .fold(0.0_f64, f64::max)
            };
            if pool_batch {
                let max = finite_max(&mut weights.iter().copied());
                weights.mapv_inplace(|weight| if weight.is_finite() { weight } else { max });
            } else {
                for mut row in weights.rows_mut() {
                    let max = finite_max(&mut row.iter().copied());
                    row.mapv_inplace(|weight| if weight.is_finite() { weight } else { max });
                }
            }
            Some(weights)
        }
    }
}

/// Which scores receive a gradient from the aggregation: all but dropped absent classes and the
/// classes of weightless groups.
fn aggregate_mask(
    aggregation: &Aggregation,
    absent: Absent,
    present: &Array2<bool>,
) -> Array2<bool> {
    let weights = |j: usize| match aggregation {
        Aggregation::Each { weights, .. } | Aggregation::ClassMean { weights, .. } => {
            weights.as_ref().map_or(1.0, |weights| weights[j])
        }
    };
    let omega = |g: usize, j: usize| {
        if absent == Absent::Dropped && !present[(g, j)] {
            0.0
        } else {
            weights(j)
        }
    };
    Array2::from_shape_fn(present.raw_dim(), |(g, j)| omega(g, j) != 0.0)
}

/// The returned loss and ∂L/∂l_gj (see [`Aggregation`]).
fn aggregate(
    aggregation: &Aggregation,
    absent: Absent,
    losses: &Array2<f64>,
    present: &Array2<bool>,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<(ArrayD<f64>, Array2<f64>)> {
    let weight = |weights: &Option<Vec<f64>>, j: usize| weights.as_ref().map_or(1.0, |w| w[j]);
    match aggregation {
        Aggregation::Each {
            weights,
            reduction,
            shape,
        } => {
            let weighted = Array2::from_shape_fn(losses.raw_dim(), |(g, j)| {
                weight(weights, j) * losses[(g, j)]
            });
            let count = weighted.len() as f64;
            let grad_output = match (reduction, grad_output) {
                (Reduction::None, Some(given)) if given.shape() == shape.as_slice() => Some(
                    reshaped(given.clone(), IxDyn(weighted.shape()))
                        .ok_or_else(|| grad_output_shape(shape, given))?,
                ),
                (Reduction::None, Some(given)) => return Err(grad_output_shape(shape, given)),
                (_, given) => given.cloned(),
            };
            let upstream = reduction.upstream(grad_output.as_ref(), weighted.shape(), count)?;
            let upstream = Array2::from_shape_fn(losses.raw_dim(), |(g, j)| {
                weight(weights, j) * upstream[IxDyn(&[g, j])]
            });
            let loss = reduction.reduce(weighted.into_dyn(), count);
            let loss = match reduction {
                Reduction::None => {
                    reshaped(loss, IxDyn(shape)).ok_or_else(|| Rejection::NotSpecified {
                        what: format!("an unreduced loss of shape {shape:?}"),
                    })?
                }
                Reduction::Mean | Reduction::Sum => loss,
            };
            Ok((loss, upstream))
        }
        Aggregation::ClassMean {
            weights,
            empty,
            gamma,
        } => {
            let groups = losses.nrows();
            let omega = |g: usize, j: usize| {
                if absent == Absent::Dropped && !present[(g, j)] {
                    0.0
                } else {
                    weight(weights, j)
                }
            };
            let mut group_losses = Vec::with_capacity(groups);
            let mut normalisers = Vec::with_capacity(groups);
            for g in 0..groups {
                let normaliser = compensated_sum((0..losses.ncols()).map(|j| omega(g, j)));
                let weighted = compensated_sum(
                    (0..losses.ncols())
                        .filter(|&j| omega(g, j) != 0.0)
                        .map(|j| omega(g, j) * losses[(g, j)]),
                );
                group_losses.push(match empty {
                    Some(value) if normaliser == 0.0 => *value,
                    _ => weighted / normaliser,
                });
                normalisers.push(normaliser);
            }
            let mean = compensated_sum(group_losses.iter().copied()) / groups as f64;
            let scale = match grad_output {
                None => 1.0,
                Some(given) if given.shape().is_empty() => given[IxDyn(&[])],
                Some(given) => return Err(grad_output_shape(&[], given)),
            };
            let outer = if *gamma == 1.0 {
                scale
            } else {
                scale * gamma * mean.powf(gamma - 1.0)
            };
            let upstream = Array2::from_shape_fn(losses.raw_dim(), |(g, j)| {
                if empty.is_some() && normalisers[g] == 0.0 {
                    0.0
                } else {
                    outer / groups as f64 * omega(g, j) / normalisers[g]
                }
            });
            let loss = if *gamma == 1.0 {
                mean
            } else {
                mean.powf(*gamma)
            };
            Ok((ArrayD::from_elem(vec![], loss), upstream))
        }
    }
}

fn grad_output_shape(expected: &[usize], given: &ArrayD<f64>) -> Rejection {
    Rejection::GradOutputShape {
        expected: expected.to_vec(),
        got: given.shape().to_vec(),
    }
}
