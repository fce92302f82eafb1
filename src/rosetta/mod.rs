//! The convention Rosetta: why two libraries' losses differ, and how to make them agree.
//!
//! Everything here is derived from the spec, never from a table of equivalences:
//!
//! * a loss's **conventions** are the facts its family core records while it computes
//!   ([`crate::spec::trace`]): which sums, which ratio, how the losses are averaged, …;
//! * a **translation** of loss A (with its parameters) to loss B searches B's parameters, as the
//!   catalog declares them, and the ways of handing B the same problem (logits or probabilities;
//!   class indices with or without a channel axis, or one-hot), for the setting whose values and
//!   gradients agree with A's on generated problems, then with the fewest differing conventions;
//! * the agreement is **measured**: both losses are evaluated by the reference on every generated
//!   problem, and the largest relative difference of the loss and of the gradient with respect to
//!   the logits is reported, with the conventions that still differ.
//!
//! A generated problem is a batch of logits `(N, C, H, W)` with class labels `(N, H, W)`, in
//! several scenarios (every class present, a class absent from the batch, an image of one class,
//! confident logits), N from 1 to 3 and H, W from 2 to 5, C = 3.

pub mod certified;
pub mod page;

use std::collections::BTreeMap;

use ndarray::{ArrayD, Axis, IxDyn};
use serde::Serialize;
use serde_json::Value;

use crate::catalog::{self, Domain, LossCall, LossDef};
use crate::corpus::draw::Stream;
use crate::error::{Error, Result};
use crate::spec::trace::{traced, Fact};
use crate::tensor::Tensor;

/// The version of the `--json` format of `translate` and `compare` (docs/translate.md).
pub const FORMAT_VERSION: u32 = 1;

/// The number of classes of every generated problem.
pub const CLASSES: usize = 3;

/// Relative differences at or below this are rounding: the two calls compute the same function.
pub const SAME: f64 = 1e-9;

/// How the prediction is handed to a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionForm {
    /// The logits as they are, float64.
    Logits,
    /// The logits as float32 (for a loss that takes float32 only; the generated logits are
    /// float32 numbers, so both forms hold the same values).
    Logits32,
    /// softmax over the class axis of the logits.
    Probabilities,
}

/// How the labels are handed to a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetForm {
    /// Class indices `(N, H, W)`, int64.
    Indices,
    /// Class indices with a channel axis `(N, 1, H, W)`, int64.
    IndicesWithChannel,
    /// One-hot `(N, C, H, W)`, float64.
    OneHot,
}

/// How a generated problem's tensors are handed to a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Form {
    /// The prediction's form.
    pub prediction: PredictionForm,
    /// The target's form.
    pub target: TargetForm,
}

impl Form {
    /// Every form, logits and class indices first.
    pub const ALL: [Form; 9] = {
        use PredictionForm::*;
        use TargetForm::*;
        const fn form(prediction: PredictionForm, target: TargetForm) -> Form {
            Form { prediction, target }
        }
        [
            form(Logits, Indices),
            form(Logits, IndicesWithChannel),
            form(Logits, OneHot),
            form(Probabilities, Indices),
            form(Probabilities, IndicesWithChannel),
            form(Probabilities, OneHot),
            form(Logits32, Indices),
            form(Logits32, IndicesWithChannel),
            form(Logits32, OneHot),
        ]
    };

    /// The form in words, as a recipe from logits `(N, C, H, W)` and labels `(N, H, W)`.
    pub fn words(&self) -> String {
        let prediction = match self.prediction {
            PredictionForm::Logits => "logits (N, C, H, W)",
            PredictionForm::Logits32 => "logits (N, C, H, W) as float32",
            PredictionForm::Probabilities => "softmax(logits) over C",
        };
        let target = match self.target {
            TargetForm::Indices => "labels (N, H, W)",
            TargetForm::IndicesWithChannel => "labels with a channel axis (N, 1, H, W)",
            TargetForm::OneHot => "one-hot labels (N, C, H, W)",
        };
        format!("{prediction}, {target}")
    }
}

/// The scenarios of the generated problems, in the order they cycle.
pub const SCENARIOS: [&str; 4] = [
    "every class drawn",
    "a class absent from the batch",
    "an image of one class",
    "confident logits",
];

