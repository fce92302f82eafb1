//! The loss catalog: every loss segloss specifies, the parameters and tensors it takes (PyTorch's
//! keyword names), and a uniform way to call it from a case, the CLI or a certification run.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Deref;

use ndarray::ArrayD;
use serde_json::Value;

pub mod artefacts;
mod binary_focal;
mod cross_entropy;
pub mod domain;
mod lovasz_mcc;
mod overlap;
pub mod tolerances;

pub use domain::{Domain, Param};

use crate::error::Rejection;
use crate::spec::Result;
use crate::spec::{LossOutput, Reduction};
use crate::tensor::Tensor;

/// A loss call in the form every front end shares: the loss id, keyword parameters as JSON values,
/// tensor arguments by keyword name, and the grad_output for the gradient (ones when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct LossCall {
    /// The loss id, e.g. `cross_entropy`.
    pub loss: String,
    /// Non-tensor keyword arguments (`reduction`, `ignore_index`, …).
    pub params: BTreeMap<String, Value>,
    /// Tensor arguments (`input`, `target`, `weight`, …).
    pub tensors: BTreeMap<String, Tensor>,
    /// The grad_output to differentiate with; ones of the loss's shape when `None`.
    pub grad_output: Option<ArrayD<f64>>,
}

/// A spec function of the common form `loss(prediction, target, weight, options, grad_output)`.
type WeightedLoss<O> =
    fn(&Tensor, &Tensor, Option<&Tensor>, &O, Option<&ArrayD<f64>>) -> Result<LossOutput>;

/// One loss of the catalog.
pub struct LossDef {
    /// The loss id: the `torch.nn.functional` name, or `library.Name`.
    pub name: &'static str,
    /// One line on what it computes.
    pub summary: &'static str,
    /// The non-tensor parameters it accepts, with their domains.
    pub params: &'static [Param],
    /// The tensor arguments it requires.
    pub required_tensors: &'static [&'static str],
    /// The tensor arguments it accepts in addition.
    pub optional_tensors: &'static [&'static str],
    /// Computes the loss with the reference spec.
    pub evaluate: fn(&CheckedCall) -> Result<LossOutput>,
}

impl LossDef {
    /// The tensor the gradient is taken with respect to: the first required tensor (`input`,
    /// `inputs`, `y_pred`, `pred`).
    pub fn prediction(&self) -> &'static str {
        self.required_tensors.first().copied().unwrap_or("input")
    }

    /// The second required tensor, the target (`target`, `targets`, `y_true`).
    pub fn target(&self) -> &'static str {
        self.required_tensors.get(1).copied().unwrap_or("target")
    }

    /// The names of its parameters.
    pub fn param_names(&self) -> impl Iterator<Item = &'static str> + Clone {
        self.params.iter().map(|param| param.name)
    }
}

/// The loss families, one module each.
const FAMILIES: &[&[LossDef]] = &[
    cross_entropy::LOSSES,
    binary_focal::LOSSES,
    overlap::LOSSES,
    lovasz_mcc::LOSSES,
];

/// Every loss segloss specifies, family by family.
pub fn losses() -> impl Iterator<Item = &'static LossDef> {
    FAMILIES.iter().flat_map(|family| family.iter())
}

