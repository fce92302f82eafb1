//! Every catalog loss returns a result or a typed rejection on any call, never a panic: arbitrary
//! shapes (0-d, zero classes, zero batch, empty spatial axes, up to five axes), non-standard
//! layouts (reversed axes as NumPy's Fortran order, strided views), every dtype for every tensor,
//! values including NaN, ±inf, huge and out-of-range class indices, and parameters drawn from
//! each parameter's domain plus junk of the wrong type.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ndarray::{ArrayD, Axis, IxDyn, Slice};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use segloss::catalog::{evaluate, losses, Domain, LossCall, LossDef, Param};
use segloss::tensor::Tensor;
use serde_json::{json, Value};

/// How a tensor's elements are laid out in memory.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Row-major, contiguous.
    Standard,
    /// The axes of a row-major array reversed: NumPy's Fortran order.
    Reversed,
    /// Every second element of a row-major array twice as long on axis 0.
    Strided,
}

/// A tensor to build: its shape, dtype (an index into [`DTYPES`]), layout and values (cycled).
#[derive(Debug, Clone)]
struct TensorRecipe {
    shape: Vec<usize>,
    dtype: usize,
    layout: Layout,
    values: Vec<f64>,
}

const DTYPES: [&str; 7] = [
    "float64", "float32", "int64", "int32", "int16", "uint8", "bool",
];

/// A tame value: 0 or 1 for an integer (a class index of two classes, a binary label), the
/// fractional part for another finite number (a probability), ½ for the rest.
fn tame(value: f64) -> f64 {
    if value == value.trunc() {
        (value.abs() % 2.0).min(1.0)
    } else if value.is_finite() {
        value.abs().fract()
    } else {
        0.5
    }
}

impl TensorRecipe {
    /// The tensor, with tame values when `tamed`.
    fn build(&self, tamed: bool) -> Tensor {
        let count: usize = self.shape.iter().product();
        let element = |index: usize| {
            let value = self.values[index % self.values.len()];
            if tamed {
                tame(value)
            } else {
                value
            }
        };
        let standard = |shape: &[usize]| {
            let count: usize = shape.iter().product();
            ArrayD::from_shape_vec(IxDyn(shape), (0..count).map(element).collect())
                .expect("the element count matches the shape")
        };
        let values = match self.layout {
            Layout::Standard => standard(&self.shape),
            Layout::Reversed => {
                let reversed: Vec<usize> = self.shape.iter().rev().copied().collect();
                standard(&reversed).reversed_axes()
            }
            Layout::Strided if self.shape.is_empty() => standard(&self.shape),
            Layout::Strided => {
                let mut doubled = self.shape.clone();
                doubled[0] *= 2;
                standard(&doubled).slice_axis_move(Axis(0), Slice::new(0, None, 2))
            }
        };
        debug_assert_eq!(values.len(), count);
        match DTYPES[self.dtype] {
            "float64" => Tensor::Float64(values),
            "float32" => Tensor::Float32(values.mapv(|value| value as f32)),
            "int64" => Tensor::Int64(values.mapv(|value| value as i64)),
            "int32" => Tensor::Int32(values.mapv(|value| value as i32)),
            "int16" => Tensor::Int16(values.mapv(|value| value as i16)),
            "uint8" => Tensor::UInt8(values.mapv(|value| value as u8)),
            _ => Tensor::Bool(values.mapv(|value| value != 0.0)),
        }
    }
}

/// How the target's shape relates to the prediction's.
#[derive(Debug, Clone)]
enum TargetShape {
    /// The prediction's shape.
    Same,
    /// Without axis 1 (class indices).
    WithoutClasses,
    /// Axis 1 of size 1 (a label map).
    OneChannel,
    /// Unrelated.
    Own(Vec<usize>),
}

impl TargetShape {
    fn resolve(&self, prediction: &[usize]) -> Vec<usize> {
        let mut shape = prediction.to_vec();
        match self {
            TargetShape::Same => {}
            TargetShape::WithoutClasses if shape.len() > 1 => {
                shape.remove(1);
            }
            TargetShape::OneChannel if shape.len() > 1 => shape[1] = 1,
            TargetShape::WithoutClasses | TargetShape::OneChannel => shape.clear(),
            TargetShape::Own(own) => shape.clone_from(own),
        }
        shape
    }
}