/// A generated segmentation problem: logits `(N, C, H, W)` and labels `(N, H, W)`.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Its scenario (one of [`SCENARIOS`], or "given" for a user's).
    pub scenario: &'static str,
    /// The logits.
    pub logits: ArrayD<f64>,
    /// The class labels, in `[0, C)`.
    pub labels: ArrayD<i64>,
}

/// `count` generated problems from `seed`, cycling through the scenarios: every class drawn, one
/// class absent from the batch, an image of one class, confident logits (scaled by 8).
pub fn problems(count: usize, seed: u64) -> Vec<Problem> {
    (0..count)
        .map(|index| {
            let mut stream = Stream::new(seed.wrapping_mul(1_000_003).wrapping_add(index as u64));
            let batch = 1 + stream.below(3);
            let (height, width) = (2 + stream.below(4), 2 + stream.below(4));
            let scale = if SCENARIOS[index % 4] == "confident logits" {
                8.0
            } else {
                2.0
            };
            // float32 numbers, so that a loss taking float32 sees the same values.
            let logits = ArrayD::from_shape_fn(IxDyn(&[batch, CLASSES, height, width]), |_| {
                f64::from((scale * (2.0 * stream.unit() - 1.0)) as f32)
            });
            let labels =
                ArrayD::from_shape_fn(IxDyn(&[batch, height, width]), |position| match index % 4 {
                    1 => stream.below(CLASSES - 1) as i64,
                    2 if position[0] == 0 => 1,
                    _ => stream.below(CLASSES) as i64,
                });
            Problem {
                scenario: SCENARIOS[index % 4],
                logits,
                labels,
            }
        })
        .collect()
}

/// softmax over axis 1.
fn softmax(logits: &ArrayD<f64>) -> ArrayD<f64> {
    let mut p = logits.clone();
    for mut lane in p.lanes_mut(Axis(1)) {
        let max = lane.fold(f64::NEG_INFINITY, |m, &x| m.max(x));
        lane.mapv_inplace(|x| (x - max).exp());
        let total = lane.sum();
        lane.mapv_inplace(|e| e / total);
    }
    p
}

impl Problem {
    /// The tensors of `form`: (prediction, target).
    fn tensors(&self, form: Form) -> (Tensor, Tensor) {
        let prediction = match form.prediction {
            PredictionForm::Logits => Tensor::Float64(self.logits.clone()),
            PredictionForm::Logits32 => Tensor::Float32(self.logits.mapv(|x| x as f32)),
            PredictionForm::Probabilities => Tensor::Float64(softmax(&self.logits)),
        };
        let target = match form.target {
            TargetForm::Indices => Tensor::Int64(self.labels.clone()),
            TargetForm::IndicesWithChannel => {
                Tensor::Int64(self.labels.clone().insert_axis(Axis(1)))
            }
            TargetForm::OneHot => {
                let mut shape = self.labels.shape().to_vec();
                shape.insert(1, self.logits.shape()[1]);
                Tensor::Float64(ArrayD::from_shape_fn(IxDyn(&shape), |index| {
                    let mut position = ndarray::Dimension::slice(&index).to_vec();
                    let class = position.remove(1);
                    f64::from(u8::from(self.labels[IxDyn(&position)] == class as i64))
                }))
            }
        };
        (prediction, target)
    }

    /// ∂L/∂logits from ∂L/∂(the prediction as `form` hands it).
    fn logits_gradient(&self, form: Form, gradient: ArrayD<f64>) -> ArrayD<f64> {
        match form.prediction {
            PredictionForm::Logits | PredictionForm::Logits32 => gradient,
            PredictionForm::Probabilities => {
                let p = softmax(&self.logits);
                let weighted = (&p * &gradient).sum_axis(Axis(1)).insert_axis(Axis(1));
                &p * &(&gradient - &weighted)
            }
        }
    }
}

/// A loss with its parameters, as a user names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// The loss id.
    pub loss: String,
    /// Its keyword parameters (those given; the others keep their defaults).
    pub params: BTreeMap<String, Value>,
}

impl Setting {
    /// `loss(k=v, …)`, as the library would be called.
    pub fn call_text(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        format!("{}({})", self.loss, params.join(", "))
    }

    fn call(&self, def: &LossDef, form: Form, problem: &Problem) -> LossCall {
        let (prediction, target) = problem.tensors(form);
        LossCall {
            loss: self.loss.clone(),
            params: self.params.clone(),
            tensors: BTreeMap::from([
                (def.prediction().to_string(), prediction),
                (def.target().to_string(), target),
            ]),
            grad_output: None,
        }
    }
}

