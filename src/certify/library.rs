//! What the in-process adapters over Rust tensor libraries (`candle`, `burn`) share: reading a
//! call in the terms those libraries take, the `(rows, classes)` layout their losses expect, and
//! running a library without letting its panics escape.
//!
//! The adapters follow one rule for honest reports: an option, dtype or shape the library cannot
//! express is `Unsupported` (the adapter never casts or rewrites to make it fit), an option the
//! adapter deliberately builds from other library calls is `Emulated` (saying how), and an input
//! the library itself refuses is `Rejected`.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use ndarray::{ArrayD, Axis, IxDyn};

use super::{panic_message, Outcome};
use crate::catalog::LossCall;
use crate::spec::cross_entropy::DEFAULT_IGNORE_INDEX;
use crate::spec::{LossOutput, Reduction};
use crate::tensor::Tensor;

/// A library refusing an input: the first line of its message (the rest is a backtrace), with the
/// segloss kind the adapter's table of the library's messages (prefix, kind) gives it, if any
/// (candle's; burn states its kinds per check).
#[cfg(feature = "impl-candle")]
pub(crate) fn library_rejection(message: &str, kinds: &[(&str, &str)]) -> Outcome {
    let first_line = message.lines().next().unwrap_or_default();
    Outcome::Rejected {
        kind: kinds
            .iter()
            .find(|(prefix, _)| first_line.starts_with(prefix))
            .map(|(_, kind)| kind.to_string()),
        message: first_line.to_string(),
    }
}

/// The losses the library adapters map, by catalog id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// `cross_entropy` (logits).
    CrossEntropy,
    /// `nll_loss` (log-probabilities).
    Nll,
    /// `binary_cross_entropy_with_logits`.
    BceWithLogits,
}

/// A call read into the parameters the adapters look at.
pub(crate) struct Request<'a> {
    pub loss: Loss,
    pub input: &'a Tensor,
    pub target: &'a Tensor,
    pub weight: Option<&'a Tensor>,
    pub reduction: Reduction,
    pub ignore_index: i64,
    pub label_smoothing: f64,
    /// The grad_output as one scalar (mean and sum); `None` for `reduction="none"`.
    pub grad_output: Option<f64>,
}