/// One generated call: the loss (an index into the catalog), its tensors and parameters. A tame
/// recipe has a floating-point prediction, tame values, parameters from their domains and no
/// missing or unknown argument, so that it reaches the math more often than the rejections.
#[derive(Debug, Clone)]
struct Recipe {
    tame: bool,
    loss: Index,
    prediction: TensorRecipe,
    target_shape: TargetShape,
    target: TensorRecipe,
    drop_target: bool,
    optional: Vec<(Index, TensorRecipe)>,
    params: Vec<ParamDraw>,
    unknown_param: bool,
    grad_output: Option<TensorRecipe>,
}

/// Shapes of up to five axes, mostly two to four, of sizes 0 to 4.
fn shapes() -> impl Strategy<Value = Vec<usize>> {
    let rank = prop_oneof![1 => 0usize..2, 4 => 2usize..5, 1 => Just(5usize)];
    let size = prop_oneof![3 => 1usize..=3, 1 => Just(0usize), 1 => Just(4usize)];
    rank.prop_flat_map(move |rank| prop::collection::vec(size.clone(), rank))
}

fn values() -> impl Strategy<Value = Vec<f64>> {
    let value = prop_oneof![
        4 => -3.0..3.0f64,
        3 => (-2i64..5).prop_map(|value| value as f64),
        2 => prop::sample::select(vec![
            f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e30, -1e30, f64::MAX, -100.0, 255.0,
            1e-300, 0.5, 1e4, -1e4,
        ]),
    ];
    prop::collection::vec(value, 1..8)
}

fn tensors(shape: impl Strategy<Value = Vec<usize>>) -> impl Strategy<Value = TensorRecipe> {
    let layout = prop_oneof![
        2 => Just(Layout::Standard),
        1 => Just(Layout::Reversed),
        1 => Just(Layout::Strided),
    ];
    let dtype = prop_oneof![3 => Just(0usize), 1 => Just(1usize), 2 => Just(2usize), 2 => 0usize..DTYPES.len()];
    (shape, dtype, layout, values()).prop_map(|(shape, dtype, layout, values)| TensorRecipe {
        shape,
        dtype,
        layout,
        values,
    })
}

/// Parameter values: every value some loss takes, and junk of the wrong type or range.
fn param_values() -> impl Strategy<Value = Value> {
    let long: Vec<f64> = (0..40).map(f64::from).collect();
    prop_oneof![
        3 => prop::sample::select(vec![
            json!(true), json!(false), Value::Null, json!(0), json!(1), json!(2), json!(-1),
            json!(-100), json!(255), json!(0.25), json!(0.5), json!(0.6), json!(1.5), json!(-0.5),
            json!(1e-7), json!(1e308), json!(-1e308), json!(i64::MAX), json!(i64::MIN),
            json!(u64::MAX),
            json!("none"), json!("mean"), json!("sum"), json!("batchwise_mean"), json!("binary"),
            json!("multiclass"), json!("multilabel"), json!("micro"), json!("macro"),
            json!("square"), json!("simple"), json!("uniform"), json!(""), json!("junk"),
            json!([]), json!([0]), json!([-1]), json!([0, 1]), json!([0.5, 1.0, 2.0]),
            json!([1, -3, 7]), json!(["a"]), json!([null]), json!({}), json!({"a": 1}),
            json!(long),
        ]),
        1 => (-3.0..3.0f64).prop_map(|value| json!(value)),
        1 => (-3i64..5).prop_map(|value| json!(value)),
    ]
}

/// More than any loss takes.
const MAX_PARAMS: usize = 16;

/// What one parameter of the loss gets.
#[derive(Debug, Clone)]
enum ParamDraw {
    /// Nothing: the default.
    Absent,
    /// A value from the parameter's domain, picked by `pick` and placed by `unit` in [0, 1).
    InDomain { pick: usize, unit: f64 },
    /// Anything.
    Junk(Value),
}

