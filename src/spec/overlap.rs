//! The overlap family: Dice, Jaccard (IoU), Tversky and generalized Dice.
//!
//! Every library writes these as one ratio of sums, and differs in which sums, which constants,
//! and how the ratios are averaged. [`overlap`] is that ratio once, with every convention an explicit
//! field of [`Convention`]; each library's loss below is a front end that validates the call as the
//! library does, turns its prediction and target into the operands (probabilities `p` and targets `t`
//! of shape `(N, C, S)`, `S` the flattened spatial axes, with an optional position mask), and picks
//! a convention:
//!
//! | instance | intersection | score (k·I + nr)/(k·I + α·FP + β·FN + dr) | groups | absent classes | weights |
//! |---|---|---|---|---|---|
//! | [`soft_dice`] / [`soft_iou`] (textbook) | Σpt | k=2, α=β=1 / k=1, α=β=1; nr=dr=smooth | image × class | kept | – |
//! | [`smp_loss`] Dice / Jaccard / Tversky | Σmin(p,t) (L1) | k=1; α=β=½ / α=β=1 / α, β; nr=dr=smooth; D clamped ≥ eps | class, pooled over the batch | zeroed, still averaged | normalised Σwl/Σw; then (·)^γ |
//! | [`monai_loss`] Dice / Jaccard | Σpt; Σmin (soft_label); Σp², Σt² (squared_pred) | k=2, α=β=1 / α=β=2 | image × class (or class, `batch`) | kept | w·l, plain mean |
//! | [`monai_loss`] Tversky | Σpt; Σmin (soft_label) | k=1, α, β | image × class (or class) | kept | – |
//! | [`monai_loss`] generalized Dice | Σpt; Σmin (soft_label) | k=2, α=β=1 over Σ_c w_c·(…) | image (or batch) | weight 1/T² → max | w_c from T, float32 |
//! | [`kornia_dice`] micro / macro | Σpt | k=2, α=β=1, nr=0, dr=eps | image (classes pooled / per class) | – / dropped | inside the sums / Σ_{present} wl / Σ_{present} w |
//! | [`kornia_tversky`] | Σpt | k=1, α, β, nr=0, dr=eps | image × class | dropped | – |
//!
//! FP = P − I and FN = T − I, with P, T the prediction and target sums (sums of squares for MONAI's
//! `squared_pred`). MONAI's Tversky and kornia's compute FP = Σp(1−t) and FN = Σ(1−p)t directly,
//! which is the same quantity.

use ndarray::{Array2, Array3, ArrayD, Axis, IxDyn};

use super::binary;
use super::cross_entropy::{self, CrossEntropyOptions, DEFAULT_IGNORE_INDEX};
use super::focal::{self, MonaiFocalOptions, PerClass};
use super::smp::SmpMode;
use super::softmax::{log_softmax, log_softmax_backward};
use super::{check_labels, compensated_sum, monai, one_hot, reshaped, LossOutput, Reduction};
use crate::error::Rejection;
use crate::spec::Result;
use crate::tensor::{DType, Tensor};

// --- the one formula ---------------------------------------------------------------------------

/// How the intersection I and the sizes P, T of a (group, class) are summed over its positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intersection {
    /// I = Σ p·t, P = Σ p, T = Σ t: ∂I/∂p = t, ∂P/∂p = 1.
    Product,
    /// I = (Σp + Σt − Σ|p − t|)/2, P = Σ p, T = Σ t: Σ min(p, t) for p, t ≥ 0 (smp ≥ 0.6, MONAI
    /// `soft_label`). ∂I/∂p = (1 − sign(p − t))/2 with sign(0) = 0, so ∂I/∂p = ½ at the kink p = t
    /// (torch's subgradient of |·| at 0), where the product form would give t.
    ///
    /// MONAI writes P = ‖p‖₁ = Σ|p|, equal to Σp for p ≥ 0; its gradient sign(p) differs from 1
    /// only where p = 0, which happens at masked positions, whose gradient the mask zeroes anyway.
    L1,
    /// I = Σ p·t, P = Σ p², T = Σ t² (MONAI `squared_pred`, which forms I as (P + T − Σ(p − t)²)/2,
    /// the same quantity): ∂I/∂p = t, ∂P/∂p = 2p.
    Squared,
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

/// The score s = (k·I + nr) / guard(D), D = k·I + α·(P − I) + β·(T − I) + dr.
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

