//! The operands of the overlap core: the prediction read in place and activated one position at
//! a time, the target (values or class labels), position masks and channel selection, and the
//! argument checks the front ends share.
//!
//! Nothing of the prediction's size is materialised but the gradient: each pass of the core
//! reads a position's C values, activates them into p and q = 1 − p, and forgets them.

use ndarray::{ArrayD, IxDyn};

use super::wide::Wide;
use super::{overlap, Convention};
use crate::error::Rejection;
use crate::spec::positions::{Layout, Position, Values};
use crate::spec::softmax::SoftmaxLane;
use crate::spec::{LossOutput, Result};
use crate::tensor::Tensor;

/// What turns the prediction into probabilities, along the class axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Activation {
    /// The prediction is already probabilities: p = x, q = 1 − x.
    Identity,
    /// softmax over the classes (smp's `log_softmax(…).exp()`, MONAI's and kornia's `softmax`,
    /// equal to rounding), see [`softmax_lane`].
    Softmax,
    /// p = σ(x) per element (smp's `logsigmoid(…).exp()`, MONAI's `sigmoid`), see [`sigmoid`].
    Sigmoid,
}

/// σ(x), σ(−x) and σ′(x) = σ(x)·σ(−x) from one exponential e = exp(−|x|): with r = 1/(1 + e) in
/// double-double, the larger of the two is r, the smaller e·r, and σ′ = e·r². Each is rounded
/// once, so each carries exp's error and nothing else; 1 − p is never formed by a subtraction,
/// which would leave only the rounding error of p where p ≈ 1.
fn sigmoid(x: f64) -> (f64, f64, f64) {
    if x.is_nan() {
        return (x, x, x);
    }
    let e = (-x.abs()).exp();
    let r = Wide::ONE / (Wide::ONE + e);
    let small = r * e;
    let slope = (small * r).value();
    if x >= 0.0 {
        (r.value(), small.value(), slope)
    } else {
        (small.value(), r.value(), slope)
    }
}

/// The softmax of a lane of logits, p and q = 1 − p for each class, or `false` for a lane
/// without one (holding +∞ or NaN, or all −∞: p = q = NaN). With e_c = exp(x_c − max x) from
/// [`SoftmaxLane`] (exactly 1 at the arg-max) and their sum Z carried in double-double:
///
/// ```text
/// p_c = e_c/Z,   q_c = 1 − p_c = (Z − e_c)/Z = Σ_{c'≠c} e_c'/Z
/// ```
///
/// Z − e_c is formed in double-double, where it keeps the small terms of Z whole: at a dominant
/// class it is the sum of the others, not the rounding error of 1 − p.
fn softmax_lane(logits: &[f64], exps: &mut [f64], p: &mut [f64], q: &mut [f64]) -> bool {
    if SoftmaxLane::new(logits, exps).is_none() {
        p.fill(f64::NAN);
        q.fill(f64::NAN);
        return false;
    }
    let mut total = crate::spec::CompensatedSum::default();
    exps.iter().for_each(|&e| total.add(e));
    let total = Wide::from(total);
    for ((&e, p), q) in exps.iter().zip(p.iter_mut()).zip(q.iter_mut()) {
        *p = (Wide::from(e) / total).value();
        *q = ((total - e) / total).value();
    }
    true
}

/// The softmax's vector-Jacobian product for g = ∂L/∂p, written so that nothing cancels but what
/// the value itself cancels:
///
/// ```text
/// ∂L/∂x_k = p_k·(g_k − Σ_c p_c·g_c) = p_k·(g_k·q_k − Σ_{c≠k} p_c·g_c)
/// ```
///
/// with Σ_{c≠k} as a prefix plus a suffix sum of exact products in double-double, so a dominant
/// class is never added and taken away again. Where Σ_c p_c·g_c is not finite the left-hand form
/// is evaluated literally, as PyTorch does.
fn softmax_backward(p: &[f64], q: &[f64], g: &[f64], out: &mut [f64], suffix: &mut [f64]) {
    let term = |k: usize| Wide::from(p[k]) * g[k];
    let mut after = Wide::ZERO;
    for k in (0..g.len()).rev() {
        (suffix[2 * k], suffix[2 * k + 1]) = after.parts();
        after = after + term(k);
    }
    let total = after.value();
    let mut before = Wide::ZERO;
    for k in 0..g.len() {
        let others = before + suffix[2 * k] + suffix[2 * k + 1];
        out[k] = if total.is_finite() {
            ((Wide::from(g[k]) * q[k] - others) * p[k]).value()
        } else {
            g[k] - p[k] * total
        };
        before = before + term(k);
    }
}

/// The target t of the prediction's classes.
pub(super) enum Target<'a> {
    /// One value per element of the prediction's `(N, C, S)` layout.
    Values(Values<'a>),
    /// One class label per position (N·S): t_c = [label = c].
    Labels(Vec<i64>),
}

