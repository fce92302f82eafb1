//! The operands of the overlap core: the prediction read in place and activated as it is read,
//! the target (values or class labels), position masks and channel selection, and the argument
//! checks the front ends share.
//!
//! Nothing of the prediction's size is materialised but the gradient: each pass of the core
//! reads the prediction, activates it into p and q = 1 − p, and forgets them. An elementwise
//! activation goes one class row at a time, the softmax one position's lane at a time.

use ndarray::{ArrayD, IxDyn};

use super::wide::Wide;
use super::{overlap, Chunk, Convention};
use crate::error::Rejection;
use crate::spec::positions::{Layout, Position, Values, BLOCK_POSITIONS};
use crate::spec::softmax::LogitsBlock;
use crate::spec::trace::{self, Fact};
use crate::spec::{CompensatedSum, LossOutput, Result};
use crate::tensor::Tensor;

/// What turns the prediction into probabilities, along the class axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Activation {
    /// The prediction is already probabilities: p = x, q = 1 − x.
    Identity,
    /// softmax over the classes (smp's `log_softmax(…).exp()`, MONAI's and kornia's `softmax`,
    /// equal to rounding), see [`probabilities`].
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

/// The softmax of one position, p and q = 1 − p for each class, from its e_c = exp(x_c − max x)
/// ([`SoftmaxBlock::form_exps`], exactly 1 at the arg-max), with their sum Z carried in
/// double-double:
///
/// ```text
/// p_c = e_c/Z,   q_c = 1 − p_c = (Z − e_c)/Z = Σ_{c'≠c} e_c'/Z
/// ```
///
/// p_c is e_c times 1/Z, the reciprocal in double-double, rounded once. Only a class with the
/// largest logit (e_c = 1) can have p > ½, where 1 − p would cancel: there Z − e_c is formed in
/// double-double, where it keeps the small terms of Z whole (at a dominant class it is the sum of
/// the others, not the rounding error of 1 − p), and multiplied by 1/Z, rounded once. Elsewhere
/// q = 1 − p ≥ ½ keeps its digits.
fn probabilities(exps: &[f64], p: &mut [f64], q: &mut [f64]) {
    let mut total = CompensatedSum::default();
    exps.iter().for_each(|&e| total.add(e));
    let total = Wide::from(total);
    let reciprocal = Wide::ONE / total;
    for ((&e, p), q) in exps.iter().zip(p.iter_mut()).zip(q.iter_mut()) {
        *p = (reciprocal * e).value();
        *q = if e == 1.0 {
            ((total - e) * reciprocal).value()
        } else {
            1.0 - *p
        };
    }
}

/// The softmax's vector-Jacobian product for g = ∂L/∂p, written so that nothing cancels but what
/// the value itself cancels:
///
/// ```text
/// ∂L/∂x_k = p_k·(g_k − D),   D = Σ_c p_c·g_c;   at the most probable class a:   p_a·(g_a·q_a − Σ_{c≠a} p_c·g_c)
/// ```
///
/// D is a sum of exact products in double-double, g_k − D is formed in double-double and its two
/// parts multiplied by p_k and added. Only at a class with p ≈ 1 would g_k − D lose digits to
/// p_k·g_k inside D, and only a lane's most probable class can have p > ½: there the right-hand
/// form takes q_a = 1 − p_a without subtraction and leaves p_a·g_a out of the sum (`likeliest` is
/// a, from [`complements`]). Where D is not finite the left-hand form is evaluated literally, as
/// PyTorch does.
fn softmax_backward(p: &[f64], q: &[f64], g: &[f64], likeliest: usize, out: &mut [f64]) {
    let term = |k: usize| Wide::from(p[k]) * g[k];
    let others = (0..p.len())
        .filter(|&k| k != likeliest)
        .fold(Wide::ZERO, |sum, k| sum + term(k));
    let total = others + term(likeliest);
    for k in 0..g.len() {
        out[k] = if !total.value().is_finite() {
            g[k] - p[k] * total.value()
        } else if k == likeliest {
            ((Wide::from(g[k]) * q[k] - others) * p[k]).value()
        } else {
            let (hi, lo) = (Wide::from(g[k]) - total).split();
            hi * p[k] + lo * p[k]
        };
    }
}