/// A setting's outcome on one problem: the loss and ∂L/∂logits, or the rejection.
type Outcome = std::result::Result<(ArrayD<f64>, ArrayD<f64>), String>;

/// A setting evaluated in one form on problems.
#[derive(Debug, Clone)]
struct Run {
    form: Form,
    facts: Vec<Fact>,
    outcomes: Vec<Outcome>,
}

impl Setting {
    /// Evaluates the setting in `form` on every problem; the facts are the first problem's. It
    /// stops at the first problem the reference rejects (the last outcome is then the rejection),
    /// and after the first problem when the conventions recorded there do not fit the form.
    fn run(&self, def: &LossDef, form: Form, problems: &[Problem]) -> Run {
        let mut facts = Vec::new();
        let mut outcomes = Vec::with_capacity(problems.len());
        for (index, problem) in problems.iter().enumerate() {
            let call = self.call(def, form, problem);
            let (output, recorded) = traced(|| catalog::evaluate(&call));
            if index == 0 {
                facts = recorded;
            }
            let outcome = output
                .map(|output| {
                    (
                        output.loss,
                        problem.logits_gradient(form, output.grad_input),
                    )
                })
                .map_err(|error| error.to_string());
            let stop = outcome.is_err() || (index == 0 && !form_fits(form, &facts));
            outcomes.push(outcome);
            if stop {
                break;
            }
        }
        Run {
            form,
            facts,
            outcomes,
        }
    }
}

/// The facts' prediction and target conventions agree with the form: logits where the loss
/// activates them, probabilities where it takes them as given; class indices where it reads
/// indices, one-hot where it reads a value per class.
fn form_fits(form: Form, facts: &[Fact]) -> bool {
    let value = |axis: &str| {
        facts
            .iter()
            .find(|fact| fact.axis == axis)
            .map(|fact| fact.value.as_str())
    };
    let prediction = match value("prediction") {
        Some(value) if value.starts_with("probabilities") => {
            form.prediction == PredictionForm::Probabilities
        }
        _ => form.prediction != PredictionForm::Probabilities,
    };
    let target = match value("target") {
        Some("class indices") => form.target != TargetForm::OneHot,
        Some(_) => form.target == TargetForm::OneHot,
        None => true,
    };
    prediction && target
}

/// The relative difference between two runs' outcomes on each problem (the larger of the loss's
/// and the gradient's, each relative to the larger magnitude of the pair); infinite where one
/// rejects or the shapes differ. With `factor`, the second run's values are multiplied by it first.
fn problem_differences(a: &[Outcome], b: &[Outcome], factor: f64) -> Vec<f64> {
    let relative = |x: &ArrayD<f64>, y: &ArrayD<f64>| {
        if x.shape() != y.shape() {
            return f64::INFINITY;
        }
        let scale = x
            .iter()
            .chain(y.iter())
            .filter(|v| v.is_finite())
            .fold(0.0_f64, |m, &v| m.max(v.abs()));
        let worst = x.iter().zip(y).fold(0.0_f64, |m, (&u, &v)| {
            let v = v * factor;
            if u.is_nan() && v.is_nan() {
                m
            } else if u.is_nan() || v.is_nan() {
                f64::INFINITY
            } else {
                m.max((u - v).abs())
            }
        });
        if worst == 0.0 {
            0.0
        } else {
            worst / scale.max(f64::MIN_POSITIVE)
        }
    };
    a.iter()
        .zip(b)
        .map(|(a, b)| match (a, b) {
            (Ok((loss_a, grad_a)), Ok((loss_b, grad_b))) => {
                relative(loss_a, loss_b).max(relative(grad_a, grad_b))
            }
            _ => f64::INFINITY,
        })
        .collect()
}

/// The largest of [`problem_differences`].
fn largest_difference(a: &[Outcome], b: &[Outcome], factor: f64) -> f64 {
    problem_differences(a, b, factor)
        .into_iter()
        .fold(0.0, f64::max)
}

/// The factor c with a = c·b on every problem's scalar loss, where one holds (to [`SAME`]).
fn constant_factor(a: &[Outcome], b: &[Outcome]) -> Option<f64> {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| match (a, b) {
            (Ok((la, _)), Ok((lb, _))) if la.len() == 1 && lb.len() == 1 => {
                la.iter().next().copied().unwrap_or(f64::NAN)
                    / lb.iter().next().copied().unwrap_or(f64::NAN)
            }
            _ => f64::NAN,
        })
        .collect();
    let first = *ratios.first()?;
    let constant = first.is_finite()
        && first != 0.0
        && ratios.iter().all(|r| ((r - first) / first).abs() <= SAME);
    constant.then_some(first)
}