impl Ratio {
    /// The score and its partial derivatives (∂s/∂I, ∂s/∂P) for the sums I, P, T:
    ///
    /// ```text
    /// N = k·I + nr,  D = k·I + α·(P − I) + β·(T − I) + dr,  s = N / D
    /// ∂s/∂I = (k·D − (k − α − β)·N) / D²,  ∂s/∂P = −α·N / D²
    /// ```
    ///
    /// T is a target sum, constant. Under [`Guard::ClampMin`] with D ≤ ε: s = N/ε, ∂s/∂I = k/ε,
    /// ∂s/∂P = 0; under [`Guard::ZeroIfEmpty`] with D = dr and no sum: s = 0 and both derivatives 0.
    fn score(&self, intersection: f64, prediction: f64, target: f64) -> (f64, f64, f64) {
        let numerator = self.k * intersection + self.smooth_nr;
        let bare = self.k * intersection
            + self.alpha * (prediction - intersection)
            + self.beta * (target - intersection);
        let denominator = bare + self.smooth_dr;
        match self.guard {
            Guard::ClampMin(eps) if denominator <= eps => (numerator / eps, self.k / eps, 0.0),
            Guard::ZeroIfEmpty if bare == 0.0 => (0.0, 0.0, 0.0),
            _ => (
                numerator / denominator,
                (self.k * denominator - (self.k - self.alpha - self.beta) * numerator)
                    / (denominator * denominator),
                -self.alpha * numerator / (denominator * denominator),
            ),
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
    /// One score per group from X = Σ_c v_c·X_c for X ∈ {I, P, T} (kornia's micro Dice).
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
    /// l = −ln max(s, ε) (smp's `log_loss`): ∂l/∂s = −1/s where s > ε, 0 elsewhere.
    NegLog(f64),
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
    /// Per group L_g = Σ_j ω_gj·l_gj / Σ_j ω_gj with ω_gj = w_j (times [T_gj > 0] when absent
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

/// The sums of every (group, class), each `(G, C)`.
struct Sums {
    intersection: Array2<f64>,
    prediction: Array2<f64>,
    target: Array2<f64>,
}

/// The overlap loss of probabilities `p` and targets `t`, both `(N, C, S)` and already masked, and
/// its gradient ∂L/∂p for `grad_output` (ones when absent):
///
/// ```text
/// sums      I_gc, P_gc, T_gc over the positions of group g (one image, or the batch) — Intersection
/// pooling   per class, or X_g = Σ_c v_gc·X_gc                                         — ClassPooling
/// score     s = (k·I + nr) / guard(k·I + α·(P − I) + β·(T − I) + dr)                  — Ratio
/// loss      l = 1 − s, or −ln max(s, ε)                                               — ScoreLoss
/// absent    T = 0: kept, zeroed but counted, or dropped                               — Absent
/// result    w·l unreduced / mean / sum, or the (weighted) mean over classes, groups, ^γ — Aggregation
/// ```
///
/// The gradient runs the same chain backwards: ∂L/∂l from the aggregation, ∂l/∂s, then ∂s/∂I and
/// ∂s/∂P per score, spread over the pooled classes (×v_gc) and images, and per element
/// ∂L/∂p = ∂L/∂I·∂I/∂p + ∂L/∂P·∂P/∂p.
pub fn overlap(
    convention: &Convention,
    p: &Array3<f64>,
    t: &Array3<f64>,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<(ArrayD<f64>, Array3<f64>)> {
    let sums = group_sums(convention.intersection, convention.pool_batch, p, t);
    let pool = pooling_weights(
        &convention.class_pooling,
        &sums.target,
        convention.pool_batch,
    );
    let pooled = match &pool {
        None => Sums {
            intersection: sums.intersection.clone(),
            prediction: sums.prediction.clone(),
            target: sums.target.clone(),
        },
        Some(weights) => Sums {
            intersection: pool_classes(weights, &sums.intersection),
            prediction: pool_classes(weights, &sums.prediction),
            target: pool_classes(weights, &sums.target),
        },
    };

    let shape = pooled.intersection.raw_dim();
    let mut losses = Array2::<f64>::zeros(shape);
    let mut loss_by_intersection = Array2::<f64>::zeros(shape);
    let mut loss_by_prediction = Array2::<f64>::zeros(shape);
    for ((g, j), loss) in losses.indexed_iter_mut() {
        let (score, by_intersection, by_prediction) = convention.ratio.score(
            pooled.intersection[(g, j)],
            pooled.prediction[(g, j)],
            pooled.target[(g, j)],
        );
        let (value, by_score) = match convention.score_loss {
            ScoreLoss::OneMinus => (1.0 - score, -1.0),
            ScoreLoss::NegLog(eps) => (
                -score.max(eps).ln(),
                if score > eps { -1.0 / score } else { 0.0 },
            ),
        };
        let present = pooled.target[(g, j)] > 0.0;
        let zeroed = convention.absent == Absent::ZeroedCounted && !present;
        *loss = if zeroed { 0.0 } else { value };
        let by_score = if zeroed { 0.0 } else { by_score };
        loss_by_intersection[(g, j)] = by_score * by_intersection;
        loss_by_prediction[(g, j)] = by_score * by_prediction;
    }

    let present = pooled.target.mapv(|target| target > 0.0);
    let (loss, upstream) = aggregate(
        &convention.aggregation,
        convention.absent,
        &losses,
        &present,
        grad_output,
    )?;
    let mut by_intersection = upstream.clone() * &loss_by_intersection;
    let mut by_prediction = upstream * &loss_by_prediction;
    // Dropped or weightless scores may be 0/0 = NaN; their upstream is 0 and nothing flows.
    for ((by_i, by_p), &up) in by_intersection
        .iter_mut()
        .zip(by_prediction.iter_mut())
        .zip(aggregate_mask(&convention.aggregation, convention.absent, &present).iter())
    {
        if !up {
            *by_i = 0.0;
            *by_p = 0.0;
        }
    }
    if let Some(weights) = &pool {
        by_intersection = unpool_classes(weights, &by_intersection);
        by_prediction = unpool_classes(weights, &by_prediction);
    }
    Ok((
        loss,
        element_gradient(
            convention.intersection,
            convention.pool_batch,
            p,
            t,
            &by_intersection,
            &by_prediction,
        ),
    ))
}

/// I, P, T for every (group, class): sums over the positions, and over the batch when pooled.
fn group_sums(
    intersection: Intersection,
    pool_batch: bool,
    p: &Array3<f64>,
    t: &Array3<f64>,
) -> Sums {
    let (batch, classes, _) = p.dim();
    let groups = if pool_batch { 1 } else { batch };
    let mut sums = Sums {
        intersection: Array2::zeros((groups, classes)),
        prediction: Array2::zeros((groups, classes)),
        target: Array2::zeros((groups, classes)),
    };
    for g in 0..groups {
        let images = if pool_batch { 0..batch } else { g..g + 1 };
        for c in 0..classes {
            let pairs = || {
                images.clone().flat_map(move |n| {
                    p.index_axis(Axis(0), n)
                        .index_axis(Axis(0), c)
                        .to_owned()
                        .into_iter()
                        .zip(t.index_axis(Axis(0), n).index_axis(Axis(0), c).to_owned())
                })
            };
            let (prediction, target) = match intersection {
                Intersection::Squared => (
                    compensated_sum(pairs().map(|(p, _)| p * p)),
                    compensated_sum(pairs().map(|(_, t)| t * t)),
                ),
                Intersection::Product | Intersection::L1 => (
                    compensated_sum(pairs().map(|(p, _)| p)),
                    compensated_sum(pairs().map(|(_, t)| t)),
                ),
            };
            sums.intersection[(g, c)] = match intersection {
                Intersection::L1 => {
                    (prediction + target - compensated_sum(pairs().map(|(p, t)| (p - t).abs())))
                        / 2.0
                }
                Intersection::Product | Intersection::Squared => {
                    compensated_sum(pairs().map(|(p, t)| p * t))
                }
            };
            sums.prediction[(g, c)] = prediction;
            sums.target[(g, c)] = target;
        }
    }
    sums
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

/// X_g = Σ_c v_gc·X_gc, as a `(G, 1)` array.
fn pool_classes(weights: &Array2<f64>, values: &Array2<f64>) -> Array2<f64> {
    Array2::from_shape_fn((values.nrows(), 1), |(g, _)| {
        compensated_sum((0..values.ncols()).map(|c| weights[(g, c)] * values[(g, c)]))
    })
}

/// ∂L/∂X_gc = v_gc·∂L/∂X_g.
fn unpool_classes(weights: &Array2<f64>, pooled: &Array2<f64>) -> Array2<f64> {
    Array2::from_shape_fn(weights.raw_dim(), |(g, c)| weights[(g, c)] * pooled[(g, 0)])
}

/// ∂L/∂p_ncs = ∂L/∂I·∂I/∂p + ∂L/∂P·∂P/∂p, with the (group, class) derivatives of image n's group.
fn element_gradient(
    intersection: Intersection,
    pool_batch: bool,
    p: &Array3<f64>,
    t: &Array3<f64>,
    by_intersection: &Array2<f64>,
    by_prediction: &Array2<f64>,
) -> Array3<f64> {
    Array3::from_shape_fn(p.raw_dim(), |(n, c, s)| {
        let g = if pool_batch { 0 } else { n };
        let (p, t) = (p[(n, c, s)], t[(n, c, s)]);
        let (intersection_by_p, prediction_by_p) = match intersection {
            Intersection::Product => (t, 1.0),
            Intersection::L1 => {
                let sign = if p > t {
                    1.0
                } else if p < t {
                    -1.0
                } else {
                    0.0
                };
                ((1.0 - sign) / 2.0, 1.0)
            }
            Intersection::Squared => (t, 2.0 * p),
        };
        by_intersection[(g, c)] * intersection_by_p + by_prediction[(g, c)] * prediction_by_p
    })
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

// --- operands: activation, targets, masks, channels ----------------------------------------------

/// What turns the prediction into probabilities, along the class axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// The prediction is already probabilities.
    Identity,
    /// softmax over the classes: p = exp(log_softmax(x)) (smp's `log_softmax(…).exp()`, MONAI's and
    /// kornia's `softmax`, equal to rounding): ∂L/∂x = p ⊙ (g − Σ_c p_c·g_c).
    Softmax,
    /// p = σ(x) = 1/(1 + e^{−x}) per element (smp's `logsigmoid(…).exp()`, MONAI's `sigmoid`):
    /// ∂L/∂x = g·p·(1 − p).
    Sigmoid,
}

/// The prediction after its activation, remembering what the backward pass needs.
struct Activated {
    activation: Activation,
    /// p, `(N, C, S)`.
    probabilities: Array3<f64>,
}

impl Activated {
    /// Applies `activation` to the prediction `(N, C, S)`.
    fn new(activation: Activation, prediction: Array3<f64>) -> Activated {
        let probabilities = match activation {
            Activation::Identity => prediction,
            Activation::Softmax => softmax_classes(&prediction),
            Activation::Sigmoid => prediction.mapv(|x| {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    x.exp() / (1.0 + x.exp())
                }
            }),
        };
        Activated {
            activation,
            probabilities,
        }
    }

    /// ∂L/∂x from ∂L/∂p.
    fn backward(&self, grad: Array3<f64>) -> Array3<f64> {
        let p = &self.probabilities;
        match self.activation {
            Activation::Identity => grad,
            Activation::Sigmoid => grad * &p.mapv(|p| p * (1.0 - p)),
            Activation::Softmax => {
                // The log-softmax backward of g ⊙ p is p ⊙ (g − Σ p·g), the softmax backward.
                let log_p = p.mapv(f64::ln);
                let grad_log_p = grad * p;
                log_softmax_backward(&log_p, &grad_log_p, 1)
            }
        }
    }
}

fn softmax_classes(logits: &Array3<f64>) -> Array3<f64> {
    log_softmax(logits, 1).mapv(f64::exp)
}

/// A tensor argument `(N, C, d1, …)` as `(N, C, S)` in f64; one of fewer than two axes is
/// rejected.
fn flatten(argument: &'static str, tensor: &Tensor) -> Result<Array3<f64>> {
    spatial_flattened(tensor.to_f64()).ok_or_else(|| Rejection::UnexpectedShape {
        argument,
        expected: "(N, C, …)",
        got: tensor.shape().to_vec(),
    })
}

/// An array `(N, C, d1, …)` as `(N, C, S)`, in any memory layout; `None` with fewer than two axes.
fn spatial_flattened(values: ArrayD<f64>) -> Option<Array3<f64>> {
    let &[batch, classes, ref spatial @ ..] = values.shape() else {
        return None;
    };
    let positions = spatial.iter().product();
    reshaped(values, (batch, classes, positions))
}

/// The operands the core sees and how to route its gradient back to the prediction.
struct Operands {
    activated: Activated,
    /// t, `(N, C, S)` (the prediction's classes).
    target: Array3<f64>,
    /// m, `(N, C, S)`: p and t are multiplied by it (MONAI's real-valued mask included; a mask of
    /// positions is the same for every class).
    mask: Option<Array3<f64>>,
    /// The channels that enter the loss, in order (repeats allowed).
    channels: Vec<usize>,
}

impl Operands {
    /// Runs the core on p' = (p·m)[channels], t' = (t·m)[channels] and returns the loss and ∂L/∂x,
    /// `(N, C, S)`: the gradient of the selected channels scattered back (added where a channel
    /// repeats), times m, through the activation.
    fn run(
        &self,
        convention: &Convention,
        grad_output: Option<&ArrayD<f64>>,
    ) -> Result<(ArrayD<f64>, Array3<f64>)> {
        let p = &self.activated.probabilities;
        let (batch, classes, positions) = p.dim();
        let mask =
            |n: usize, c: usize, s: usize| self.mask.as_ref().map_or(1.0, |mask| mask[(n, c, s)]);
        let select = |values: &Array3<f64>| {
            Array3::from_shape_fn((batch, self.channels.len(), positions), |(n, j, s)| {
                values[(n, self.channels[j], s)] * mask(n, self.channels[j], s)
            })
        };
        let (loss, grad_selected) =
            overlap(convention, &select(p), &select(&self.target), grad_output)?;
        let mut grad = Array3::<f64>::zeros((batch, classes, positions));
        for ((n, j, s), value) in grad_selected.indexed_iter() {
            grad[(n, self.channels[j], s)] += value * mask(n, self.channels[j], s);
        }
        Ok((loss, self.activated.backward(grad)))
    }
}

/// The gradient `(N, C, S)` in the prediction's own shape (the same elements in row-major order).
fn unflatten(grad: Array3<f64>, prediction: &Tensor) -> ArrayD<f64> {
    let mut unflattened = ArrayD::zeros(prediction.shape());
    for (slot, value) in unflattened.iter_mut().zip(grad) {
        *slot = value;
    }
    unflattened
}

/// Class indices read as PyTorch's `.long()` reads them: floats truncated toward zero.
fn truncated_labels(target: &Tensor) -> ArrayD<i64> {
    target.to_f64().mapv(|value| value.trunc() as i64)
}

/// A floating-point prediction of at least `min_rank` dimensions `(N, C, …)`.
fn check_prediction(prediction: &Tensor, min_rank: usize) -> Result<()> {
    if !prediction.dtype().is_floating() {
        return Err(Rejection::InputDtype {
            got: prediction.dtype(),
        });
    }
    if prediction.shape().len() < min_rank {
        return Err(Rejection::InputRank {
            got: prediction.shape().len(),
            min: min_rank,
        });
    }
    Ok(())
}

fn shape_mismatch(expected: &[usize], got: &[usize]) -> Rejection {
    Rejection::TargetShapeMismatch {
        expected: expected.to_vec(),
        got: got.to_vec(),
    }
}

/// The values of a weight, rounded to float32 as `torch.as_tensor` stores Python floats.
fn float32_values(values: &[f64]) -> Vec<f64> {
    values
        .iter()
        .map(|&value| f64::from(value as f32))
        .collect()
}

// --- the textbook -------------------------------------------------------------------------------

/// The arguments of segloss's own textbook losses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextbookOptions {
    /// s, added to numerator and denominator.
    pub smooth: f64,
    /// none (shape `(N, C)`) / mean / sum over images and classes.
    pub reduction: Reduction,
}

/// Which textbook ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Textbook {
    /// `segloss.soft_dice`: l = 1 − (2·Σpt + s)/(Σp + Σt + s).
    Dice,
    /// `segloss.soft_iou`: l = 1 − (Σpt + s)/(Σp + Σt − Σpt + s).
    Iou,
}

/// The textbook soft Dice or soft IoU of probabilities `input` `(N, C, d1, …)` and a target of the
/// same shape, per image and class over the spatial positions, reduced over images and classes:
///
/// ```text
/// soft Dice: l_nc = 1 − (2·Σ_s p·t + s)/(Σ_s p + Σ_s t + s)        (k = 2, α = β = 1)
/// soft IoU:  l_nc = 1 − (Σ_s p·t + s)/(Σ_s p + Σ_s t − Σ_s p·t + s) (k = 1, α = β = 1)
/// ```
///
/// Nothing is activated, clamped, masked or weighted, and absent classes count like the others;
/// at least one spatial axis is required (a sum over none is not the textbook's).
pub fn textbook(
    which: Textbook,
    input: &Tensor,
    target: &Tensor,
    options: &TextbookOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    check_prediction(input, 3)?;
    if target.shape() != input.shape() {
        return Err(shape_mismatch(input.shape(), target.shape()));
    }
    let (k, overlap_weight) = match which {
        Textbook::Dice => (2.0, 1.0),
        Textbook::Iou => (1.0, 1.0),
    };
    let convention = Convention {
        intersection: Intersection::Product,
        pool_batch: false,
        class_pooling: ClassPooling::PerClass,
        ratio: Ratio {
            k,
            alpha: overlap_weight,
            beta: overlap_weight,
            smooth_nr: options.smooth,
            smooth_dr: options.smooth,
            guard: Guard::None,
        },
        score_loss: ScoreLoss::OneMinus,
        absent: Absent::Kept,
        aggregation: Aggregation::Each {
            weights: None,
            reduction: options.reduction,
            shape: input.shape()[..2].to_vec(),
        },
    };
    let operands = Operands {
        activated: Activated::new(Activation::Identity, flatten("input", input)?),
        target: flatten("target", target)?,
        mask: None,
        channels: (0..input.shape()[1]).collect(),
    };
    let (loss, grad) = operands.run(&convention, grad_output)?;
    Ok(LossOutput {
        loss,
        grad_input: unflatten(grad, input),
    })
}

/// A mask of positions `(N, S)` repeated for each of `classes`.
fn position_mask(mask: &Array2<f64>, classes: usize) -> Array3<f64> {
    let (batch, positions) = mask.dim();
    Array3::from_shape_fn((batch, classes, positions), |(n, _, s)| mask[(n, s)])
}

// --- segmentation_models_pytorch 0.6 -----------------------------------------------------------

/// Which smp loss: `DiceLoss`, `JaccardLoss` or `TverskyLoss`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SmpScore {
    /// soft_dice_score = soft_tversky_score(α = β = ½) = (2I + 2·smooth)/(P + T + 2·smooth).
    Dice,
    /// soft_jaccard_score = soft_tversky_score(α = β = 1) = (I + smooth)/(P + T − I + smooth).
    Jaccard,
    /// soft_tversky_score(α, β), and γ on the aggregated loss.
    Tversky {
        /// Weight of the false positives.
        alpha: f64,
        /// Weight of the false negatives.
        beta: f64,
        /// The aggregated loss is raised to γ.
        gamma: f64,
    },
}

/// The constructor arguments smp's three overlap losses share, with smp's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SmpOptions {
    /// binary / multiclass / multilabel.
    pub mode: SmpMode,
    /// The channels whose losses are averaged (Python indices: negative ones count from the end).
    pub classes: Option<Vec<i64>>,
    /// −ln max(score, eps) instead of 1 − score.
    pub log_loss: bool,
    /// Apply softmax (multiclass) or sigmoid (binary, multilabel) to the prediction.
    pub from_logits: bool,
    /// Added to the intersection in numerator and denominator.
    pub smooth: f64,
    /// Target values equal to this leave both sums.
    pub ignore_index: Option<i64>,
    /// The denominator's clamp and log_loss's floor.
    pub eps: f64,
    /// Per-class weights of the mean over classes (stored as float32 by smp).
    pub class_weights: Option<Vec<f64>>,
}