impl<'a> Request<'a> {
    /// Reads a call, or says why the adapters cannot map it.
    pub(crate) fn parse(call: &'a LossCall) -> Result<Request<'a>, Outcome> {
        let (loss, params, tensors): (_, &[&str], &[&str]) = match call.loss.as_str() {
            "cross_entropy" => (
                Loss::CrossEntropy,
                &["reduction", "ignore_index", "label_smoothing"],
                &["input", "target", "weight"],
            ),
            "nll_loss" => (
                Loss::Nll,
                &["reduction", "ignore_index"],
                &["input", "target", "weight"],
            ),
            "binary_cross_entropy_with_logits" => {
                (Loss::BceWithLogits, &["reduction"], &["input", "target"])
            }
            other => return Err(unsupported(format!("no {other} loss"))),
        };
        if let Some(name) = call
            .params
            .keys()
            .chain(call.tensors.keys())
            .find(|name| !params.contains(&name.as_str()) && !tensors.contains(&name.as_str()))
        {
            return Err(unsupported(format!("no {name} argument for {}", call.loss)));
        }
        let (Some(input), Some(target)) = (call.tensors.get("input"), call.tensors.get("target"))
        else {
            return Err(unsupported("input and target are both required".into()));
        };
        // PyTorch's reduction names; anything else is a parameter neither library has.
        let reduction = call.reduction().map_err(|error| {
            unsupported(format!(
                "{error}: the library takes no reduction argument, the adapter maps mean and sum only"
            ))
        })?;
        let number = |name: &str| call.params.get(name).map(|value| value.as_f64());
        let ignore_index = match number("ignore_index") {
            None => DEFAULT_IGNORE_INDEX,
            Some(Some(value)) if value.fract() == 0.0 => value as i64,
            Some(_) => return Err(unsupported("a non-integer ignore_index".into())),
        };
        let label_smoothing = match number("label_smoothing") {
            None => 0.0,
            Some(Some(value)) => value,
            Some(None) => return Err(unsupported("a non-numeric label_smoothing".into())),
        };
        let grad_output = match (reduction, &call.grad_output) {
            (Reduction::None, _) => None,
            (_, Some(grad_output)) => Some(grad_output.sum()),
            (_, None) => Some(1.0),
        };
        Ok(Request {
            loss,
            input,
            target,
            weight: call.tensors.get("weight"),
            reduction,
            ignore_index,
            label_smoothing,
            grad_output,
        })
    }

    /// Reads a call for a library whose losses return their mean only (both adapters' libraries):
    /// `reduction="none"` is unsupported.
    pub(crate) fn parse_reduced(call: &'a LossCall, library: &str) -> Result<Request<'a>, Outcome> {
        let request = Request::parse(call)?;
        if request.reduction == Reduction::None {
            return Err(unsupported(format!(
                "{library}'s losses return the mean only, no per-position losses (reduction='none')"
            )));
        }
        Ok(request)
    }

    /// Whether the target holds class probabilities (a floating target of the input's shape).
    pub(crate) fn probability_target(&self) -> bool {
        self.target.dtype().is_floating() && self.target.shape() == self.input.shape()
    }

    /// The positions (in row order) whose integer target equals `ignore_index`; empty for
    /// floating targets.
    pub(crate) fn ignored_positions(&self) -> Vec<usize> {
        if self.target.dtype().is_floating() {
            return Vec::new();
        }
        let ignore_index = self.ignore_index as f64;
        self.target
            .to_f64()
            .iter()
            .enumerate()
            .filter(|(_, &target)| target == ignore_index)
            .map(|(position, _)| position)
            .collect()
    }
}

/// An `Unsupported` outcome.
pub(crate) fn unsupported(reason: String) -> Outcome {
    Outcome::Unsupported(reason)
}

/// How a class-index call is laid out as the `(rows, classes)` input and `(rows)` target the
/// libraries' cross entropies take: PyTorch's class axis is axis 1, theirs is the last.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Layout {
    /// Already `(N, C)` (or a shape the library should see and judge as it is).
    AsIs,
    /// Unbatched `(C)` with a 0-d target: one row.
    Unbatched,
    /// `(N, C, d1, …, dk)` with an `(N, d1, …, dk)` target: one row per position.
    Spatial(Vec<usize>),
}

impl Layout {
    /// The layout for an input and target, or `None` when the target does not fit the input
    /// (the call cannot be put in the library's terms without guessing).
    pub(crate) fn of(input: &[usize], target: &[usize]) -> Option<Layout> {
        match input.len() {
            0 | 2 => Some(Layout::AsIs),
            1 => target.is_empty().then_some(Layout::Unbatched),
            _ => {
                let positions: Vec<usize> = input
                    .iter()
                    .enumerate()
                    .filter(|&(axis, _)| axis != 1)
                    .map(|(_, &length)| length)
                    .collect();
                (positions == target).then(|| Layout::Spatial(input.to_vec()))
            }
        }
    }

    /// The input as rows of classes, in the input's dtype.
    pub(crate) fn input_rows(&self, input: &Tensor) -> Tensor {
        macro_rules! rows {
            ($($variant:ident),*) => {
                match input {
                    $(Tensor::$variant(array) => Tensor::$variant(self.rows(array)),)*
                }
            };
        }
        rows!(Float64, Float32, Int64, Int32, Int16, UInt8, Bool)
    }

    /// The target as one value per row, in the target's dtype.
    pub(crate) fn target_rows(&self, target: &Tensor) -> Tensor {
        macro_rules! flat {
            ($($variant:ident),*) => {
                match target {
                    $(Tensor::$variant(array) => Tensor::$variant(match self {
                        Layout::AsIs => array.clone(),
                        _ => flatten(array),
                    }),)*
                }
            };
        }
        flat!(Float64, Float32, Int64, Int32, Int16, UInt8, Bool)
    }

    fn rows<T: Clone>(&self, array: &ArrayD<T>) -> ArrayD<T> {
        match self {
            Layout::AsIs => array.clone(),
            Layout::Unbatched => array.clone().insert_axis(Axis(0)),
            Layout::Spatial(shape) => {
                let mut order: Vec<usize> = (0..shape.len()).filter(|&axis| axis != 1).collect();
                order.push(1);
                let classes = shape[1];
                let moved = array.view().permuted_axes(IxDyn(&order));
                let values: Vec<T> = moved.iter().cloned().collect();
                ArrayD::from_shape_vec(IxDyn(&[values.len() / classes.max(1), classes]), values)
                    .expect("rows × classes holds every element")
            }
        }
    }