/// One convention on which two settings differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The convention.
    pub axis: String,
    /// The first setting's value ("—" where it records none).
    pub from: String,
    /// The second setting's.
    pub to: String,
}

/// The conventions on which two fact lists differ, in the first list's order.
pub fn differences(from: &[Fact], to: &[Fact]) -> Vec<Difference> {
    let mut axes: Vec<&str> = Vec::new();
    for fact in from.iter().chain(to) {
        if !axes.contains(&fact.axis.as_str()) {
            axes.push(&fact.axis);
        }
    }
    let value = |facts: &[Fact], axis: &str| {
        let values: Vec<&str> = facts
            .iter()
            .filter(|fact| fact.axis == axis)
            .map(|fact| fact.value.as_str())
            .collect();
        if values.is_empty() {
            "—".to_string()
        } else {
            values.join("; ")
        }
    };
    // A convention one loss does not record and the other records as its neutral value (nothing
    // ignored, no weights, every class scored) is no difference.
    let neutral = |value: &str| ["—", "nothing", "none", "every class"].contains(&value);
    axes.into_iter()
        .filter_map(|axis| {
            let (from, to) = (value(from, axis), value(to, axis));
            let missing = from == "—" || to == "—";
            (from != to && !(missing && neutral(&from) && neutral(&to))).then(|| Difference {
                axis: axis.to_string(),
                from,
                to,
            })
        })
        .collect()
}

/// A setting as evaluated: the form its problems were handed in, and its conventions.
#[derive(Debug, Clone, Serialize)]
pub struct Described {
    /// The loss and the parameters given.
    pub setting: Setting,
    /// How the problem's tensors were handed to it.
    pub form: Form,
    /// The keyword names its prediction and target are passed by (`input`, `y_pred`, …).
    pub tensors: [&'static str; 2],
    /// Its conventions, as the spec recorded them.
    pub facts: Vec<Fact>,
}

impl Described {
    /// `setting` as `run` evaluated it.
    fn new(setting: Setting, run: Run) -> Result<Described> {
        let def = find(&setting.loss)?;
        Ok(Described {
            setting,
            form: run.form,
            tensors: [def.prediction(), def.target()],
            facts: run.facts,
        })
    }
}

/// The catalog entry of a loss named on the command line; an unknown name is a usage error.
fn find(loss: &str) -> Result<&'static LossDef> {
    catalog::find(loss).map_err(|unknown| Error::Rosetta(unknown.to_string()))
}

/// The reference's loss and ∂L/∂logits for `setting`, handed `problem` in `form` (as a
/// translation's [`Described`] gives them); `Err` is the reference's rejection.
pub fn evaluate_in(
    setting: &Setting,
    form: Form,
    problem: &Problem,
) -> Result<(ArrayD<f64>, ArrayD<f64>)> {
    let def = find(&setting.loss)?;
    let run = setting.run(def, form, std::slice::from_ref(problem));
    run.outcomes
        .into_iter()
        .next()
        .unwrap_or_else(|| Err("no outcome".to_string()))
        .map_err(Error::Rosetta)
}

/// The best form for a setting: the first one whose calls the reference accepts on every problem
/// and that fits the conventions it records.
fn best_run(setting: &Setting, def: &LossDef, problems: &[Problem]) -> Result<Run> {
    let mut first_error = None;
    for form in Form::ALL {
        let run = setting.run(def, form, problems);
        match run
            .outcomes
            .iter()
            .find_map(|outcome| outcome.as_ref().err())
        {
            None if form_fits(form, &run.facts) => return Ok(run),
            None => {}
            Some(error) => {
                first_error.get_or_insert_with(|| error.clone());
            }
        }
    }
    Err(Error::Rosetta(format!(
        "{} accepts none of the generated problems in any form: {}",
        setting.call_text(),
        first_error.unwrap_or_else(|| "its conventions fit no form".into())
    )))
}