impl Default for SmpOptions {
    fn default() -> Self {
        SmpOptions {
            mode: SmpMode::Multiclass,
            classes: None,
            log_loss: false,
            from_logits: true,
            smooth: 0.0,
            ignore_index: None,
            eps: 1e-7,
            class_weights: None,
        }
    }
}

/// smp 0.6's `DiceLoss`, `JaccardLoss` and `TverskyLoss(mode, …)(y_pred, y_true)`:
///
/// ```text
/// p = softmax (multiclass) or σ (binary, multilabel) of y_pred, or y_pred when from_logits=False
/// m = [y_true ≠ ignore_index]  (per position; per element in multilabel), applied to p and t
/// per class c, over the batch and the positions:  I = (P + T − Σ|p − t|)/2 = Σ min(p, t)
/// score_c = (I + smooth) / max(I + α·(P − I) + β·(T − I) + smooth, eps)
/// l_c = 1 − score_c, or −ln max(score_c, eps) with log_loss;  l_c = 0 where T_c = 0
/// L = (Σ_{c ∈ classes} w_c·l_c / Σ_{c ∈ classes} w_c)^γ      (w ≡ 1 without class_weights)
/// ```
///
/// The sum over `classes` runs over the selection as given (a class selected twice counts twice),
/// which is computed as every class weighted by the sum of its selections' weights.
/// Dice has α = β = ½ (so 2·smooth in the Dice ratio), Jaccard α = β = 1, Dice and Jaccard γ = 1.
/// Binary mode reads every value of an image as one channel; multiclass targets are class indices
/// (int64 unless ignore_index is set, when smp casts any dtype with `.long()` and ignored positions
/// become class 0 before the mask removes them). Absent classes (T_c = 0 after masking) score 0 but
/// count in the mean. The class weights are float32 (`torch.float`), so their f32 rounding is part
/// of the loss; a weight list of another length than C is rejected (smp would broadcast a single
/// weight, dividing by it once: Σ_c l_c, not the mean — not specified here). smp reshapes y_true
/// to (N, −1) and both tensors to (N, C, −1) (C = 1 in binary mode), which PyTorch refuses for a
/// tensor without elements when N·C = 0: an empty batch, or zero classes outside binary mode, is
/// rejected ([`Rejection::EmptyReshape`]).
pub fn smp_loss(
    score: SmpScore,
    y_pred: &Tensor,
    y_true: &Tensor,
    options: &SmpOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    if options.mode == SmpMode::Binary {
        let conflicting = if options.class_weights.is_some() {
            Some("class_weights")
        } else if options.classes.is_some() {
            Some("classes")
        } else {
            None
        };
        if let Some(option) = conflicting {
            return Err(Rejection::UnsupportedOption {
                option: option.into(),
                context: "with mode=binary".into(),
            });
        }
    }
    check_prediction(y_pred, 2)?;
    let pred_shape = y_pred.shape();
    let batch = pred_shape[0];
    match y_true.shape().first() {
        Some(&target_batch) if target_batch == batch => {}
        target_batch => {
            return Err(Rejection::BatchSizeMismatch {
                input: batch,
                target: target_batch.copied().unwrap_or(0),
            })
        }
    }
    let per_image = pred_shape[1..].iter().product::<usize>();
    let target_values = y_true.to_f64();
    let ignored = |value: f64| options.ignore_index.is_some_and(|ii| value == ii as f64);
    let (prediction, activation, target, mask) = match options.mode {
        SmpMode::Binary | SmpMode::Multilabel => {
            let channels = if options.mode == SmpMode::Binary {
                1
            } else {
                pred_shape[1]
            };
            if batch * channels == 0 {
                return Err(if target_values.is_empty() {
                    empty_reshape("y_true", y_true)
                } else {
                    shape_mismatch(pred_shape, y_true.shape())
                });
            }
            if target_values.len() != batch * per_image {
                return Err(shape_mismatch(pred_shape, y_true.shape()));
            }
            let shape = (batch, channels, per_image / channels);
            let as_3d = |values: ArrayD<f64>| {
                reshaped(values, shape).ok_or_else(|| shape_mismatch(pred_shape, y_true.shape()))
            };
            let target = as_3d(target_values)?;
            let mask = options
                .ignore_index
                .map(|_| target.mapv(|value| f64::from(u8::from(!ignored(value)))));
            let activation = if options.from_logits {
                Activation::Sigmoid
            } else {
                Activation::Identity
            };
            (as_3d(y_pred.to_f64())?, activation, target, mask)
        }
        SmpMode::Multiclass => {
            let classes = pred_shape[1];
            if batch == 0 {
                return Err(empty_reshape("y_true", y_true));
            }
            if classes == 0 {
                return Err(empty_reshape("y_pred", y_pred));
            }
            let labels = match options.ignore_index {
                None if y_true.dtype() != DType::Int64 => {
                    return Err(Rejection::ClassIndexDtype {
                        got: y_true.dtype(),
                    })
                }
                None => truncated_labels(y_true),
                Some(_) => target_values.mapv(|value| {
                    if ignored(value) {
                        0
                    } else {
                        value.trunc() as i64
                    }
                }),
            };
            let positions = per_image / classes;
            if labels.len() % batch != 0 {
                return Err(shape_mismatch(&[batch, positions], y_true.shape()));
            }
            check_labels(&labels, classes)?;
            if labels.len() != batch * positions {
                return Err(shape_mismatch(&[batch, positions], y_true.shape()));
            }
            let target = one_hot(&labels, batch, classes)?;
            let mask = options.ignore_index.map(|_| {
                let flat: Vec<f64> = target_values.iter().copied().collect();
                position_mask(
                    &Array2::from_shape_fn((batch, positions), |(n, s)| {
                        f64::from(u8::from(!ignored(flat[n * positions + s])))
                    }),
                    classes,
                )
            });
            let activation = if options.from_logits {
                Activation::Softmax
            } else {
                Activation::Identity
            };
            (flatten("y_pred", y_pred)?, activation, target, mask)
        }
    };
    let classes = prediction.dim().1;
    let weights = match (&options.class_weights, &options.classes) {
        (Some(weights), None) if weights.len() != classes => {
            return Err(Rejection::WeightLength {
                classes,
                got: vec![weights.len()],
            })
        }
        (weights, None) => weights.as_deref().map(float32_values),
        // smp averages the selected classes' losses, a class once per selection (with its
        // weight, picked by the same index): the mean over every class weighted by the sum of
        // its selections' weights, 0 for a class not selected. No class is computed twice,
        // however long the selection.
        (weights, Some(selected)) => {
            let channels = selected
                .iter()
                .map(|&index| python_index(index, classes))
                .collect::<Result<Vec<usize>>>()?;
            let picked = match weights.as_deref().map(float32_values) {
                Some(weights) => selected
                    .iter()
                    .map(|&index| python_index(index, weights.len()).map(|i| weights[i]))
                    .collect::<Result<Vec<f64>>>()?,
                None => vec![1.0; selected.len()],
            };
            let mut folded = vec![0.0; classes];
            for (class, weight) in channels.into_iter().zip(picked) {
                folded[class] += weight;
            }
            Some(folded)
        }
    };
    let (alpha, beta, gamma) = match score {
        SmpScore::Dice => (0.5, 0.5, 1.0),
        SmpScore::Jaccard => (1.0, 1.0, 1.0),
        SmpScore::Tversky { alpha, beta, gamma } => (alpha, beta, gamma),
    };
    let convention = Convention {
        intersection: Intersection::L1,
        pool_batch: true,
        class_pooling: ClassPooling::PerClass,
        ratio: Ratio {
            k: 1.0,
            alpha,
            beta,
            smooth_nr: options.smooth,
            smooth_dr: options.smooth,
            guard: Guard::ClampMin(options.eps),
        },
        score_loss: if options.log_loss {
            ScoreLoss::NegLog(options.eps)
        } else {
            ScoreLoss::OneMinus
        },
        absent: Absent::ZeroedCounted,
        aggregation: Aggregation::ClassMean {
            weights,
            empty: None,
            gamma,
        },
    };
    let operands = Operands {
        activated: Activated::new(activation, prediction),
        target,
        mask,
        channels: (0..classes).collect(),
    };
    let (loss, grad) = operands.run(&convention, grad_output)?;
    Ok(LossOutput {
        loss,
        grad_input: unflatten(grad, y_pred),
    })
}