/// A mask m that multiplies p and t (MONAI's real-valued mask included).
pub(super) enum Mask {
    /// One value per position (N·S), the same for every class.
    Positions(Vec<f64>),
    /// One value per element of the prediction's `(N, C, S)` layout.
    Elements(Vec<f64>),
}

/// One operand pair of the core: p' = p·m, its complement q' = 1 − p·m = (1 − m) + m·q, and
/// t' = t·m.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Element {
    pub(super) p: f64,
    pub(super) q: f64,
    pub(super) t: f64,
}

/// The operands the core sees and how to route its gradient back to the prediction.
pub(super) struct Operands<'a> {
    activation: Activation,
    /// x, read in place.
    prediction: Values<'a>,
    /// The prediction's shape, that of the gradient.
    shape: &'a [usize],
    /// The prediction as `(N, C, S)`.
    layout: Layout,
    target: Target<'a>,
    mask: Option<Mask>,
    /// The channels that enter the loss, in order (repeats allowed).
    channels: Vec<usize>,
}

/// A position's working values, slices of one buffer: the prediction's C values x, p, q and σ′
/// (or e) of each class, ∂L/∂p and ∂L/∂x of each class and the suffix sums of the softmax
/// backward; the selected channels' (p', q', t') and masks.
pub(super) struct Scratch<'s> {
    x: &'s mut [f64],
    p: &'s mut [f64],
    q: &'s mut [f64],
    aux: &'s mut [f64],
    grad_p: &'s mut [f64],
    grad_x: &'s mut [f64],
    suffix: &'s mut [f64],
    selected_p: &'s mut [f64],
    selected_q: &'s mut [f64],
    selected_t: &'s mut [f64],
    masks: &'s mut [f64],
    /// Whether the softmax of the lane exists.
    valid: bool,
}

impl<'s> Scratch<'s> {
    /// The scratch of `classes` classes and `selected` channels, in `buffer`.
    pub(super) fn new(buffer: &'s mut Vec<f64>, classes: usize, selected: usize) -> Scratch<'s> {
        buffer.resize(8 * classes + 4 * selected, 0.0);
        let mut rest = &mut buffer[..];
        let mut take = |len: usize| {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
            rest = tail;
            head
        };
        Scratch {
            x: take(classes),
            p: take(classes),
            q: take(classes),
            aux: take(classes),
            grad_p: take(classes),
            grad_x: take(classes),
            suffix: take(2 * classes),
            selected_p: take(selected),
            selected_q: take(selected),
            selected_t: take(selected),
            masks: take(selected),
            valid: true,
        }
    }

    /// The element of selected channel j.
    pub(super) fn element(&self, j: usize) -> Element {
        Element {
            p: self.selected_p[j],
            q: self.selected_q[j],
            t: self.selected_t[j],
        }
    }
}

impl<'a> Operands<'a> {
    /// The operands of `prediction` (laid out as `layout`) and `target`, activated by
    /// `activation`, masked by `mask`, of which `channels` enter the loss.
    pub(super) fn new(
        activation: Activation,
        prediction: &'a Tensor,
        layout: Layout,
        target: Target<'a>,
        mask: Option<Mask>,
        channels: Vec<usize>,
    ) -> Operands<'a> {
        Operands {
            activation,
            prediction: Values::read(prediction),
            shape: prediction.shape(),
            layout,
            target,
            mask,
            channels,
        }
    }

    /// The prediction's `(N, C, S)` layout.
    pub(super) fn layout(&self) -> Layout {
        self.layout
    }

    /// The number of selected channels, the core's classes.
    pub(super) fn selected(&self) -> usize {
        self.channels.len()
    }