/// The outcome of translating one setting into another loss.
#[derive(Debug, Clone, Serialize)]
pub struct Translation {
    /// `segloss-translate`.
    pub format: &'static str,
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The setting translated.
    pub from: Described,
    /// The closest setting of the other loss.
    pub to: Described,
    /// A constant factor c with from = c·to, where one is needed and holds.
    pub factor: Option<f64>,
    /// Whether the two compute the same function on every generated problem (to [`SAME`]).
    pub same: bool,
    /// The largest relative difference measured (loss or gradient), after the factor.
    pub largest_difference: f64,
    /// How many generated problems were evaluated.
    pub problems: usize,
    /// On how many of them the two agree (to [`SAME`]).
    pub agreeing: usize,
    /// The scenarios of the problems they disagree on, each with how many.
    pub disagreeing_scenarios: BTreeMap<&'static str, usize>,
    /// The conventions that still differ (with `same`, they made no difference on these problems).
    pub differences: Vec<Difference>,
}

/// The candidate values of one parameter: not given (its default), then each value worth trying:
/// both flags, every choice, and for a number 0, 1, ½ and every number of the other setting's
/// parameters and conventions (so that a constant such as a smoothing term can be matched).
fn candidates(domain: Domain, numbers: &[f64]) -> Vec<Option<Value>> {
    let mut values = vec![None];
    match domain {
        Domain::Bool => values.extend([Some(Value::Bool(false)), Some(Value::Bool(true))]),
        Domain::Choice(choices) => values.extend(choices.iter().map(|c| Some(Value::from(*c)))),
        Domain::Number { .. } | Domain::NumberOrList { .. } => {
            for &number in [0.0, 1.0, 0.5].iter().chain(numbers) {
                let value = Some(Value::from(number));
                if !values.contains(&value) {
                    values.push(value);
                }
            }
        }
        _ => {}
    }
    values
}

/// The numbers in a setting's parameters and conventions.
fn numbers_of(setting: &Setting, facts: &[Fact]) -> Vec<f64> {
    let mut numbers: Vec<f64> = setting.params.values().filter_map(Value::as_f64).collect();
    for fact in facts {
        for word in fact
            .value
            .split(|c: char| !(c.is_ascii_digit() || ".e-".contains(c)))
        {
            if let Ok(number) = word.parse::<f64>() {
                if number.is_finite() && number > 0.0 {
                    numbers.push(number);
                }
            }
        }
    }
    numbers
}

/// Whether a relative difference is rounding (at most [`SAME`]; NaN is not).
fn agrees(difference: f64) -> bool {
    difference <= SAME
}

/// How good a candidate is, lexicographically (smaller is better): the number of problems on
/// which it disagrees (beyond [`SAME`]), the decade of its mean difference over those, the number
/// of differing conventions, its mean difference, and the number of parameters set.
fn rank(differences: &[f64], differing: usize, set: usize) -> (usize, i64, usize, u64, usize) {
    let disagreeing: Vec<f64> = differences
        .iter()
        .map(|&d| if d.is_nan() { f64::INFINITY } else { d })
        .filter(|&d| d > SAME)
        .collect();
    let mean = if disagreeing.is_empty() {
        0.0
    } else {
        disagreeing.iter().sum::<f64>() / disagreeing.len() as f64
    };
    let decade = if mean > 0.0 {
        mean.log10().floor().min(1e6) as i64
    } else {
        i64::MIN
    };
    (disagreeing.len(), decade, differing, mean.to_bits(), set)
}