/// PyTorch's refusal to reshape a tensor without elements with an inferred (−1) axis when the
/// given axes multiply to 0 (smp's `reshape(bs, C, -1)` of an empty batch or of zero classes).
fn empty_reshape(argument: &'static str, tensor: &Tensor) -> Rejection {
    Rejection::EmptyReshape {
        argument,
        shape: tensor.shape().to_vec(),
    }
}

/// A Python index into `len` items: negative ones count from the end.
fn python_index(index: i64, len: usize) -> Result<usize> {
    let resolved = if index < 0 { index + len as i64 } else { index };
    if resolved < 0 || resolved >= len as i64 {
        Err(Rejection::SelectedClassOutOfBounds {
            index,
            classes: len,
        })
    } else {
        Ok(resolved as usize)
    }
}

// --- MONAI 1.6 ----------------------------------------------------------------------------------

/// Which MONAI loss.
#[derive(Debug, Clone, PartialEq)]
pub enum MonaiScore {
    /// `DiceLoss`: 1 − (2I + nr)/(2I + FP + FN + dr), or with `jaccard` 1 − (2I + nr)/(2(I + FP + FN) + dr).
    Dice {
        /// P = Σp², T = Σt² (and I = Σpt).
        squared_pred: bool,
        /// The Jaccard form (α = β = 2 with k = 2).
        jaccard: bool,
        /// `weight`: multiplies each class's loss, not normalised.
        weight: Option<MonaiWeight>,
    },
    /// `TverskyLoss`: 1 − (I + nr)/(I + α·FP + β·FN + dr).
    Tversky {
        /// Weight of the false positives.
        alpha: f64,
        /// Weight of the false negatives.
        beta: f64,
    },
    /// `GeneralizedDiceLoss`: 1 − (2·Σ_c w_c·I_c + nr)/(Σ_c w_c·(P_c + T_c) + dr) per image.
    Generalized(WeightType),
}