/// q = 1 − p of a softmax lane's p, and its most probable class a (the first largest p), or `None`
/// for a lane without a softmax (p is NaN). Only a can have p > ½, where 1 − p_a would cancel;
/// there q_a = Σ_{c≠a} p_c, compensated. Elsewhere 1 − p_c keeps its digits.
fn complements(p: &[f64], q: &mut [f64]) -> Option<usize> {
    if p.iter().any(|p| p.is_nan()) {
        q.fill(f64::NAN);
        return None;
    }
    let likeliest = (0..p.len()).fold(0, |best, k| if p[k] > p[best] { k } else { best });
    let mut others = CompensatedSum::default();
    for (k, (&p, q)) in p.iter().zip(q.iter_mut()).enumerate() {
        *q = 1.0 - p;
        if k != likeliest {
            others.add(p);
        }
    }
    q[likeliest] = others.total();
    Some(likeliest)
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
    /// The selections j of each class: channels[j] = c.
    selections: Vec<Vec<usize>>,
}

/// A softmax lane's working values, slices of one buffer: the p, q and e = exp(x − max x) of the
/// prediction's C values x, and ∂L/∂p and ∂L/∂x of each class.
struct Lane<'s> {
    p: &'s mut [f64],
    q: &'s mut [f64],
    exps: &'s mut [f64],
    grad_p: &'s mut [f64],
    grad_x: &'s mut [f64],
}