/// Translates `from` into the loss `to`: the setting of `to` (parameters and form) closest to
/// `from` on `count` generated problems from `seed`, found by trying each parameter's candidate
/// values in turn until none improves, and what still differs.
pub fn translate(from: &Setting, to: &str, count: usize, seed: u64) -> Result<Translation> {
    let problems = problems(count, seed);
    let from_def = find(&from.loss)?;
    let to_def = find(to)?;
    let reference = best_run(from, from_def, &problems)?;
    let numbers = numbers_of(from, &reference.facts);
    let evaluate = |setting: &Setting| -> Option<(Run, Option<f64>, Vec<f64>)> {
        Form::ALL
            .iter()
            .map(|&form| setting.run(to_def, form, &problems))
            .filter(|run| {
                run.outcomes.len() == problems.len()
                    && run.outcomes.iter().all(Result::is_ok)
                    && form_fits(run.form, &run.facts)
            })
            .map(|run| {
                let plain = problem_differences(&reference.outcomes, &run.outcomes, 1.0);
                let scaled = constant_factor(&reference.outcomes, &run.outcomes)
                    .filter(|&factor| factor != 1.0)
                    .map(|factor| {
                        let scaled =
                            problem_differences(&reference.outcomes, &run.outcomes, factor);
                        (factor, scaled)
                    })
                    .filter(|(_, scaled)| scaled.iter().all(|&d| d <= SAME));
                match scaled {
                    Some((factor, scaled)) if plain.iter().any(|&d| !agrees(d)) => {
                        (run, Some(factor), scaled)
                    }
                    _ => (run, None, plain),
                }
            })
            .min_by_key(|(run, _, problem_differences)| {
                rank(
                    problem_differences,
                    differences(&reference.facts, &run.facts).len(),
                    0,
                )
            })
    };
    let score = |setting: &Setting, found: &(Run, Option<f64>, Vec<f64>)| {
        rank(
            &found.2,
            differences(&reference.facts, &found.0.facts).len(),
            setting.params.len(),
        )
    };
    let mut best = Setting {
        loss: to.to_string(),
        params: from
            .params
            .iter()
            .filter(|(name, _)| to_def.param_names().any(|known| known == name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
    };
    // A parameter the loss requires starts at its first candidate value.
    for param in to_def.params.iter().filter(|param| param.required) {
        if let Some(Some(value)) = candidates(param.domain, &numbers).into_iter().nth(1) {
            best.params.entry(param.name.to_string()).or_insert(value);
        }
    }
    let mut found = evaluate(&best);
    // Each move sets one parameter, or two numbers at once to one value (so that coupled
    // constants such as a numerator's and a denominator's smoothing can move together).
    let mut moves: Vec<Vec<(&str, Option<Value>)>> = Vec::new();
    for param in to_def.params {
        for value in candidates(param.domain, &numbers) {
            if !(value.is_none() && param.required) {
                moves.push(vec![(param.name, value)]);
            }
        }
    }
    let numeric: Vec<_> = to_def
        .params
        .iter()
        .filter(|param| matches!(param.domain, Domain::Number { .. }))
        .collect();
    for (i, first) in numeric.iter().enumerate() {
        for second in &numeric[i + 1..] {
            for value in candidates(first.domain, &numbers).into_iter().flatten() {
                moves.push(vec![
                    (first.name, Some(value.clone())),
                    (second.name, Some(value)),
                ]);
            }
        }
    }
    for _round in 0..4 {
        let mut improved = false;
        for change in &moves {
            let mut candidate = best.clone();
            for (name, value) in change {
                match value {
                    Some(value) => candidate.params.insert(name.to_string(), value.clone()),
                    None => candidate.params.remove(*name),
                };
            }
            if candidate == best {
                continue;
            }
            let Some(result) = evaluate(&candidate) else {
                continue;
            };
            let better = found
                .as_ref()
                .is_none_or(|current| score(&candidate, &result) < score(&best, current));
            if better {
                best = candidate;
                found = Some(result);
                improved = true;
            }
        }
        if !improved {
            break;
        }
    }
    let (run, factor, problem_differences) = found.ok_or_else(|| {
        Error::Rosetta(format!(
            "no setting of {to} accepts the generated problems {} takes",
            from.call_text()
        ))
    })?;
    Ok(Translation {
        format: "segloss-translate",
        version: FORMAT_VERSION,
        differences: differences(&reference.facts, &run.facts),
        from: Described::new(from.clone(), reference)?,
        to: Described::new(best, run)?,
        factor,
        same: problem_differences.iter().all(|&d| d <= SAME),
        agreeing: problem_differences.iter().filter(|&&d| d <= SAME).count(),
        disagreeing_scenarios: problems
            .iter()
            .zip(&problem_differences)
            .filter(|(_, &difference)| !agrees(difference))
            .fold(BTreeMap::new(), |mut counts, (problem, _)| {
                *counts.entry(problem.scenario).or_default() += 1;
                counts
            }),
        largest_difference: problem_differences.iter().copied().fold(0.0, f64::max),
        problems: count,
    })
}

/// Two settings evaluated side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// `segloss-compare`.
    pub format: &'static str,
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The first setting.
    pub a: Described,
    /// The second.
    pub b: Described,
    /// Per problem: both losses (flattened) and the largest relative difference of the loss and
    /// of the gradient with respect to the logits.
    pub rows: Vec<ComparedProblem>,
    /// The largest relative difference over every problem.
    pub largest_difference: f64,
    /// The conventions on which they differ, which explain the difference.
    pub differences: Vec<Difference>,
}

/// One problem of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ComparedProblem {
    /// The problem's scenario.
    pub scenario: &'static str,
    /// The logits' shape.
    pub shape: Vec<usize>,
    /// The first setting's loss (flattened).
    pub a: Vec<f64>,
    /// The second's.
    pub b: Vec<f64>,
    /// The largest relative difference of the loss and the gradient.
    pub difference: f64,
}