/// MONAI `DiceLoss`'s `weight`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonaiWeight {
    /// One value for every class, or one per class (after `include_background`).
    pub values: Vec<f64>,
    /// A single number, applied to every class.
    pub broadcast: bool,
    /// Held as float32: `torch.as_tensor` of Python floats (DiceLoss's list or number); a tensor
    /// (DiceCELoss's `weight`) keeps its dtype.
    pub float32: bool,
}

/// The arguments MONAI's overlap losses share, with MONAI's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonaiOptions {
    /// Keep channel 0 (ignored with a single channel).
    pub include_background: bool,
    /// Make a `(N, 1, …)` label map one-hot (ignored with a single channel).
    pub to_onehot_y: bool,
    /// σ on the prediction.
    pub sigmoid: bool,
    /// softmax over the channels (ignored with a single channel).
    pub softmax: bool,
    /// none / mean / sum over the (image, class) losses.
    pub reduction: Reduction,
    /// nr.
    pub smooth_nr: f64,
    /// dr.
    pub smooth_dr: f64,
    /// Sum over the batch too: one score per class.
    pub batch: bool,
    /// The L1 intersection Σ min(p, t).
    pub soft_label: bool,
    /// Positions whose label is this leave both sums (see [`monai_loss`]).
    pub ignore_index: Option<i64>,
}

impl Default for MonaiOptions {
    fn default() -> Self {
        MonaiOptions {
            include_background: true,
            to_onehot_y: false,
            sigmoid: false,
            softmax: false,
            reduction: Reduction::Mean,
            smooth_nr: 1e-5,
            smooth_dr: 1e-5,
            batch: false,
            soft_label: false,
            ignore_index: None,
        }
    }
}

impl MonaiOptions {
    /// The constructor's check: at most one of `sigmoid`, `softmax` (and `other_act`, which segloss
    /// does not take).
    pub fn check(&self) -> Result<()> {
        if self.sigmoid && self.softmax {
            Err(Rejection::UnsupportedOption {
                option: "sigmoid=True".into(),
                context: "together with softmax=True".into(),
            })
        } else {
            Ok(())
        }
    }
}

/// MONAI 1.6's `DiceLoss`, `TverskyLoss` and `GeneralizedDiceLoss(…)(input, target)`, input
/// `(N, C, d1, …)`:
///
/// ```text
/// p = σ(x) with sigmoid, softmax(x) with softmax (C > 1), else x
/// t = one_hot(label map) with to_onehot_y (C > 1; an out-of-range ignore_index label becomes 0
///     first; the one-hot target is float32), else the target; channel 0 of both dropped without
///     include_background (C > 1)
/// m from the original target: [y ≠ ii] for a label map (N, 1, …); 1 − y[:, ii] for a C-channel
///     target with 0 ≤ ii < C (every position of class ii leaves every class); [Σ_c y_c > 0]
///     otherwise (positions with an all-zero target leave); p·m, t·m
/// per (image, class) — per class with batch — I, P, T: Σpt, Σp, Σt; Σmin(p,t) with soft_label;
///     Σpt, Σp², Σt² with squared_pred (DiceLoss only)
/// Dice:    f = 1 − (2I + nr)/(2I + FP + FN + dr)         jaccard: 1 − (2I + nr)/(2(I + FP + FN) + dr)
/// Tversky: f = 1 − (I + nr)/(I + α·FP + β·FN + dr)
/// GDL:     f = 1 − (2·Σ_c w_c·I_c + nr)/(Σ_c w_c·(P_c + T_c) + dr), w_c = 1/T_c², 1/T_c or 1 in
///          float32, an infinite w_c replaced by the largest finite one (one f per image, or one)
/// DiceLoss: f_c·w_c (weight, unnormalised; ignored with one channel); then none / mean / sum
/// ```
///
/// Absent classes are kept: a class with T = 0 scores nr/(P + dr), ≈ 1 loss unless P = 0. The
/// unreduced shapes are MONAI's: DiceLoss `(N, C, 1, …)` (`(C, 1, …)` with batch), GDL
/// `(N, 1, 1, …)` (`(1, 1, …)`), TverskyLoss `(N, C)` (`(C)`). Inputs without a spatial axis are not
/// specified (MONAI's sum over no axis sums every axis). With `squared_pred` and `to_onehot_y`,
/// MONAI squares the float32 one-hot target's norm in float32, which the reference computes exactly
/// (see the tolerance overrides).
pub fn monai_loss(
    score: &MonaiScore,
    input: &Tensor,
    target: &Tensor,
    options: &MonaiOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    options.check()?;
    check_prediction(input, 2)?;
    let shape = input.shape();
    if shape.len() < 3 {
        return Err(Rejection::NotSpecified {
            what: "a MONAI overlap loss of an input without spatial axes".into(),
        });
    }
    let (batch, classes) = (shape[0], shape[1]);
    let several = classes > 1;
    let activation = if options.sigmoid {
        Activation::Sigmoid
    } else if options.softmax && several {
        Activation::Softmax
    } else {
        Activation::Identity
    };
    let ignore_index = match score {
        MonaiScore::Generalized(_) => None,
        _ => options.ignore_index,
    };

    let drop_background = !options.include_background && several;
    // The shapes MONAI compares, without channel 0 when include_background is False.
    let sliced = |shape: &[usize]| {
        let mut shape = shape.to_vec();
        if drop_background && shape.len() > 1 {
            shape[1] = shape[1].saturating_sub(1);
        }
        shape
    };
    let target_full = if options.to_onehot_y && several {
        let target_shape = target.shape();
        if target_shape.get(1) != Some(&1) {
            return Err(Rejection::TargetShapeMismatch {
                expected: [&[batch, 1], &shape[2..]].concat(),
                got: target_shape.to_vec(),
            });
        }
        let one_hot = monai::OneHot::new(&target.to_f64(), classes, ignore_index)?;
        if one_hot.shape() != shape {
            return Err(shape_mismatch(&sliced(shape), &sliced(one_hot.shape())));
        }
        (spatial_flattened(one_hot.build()), shape.to_vec())
    } else {
        (spatial_flattened(target.to_f64()), target.shape().to_vec())
    };
    let (Some(target_values), target_shape) = target_full else {
        return Err(shape_mismatch(shape, target.shape()));
    };
    if target_shape != shape {
        return Err(shape_mismatch(&sliced(shape), &sliced(&target_shape)));
    }
    let mask = ignore_index
        .map(|ii| monai_ignore_mask(target, ii, classes))
        .transpose()?;
    let channels: Vec<usize> = (usize::from(drop_background)..classes).collect();
    let scores = channels.len();
    let spatial_ones = vec![1; shape.len() - 2];
    let (ratio, intersection, class_pooling, weights, unreduced) = match score {
        MonaiScore::Dice {
            squared_pred,
            jaccard,
            weight,
        } => {
            let overlap_weight = if *jaccard { 2.0 } else { 1.0 };
            let intersection = if *squared_pred {
                Intersection::Squared
            } else if options.soft_label {
                Intersection::L1
            } else {
                Intersection::Product
            };
            let weights = match weight {
                Some(weight) if scores != 1 => Some(monai_weights(weight, scores)?),
                _ => None,
            };
            let leading = if options.batch {
                vec![scores]
            } else {
                vec![batch, scores]
            };
            (
                (2.0, overlap_weight, overlap_weight),
                intersection,
                ClassPooling::PerClass,
                weights,
                [leading, spatial_ones].concat(),
            )
        }
        MonaiScore::Tversky { alpha, beta } => (
            (1.0, *alpha, *beta),
            monai_ord1(options),
            ClassPooling::PerClass,
            None,
            if options.batch {
                vec![scores]
            } else {
                vec![batch, scores]
            },
        ),
        MonaiScore::Generalized(weight_type) => (
            (2.0, 1.0, 1.0),
            monai_ord1(options),
            ClassPooling::Generalized(*weight_type),
            None,
            [
                if options.batch {
                    vec![1]
                } else {
                    vec![batch, 1]
                },
                spatial_ones,
            ]
            .concat(),
        ),
    };
    let (k, alpha, beta) = ratio;
    let convention = Convention {
        intersection,
        pool_batch: options.batch,
        class_pooling,
        ratio: Ratio {
            k,
            alpha,
            beta,
            smooth_nr: options.smooth_nr,
            smooth_dr: options.smooth_dr,
            guard: Guard::None,
        },
        score_loss: ScoreLoss::OneMinus,
        absent: Absent::Kept,
        aggregation: Aggregation::Each {
            weights,
            reduction: options.reduction,
            shape: unreduced,
        },
    };
    let operands = Operands {
        activated: Activated::new(activation, flatten("input", input)?),
        target: target_values,
        mask,
        channels,
    };
    let (loss, grad) = operands.run(&convention, grad_output)?;
    Ok(LossOutput {
        loss,
        grad_input: unflatten(grad, input),
    })
}