    /// A gradient in the row layout, back in the input's shape.
    pub(crate) fn unrows(&self, rows: ArrayD<f64>) -> ArrayD<f64> {
        match self {
            Layout::AsIs => rows,
            Layout::Unbatched => rows.index_axis_move(Axis(0), 0),
            Layout::Spatial(shape) => {
                let mut moved: Vec<usize> = shape
                    .iter()
                    .enumerate()
                    .filter(|&(axis, _)| axis != 1)
                    .map(|(_, &length)| length)
                    .collect();
                moved.push(shape[1]);
                let values: Vec<f64> = rows.iter().copied().collect();
                let array = ArrayD::from_shape_vec(IxDyn(&moved), values)
                    .expect("the gradient has the input's element count");
                // Axes are (N, d1, …, dk, C): put C back at axis 1.
                let last = shape.len() - 1;
                let mut order = vec![0, last];
                order.extend(1..last);
                array
                    .permuted_axes(IxDyn(&order))
                    .as_standard_layout()
                    .into_owned()
            }
        }
    }
}

fn flatten<T: Clone>(array: &ArrayD<T>) -> ArrayD<T> {
    let values: Vec<T> = array.iter().cloned().collect();
    ArrayD::from_shape_vec(IxDyn(&[values.len()]), values).expect("a flat array")
}

/// The rows (positions) the adapters keep when they emulate `ignore_index` by removing the ignored
/// positions before the library's mean: every position not in `ignored`.
pub(crate) fn kept_positions(positions: usize, ignored: &[usize]) -> Vec<usize> {
    (0..positions)
        .filter(|position| ignored.binary_search(position).is_err())
        .collect()
}

/// The outcome for a reduced loss: `Computed`, or `Emulated` with every emulation used, joined.
pub(crate) fn finish(loss: f64, grad_input: ArrayD<f64>, emulated: Vec<String>) -> Outcome {
    let output = LossOutput {
        loss: ArrayD::from_elem(IxDyn(&[]), loss),
        grad_input,
    };
    if emulated.is_empty() {
        Outcome::Computed(output)
    } else {
        Outcome::Emulated(output, emulated.join("; "))
    }
}

thread_local! {
    /// Set while [`guarded`] runs a library call on this thread.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs a library computation; a panic (the library's way of failing on some inputs) becomes
/// `Broken` with the panic's message instead of taking the certification run down. The panic hook
/// stays quiet for these panics (the report carries the message) and prints all others as usual.
pub(crate) fn guarded(compute: impl FnOnce() -> Outcome) -> Outcome {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                default_hook(info);
            }
        }));
    });
    GUARDED.with(|guarded| guarded.set(true));
    let result = catch_unwind(AssertUnwindSafe(compute));
    GUARDED.with(|guarded| guarded.set(false));
    result.unwrap_or_else(|panic| {
        Outcome::Broken(format!(
            "the library panicked: {}",
            panic_message(panic.as_ref())
        ))
    })
}

/// An array from a library's flat buffer and shape.
pub(crate) fn array(shape: &[usize], values: Vec<f64>) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(shape), values).expect("the library's shape matches its buffer")
}

/// Checks an adapter's `binary_cross_entropy_with_logits` against the closed form (the fixtures
/// cover it too): l = max(x, 0) − x·y + log(1 + e^−|x|), ∂l/∂x = σ(x) − y, for mean and sum.
#[cfg(test)]
pub(crate) fn assert_binary_cross_entropy(implementation: &dyn super::Implementation) {
    use std::collections::BTreeMap;

    let logits = [-2.0, -0.5, 0.0, 0.25, 1.5, 3.0];
    let targets = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0];
    let grad_output = 0.75;
    for (reduction, scale) in [("mean", 1.0 / logits.len() as f64), ("sum", 1.0)] {
        let call = LossCall {
            loss: "binary_cross_entropy_with_logits".into(),
            params: BTreeMap::from([("reduction".into(), reduction.into())]),
            tensors: BTreeMap::from([
                (
                    "input".into(),
                    Tensor::Float64(array(&[2, 3], logits.to_vec())),
                ),
                (
                    "target".into(),
                    Tensor::Float64(array(&[2, 3], targets.to_vec())),
                ),
            ]),
            grad_output: Some(ArrayD::from_elem(IxDyn(&[]), grad_output)),
        };
        let output = match implementation.compute(&call) {
            Outcome::Computed(output) | Outcome::Emulated(output, _) => output,
            other => panic!("{reduction}: {other:?}"),
        };
        let loss: f64 = logits
            .iter()
            .zip(&targets)
            .map(|(&x, &y)| x.max(0.0) - x * y + (-x.abs()).exp().ln_1p())
            .sum::<f64>()
            * scale;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * (1.0 + b.abs());
        assert!(
            close(output.loss[[]], loss),
            "{reduction}: {} vs {loss}",
            output.loss
        );
        for ((&x, &y), &grad) in logits.iter().zip(&targets).zip(output.grad_input.iter()) {
            let expected = (1.0 / (1.0 + (-x).exp()) - y) * scale * grad_output;
            assert!(
                close(grad, expected),
                "{reduction}: gradient {grad} vs {expected}"
            );
        }
    }
}