/// The catalog entry for a loss id.
pub fn find(name: &str) -> Result<&'static LossDef> {
    losses()
        .find(|loss| loss.name == name)
        .ok_or_else(|| Rejection::UnknownLoss {
            name: name.to_string(),
            known: losses()
                .map(|loss| loss.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Computes a loss call with the reference spec, after checking that every parameter and tensor
/// it names is one the loss takes.
pub fn evaluate(call: &LossCall) -> Result<LossOutput> {
    let loss = find(&call.loss)?;
    let tensor_names = loss.required_tensors.iter().chain(loss.optional_tensors);
    let unknown_param = call
        .params
        .keys()
        .find(|name| !loss.param_names().any(|known| known == name.as_str()));
    let unknown_tensor = call
        .tensors
        .keys()
        .find(|name| !tensor_names.clone().any(|known| known == name));
    if let Some(name) = unknown_param.or(unknown_tensor) {
        return Err(Rejection::UnknownParameter {
            loss: loss.name.to_string(),
            name: name.clone(),
            accepted: loss
                .param_names()
                .chain(tensor_names.copied())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    (loss.evaluate)(&CheckedCall::new(call))
}

/// A call that [`evaluate`] has checked: its loss, parameter and tensor names are the loss's,
/// and every array is in standard (row-major, contiguous) layout, whatever layout the caller's
/// arrays had (NumPy's Fortran order, strided views), so that the spec may reshape them freely.
pub struct CheckedCall<'a> {
    call: Cow<'a, LossCall>,
}

impl<'a> CheckedCall<'a> {
    /// The call with its arrays in standard layout (copied only when one is not).
    fn new(call: &'a LossCall) -> CheckedCall<'a> {
        let standard = call.tensors.values().all(Tensor::is_standard_layout)
            && call
                .grad_output
                .as_ref()
                .is_none_or(ArrayD::is_standard_layout);
        if standard {
            return CheckedCall {
                call: Cow::Borrowed(call),
            };
        }
        let tensors = call
            .tensors
            .iter()
            .map(|(name, tensor)| (name.clone(), tensor.to_standard_layout()))
            .collect();
        CheckedCall {
            call: Cow::Owned(LossCall {
                loss: call.loss.clone(),
                params: call.params.clone(),
                tensors,
                grad_output: call
                    .grad_output
                    .as_ref()
                    .map(|grad| grad.as_standard_layout().into_owned()),
            }),
        }
    }
}

impl Deref for CheckedCall<'_> {
    type Target = LossCall;

    fn deref(&self) -> &LossCall {
        &self.call
    }
}

impl LossCall {
    /// A required tensor argument.
    pub(crate) fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Rejection::MissingTensor {
                name: name.to_string(),
            })
    }

    /// Calls a loss of the common form with the call's tensors named `prediction` and `target`, its
    /// optional `weight` tensor and its grad_output.
    pub(crate) fn weighted_loss<O>(
        &self,
        [prediction, target]: [&str; 2],
        loss: WeightedLoss<O>,
        options: &O,
    ) -> Result<LossOutput> {
        loss(
            self.tensor(prediction)?,
            self.tensor(target)?,
            self.tensors.get("weight"),
            options,
            self.grad_output.as_ref(),
        )
    }

    /// `reduction`, parsed; PyTorch's default is `mean`.
    pub(crate) fn reduction(&self) -> Result<Reduction> {
        self.reduction_or(Reduction::Mean)
    }

    /// `reduction`, parsed, for an anchor whose default is `default`.
    pub(crate) fn reduction_or(&self, default: Reduction) -> Result<Reduction> {
        match self.string_param("reduction")? {
            None => Ok(default),
            Some(name) => name.parse(),
        }
    }

    /// A string parameter; `None` when absent.
    pub(crate) fn string_param(&self, name: &str) -> Result<Option<&str>> {
        match self.params.get(name) {
            None => Ok(None),
            Some(Value::String(value)) => Ok(Some(value)),
            Some(other) => Err(parameter_type(name, "a string", other)),
        }
    }

    /// A parameter the anchor requires (it has no default).
    pub(crate) fn required<'a, T>(
        &'a self,
        name: &str,
        read: impl FnOnce(&'a Value) -> Option<T>,
        expected: &'static str,
    ) -> Result<T> {
        let value = self
            .params
            .get(name)
            .ok_or_else(|| Rejection::MissingParameter {
                name: name.to_string(),
            })?;
        read(value).ok_or_else(|| parameter_type(name, expected, value))
    }

    /// A boolean parameter.
    pub(crate) fn bool_param(&self, name: &str, default: bool) -> Result<bool> {
        match self.params.get(name) {
            None => Ok(default),
            Some(value) => value
                .as_bool()
                .ok_or_else(|| parameter_type(name, "true or false", value)),
        }
    }

    /// A parameter that is a number or `null` (Python's `None`); absent gives `default`.
    pub(crate) fn optional_float_param(
        &self,
        name: &str,
        default: Option<f64>,
    ) -> Result<Option<f64>> {
        match self.params.get(name) {
            None => Ok(default),
            Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_f64()
                .map(Some)
                .ok_or_else(|| parameter_type(name, "a number or null", value)),
        }
    }

    /// A parameter that is an integer or `null`; absent gives `default`.
    pub(crate) fn optional_int_param(
        &self,
        name: &str,
        default: Option<i64>,
    ) -> Result<Option<i64>> {
        match self.params.get(name) {
            None => Ok(default),
            Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_i64()
                .map(Some)
                .ok_or_else(|| parameter_type(name, "an integer or null", value)),
        }
    }

    /// A parameter that is a number, a list of numbers, or `null`/absent (`None`).
    pub(crate) fn number_or_list_param(&self, name: &str) -> Result<Option<NumberOrList>> {
        let expected = "a number, a list of numbers or null";
        match self.params.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(Value::as_f64)
                .collect::<Option<Vec<f64>>>()
                .map(|list| Some(NumberOrList::List(list)))
                .ok_or_else(|| parameter_type(name, expected, &Value::Array(items.clone()))),
            Some(value) => value
                .as_f64()
                .map(|number| Some(NumberOrList::Number(number)))
                .ok_or_else(|| parameter_type(name, expected, value)),
        }
    }

    /// An integer parameter.
    pub(crate) fn int_param(&self, name: &str, default: i64) -> Result<i64> {
        match self.params.get(name) {
            None => Ok(default),
            Some(value) => value
                .as_i64()
                .ok_or_else(|| parameter_type(name, "an integer", value)),
        }
    }

    /// A real-number parameter (integers accepted).
    pub(crate) fn float_param(&self, name: &str, default: f64) -> Result<f64> {
        match self.params.get(name) {
            None => Ok(default),
            Some(value) => value
                .as_f64()
                .ok_or_else(|| parameter_type(name, "a number", value)),
        }
    }
}

/// A parameter given as one number or as a list of numbers (Python's `float | Sequence[float]`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NumberOrList {
    /// One number.
    Number(f64),
    /// A list.
    List(Vec<f64>),
}

impl LossCall {
    /// A real-number parameter without a default.
    pub(crate) fn required_float_param(&self, name: &str) -> Result<f64> {
        self.required(name, Value::as_f64, "a number")
    }

    /// An optional list of integers: absent or `null` is `None`.
    pub(crate) fn int_list_param(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.params.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_array()
                .and_then(|items| items.iter().map(Value::as_i64).collect())
                .map(Some)
                .ok_or_else(|| parameter_type(name, "a list of integers or null", value)),
        }
    }

    /// An optional list of numbers: absent or `null` is `None`.
    pub(crate) fn float_list_param(&self, name: &str) -> Result<Option<Vec<f64>>> {
        match self.params.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_array()
                .and_then(|items| items.iter().map(Value::as_f64).collect())
                .map(Some)
                .ok_or_else(|| parameter_type(name, "a list of numbers or null", value)),
        }
    }
}

fn parameter_type(name: &str, expected: &'static str, got: &Value) -> Rejection {
    Rejection::ParameterType {
        name: name.to_string(),
        expected,
        got: got.to_string(),
    }
}
