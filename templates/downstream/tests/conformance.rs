//! Certifies `my_cross_entropy` for float32 and float64 inputs against PyTorch's semantics, one
//! trial per segloss fixture case and check. `cargo test --test conformance` runs them all;
//! `cargo test --test conformance -- cross_entropy/f32` a slice. The fixtures are found through
//! `$SEGLOSS_FIXTURES`, else in the segloss checkout this crate depends on.

use std::sync::Arc;

use segloss::certify::known::KnownFailures;
use segloss::certify::{run_conformance, Implementation, LossCall, LossOutput, Outcome};
use segloss::compare::Tier;
use segloss::ndarray::{ArrayD, Axis};
use segloss::tensor::Tensor;

/// Your loss: softmax cross entropy over `(N, C)` logits with class-index targets, and its
/// gradient for `upstream` (∂L/∂loss, one per row). Replace it with the one you ship.
fn my_cross_entropy(logits: &ArrayD<f64>, targets: &[i64], upstream: &[f64]) -> (Vec<f64>, ArrayD<f64>) {
    let mut losses = Vec::new();
    let mut gradient = logits.clone();
    for ((mut row, &target), &u) in gradient.axis_iter_mut(Axis(0)).zip(targets).zip(upstream) {
        let max = row.fold(f64::NEG_INFINITY, |m, &x| m.max(x));
        let log_total = row.iter().map(|&x| (x - max).exp()).sum::<f64>().ln();
        losses.push(log_total + max - row[target as usize]);
        row.mapv_inplace(|x| (x - max - log_total).exp() * u);
        row[target as usize] -= u;
    }
    (losses, gradient)
}

/// The glue: a segloss call in, your loss's answer out; what it does not do is unsupported.
struct MyLoss;

impl Implementation for MyLoss {
    fn name(&self) -> &str {
        "my cross entropy"
    }

    fn compute(&self, call: &LossCall) -> Outcome {
        let reduction = call.params.get("reduction").and_then(|v| v.as_str()).unwrap_or("mean");
        let plain = call.params.keys().all(|name| name == "reduction") && call.tensors.len() == 2;
        if call.loss != "cross_entropy" || !plain {
            return Outcome::Unsupported("plain cross_entropy only (no weight, ignore_index, smoothing)".into());
        }
        // float32 and float64 inputs alike (to_f64 widens float32 exactly).
        let (Some(input @ (Tensor::Float32(_) | Tensor::Float64(_))), Some(Tensor::Int64(targets))) =
            (call.tensors.get("input"), call.tensors.get("target"))
        else {
            return Outcome::Unsupported("float logits with int64 class indices only".into());
        };
        let logits = input.to_f64();
        let classes = logits.shape().get(1).copied().unwrap_or(0);
        if logits.ndim() != 2 || targets.shape() != [logits.shape()[0]] || logits.is_empty() {
            return Outcome::Unsupported("(N, C) logits only".into());
        }
        if let Some(&bad) = targets.iter().find(|&&t| t < 0 || t as usize >= classes) {
            return Outcome::Rejected {
                kind: Some("target_out_of_bounds".into()),
                message: format!("target {bad} is out of bounds"),
            };
        }
        let rows = targets.len();
        let g = |i: usize| call.grad_output.as_ref().map_or(1.0, |g| g.iter().nth(i).copied().unwrap_or(1.0));
        let upstream: Vec<f64> = match reduction {
            "none" => (0..rows).map(g).collect(),
            "sum" => vec![g(0); rows],
            "mean" => vec![g(0) / rows as f64; rows],
            other => return Outcome::Unsupported(format!("reduction {other}")),
        };
        let targets: Vec<i64> = targets.iter().copied().collect();
        let (losses, grad_input) = my_cross_entropy(&logits, &targets, &upstream);
        let loss = match reduction {
            "none" => ArrayD::from_shape_vec(vec![rows], losses).expect("one loss per row"),
            "sum" => ArrayD::from_elem(vec![], losses.iter().sum()),
            _ => ArrayD::from_elem(vec![], losses.iter().sum::<f64>() / rows as f64),
        };
        Outcome::Computed(LossOutput { loss, grad_input })
    }
}

fn main() -> std::process::ExitCode {
    // What your loss is known to get wrong, each with its reason (docs/known-failures.md);
    // `segloss certify --write-known-failures` starts one from a run.
    let known = KnownFailures::default();
    run_conformance(Arc::new(MyLoss), known, Tier::Strict)
}
