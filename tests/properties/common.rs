//! Shared machinery of the property tests: calling a loss, finite-difference gradient checks,
//! comparisons, and the case-count policy.

use std::collections::BTreeMap;

use ndarray::ArrayD;
use proptest::test_runner::Config;
use segloss::catalog::{evaluate, LossCall};
use segloss::spec::LossOutput;
use segloss::tensor::Tensor;
use serde_json::Value;

/// Cases per property: 64 by default so `cargo test` stays fast; `PROPTEST_CASES` overrides it for
/// deep runs.
pub fn config() -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    config
}

/// A loss call built from f64 parts.
#[derive(Debug, Clone)]
pub struct Call {
    /// The loss id.
    pub loss: &'static str,
    /// Keyword parameters.
    pub params: BTreeMap<String, Value>,
    /// Tensor arguments; the differentiated one is `prediction`.
    pub tensors: BTreeMap<String, Tensor>,
    /// The name of the differentiated tensor.
    pub prediction: &'static str,
    /// The grad_output (the loss's shape).
    pub grad_output: Option<ArrayD<f64>>,
}

impl Call {
    /// A call of `loss` with two tensor arguments, each a (name, tensor) pair: the differentiated
    /// prediction and the target.
    pub fn new(
        loss: &'static str,
        prediction: (&'static str, Tensor),
        target: (&str, Tensor),
        params: BTreeMap<String, Value>,
        grad_output: Option<ArrayD<f64>>,
    ) -> Call {
        Call {
            loss,
            params,
            tensors: BTreeMap::from([
                (prediction.0.to_string(), prediction.1),
                (target.0.to_string(), target.1),
            ]),
            prediction: prediction.0,
            grad_output,
        }
    }

    /// Evaluates the call with the reference, panicking with the error if it is rejected (the
    /// strategies only produce valid calls).
    pub fn run(&self) -> LossOutput {
        evaluate(&LossCall {
            loss: self.loss.to_string(),
            params: self.params.clone(),
            tensors: self.tensors.clone(),
            grad_output: self.grad_output.clone(),
        })
        .unwrap_or_else(|error| panic!("{}: {error}", self.loss))
    }

    /// The prediction as f64.
    pub fn prediction(&self) -> ArrayD<f64> {
        self.tensors[self.prediction].to_f64()
    }

    /// The same call with another prediction.
    pub fn with_prediction(&self, prediction: ArrayD<f64>) -> Call {
        let mut call = self.clone();
        call.tensors
            .insert(self.prediction.to_string(), Tensor::Float64(prediction));
        call
    }

    /// φ(x) = Σ grad_output · loss(x): the scalar whose gradient the reference returns.
    pub fn objective(&self, prediction: ArrayD<f64>) -> f64 {
        let output = self.with_prediction(prediction).run();
        match &self.grad_output {
            Some(grad_output) => (&output.loss * grad_output).sum(),
            None => output.loss.sum(),
        }
    }
}

/// Central-difference step: small enough that the O(h²) truncation error (≈1e-10·|φ'''|) stays
/// below the tolerance, large enough that cancellation (≈1e-16·|φ|/h ≈ 1e-11) does too.
pub const STEP: f64 = 1e-5;
/// Allowed |numeric − analytic| ≤ GRAD_ATOL + GRAD_RTOL·|analytic|, covering both error terms for
/// inputs of magnitude ≤ 10 kept away from kinks.
pub const GRAD_ATOL: f64 = 1e-6;
/// See [`GRAD_ATOL`].
pub const GRAD_RTOL: f64 = 1e-5;

/// Gradient check in f64: element by element by central differences when the prediction has at
/// most `elementwise_limit` elements (gradcheck's slow mode), otherwise the dot-product test
/// vᵀ(J·u) against (vᵀJ)·u for the given seeded directions (gradcheck's fast mode). A call whose
/// loss is not finite is not differentiated.
pub fn check_gradient(
    call: &Call,
    directions: &[ArrayD<f64>],
    elementwise_limit: usize,
) -> Result<(), String> {
    let output = call.run();
    if output.loss.iter().any(|loss| !loss.is_finite()) {
        // A mean over no counted position is NaN by definition (PyTorch's 0/0) and has no
        // derivative to difference; its zero gradient is checked against the fixtures instead.
        return Ok(());
    }
    let analytic = output.grad_input;
    let x = call.prediction();
    let close = |numeric: f64, analytic: f64| {
        (numeric - analytic).abs() <= GRAD_ATOL + GRAD_RTOL * analytic.abs()
    };
    if x.len() <= elementwise_limit {
        for (index, &expected) in analytic.indexed_iter() {
            let mut plus = x.clone();
            let mut minus = x.clone();
            plus[&index] += STEP;
            minus[&index] -= STEP;
            let numeric = (call.objective(plus) - call.objective(minus)) / (2.0 * STEP);
            if !close(numeric, expected) {
                return Err(format!(
                    "∂φ/∂x{index:?}: finite difference {numeric:e}, analytic {expected:e}"
                ));
            }
        }
    } else {
        for direction in directions {
            let numeric = (call.objective(&x + &(direction * STEP))
                - call.objective(&x - &(direction * STEP)))
                / (2.0 * STEP);
            let expected = (&analytic * direction).sum();
            if !close(numeric, expected) {
                return Err(format!(
                    "directional derivative: finite difference {numeric:e}, analytic {expected:e}"
                ));
            }
        }
    }
    Ok(())
}

/// |a − b| ≤ 1e-12·(1 + |b|) element-wise, NaN matching NaN: for identities that hold exactly in
/// real arithmetic and differ only by rounding in f64.
pub fn nearly_equal(a: &ArrayD<f64>, b: &ArrayD<f64>) -> Result<(), String> {
    if a.shape() != b.shape() {
        return Err(format!("shapes differ: {:?} vs {:?}", a.shape(), b.shape()));
    }
    for ((index, &x), &y) in a.indexed_iter().zip(b.iter()) {
        let same = (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= 1e-12 * (1.0 + y.abs());
        if !same {
            return Err(format!("at {index:?}: {x:e} vs {y:e}"));
        }
    }
    Ok(())
}

/// An f64 array from a shape and values (the strategies produce matching lengths).
pub fn array(shape: &[usize], values: Vec<f64>) -> ArrayD<f64> {
    ArrayD::from_shape_vec(shape.to_vec(), values).expect("strategy produced a matching length")
}