fn param_draws() -> impl Strategy<Value = ParamDraw> {
    prop_oneof![
        2 => Just(ParamDraw::Absent),
        3 => (0usize..64, 0.0..1.0f64).prop_map(|(pick, unit)| ParamDraw::InDomain { pick, unit }),
        1 => param_values().prop_map(ParamDraw::Junk),
    ]
}

impl ParamDraw {
    /// The value the parameter gets, or `None` to leave it out (never a required one); junk is
    /// replaced by a value of the domain when `tame`.
    fn value(&self, param: &Param, tame: bool) -> Option<Value> {
        match self {
            ParamDraw::Absent if param.required => Some(in_domain(param, 1, 0.5)),
            ParamDraw::Absent => None,
            ParamDraw::InDomain { pick, unit } => Some(in_domain(param, *pick, *unit)),
            ParamDraw::Junk(_) if tame => Some(in_domain(param, 2, 0.5)),
            ParamDraw::Junk(value) => Some(value.clone()),
        }
    }
}

/// A value of the parameter's domain: `null` now and then when it is nullable, an end of a range
/// or a point inside it, a choice, a list of up to four values.
fn in_domain(param: &Param, pick: usize, unit: f64) -> Value {
    if param.nullable && pick.is_multiple_of(7) {
        return Value::Null;
    }
    let number = |min: f64, max: f64, pick: usize, unit: f64| match pick % 4 {
        0 => min,
        1 => max,
        _ => min + unit * (max - min),
    };
    let integer = |min: i64, max: i64, pick: usize, unit: f64| match pick % 4 {
        0 => min,
        1 => max,
        _ => min + (unit * (max - min + 1) as f64) as i64,
    };
    let list = |pick: usize, element: &dyn Fn(usize, f64) -> Value| {
        let length = pick % 5;
        Value::Array(
            (0..length)
                .map(|k| element(pick / 5 + k, (unit + 0.37 * k as f64).fract()))
                .collect(),
        )
    };
    match param.domain {
        Domain::Bool => json!(pick.is_multiple_of(2)),
        Domain::Number { min, max } => json!(number(min, max, pick, unit)),
        Domain::Int { min, max } => json!(integer(min, max, pick, unit)),
        Domain::Choice(choices) => json!(choices[pick % choices.len()]),
        Domain::NumberList { min, max } => {
            list(pick, &|pick, unit| json!(number(min, max, pick, unit)))
        }
        Domain::IntList { min, max } => {
            list(pick, &|pick, unit| json!(integer(min, max, pick, unit)))
        }
        Domain::NumberOrList { min, max } if pick.is_multiple_of(2) => {
            json!(number(min, max, pick / 2, unit))
        }
        Domain::NumberOrList { min, max } => {
            list(pick, &|pick, unit| json!(number(min, max, pick, unit)))
        }
    }
}

fn recipes() -> impl Strategy<Value = Recipe> {
    (
        any::<bool>(),
        any::<Index>(),
        tensors(shapes()),
        prop_oneof![
            2 => Just(TargetShape::Same),
            2 => Just(TargetShape::WithoutClasses),
            1 => Just(TargetShape::OneChannel),
            1 => shapes().prop_map(TargetShape::Own),
        ],
        tensors(Just(Vec::new())),
        prop::bool::weighted(0.03),
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec((any::<Index>(), tensors(shapes())), 1..3),
        ],
        prop::collection::vec(param_draws(), MAX_PARAMS),
        prop::bool::weighted(0.03),
        prop::option::weighted(0.15, tensors(shapes())),
    )
        .prop_map(
            |(
                tame,
                loss,
                prediction,
                target_shape,
                target,
                drop_target,
                optional,
                params,
                unknown_param,
                grad_output,
            )| Recipe {
                tame,
                loss,
                prediction,
                target_shape,
                target,
                drop_target,
                optional,
                params,
                unknown_param,
                grad_output,
            },
        )
}

