//! segmentation_models_pytorch's `FocalLoss`: one sigmoid focal function with geometric p_t,
//! applied to groups of elements (one-vs-rest per class in multiclass mode) and composed per mode.

use std::borrow::Cow;

use ndarray::{ArrayD, IxDyn};

use super::{grad_output_scalar, to_f32, Alpha, SigmoidFocal, SoftTarget};
use crate::error::Rejection;
use crate::spec::binary::{two_product, two_sum, Broadcast};
use crate::spec::cross_entropy::check_float_input;
use crate::spec::positions::{sweep, Layout, Position, Values};
use crate::spec::smp::{shape_error, SmpMode};
use crate::spec::trace::{self, Fact};
use crate::spec::{compensated_sum, CompensatedSum, LossOutput, Result};
use crate::tensor::Tensor;

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
pub fn loss(
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
    check_float_input(y_pred)?;
    let groups = Groups::new(y_pred, y_true, options)?;
    let reduced_shape = groups.reduced_shape(options.reduction);
    let class_weights = options.class_weights.as_ref().map(|weights| {
        let weights: Vec<f64> = weights.iter().copied().map(to_f32).collect();
        (
            to_f32(compensated_sum(weights.iter().copied())),
            Tensor::Float64(
                ArrayD::from_shape_vec(IxDyn(&[weights.len()]), weights).unwrap_or_default(),
            ),
        )
    });
    let composition = Composition::new(
        &groups,
        &reduced_shape,
        class_weights
            .as_ref()
            .map(|(total, tensor)| (*total, tensor)),
        grad_output,
    )
    .map_err(|error| match error {
        CompositionError::NoGroups => shape_error(y_pred, y_true),
        CompositionError::Rejected(rejection) => rejection,
    })?;
    let focal = SigmoidFocal {
        gamma: options.gamma,
        soft_target: SoftTarget::Geometric {
            reduced_threshold: options.reduced_threshold,
        },
    };
    trace::record(|| {
        let prediction = if options.from_logits {
            "logits, sigmoid of each element"
        } else {
            "probabilities, as given"
        };
        let alpha = options.alpha.map_or(Alpha::None, Alpha::Balanced);
        let mut facts = focal.facts(prediction, &alpha);
        let each = match options.reduction {
            SmpReduction::Mean => "mean",
            SmpReduction::Sum => "sum",
            SmpReduction::BatchwiseMean => "sum over the batch axis",
            SmpReduction::Unreduced => "unreduced",
        };
        let normalized = if options.normalized {
            ", divided by Σ(1 − p_t)^γ"
        } else {
            ""
        };
        facts.push(Fact::new(
            "reduction",
            match options.mode {
                SmpMode::Binary => format!("one focal loss over every element, {each}{normalized}"),
                _ => format!(
                    "one focal loss per class, each {each}{normalized}, then their mean (Σwl/Σw)"
                ),
            },
        ));
        facts.push(Fact::new(
            "ignored",
            options.ignore_index.map_or("nothing".to_string(), |index| {
                format!("elements labelled {index} dropped")
            }),
        ));
        facts
    });
    let alpha = options.alpha.map(|alpha| (alpha, 1.0 - alpha));
    let values = Values::read(y_pred);
    let layout = groups.layout;
    let slots: usize = reduced_shape.iter().product();
    // Where kept position p's element sits in its group's reduced value: the slot j.
    let ranks = (options.reduction == SmpReduction::Unreduced && options.ignore_index.is_some())
        .then(|| groups.ranks());
    let slot = |position: Position| match options.reduction {
        SmpReduction::Mean | SmpReduction::Sum => 0,
        SmpReduction::BatchwiseMean if groups.shape.len() == 1 => 0,
        SmpReduction::BatchwiseMean => position.s,
        SmpReduction::Unreduced => ranks
            .as_ref()
            .map_or(position.index, |ranks| ranks[position.index]),
    };
    let count = groups.count as f64;
    let upstream = |group: usize, slot: usize| {
        let upstream = composition.upstream(group * slots + slot);
        if options.reduction == SmpReduction::Mean {
            upstream / count
        } else {
            upstream
        }
    };
    let element = |position: Position, group: usize| {
        let (logit, slope) = smp_logit(values.at(position.element(&layout, group)), options);
        let element = focal.element(logit, groups.target(position, group), alpha, 1.0);
        (element, slope)
    };
    let normalizers = groups.normalizers(options.normalized, |position, group| {
        let (element, _) = element(position, group);
        let u = upstream(group, slot(position));
        (element.modulation(), u * element.loss())
    });
    let want_losses =
        options.mode == SmpMode::Binary && options.reduction == SmpReduction::Unreduced;
    let swept = sweep(layout, want_losses, |position, lane, _| {
        if !groups.kept(position) {
            return (0.0, 0.0);
        }
        let slot = slot(position);
        let (mut total, mut residual) = (0.0, 0.0);
        for (group, normalizer) in normalizers.iter().enumerate() {
            let (element, slope) = element(position, group);
            let Normalizer {
                norm,
                upstream_modulation,
            } = *normalizer;
            let (term, term_lo) = two_product(
                composition.weight(group * slots + slot),
                element.loss() / norm,
            );
            let (sum, sum_lo) = two_sum(total, term);
            (total, residual) = (sum, residual + sum_lo + term_lo);
            let grad = slope.map_or(0.0, |slope| {
                element.slope(upstream(group, slot) / norm, upstream_modulation) * slope
            });
            lane.set(group, grad);
        }
        (total, residual)
    });
    let loss = match (&composition, options.reduction) {
        (Composition::Alone(_), SmpReduction::Unreduced) => {
            let losses = swept.losses.unwrap_or_default();
            let kept: Vec<f64> = if groups.count == losses.len() {
                losses
            } else {
                (0..losses.len())
                    .filter(|&index| groups.kept(groups.position(index)))
                    .map(|index| losses[index])
                    .collect()
            };
            ArrayD::from_shape_vec(IxDyn(&reduced_shape), kept).unwrap_or_default()
        }
        (Composition::Alone(_), SmpReduction::Mean) => {
            ArrayD::from_elem(vec![], swept.total / count)
        }
        (Composition::Alone(_), _) => ArrayD::from_elem(vec![], swept.total),
        (Composition::Weighted { total, .. }, SmpReduction::Mean) => {
            ArrayD::from_elem(vec![], swept.total / count / total)
        }
        (Composition::Weighted { total, .. }, _) => ArrayD::from_elem(vec![], swept.total / total),
    };
    Ok(LossOutput {
        loss,
        grad_input: ArrayD::from_shape_vec(IxDyn(y_pred.shape()), swept.gradient)
            .unwrap_or_default(),
    })
}

