//! The keyword arguments of the library losses (kornia, MONAI, smp) as the oracle reads them: each
//! helper gives `None` for a value of the wrong type and the default for an absent one.

use serde_json::Value;

use super::LossCall;

/// A number or `null` (`Some(None)`); absent gives `default`.
pub(super) fn optional_number(
    call: &LossCall,
    name: &str,
    default: Option<f64>,
) -> Option<Option<f64>> {
    match call.params.get(name) {
        None => Some(default),
        Some(Value::Null) => Some(None),
        Some(value) => value.as_f64().map(Some),
    }
}

/// An integer or `null` (`Some(None)`); absent gives `default`.
pub(super) fn optional_integer(
    call: &LossCall,
    name: &str,
    default: Option<i64>,
) -> Option<Option<i64>> {
    match call.params.get(name) {
        None => Some(default),
        Some(Value::Null) => Some(None),
        Some(value) => value.as_i64().map(Some),
    }
}

/// A boolean; absent gives `default`.
pub(super) fn flag(call: &LossCall, name: &str, default: bool) -> Option<bool> {
    match call.params.get(name) {
        None => Some(default),
        Some(value) => value.as_bool(),
    }
}

/// A string; absent gives `default`.
pub(super) fn text<'a>(call: &'a LossCall, name: &str, default: &'a str) -> Option<&'a str> {
    match call.params.get(name) {
        None => Some(default),
        Some(value) => value.as_str(),
    }
}

/// One number for every class, or one per class.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum PerClass {
    Scalar(f64),
    List(Vec<f64>),
}

/// A number, a list of numbers, or `null`/absent (`Some(None)`).
pub(super) fn per_class(call: &LossCall, name: &str) -> Option<Option<PerClass>> {
    match call.params.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(Value::as_f64)
            .collect::<Option<Vec<f64>>>()
            .map(|list| Some(PerClass::List(list))),
        Some(value) => value.as_f64().map(|number| Some(PerClass::Scalar(number))),
    }
}