impl Recipe {
    /// The catalog loss this recipe calls.
    fn loss(&self) -> &'static LossDef {
        let all: Vec<&'static LossDef> = losses().collect();
        all[self.loss.index(all.len())]
    }

    /// The call: the target's shape resolved against the prediction's, optional tensors and
    /// parameters picked by name from what the loss takes.
    fn call(&self) -> LossCall {
        let loss = self.loss();
        let prediction = TensorRecipe {
            dtype: if self.tame {
                self.prediction.dtype % 2
            } else {
                self.prediction.dtype
            },
            ..self.prediction.clone()
        };
        let mut tensors =
            BTreeMap::from([(loss.prediction().to_string(), prediction.build(self.tame))]);
        if self.tame || !self.drop_target {
            let target = TensorRecipe {
                shape: self.target_shape.resolve(&self.prediction.shape),
                ..self.target.clone()
            };
            tensors.insert(loss.target().to_string(), target.build(self.tame));
        }
        if !loss.optional_tensors.is_empty() {
            for (name, tensor) in &self.optional {
                let name = name.get(loss.optional_tensors);
                tensors.insert(name.to_string(), tensor.build(self.tame));
            }
        }
        let mut params: BTreeMap<String, Value> = loss
            .params
            .iter()
            .zip(&self.params)
            .filter_map(|(param, draw)| {
                Some((param.name.to_string(), draw.value(param, self.tame)?))
            })
            .collect();
        if self.unknown_param && !self.tame {
            params.insert("no_such_parameter".to_string(), json!(1));
        }
        LossCall {
            loss: loss.name.to_string(),
            params,
            tensors,
            grad_output: self
                .grad_output
                .as_ref()
                .map(|recipe| recipe.build(false).to_f64()),
        }
    }
}

/// Cases: enough to reach every loss with many shapes in a few seconds; `PROPTEST_CASES`
/// overrides it.
fn config() -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 10_000;
    }
    config
}

/// The rejections of a parameter's name, type or value set.
const PARAMETER_KINDS: &[&str] = &[
    "unknown_parameter",
    "parameter_type",
    "missing_parameter",
    "invalid_option",
    "invalid_reduction",
];

/// What the call held, for the failure report.
fn describe(call: &LossCall) -> String {
    let tensors: Vec<String> = call
        .tensors
        .iter()
        .map(|(name, tensor)| {
            let layout = if tensor.is_standard_layout() {
                ""
            } else {
                " (not row-major)"
            };
            format!("{name}: {} {:?}{layout}", tensor.dtype(), tensor.shape())
        })
        .collect();
    format!(
        "{} with tensors [{}], params {}, grad_output {:?}",
        call.loss,
        tensors.join(", "),
        serde_json::to_string(&call.params).unwrap_or_default(),
        call.grad_output.as_ref().map(|grad| grad.shape().to_vec()),
    )
}

proptest! {
    #![proptest_config(config())]

    /// A call that computes is called again with a grad_output of the loss's shape holding the
    /// recipe's values (NaN, ±inf and huge ones included), so the backward passes meet them too.
    /// A tame call, whose parameters all come from their catalog domains, is never rejected for
    /// a parameter: the domains say what the catalog reads.
    #[test]
    fn every_loss_answers_or_rejects_without_panicking(recipe in recipes(), upstream in values()) {
        let mut call = recipe.call();
        let outcome = catch_unwind(AssertUnwindSafe(|| evaluate(&call)));
        prop_assert!(outcome.is_ok(), "panicked on {}", describe(&call));
        if let (true, Ok(Err(rejection))) = (recipe.tame, &outcome) {
            prop_assert!(
                !PARAMETER_KINDS.contains(&rejection.kind()),
                "{rejection} on in-domain parameters: {}",
                describe(&call)
            );
        }
        if let Ok(Ok(output)) = outcome {
            let mut grad_output = output.loss;
            for (slot, value) in grad_output.iter_mut().zip(upstream.iter().cycle()) {
                *slot = *value;
            }
            call.grad_output = Some(grad_output);
            let outcome = catch_unwind(AssertUnwindSafe(|| evaluate(&call)));
            prop_assert!(outcome.is_ok(), "panicked on {}", describe(&call));
        }
    }
}