impl<'s> Lane<'s> {
    /// The lane of `classes` classes, in `buffer`.
    fn new(buffer: &'s mut Vec<f64>, classes: usize) -> Lane<'s> {
        buffer.resize(5 * classes, 0.0);
        let mut rest = &mut buffer[..];
        let mut take = |len: usize| {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
            rest = tail;
            head
        };
        Lane {
            p: take(classes),
            q: take(classes),
            exps: take(classes),
            grad_p: take(classes),
            grad_x: take(classes),
        }
    }
}

/// x, 1 − x and the slope 1: the identity as an elementwise activation.
fn identity(x: f64) -> (f64, f64, f64) {
    (x, 1.0 - x, 1.0)
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
        let mut selections = vec![Vec::new(); layout.classes];
        for (j, &class) in channels.iter().enumerate() {
            selections[class].push(j);
        }
        Operands {
            activation,
            prediction: Values::read(prediction),
            shape: prediction.shape(),
            layout,
            target,
            mask,
            channels,
            selections,
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

    /// Runs the core on the selected channels and returns the loss and ∂L/∂x in the shape of the
    /// prediction.
    pub(super) fn run(
        &self,
        convention: &Convention,
        grad_output: Option<&ArrayD<f64>>,
    ) -> Result<LossOutput> {
        trace::record(|| {
            let mut facts = self.facts();
            facts.extend(convention.facts());
            facts
        });
        let (loss, gradient) = overlap(convention, self, grad_output)?;
        Ok(LossOutput {
            loss,
            grad_input: ArrayD::from_shape_vec(IxDyn(self.shape), gradient).unwrap_or_default(),
        })
    }

    /// The operands' conventions in words: activation, target, mask, scored classes.
    fn facts(&self) -> Vec<Fact> {
        let classes = self.layout.classes;
        let scored = if self.channels.iter().copied().eq(0..classes) {
            "every class".to_string()
        } else if self.channels.iter().copied().eq(1..classes) {
            "every class but the first (background)".to_string()
        } else {
            format!("classes {:?}", self.channels)
        };
        vec![
            Fact::new(
                "prediction",
                match self.activation {
                    Activation::Identity => "probabilities, as given",
                    Activation::Softmax => "logits, softmax over the classes",
                    Activation::Sigmoid => "logits, sigmoid of each element",
                },
            ),
            Fact::new(
                "target",
                match self.target {
                    Target::Labels(_) => "class indices",
                    Target::Values(_) => "one value per class (one-hot or soft)",
                },
            ),
            Fact::new(
                "ignored",
                match self.mask {
                    None => "nothing",
                    Some(Mask::Positions(_)) => {
                        "masked positions (ignore_index, a mask) leave every sum"
                    }
                    Some(Mask::Elements(_)) => "masked elements (ignore_index) leave every sum",
                },
            ),
            Fact::new("classes scored", scored),
        ]
    }

    /// Σ `terms(element)` over the positions of `chunk` for every selected channel, each of the
    /// three sums compensated and in position order. An elementwise activation is applied one
    /// class row at a time, the softmax one position's lane at a time; the softmax's p is left in
    /// `rows` (class c's span of the chunk in `rows[c]`, the gradient's place), where
    /// [`Operands::backward`] reads it instead of taking the softmax again.
    pub(super) fn sum(
        &self,
        chunk: &Chunk,
        buffer: &mut Vec<f64>,
        rows: &mut [&mut [f64]],
        terms: impl Fn(&Element) -> [f64; 3],
    ) -> Vec<[CompensatedSum; 3]> {
        match self.activation {
            Activation::Identity => self.sum_rows(chunk, identity, terms),
            Activation::Sigmoid => self.sum_rows(chunk, sigmoid, terms),
            Activation::Softmax => {
                let layout = self.layout;
                let mut sums = vec![[CompensatedSum::default(); 3]; self.channels.len()];
                let lane = Lane::new(buffer, layout.classes);
                let mut block = LogitsBlock::default();
                let positions: Vec<Position> = chunk.positions(layout).collect();
                for (first, positions) in (0..)
                    .step_by(BLOCK_POSITIONS)
                    .zip(positions.chunks(BLOCK_POSITIONS))
                {
                    let start = positions[0].element(&layout, 0);
                    let width = positions.len();
                    block.read(
                        &self.prediction,
                        (start, layout.spatial),
                        layout.classes,
                        width,
                    );
                    block
                        .softmax
                        .form_exps(&block.logits, width, &mut block.exps);
                    for (j, &position) in positions.iter().enumerate() {
                        if block.softmax.formed(j) {
                            block.exps_at(j, lane.exps);
                            probabilities(lane.exps, lane.p, lane.q);
                        } else {
                            lane.p.fill(f64::NAN);
                            lane.q.fill(f64::NAN);
                        }
                        for (row, &p) in rows.iter_mut().zip(lane.p.iter()) {
                            row[first + j] = p;
                        }
                        for (sums, &class) in sums.iter_mut().zip(&self.channels) {
                            let (p, q) = (lane.p[class], lane.q[class]);
                            let values = terms(&self.masked(position, class, p, q).0);
                            sums.iter_mut().zip(values).for_each(|(sum, v)| sum.add(v));
                        }
                    }
                }
                sums
            }
        }
    }

    /// [`Operands::sum`] for an elementwise activation: one selected channel's row at a time.
    #[inline]
    fn sum_rows(
        &self,
        chunk: &Chunk,
        activate: impl Fn(f64) -> (f64, f64, f64),
        terms: impl Fn(&Element) -> [f64; 3],
    ) -> Vec<[CompensatedSum; 3]> {
        let layout = self.layout;
        self.channels
            .iter()
            .map(|&class| {
                let mut sums = [CompensatedSum::default(); 3];
                for position in chunk.positions(layout) {
                    let x = self.prediction.at(position.element(&layout, class));
                    let (p, q, _) = activate(x);
                    let values = terms(&self.masked(position, class, p, q).0);
                    sums.iter_mut().zip(values).for_each(|(sum, v)| sum.add(v));
                }
                sums
            })
            .collect()
    }

    /// ∂L/∂x over `chunk`, from ∂L/∂p'_j = `grad(j, element)` of each selected channel: times m,
    /// added over a class's selections, through the activation. `rows[c]` receives class c's
    /// span of the chunk; under the softmax it holds p as [`Operands::sum`] left it.
    pub(super) fn backward(
        &self,
        chunk: &Chunk,
        grad: impl Fn(usize, &Element) -> f64,
        buffer: &mut Vec<f64>,
        rows: &mut [&mut [f64]],
    ) {
        let layout = self.layout;
        match self.activation {
            Activation::Identity => self.backward_rows(chunk, identity, &grad, rows),
            Activation::Sigmoid => self.backward_rows(chunk, sigmoid, &grad, rows),
            Activation::Softmax => {
                let lane = Lane::new(buffer, layout.classes);
                for (offset, position) in chunk.positions(layout).enumerate() {
                    for (p, row) in lane.p.iter_mut().zip(rows.iter()) {
                        *p = row[offset];
                    }
                    let likeliest = complements(lane.p, lane.q);
                    for class in 0..layout.classes {
                        let (p, q) = (lane.p[class], lane.q[class]);
                        lane.grad_p[class] = self.grad_p(position, class, p, q, &grad);
                    }
                    let silent = lane.grad_p.iter().all(|&g| g == 0.0);
                    match likeliest {
                        // An ignored position is not read: its gradient is 0 whatever its logits.
                        _ if silent => lane.grad_x.fill(0.0),
                        None => lane.grad_x.fill(f64::NAN),
                        Some(likeliest) => {
                            softmax_backward(lane.p, lane.q, lane.grad_p, likeliest, lane.grad_x)
                        }
                    }
                    for (row, &value) in rows.iter_mut().zip(lane.grad_x.iter()) {
                        row[offset] = value;
                    }
                }
            }
        }
    }

    /// ∂L/∂p of `class` at `position`, from its activated (p, q): Σ_j m·∂L/∂p'_j over the
    /// class's selections j.
    #[inline(always)]
    fn grad_p(
        &self,
        position: Position,
        class: usize,
        p: f64,
        q: f64,
        grad: &impl Fn(usize, &Element) -> f64,
    ) -> f64 {
        let selections = &self.selections[class];
        if selections.is_empty() {
            return 0.0;
        }
        match self.masked(position, class, p, q) {
            (_, 0.0) => 0.0,
            (element, m) => selections
                .iter()
                .fold(0.0, |sum, &j| sum + grad(j, &element) * m),
        }
    }

    /// [`Operands::backward`] for an elementwise activation, one class row at a time.
    #[inline]
    fn backward_rows(
        &self,
        chunk: &Chunk,
        activate: impl Fn(f64) -> (f64, f64, f64),
        grad: &impl Fn(usize, &Element) -> f64,
        rows: &mut [&mut [f64]],
    ) {
        let layout = self.layout;
        for (class, row) in rows.iter_mut().enumerate() {
            if self.selections[class].is_empty() {
                row.fill(0.0);
                continue;
            }
            for (position, slot) in chunk.positions(layout).zip(row.iter_mut()) {
                let x = self.prediction.at(position.element(&layout, class));
                let (p, q, slope) = activate(x);
                *slot = self.grad_p(position, class, p, q, grad) * slope;
            }
        }
    }

    /// The element of `class` at `position` from its activated (p, q), and its mask m.
    #[inline(always)]
    fn masked(&self, position: Position, class: usize, p: f64, q: f64) -> (Element, f64) {
        let index = position.element(&self.layout, class);
        let t = match &self.target {
            Target::Values(values) => values.at(index),
            Target::Labels(labels) => f64::from(u8::from(labels[position.index] == class as i64)),
        };
        let m = match &self.mask {
            None => 1.0,
            Some(Mask::Positions(mask)) => mask[position.index],
            Some(Mask::Elements(mask)) => mask[index],
        };
        let element = if m == 1.0 {
            Element { p, q, t }
        } else {
            Element {
                p: p * m,
                q: (1.0 - m) + m * q,
                t: t * m,
            }
        };
        (element, m)
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