/// Compares two settings on `problems` (generated, or given): values, gradients, differences.
pub fn compare(a: &Setting, b: &Setting, problems: &[Problem]) -> Result<Comparison> {
    let run_a = best_run(a, find(&a.loss)?, problems)?;
    let run_b = best_run(b, find(&b.loss)?, problems)?;
    let rows: Vec<ComparedProblem> = problems
        .iter()
        .zip(run_a.outcomes.iter().zip(&run_b.outcomes))
        .map(|(problem, (outcome_a, outcome_b))| {
            let flat = |outcome: &Outcome| {
                outcome
                    .as_ref()
                    .map(|(loss, _)| loss.iter().copied().collect())
                    .unwrap_or_default()
            };
            ComparedProblem {
                scenario: problem.scenario,
                shape: problem.logits.shape().to_vec(),
                a: flat(outcome_a),
                b: flat(outcome_b),
                difference: largest_difference(
                    std::slice::from_ref(outcome_a),
                    std::slice::from_ref(outcome_b),
                    1.0,
                ),
            }
        })
        .collect();
    Ok(Comparison {
        format: "segloss-compare",
        version: FORMAT_VERSION,
        largest_difference: rows.iter().map(|row| row.difference).fold(0.0, f64::max),
        differences: differences(&run_a.facts, &run_b.facts),
        a: Described::new(a.clone(), run_a)?,
        b: Described::new(b.clone(), run_b)?,
        rows,
    })
}

/// A problem from a user's logits `(N, C, …)` and labels `(N, …)` (C = [`CLASSES`] is not
/// required: any class count whose labels lie in `[0, C)`).
pub fn problem_from(logits: ArrayD<f64>, labels: ArrayD<i64>) -> Result<Problem> {
    let shape = logits.shape();
    let fits = shape.len() >= 2
        && labels.shape().len() + 1 == shape.len()
        && labels.shape()[0] == shape[0]
        && labels.shape()[1..] == shape[2..];
    if !fits {
        return Err(Error::Rosetta(format!(
            "logits {:?} and labels {:?} do not fit: give logits (N, C, …) and labels (N, …)",
            shape,
            labels.shape()
        )));
    }
    let classes = shape[1] as i64;
    if let Some(bad) = labels.iter().find(|&&label| !(0..classes).contains(&label)) {
        return Err(Error::Rosetta(format!(
            "label {bad} is not a class of the {classes} the logits have: give labels in [0, {classes})"
        )));
    }
    Ok(Problem {
        scenario: "given",
        logits,
        labels,
    })
}

/// A relative difference as reports print it.
fn difference_text(difference: f64) -> String {
    if difference == 0.0 {
        "0 (bit for bit)".to_string()
    } else if difference.is_finite() {
        format!("{difference:.1e}")
    } else {
        "unbounded (one side rejects, or the shapes differ)".to_string()
    }
}

/// The differing conventions as indented lines.
fn differences_text(differences: &[Difference], a: &str, b: &str) -> String {
    differences
        .iter()
        .map(|difference| {
            format!(
                "    {}: {a} {}; {b} {}\n",
                difference.axis, difference.from, difference.to
            )
        })
        .collect()
}

impl Translation {
    /// The translation for a terminal.
    pub fn terminal(&self) -> String {
        let from = &self.from;
        let to = &self.to;
        let mut text = format!(
            "{}\n  as {}: {}\n  tensors: {}  (from {})\n",
            from.setting.call_text(),
            to.setting.loss,
            to.setting.call_text(),
            to.form.words(),
            from.form.words(),
        );
        if let Some(factor) = self.factor {
            text += &format!("  times {factor} (the first equals {factor} × the second)\n");
        }
        text += &if self.same {
            format!(
                "  computes the same function on all {} generated problems (largest relative difference of loss or gradient: {})\n",
                self.problems,
                difference_text(self.largest_difference)
            )
        } else {
            let scenarios: Vec<String> = self
                .disagreeing_scenarios
                .iter()
                .map(|(scenario, count)| format!("{scenario} ({count})"))
                .collect();
            format!(
                "  is the closest setting: it agrees on {} of {} generated problems (largest relative difference of loss or gradient: {}); it differs on: {}\n",
                self.agreeing,
                self.problems,
                difference_text(self.largest_difference),
                scenarios.join(", ")
            )
        };
        if !self.differences.is_empty() {
            text += if self.same {
                "  conventions that differ without changing these problems' values:\n"
            } else {
                "  conventions that differ:\n"
            };
            text += &differences_text(&self.differences, &from.setting.loss, &to.setting.loss);
        }
        text
    }
}