/// Σpt, or Σmin(p, t) with soft_label (TverskyLoss and GeneralizedDiceLoss have no squared form).
fn monai_ord1(options: &MonaiOptions) -> Intersection {
    if options.soft_label {
        Intersection::L1
    } else {
        Intersection::Product
    }
}

/// MONAI's `create_ignore_mask(original target, ii)` ([`monai::ignore_mask`]) as `(N, C, S)` (the
/// same for every class).
fn monai_ignore_mask(target: &Tensor, ignore_index: i64, classes: usize) -> Result<Array3<f64>> {
    let mask = monai::ignore_mask(&target.to_f64(), ignore_index)?;
    let &[batch, 1, ref spatial @ ..] = mask.shape() else {
        return Err(shape_mismatch(&[], mask.shape()));
    };
    let positions = spatial.iter().product();
    let mask =
        reshaped(mask, (batch, positions)).ok_or_else(|| shape_mismatch(&[], target.shape()))?;
    Ok(position_mask(&mask, classes))
}

/// DiceLoss's class weights for `scores` classes: a number for all, or one each; none negative.
fn monai_weights(weight: &MonaiWeight, scores: usize) -> Result<Vec<f64>> {
    let values = if weight.float32 {
        float32_values(&weight.values)
    } else {
        weight.values.clone()
    };
    let values = if weight.broadcast {
        vec![values.first().copied().unwrap_or(0.0); scores]
    } else if values.len() != scores {
        return Err(Rejection::WeightLength {
            classes: scores,
            got: vec![values.len()],
        });
    } else {
        values
    };
    match values.iter().copied().find(|&value| value < 0.0) {
        Some(value) => Err(Rejection::NegativeParameter {
            name: "weight".into(),
            value,
        }),
        None => Ok(values),
    }
}

/// MONAI `DiceCELoss`'s own arguments beyond [`MonaiOptions`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiceCeOptions {
    /// The Dice part's sums of squares.
    pub squared_pred: bool,
    /// The Dice part's Jaccard form.
    pub jaccard: bool,
    /// λ_dice ≥ 0.
    pub lambda_dice: f64,
    /// λ_ce ≥ 0.
    pub lambda_ce: f64,
    /// The cross entropy's ε.
    pub label_smoothing: f64,
}

impl Default for DiceCeOptions {
    fn default() -> Self {
        DiceCeOptions {
            squared_pred: false,
            jaccard: false,
            lambda_dice: 1.0,
            lambda_ce: 1.0,
            label_smoothing: 0.0,
        }
    }
}

/// MONAI 1.6's `DiceCELoss(…, weight)(input, target)`:
///
/// ```text
/// L = λ_dice·DiceLoss(input, target) + λ_ce·cross_entropy(input, target', weight, label_smoothing)
/// ```
///
/// The Dice part is [`monai_loss`] with the `weight` tensor (without channel 0 when
/// include_background is False; its dtype kept, not float32). The cross-entropy part is
/// [`cross_entropy::cross_entropy`] on the raw input whatever the activation flags and
/// include_background say: a label map `(N, 1, …)` is squeezed to class indices (`.long()`), a
/// C-channel target is a probability target (cast to the input's dtype when not floating). With a
/// single channel the second part is [`binary::binary_cross_entropy_with_logits`] instead, with
/// `pos_weight = weight` (MONAI's `BCEWithLogitsLoss(pos_weight=weight)`), on the target cast to
/// the input's dtype when not floating; the Dice part ignores the weight there. Only `mean` and
/// `sum`; no ignore_index, no soft_label.
pub fn monai_dice_ce(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    monai: &MonaiOptions,
    options: &DiceCeOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    if monai.reduction == Reduction::None {
        return Err(Rejection::InvalidOption {
            name: "reduction".into(),
            value: "none".into(),
            allowed: "mean, sum",
        });
    }
    let lambdas = [
        ("lambda_dice", options.lambda_dice),
        ("lambda_ce", options.lambda_ce),
    ];
    let (shape, target_shape) = check_composed(monai, lambdas, input, target)?;
    let dice_weight = weight.map(|weight| {
        let values: Vec<f64> = weight.to_f64().iter().copied().collect();
        let skip = usize::from(!monai.include_background);
        MonaiWeight {
            values: values.into_iter().skip(skip).collect(),
            broadcast: weight.shape().is_empty(),
            float32: false,
        }
    });
    let scale = |lambda: f64| {
        Some(grad_output.map_or_else(|| ArrayD::from_elem(vec![], lambda), |given| given * lambda))
    };
    let dice_options = (options.squared_pred, options.jaccard, dice_weight);
    let dice = dice_part(
        input,
        target,
        monai,
        dice_options,
        scale(options.lambda_dice).as_ref(),
    )?;
    if shape[1] == 1 {
        let bce = binary::binary_cross_entropy_with_logits(
            input,
            &floating_target(input, target),
            None,
            weight,
            monai.reduction,
            scale(options.lambda_ce).as_ref(),
        )?;
        return Ok(LossOutput {
            loss: dice.loss * options.lambda_dice + bce.loss * options.lambda_ce,
            grad_input: dice.grad_input + bce.grad_input,
        });
    }
    let ce_target = if target_shape[1] == 1 {
        let labels = truncated_labels(target);
        let squeezed = [&target_shape[..1], &target_shape[2..]].concat();
        Tensor::Int64(
            reshaped(labels, IxDyn(&squeezed))
                .ok_or_else(|| shape_mismatch(shape, target_shape))?,
        )
    } else {
        floating_target(input, target)
    };
    let ce = cross_entropy::cross_entropy(
        input,
        &ce_target,
        weight,
        &CrossEntropyOptions {
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: monai.reduction,
            label_smoothing: options.label_smoothing,
        },
        scale(options.lambda_ce).as_ref(),
    )?;
    Ok(LossOutput {
        loss: dice.loss * options.lambda_dice + ce.loss * options.lambda_ce,
        grad_input: dice.grad_input + ce.grad_input,
    })
}

