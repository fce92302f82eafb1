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

pub mod kornia;
pub mod monai;
mod operands;
pub mod smp;
pub mod textbook;

use ndarray::{Array2, Array3, ArrayD, Axis, IxDyn};

use super::{compensated_sum, reshaped, Reduction};
use crate::error::Rejection;
use crate::spec::Result;

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