    /// A scratch for [`Operands::at`] and [`Operands::backward`], in `buffer`.
    pub(super) fn scratch<'s>(&self, buffer: &'s mut Vec<f64>) -> Scratch<'s> {
        Scratch::new(buffer, self.layout.classes, self.channels.len())
    }

    /// Runs the core on the selected channels and returns the loss and ∂L/∂x in the shape of the
    /// prediction.
    pub(super) fn run(
        &self,
        convention: &Convention,
        grad_output: Option<&ArrayD<f64>>,
    ) -> Result<LossOutput> {
        let (loss, gradient) = overlap(convention, self, grad_output)?;
        Ok(LossOutput {
            loss,
            grad_input: ArrayD::from_shape_vec(IxDyn(self.shape), gradient).unwrap_or_default(),
        })
    }

    /// Activates the prediction at `position` and fills `scratch.elements` with the selected
    /// channels' (p', q', t').
    pub(super) fn at(&self, position: Position, scratch: &mut Scratch) {
        let layout = &self.layout;
        for (class, x) in scratch.x.iter_mut().enumerate() {
            *x = self.prediction.at(position.element(layout, class));
        }
        match self.activation {
            Activation::Identity => {
                for (class, &x) in scratch.x.iter().enumerate() {
                    (scratch.p[class], scratch.q[class]) = (x, 1.0 - x);
                }
            }
            Activation::Sigmoid => {
                for (class, &x) in scratch.x.iter().enumerate() {
                    (scratch.p[class], scratch.q[class], scratch.aux[class]) = sigmoid(x);
                }
            }
            Activation::Softmax => {
                scratch.valid = softmax_lane(scratch.x, scratch.aux, scratch.p, scratch.q);
            }
        }
        for (j, &class) in self.channels.iter().enumerate() {
            let element = position.element(layout, class);
            let t = match &self.target {
                Target::Values(values) => values.at(element),
                Target::Labels(labels) => {
                    f64::from(u8::from(labels[position.index] == class as i64))
                }
            };
            let m = match &self.mask {
                None => 1.0,
                Some(Mask::Positions(mask)) => mask[position.index],
                Some(Mask::Elements(mask)) => mask[element],
            };
            let (p, q) = (scratch.p[class], scratch.q[class]);
            scratch.masks[j] = m;
            (
                scratch.selected_p[j],
                scratch.selected_q[j],
                scratch.selected_t[j],
            ) = if m == 1.0 {
                (p, q, t)
            } else {
                (p * m, (1.0 - m) + m * q, t * m)
            };
        }
    }

    /// ∂L/∂x at the position [`Operands::at`] last filled `scratch` for, from ∂L/∂p'_j of each
    /// selected channel (`grad`): times m, added over a channel's selections, through the
    /// activation; `set` receives each class's value.
    pub(super) fn backward(
        &self,
        grad: impl Fn(usize, &Element) -> f64,
        scratch: &mut Scratch,
        mut set: impl FnMut(usize, f64),
    ) {
        scratch.grad_p.fill(0.0);
        for (j, &class) in self.channels.iter().enumerate() {
            let m = scratch.masks[j];
            if m != 0.0 {
                scratch.grad_p[class] += grad(j, &scratch.element(j)) * m;
            }
        }
        match self.activation {
            Activation::Identity => {
                for (class, &g) in scratch.grad_p.iter().enumerate() {
                    set(class, g);
                }
            }
            Activation::Sigmoid => {
                for (class, (&g, &slope)) in
                    scratch.grad_p.iter().zip(scratch.aux.iter()).enumerate()
                {
                    set(class, g * slope);
                }
            }
            Activation::Softmax => {
                let silent = scratch.grad_p.iter().all(|&g| g == 0.0);
                if silent || !scratch.valid {
                    // An ignored position is not read: its gradient is 0 whatever its logits.
                    let value = if silent { 0.0 } else { f64::NAN };
                    (0..scratch.grad_p.len()).for_each(|class| set(class, value));
                    return;
                }
                softmax_backward(
                    scratch.p,
                    scratch.q,
                    scratch.grad_p,
                    scratch.grad_x,
                    scratch.suffix,
                );
                for (class, &value) in scratch.grad_x.iter().enumerate() {
                    set(class, value);
                }
            }
        }
    }
}

/// The `(N, C, S)` layout of a tensor argument `(N, C, d1, …)`; one of fewer than two axes is
/// rejected.
pub(super) fn prediction_layout(argument: &'static str, tensor: &Tensor) -> Result<Layout> {
    match tensor.shape() {
        [_, _, ..] => Ok(Layout::of(tensor.shape(), 1)),
        shape => Err(Rejection::UnexpectedShape {
            argument,
            expected: "(N, C, …)",
            got: shape.to_vec(),
        }),
    }
}

/// Values in row-major order, to be read as a target or a mask.
pub(super) fn row_major(values: ArrayD<f64>) -> Vec<f64> {
    if values.is_standard_layout() {
        values.into_raw_vec_and_offset().0
    } else {
        values.iter().copied().collect()
    }
}

/// Class indices read as PyTorch's `.long()` reads them: floats truncated toward zero.
pub(super) fn truncated_labels(target: &Tensor) -> ArrayD<i64> {
    target.to_f64().mapv(|value| value.trunc() as i64)
}

/// A floating-point prediction of at least `min_rank` dimensions `(N, C, …)`.
pub(super) fn check_prediction(prediction: &Tensor, min_rank: usize) -> Result<()> {
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

pub(super) fn shape_mismatch(expected: &[usize], got: &[usize]) -> Rejection {
    Rejection::TargetShapeMismatch {
        expected: expected.to_vec(),
        got: got.to_vec(),
    }
}

/// The values of a weight, rounded to float32 as `torch.as_tensor` stores Python floats.
pub(super) fn float32_values(values: &[f64]) -> Vec<f64> {
    values
        .iter()
        .map(|&value| f64::from(value as f32))
        .collect()
}