/// The Dice part of DiceCELoss and DiceFocalLoss: [`monai_loss`]'s Dice with (squared_pred,
/// jaccard, weight), without ignore_index or soft_label, which neither passes on.
fn dice_part(
    input: &Tensor,
    target: &Tensor,
    monai: &MonaiOptions,
    (squared_pred, jaccard, weight): (bool, bool, Option<MonaiWeight>),
    upstream: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let score = MonaiScore::Dice {
        squared_pred,
        jaccard,
        weight,
    };
    let options = MonaiOptions {
        ignore_index: None,
        soft_label: false,
        ..*monai
    };
    monai_loss(&score, input, target, &options, upstream)
}

/// The checks DiceCELoss and DiceFocalLoss share, in their order: the activation flags, both λ ≥ 0
/// (constructor), then the target's rank and its channels (1 or the input's).
fn check_composed<'a>(
    monai: &MonaiOptions,
    lambdas: [(&str, f64); 2],
    input: &'a Tensor,
    target: &'a Tensor,
) -> Result<(&'a [usize], &'a [usize])> {
    monai.check()?;
    if let Some((name, value)) = lambdas.into_iter().find(|&(_, value)| value < 0.0) {
        return Err(Rejection::NegativeParameter {
            name: name.into(),
            value,
        });
    }
    check_prediction(input, 2)?;
    let (shape, target_shape) = (input.shape(), target.shape());
    if target_shape.len() != shape.len() {
        return Err(Rejection::TargetRank {
            got: target_shape.len(),
            expected: shape.len(),
            input: shape.to_vec(),
        });
    }
    if target_shape[1] != 1 && target_shape[1] != shape[1] {
        return Err(shape_mismatch(shape, target_shape));
    }
    Ok((shape, target_shape))
}

/// DiceCELoss's `target.to(dtype=input.dtype)` of a target that is not floating (a floating
/// target is kept as it is).
fn floating_target(input: &Tensor, target: &Tensor) -> Tensor {
    if target.dtype().is_floating() {
        target.clone()
    } else if input.dtype() == DType::Float32 {
        Tensor::Float32(target.to_f64().mapv(|value| value as f32))
    } else {
        Tensor::Float64(target.to_f64())
    }
}

/// MONAI `DiceFocalLoss`'s own arguments beyond [`MonaiOptions`].
#[derive(Debug, Clone, PartialEq)]
pub struct DiceFocalOptions {
    /// The Dice part's sums of squares.
    pub squared_pred: bool,
    /// The Dice part's Jaccard form.
    pub jaccard: bool,
    /// The focal part's γ.
    pub gamma: f64,
    /// Class weights, given to both parts.
    pub weight: Option<PerClass>,
    /// The focal part's α.
    pub alpha: Option<PerClass>,
    /// λ_dice ≥ 0.
    pub lambda_dice: f64,
    /// λ_focal ≥ 0.
    pub lambda_focal: f64,
}

impl Default for DiceFocalOptions {
    fn default() -> Self {
        DiceFocalOptions {
            squared_pred: false,
            jaccard: false,
            gamma: 2.0,
            weight: None,
            alpha: None,
            lambda_dice: 1.0,
            lambda_focal: 1.0,
        }
    }
}

/// MONAI 1.6's `DiceFocalLoss(…)(input, target)`:
///
/// ```text
/// t' = one_hot(target) with to_onehot_y (C > 1, float32; done once, for both parts), else target
/// L  = λ_dice·DiceLoss(input, t') + λ_focal·FocalLoss(input, t')
/// ```
///
/// The Dice part is [`monai_loss`] with the activation flags, squared_pred, jaccard, smoothing and
/// batch; the focal part is [`focal::monai_focal_loss`] with γ and α, always the sigmoid form on the
/// raw input (`use_softmax` is never set, whatever `softmax` says) and computed in float32. Both take
/// include_background, `weight` (a number or one per remaining class: the Dice part ignores it with
/// a single channel, where the focal part scales by a number and rejects a sequence) and
/// `reduction`; α goes to the focal part only. `none` adds the Dice part's `(N, C, 1, …)` — `(C, 1,
/// …)` with batch — to the focal part's `(N, C, d1, …)` by broadcasting, so the Dice part's
/// upstream gradient is grad_output summed over the broadcast axes. No ignore_index, no
/// soft_label. Checked in MONAI's order: the constructors (reduction, activation flags, λ ≥ 0),
/// the target's rank and channels, the one-hot encoding, then the Dice part's and the focal part's
/// own checks.
pub fn monai_dice_focal(
    input: &Tensor,
    target: &Tensor,
    monai: &MonaiOptions,
    options: &DiceFocalOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let lambdas = [
        ("lambda_dice", options.lambda_dice),
        ("lambda_focal", options.lambda_focal),
    ];
    let (shape, target_shape) = check_composed(monai, lambdas, input, target)?;
    let classes = shape[1];
    let target = if monai.to_onehot_y && classes > 1 {
        if target_shape[1] != 1 {
            return Err(Rejection::TargetShapeMismatch {
                expected: [&[shape[0], 1], &shape[2..]].concat(),
                got: target_shape.to_vec(),
            });
        }
        let one_hot = monai::OneHot::new(&target.to_f64(), classes, None)?;
        if one_hot.shape() != shape {
            return Err(shape_mismatch(shape, one_hot.shape()));
        }
        Tensor::Float32(one_hot.build().mapv(|value| value as f32))
    } else {
        target.clone()
    };
    let dice_weight = options.weight.as_ref().map(|weight| {
        let (values, broadcast) = match weight {
            PerClass::Scalar(value) => (vec![*value], true),
            PerClass::List(values) => (values.clone(), false),
        };
        MonaiWeight {
            values,
            broadcast,
            float32: true,
        }
    });
    let (dice_upstream, focal_upstream) = dice_focal_upstream(shape, monai, options, grad_output)?;
    let dice_options = (options.squared_pred, options.jaccard, dice_weight);
    let encoded = MonaiOptions {
        to_onehot_y: false,
        ..*monai
    };
    let dice = dice_part(input, &target, &encoded, dice_options, Some(&dice_upstream))?;
    let focal = focal::monai_focal_loss(
        input,
        &target,
        &MonaiFocalOptions {
            include_background: monai.include_background,
            to_onehot_y: false,
            gamma: options.gamma,
            alpha: options.alpha.clone(),
            weight: options.weight.clone(),
            reduction: monai.reduction,
            use_softmax: false,
            ignore_index: None,
        },
        Some(&focal_upstream),
    )?;
    let dice_loss = dice
        .loss
        .broadcast(focal.loss.raw_dim())
        .ok_or_else(|| grad_output_shape(focal.loss.shape(), &dice.loss))?
        .to_owned();
    Ok(LossOutput {
        loss: dice_loss * options.lambda_dice + focal.loss * options.lambda_focal,
        grad_input: dice.grad_input + focal.grad_input,
    })
}