/// The logit smp's focal sees for a y_pred value and its derivative with respect to that value:
/// the value itself, or for probabilities p = clamp(y_pred, eps, 1 − eps) → log(p/(1 − p)) (slope
/// 1/(p(1 − p))) or, in multiclass mode, log p (slope 1/p). Where the clamp is active — everywhere
/// for eps > ½, when torch's clamp gives 1 − eps — the slope is `None`: torch's clamp backward
/// selects 0 there, so not even a NaN from the focal term passes.
fn smp_logit(value: f64, options: &SmpFocalOptions) -> (f64, Option<f64>) {
    if options.from_logits {
        return (value, Some(1.0));
    }
    let (low, high) = (options.eps, 1.0 - options.eps);
    let p = torch_clamp(value, low, high);
    let inside = value >= low && value <= high;
    if options.mode == SmpMode::Multiclass {
        (p.ln(), inside.then(|| 1.0 / p))
    } else {
        ((p / (1.0 - p)).ln(), inside.then(|| 1.0 / (p * (1.0 - p))))
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

/// The elements of smp's focal calls, without listing them: the positions of an (N, G, S) layout,
/// group g of a position being its element g — y_pred[:, g] against [y = g] (multiclass) or
/// y_true[:, g] (multilabel); binary mode is one group whose positions are y_pred's elements,
/// flattened. A position whose label is ignore_index is dropped from every group.
struct Groups<'a> {
    layout: Layout,
    mode: SmpMode,
    /// y_true, one label per position (binary, multiclass) or one target per element (multilabel).
    labels: Values<'a>,
    ignore_index: Option<i64>,
    /// The elements of each group, the same for every group: the kept positions.
    count: usize,
    /// The shape of each group's tensor: (count,) with ignore_index and in binary mode, else the
    /// positions' (N, spatial…).
    shape: Vec<usize>,
}

impl<'a> Groups<'a> {
    /// The groups of `mode`, with smp's checks of y_pred and y_true.
    fn new(y_pred: &Tensor, y_true: &'a Tensor, options: &SmpFocalOptions) -> Result<Groups<'a>> {
        let pred_shape = y_pred.shape();
        let count_all: usize = pred_shape.iter().product();
        let layout = match options.mode {
            SmpMode::Binary => {
                if y_true.shape().iter().product::<usize>() != count_all {
                    return Err(shape_error(y_pred, y_true));
                }
                Layout {
                    batch: 1,
                    classes: 1,
                    spatial: count_all,
                }
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
                if y_true.shape() != expected {
                    return Err(shape_error(y_pred, y_true));
                }
                Layout::of(pred_shape, 1)
            }
        };
        let mut groups = Groups {
            layout,
            mode: options.mode,
            labels: Values::read(y_true),
            ignore_index: options.ignore_index,
            count: 0,
            shape: Vec::new(),
        };
        groups.count = (0..layout.positions())
            .filter(|&index| groups.kept(groups.position(index)))
            .count();
        groups.shape = match options.mode {
            SmpMode::Multiclass | SmpMode::Multilabel if options.ignore_index.is_none() => {
                let mut position_shape = pred_shape.to_vec();
                position_shape.remove(1);
                position_shape
            }
            _ => vec![groups.count],
        };
        Ok(groups)
    }

    /// The position of index n·S + s.
    fn position(&self, index: usize) -> Position {
        let spatial = self.layout.spatial.max(1);
        Position {
            n: index / spatial,
            s: index % spatial,
            index,
        }
    }

    /// Whether the position is kept (its label is not ignore_index; multilabel keeps every one).
    fn kept(&self, position: Position) -> bool {
        self.mode == SmpMode::Multilabel
            || self
                .ignore_index
                .is_none_or(|ignored| self.labels.at(position.index) != ignored as f64)
    }

    /// The target of group g at a kept position.
    fn target(&self, position: Position, group: usize) -> f64 {
        match self.mode {
            SmpMode::Binary => self.labels.at(position.index),
            SmpMode::Multiclass => {
                f64::from(u8::from(self.labels.at(position.index) == group as f64))
            }
            SmpMode::Multilabel => self.labels.at(position.element(&self.layout, group)),
        }
    }

    /// The shape of each group's reduced value: () for mean and sum, the group's shape without
    /// its first axis for batchwise_mean, the group's shape unreduced.
    fn reduced_shape(&self, reduction: SmpReduction) -> Vec<usize> {
        match reduction {
            SmpReduction::Mean | SmpReduction::Sum => Vec::new(),
            SmpReduction::BatchwiseMean => self.shape[1..].to_vec(),
            SmpReduction::Unreduced => self.shape.clone(),
        }
    }

    /// Each kept position's index among the kept positions, in order (dropped ones get the next).
    fn ranks(&self) -> Vec<usize> {
        let mut rank = 0;
        (0..self.layout.positions())
            .map(|index| {
                let own = rank;
                rank += usize::from(self.kept(self.position(index)));
                own
            })
            .collect()
    }

    /// Each group's normaliser: `normalized` divides a call's losses by n = max(Σ m, 1e-6), and
    /// then the gradient of l_i/n carries −Σ_j u_j·l_j/n² on every m_i (0 where the clamp holds,
    /// Σ m < 1e-6). `parts(position, g)` gives (m, u·l) of group g's element at a kept position,
    /// u its upstream. Summed in position order, one compensated sum per group, so the result
    /// does not depend on the number of cores; none of this without `normalized`.
    fn normalizers(
        &self,
        normalized: bool,
        parts: impl Fn(Position, usize) -> (f64, f64),
    ) -> Vec<Normalizer> {
        let groups = self.layout.classes;
        if !normalized {
            return vec![
                Normalizer {
                    norm: 1.0,
                    upstream_modulation: 0.0,
                };
                groups
            ];
        }
        let mut sums = vec![(CompensatedSum::default(), CompensatedSum::default()); groups];
        for index in 0..self.layout.positions() {
            let position = self.position(index);
            if !self.kept(position) {
                continue;
            }
            for (group, (modulation, weighted)) in sums.iter_mut().enumerate() {
                let (m, ul) = parts(position, group);
                modulation.add(m);
                weighted.add(ul);
            }
        }
        let floor = 1e-6;
        sums.into_iter()
            .map(|(modulation, weighted)| {
                let total = modulation.total();
                let norm = total.max(floor);
                let upstream_modulation = if total >= floor {
                    -weighted.total() / (norm * norm)
                } else {
                    0.0
                };
                Normalizer {
                    norm,
                    upstream_modulation,
                }
            })
            .collect()
    }
}

/// A group's normaliser n and the upstream gradient on each of its m.
#[derive(Debug, Clone, Copy)]
struct Normalizer {
    norm: f64,
    upstream_modulation: f64,
}

/// How smp composes its groups' reduced values R_g into the loss, and the upstream gradient on
/// each entry of them. Entry j of group g is entry g·|R| + j of the stack (G, R…).
enum Composition<'a> {
    /// Binary mode: the one group's reduced value is the loss, grad_output (ones when absent) its
    /// upstream.
    Alone(Option<Cow<'a, [f64]>>),
    /// Multiclass and multilabel: Σ(stack·w)/Σw over the stacked reduced values, the float32
    /// class weights broadcast right-aligned to the stack (so they only fit a (C,) stack) and Σw
    /// rounded to float32; without weights w = 1 and Σw the stack's size. The upstream of entry
    /// k is g·w_k/Σw.
    Weighted {
        weights: Option<Broadcast<'a>>,
        total: f64,
        g: f64,
    },
}

/// Why a composition cannot be formed.
enum CompositionError {
    /// Multiclass or multilabel with no class: torch.stack of nothing.
    NoGroups,
    /// A rejected grad_output or class weights.
    Rejected(Rejection),
}

impl<'a> Composition<'a> {
    /// The composition of `groups`, their reduced values of `reduced_shape`, with (Σw, w) the
    /// class weights; grad_output must have the loss's shape.
    fn new(
        groups: &Groups,
        reduced_shape: &[usize],
        class_weights: Option<(f64, &'a Tensor)>,
        grad_output: Option<&'a ArrayD<f64>>,
    ) -> std::result::Result<Composition<'a>, CompositionError> {
        if groups.mode == SmpMode::Binary {
            return Ok(Composition::Alone(match grad_output {
                Some(given) if given.shape() != reduced_shape => {
                    return Err(CompositionError::Rejected(Rejection::GradOutputShape {
                        expected: reduced_shape.to_vec(),
                        got: given.shape().to_vec(),
                    }))
                }
                Some(given) => Some(match given.as_slice() {
                    Some(values) => Cow::Borrowed(values),
                    None => Cow::Owned(given.iter().copied().collect()),
                }),
                None => None,
            }));
        }
        if groups.layout.classes == 0 {
            return Err(CompositionError::NoGroups);
        }
        let g = grad_output_scalar(grad_output).map_err(CompositionError::Rejected)?;
        let mut stack = vec![groups.layout.classes];
        stack.extend_from_slice(reduced_shape);
        Ok(match class_weights {
            Some((total, tensor)) => Composition::Weighted {
                weights: Some(
                    Broadcast::new("class_weights", Some(tensor), &stack)
                        .map_err(CompositionError::Rejected)?,
                ),
                total,
                g,
            },
            None => Composition::Weighted {
                weights: None,
                total: stack.iter().product::<usize>() as f64,
                g,
            },
        })
    }

    /// The weight of stack entry k in the loss (1 in binary mode).
    #[inline]
    fn weight(&self, entry: usize) -> f64 {
        match self {
            Composition::Alone(_) => 1.0,
            Composition::Weighted { weights, .. } => {
                weights.as_ref().map_or(1.0, |weights| weights.at(entry))
            }
        }
    }

    /// The upstream gradient on stack entry k.
    #[inline]
    fn upstream(&self, entry: usize) -> f64 {
        match self {
            Composition::Alone(grad_output) => {
                grad_output.as_ref().map_or(1.0, |values| values[entry])
            }
            Composition::Weighted { total, g, .. } => g * self.weight(entry) / total,
        }
    }
}