impl Comparison {
    /// The comparison for a terminal.
    pub fn terminal(&self) -> String {
        let (a, b) = (&self.a.setting.loss, &self.b.setting.loss);
        let mut text = format!(
            "A = {}\n  tensors: {}\nB = {}\n  tensors: {}\n\n{:<30} {:<18} {:>24} {:>24} {:>12}\n",
            self.a.setting.call_text(),
            self.a.form.words(),
            self.b.setting.call_text(),
            self.b.form.words(),
            "scenario",
            "logits shape",
            "A loss",
            "B loss",
            "rel. diff"
        );
        for row in &self.rows {
            let first = |values: &[f64]| match values {
                [value] => format!("{value:.17e}"),
                values => format!("{} values", values.len()),
            };
            text += &format!(
                "{:<30} {:<18} {:>24} {:>24} {:>12}\n",
                row.scenario,
                format!("{:?}", row.shape),
                first(&row.a),
                first(&row.b),
                difference_text(row.difference)
            );
        }
        text += &format!(
            "\nlargest relative difference of loss or gradient: {}\n",
            difference_text(self.largest_difference)
        );
        if self.differences.is_empty() {
            text += "no convention differs";
            text += if self.largest_difference <= SAME {
                "\n"
            } else {
                " that the spec records for these losses\n"
            };
        } else {
            text += "conventions that differ (A; B):\n";
            text += &differences_text(&self.differences, a, b);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(loss: &[f64], gradient: &[f64]) -> Outcome {
        Ok((
            ArrayD::from_shape_vec(vec![loss.len()], loss.to_vec()).unwrap(),
            ArrayD::from_shape_vec(vec![gradient.len()], gradient.to_vec()).unwrap(),
        ))
    }

    #[test]
    fn differences_are_relative_and_treat_nan_against_nan_as_equal() {
        let a = [outcome(&[2.0, f64::NAN], &[1.0, 4.0])];
        assert_eq!(problem_differences(&a, &a, 1.0), [0.0]);
        // One NaN against a number is unbounded.
        let b = [outcome(&[2.0, 1.0], &[1.0, 4.0])];
        assert_eq!(problem_differences(&a, &b, 1.0), [f64::INFINITY]);
        assert_eq!(problem_differences(&b, &a, 1.0), [f64::INFINITY]);
        // 0.5 off in a gradient whose largest magnitude is 4.
        let c = [outcome(&[2.0, 1.0], &[1.5, 4.0])];
        assert_eq!(problem_differences(&b, &c, 1.0), [0.125]);
        // The second run's values are scaled by the factor before comparing.
        let half = [outcome(&[1.0, 0.5], &[0.5, 2.0])];
        assert_eq!(problem_differences(&b, &half, 2.0), [0.0]);
        assert!(problem_differences(&b, &half, 1.0)[0] > 0.1);
        // A rejection or another shape is unbounded.
        let rejected: [Outcome; 1] = [Err("no".into())];
        assert_eq!(problem_differences(&b, &rejected, 1.0), [f64::INFINITY]);
        let longer = [outcome(&[2.0, 1.0, 0.0], &[1.0, 4.0])];
        assert_eq!(problem_differences(&b, &longer, 1.0), [f64::INFINITY]);
    }

    #[test]
    fn a_constant_factor_is_found_only_when_it_holds_on_every_problem() {
        let scalar = |value: f64| outcome(&[value], &[value]);
        let a = [scalar(6.0), scalar(3.0)];
        let b = [scalar(2.0), scalar(1.0)];
        assert_eq!(constant_factor(&a, &b), Some(3.0));
        let c = [scalar(2.0), scalar(1.5)];
        assert_eq!(constant_factor(&a, &c), None);
    }
}