/// The upstream gradients of DiceFocalLoss's two parts, λ·grad_output each (ones when absent); for
/// `none`, grad_output has the focal part's `(N, C', d1, …)` shape and the Dice part's is its sum
/// over the spatial axes (and the batch with `batch`), in the Dice part's unreduced shape.
fn dice_focal_upstream(
    shape: &[usize],
    monai: &MonaiOptions,
    options: &DiceFocalOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<(ArrayD<f64>, ArrayD<f64>)> {
    if monai.reduction != Reduction::None {
        let given = grad_output.map_or(1.0, |given| given.iter().copied().sum());
        if let Some(given) = grad_output.filter(|given| given.ndim() != 0) {
            return Err(grad_output_shape(&[], given));
        }
        return Ok((
            ArrayD::from_elem(vec![], given * options.lambda_dice),
            ArrayD::from_elem(vec![], given * options.lambda_focal),
        ));
    }
    let mut unreduced = shape.to_vec();
    if !monai.include_background && shape[1] > 1 {
        unreduced[1] -= 1;
    }
    let given = match grad_output {
        Some(given) if given.shape() == unreduced.as_slice() => given.clone(),
        Some(given) => return Err(grad_output_shape(&unreduced, given)),
        None => ArrayD::ones(unreduced.clone()),
    };
    let (batch, scores) = (unreduced[0], unreduced[1]);
    let mismatch = || grad_output_shape(&unreduced, &given);
    let per_score = reshaped(
        given.clone(),
        (batch, scores, unreduced[2..].iter().product()),
    )
    .ok_or_else(mismatch)?
    .sum_axis(Axis(2));
    let spatial_ones = vec![1; unreduced.len() - 2];
    let dice = if monai.batch {
        let per_class = per_score.sum_axis(Axis(0)).into_dyn();
        reshaped(per_class, IxDyn(&[&[scores][..], &spatial_ones].concat()))
    } else {
        reshaped(
            per_score.into_dyn(),
            IxDyn(&[&[batch, scores][..], &spatial_ones].concat()),
        )
    }
    .ok_or_else(mismatch)?;
    Ok((dice * options.lambda_dice, given * options.lambda_focal))
}

// --- kornia 0.9 ----------------------------------------------------------------------------------

/// The arguments of `kornia.losses.dice_loss`, with kornia's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct KorniaDiceOptions {
    /// `micro` or `macro` (checked after the shapes, as kornia does).
    pub average: String,
    /// Added to the denominator.
    pub eps: f64,
    /// Positions whose label is this leave their image's sums (None: none do).
    pub ignore_index: Option<i64>,
}

impl Default for KorniaDiceOptions {
    fn default() -> Self {
        KorniaDiceOptions {
            average: "micro".into(),
            eps: 1e-8,
            ignore_index: Some(DEFAULT_IGNORE_INDEX),
        }
    }
}

/// kornia's `dice_loss(pred, target, average, eps, weight, ignore_index)` on logits `(B, C, H, W)`
/// and int64 labels `(B, H, W)`, per image b, with p = softmax(pred), t = one_hot(target) and the
/// ignored positions removed from both:
///
/// ```text
/// micro: l_b = 1 − 2·Σ_c w_c·I_bc / (Σ_c w_c·(P_bc + T_bc) + eps)
/// macro: d_bc = 1 − 2·I_bc / (P_bc + T_bc + eps);  l_b = Σ_{c present} w_c·d_bc / Σ_{c present} w_c
/// L = mean_b l_b
/// ```
///
/// w ≡ 1 without weight. A ratio whose P + T (micro: Σ_c w_c·(P + T)) is 0 scores 0 with a zero
/// gradient; a class is present when the image's non-ignored target has it; an image with no
/// present class (or only weightless ones) has l_b = 1 and a zero gradient. kornia's CPU path for
/// 2^15 values or more forms the same sums without the one-hot target, equal to rounding.
pub fn kornia_dice(
    pred: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    options: &KorniaDiceOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let (prediction, labels, mask) = kornia_operands(pred, target, options.ignore_index, || {
        match options.average.as_str() {
            "micro" | "macro" => Ok(()),
            other => Err(Rejection::InvalidOption {
                name: "average".into(),
                value: other.into(),
                allowed: "micro, macro",
            }),
        }
    })?;
    let classes = prediction.dim().1;
    let weights = match weight {
        None => vec![1.0; classes],
        Some(weight)
            if weight.shape().first() != Some(&classes)
                || weight.shape().iter().product::<usize>() != classes =>
        {
            return Err(Rejection::WeightLength {
                classes,
                got: weight.shape().to_vec(),
            })
        }
        Some(weight) => weight.to_f64().iter().copied().collect(),
    };
    let macro_average = options.average == "macro";
    let convention = Convention {
        intersection: Intersection::Product,
        pool_batch: false,
        class_pooling: if macro_average {
            ClassPooling::PerClass
        } else {
            ClassPooling::Weighted(weights.clone())
        },
        ratio: Ratio {
            k: 2.0,
            alpha: 1.0,
            beta: 1.0,
            smooth_nr: 0.0,
            smooth_dr: options.eps,
            guard: Guard::ZeroIfEmpty,
        },
        score_loss: ScoreLoss::OneMinus,
        absent: if macro_average {
            Absent::Dropped
        } else {
            Absent::Kept
        },
        aggregation: Aggregation::ClassMean {
            weights: macro_average.then_some(weights),
            empty: Some(1.0),
            gamma: 1.0,
        },
    };
    kornia_run(pred, prediction, labels, mask, &convention, grad_output)
}

/// kornia's `tversky_loss(pred, target, alpha, beta, eps, ignore_index)` on logits `(B, C, H, W)`
/// and int64 labels `(B, H, W)`, per image b over the classes present in its non-ignored target:
///
/// ```text
/// S_bc = I_bc / (I_bc + α·FP_bc + β·FN_bc + eps);  l_b = 1 − Σ_{c present} S_bc / max(#present, 1)
/// L = mean_b l_b
/// ```
///
/// An image with no present class has l_b = 1 and a zero gradient.
pub fn kornia_tversky(
    pred: &Tensor,
    target: &Tensor,
    alpha: f64,
    beta: f64,
    eps: f64,
    ignore_index: Option<i64>,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let (prediction, labels, mask) = kornia_operands(pred, target, ignore_index, || Ok(()))?;
    let convention = Convention {
        intersection: Intersection::Product,
        pool_batch: false,
        class_pooling: ClassPooling::PerClass,
        ratio: Ratio {
            k: 1.0,
            alpha,
            beta,
            smooth_nr: 0.0,
            smooth_dr: eps,
            guard: Guard::None,
        },
        score_loss: ScoreLoss::OneMinus,
        absent: Absent::Dropped,
        aggregation: Aggregation::ClassMean {
            weights: None,
            empty: Some(1.0),
            gamma: 1.0,
        },
    };
    kornia_run(pred, prediction, labels, mask, &convention, grad_output)
}

/// kornia's operands: the logits `(B, C, S)`, the one-hot target and the position mask.
type KorniaOperands = (Array3<f64>, Array3<f64>, Option<Array3<f64>>);

/// kornia's checks in its order — a 4-D pred, the target's last two axes, then its batch and
/// spatial shape, then `options_check`, then int64 labels within [0, C) once ignored labels are 0 —
/// and the prediction `(B, C, S)`, the one-hot target and the position mask.
fn kornia_operands(
    pred: &Tensor,
    target: &Tensor,
    ignore_index: Option<i64>,
    options_check: impl FnOnce() -> Result<()>,
) -> Result<KorniaOperands> {
    check_prediction(pred, 0)?;
    let shape = pred.shape();
    if shape.len() != 4 {
        return Err(Rejection::InputShape {
            expected: "(B, C, H, W)",
            got: shape.to_vec(),
        });
    }
    let target_shape = target.shape();
    let expected = [shape[0], shape[2], shape[3]];
    let last_two = |dims: &[usize]| dims[dims.len().saturating_sub(2)..].to_vec();
    if last_two(shape) != last_two(target_shape) || target_shape != expected {
        return Err(shape_mismatch(&expected, target_shape));
    }
    options_check()?;
    let ignored = |label: i64| ignore_index == Some(label);
    let labels = match target {
        Tensor::Int64(labels) => labels.mapv(|label| if ignored(label) { 0 } else { label }),
        other => return Err(Rejection::ClassIndexDtype { got: other.dtype() }),
    };
    let (batch, classes) = (shape[0], shape[1]);
    let one_hot_target = one_hot(&labels, batch, classes)?;
    let mask = ignore_index.map(|_| {
        let positions = shape[2] * shape[3];
        let flat: Vec<i64> = target.to_f64().iter().map(|&value| value as i64).collect();
        position_mask(
            &Array2::from_shape_fn((batch, positions), |(n, s)| {
                f64::from(u8::from(!ignored(flat[n * positions + s])))
            }),
            classes,
        )
    });
    Ok((flatten("pred", pred)?, one_hot_target, mask))
}

fn kornia_run(
    pred: &Tensor,
    prediction: Array3<f64>,
    target: Array3<f64>,
    mask: Option<Array3<f64>>,
    convention: &Convention,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let classes = prediction.dim().1;
    let operands = Operands {
        activated: Activated::new(Activation::Softmax, prediction),
        target,
        mask,
        channels: (0..classes).collect(),
    };
    let (loss, grad) = operands.run(convention, grad_output)?;
    Ok(LossOutput {
        loss,
        grad_input: unflatten(grad, pred),
    })
}
