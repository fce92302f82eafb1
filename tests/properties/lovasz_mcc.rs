//! Properties of the Lovász losses and `smp.MCCLoss` on generated inputs.
//!
//! smp's Lovász loss takes float32 predictions only, so finite differences (which need f64) run on
//! kornia's losses, which share the Lovász core with smp; smp is tied to them by identities on
//! float32 inputs, gradients included.

use std::collections::BTreeMap;

use ndarray::{ArrayD, Axis};
use proptest::prelude::*;
use segloss::spec::softmax::softmax;
use segloss::tensor::Tensor;
use serde_json::{json, Value};

use crate::common::{array, check_gradient, config, nearly_equal, Call};

/// The losses this module holds properties for.
pub const LOSSES: &[&str] = &[
    "smp.LovaszLoss",
    "smp.MCCLoss",
    "kornia.lovasz_softmax_loss",
    "kornia.lovasz_hinge_loss",
];

/// A binary problem `(N, 1, H, W)` whose hinge errors 1 − x·(2t − 1) are at least 0.2 apart and
/// at least 0.1 from 0, so a finite-difference step never crosses a tie or the relu kink.
#[derive(Debug, Clone)]
struct Binary {
    shape: [usize; 3],
    logits: Vec<f64>,
    labels: Vec<i64>,
    grad_scalar: f64,
}

fn binaries() -> impl Strategy<Value = Binary> {
    (1usize..=3, 1usize..=3, 1usize..=4)
        .prop_flat_map(|(batch, height, width)| {
            let n = batch * height * width;
            (
                Just([batch, height, width]),
                Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
                prop::collection::vec(-0.05..0.05f64, n),
                prop::collection::vec(0i64..=1, n),
                0.5..2.0f64,
            )
        })
        .prop_map(|(shape, ranks, jitter, labels, grad_scalar)| {
            let middle = (ranks.len() / 2) as f64;
            let logits = ranks
                .iter()
                .zip(&jitter)
                .zip(&labels)
                .map(|((&rank, &jitter), &label)| {
                    let error = 0.3 * (rank as f64 - middle) + 0.15 + jitter;
                    (1.0 - error) * (2.0 * label as f64 - 1.0)
                })
                .collect();
            Binary {
                shape,
                logits,
                labels,
                grad_scalar,
            }
        })
}

impl Binary {
    fn pred(&self) -> ArrayD<f64> {
        let [batch, height, width] = self.shape;
        array(&[batch, 1, height, width], self.logits.clone())
    }

    fn target(&self) -> ArrayD<i64> {
        ArrayD::from_shape_vec(self.shape.to_vec(), self.labels.clone()).unwrap()
    }

    fn kornia(&self, pred: Tensor) -> Call {
        call(
            "kornia.lovasz_hinge_loss",
            ("pred", pred),
            ("target", Tensor::Int64(self.target())),
            BTreeMap::new(),
            self.grad_scalar,
        )
    }

    fn smp(&self, per_image: bool) -> Call {
        let params = BTreeMap::from([
            ("mode".to_string(), json!("binary")),
            ("per_image".to_string(), json!(per_image)),
        ]);
        call(
            "smp.LovaszLoss",
            ("y_pred", float32(&self.pred())),
            ("y_true", Tensor::Int64(self.target())),
            params,
            self.grad_scalar,
        )
    }
}

/// A multiclass problem `(N, C, H, W)` whose softmax errors |fg − p| are, per image and class, at
/// least 1e-3 apart and from 0.
#[derive(Debug, Clone)]
struct Multiclass {
    shape: [usize; 4],
    logits: Vec<f64>,
    labels: Vec<i64>,
    weight: Vec<f64>,
    grad_scalar: f64,
}

fn multiclasses() -> impl Strategy<Value = Multiclass> {
    (1usize..=2, 2usize..=4, 1usize..=3, 1usize..=3)
        .prop_flat_map(|(batch, classes, height, width)| {
            let positions = batch * height * width;
            (
                Just([batch, classes, height, width]),
                prop::collection::vec(-3.0..3.0f64, positions * classes),
                prop::collection::vec(0..classes as i64, positions),
                prop::collection::vec(0.2..2.0f64, classes),
                0.5..2.0f64,
            )
        })
        .prop_map(|(shape, logits, labels, weight, grad_scalar)| Multiclass {
            shape,
            logits,
            labels,
            weight,
            grad_scalar,
        })
        .prop_filter("errors 1e-3 apart", Multiclass::separated)
}

impl Multiclass {
    fn pred(&self) -> ArrayD<f64> {
        array(&self.shape, self.logits.clone())
    }

    fn target(&self) -> ArrayD<i64> {
        let [batch, _, height, width] = self.shape;
        ArrayD::from_shape_vec(vec![batch, height, width], self.labels.clone()).unwrap()
    }

    fn separated(&self) -> bool {
        let probs = softmax(&self.pred(), 1);
        let target = self.target();
        probs
            .axis_iter(Axis(0))
            .zip(target.axis_iter(Axis(0)))
            .all(|(image, labels)| {
                image.axis_iter(Axis(0)).enumerate().all(|(class, p)| {
                    let mut errors: Vec<f64> = p
                        .iter()
                        .zip(labels.iter())
                        .map(|(&p, &label)| (f64::from(label == class as i64) - p).abs())
                        .collect();
                    errors.sort_by(f64::total_cmp);
                    errors[0] >= 1e-3 && errors.windows(2).all(|pair| pair[1] - pair[0] >= 1e-3)
                })
            })
    }

    fn every_class_in_every_image(&self) -> bool {
        let [_, classes, _, _] = self.shape;
        self.target().axis_iter(Axis(0)).all(|labels| {
            (0..classes as i64).all(|class| labels.iter().any(|&label| label == class))
        })
    }

    fn kornia(&self, pred: Tensor, weighted: bool) -> Call {
        let mut call = call(
            "kornia.lovasz_softmax_loss",
            ("pred", pred),
            ("target", Tensor::Int64(self.target())),
            BTreeMap::new(),
            self.grad_scalar,
        );
        if weighted {
            let weight = array(&[self.weight.len()], self.weight.clone());
            call.tensors
                .insert("weight".into(), Tensor::Float64(weight));
        }
        call
    }
}

/// An MCC problem: probabilities in [0.05, 0.95] and hard or soft labels, `(N, 1, H, W)`.
#[derive(Debug, Clone)]
struct Mcc {
    shape: [usize; 4],
    probs: Vec<f64>,
    labels: Vec<f64>,
    eps: f64,
    grad_scalar: f64,
}

fn mccs() -> impl Strategy<Value = Mcc> {
    (1usize..=3, 1usize..=3, 1usize..=4, any::<bool>())
        .prop_flat_map(|(batch, height, width, soft)| {
            let n = batch * height * width;
            let labels = if soft {
                prop::collection::vec(0.0..1.0f64, n).boxed()
            } else {
                prop::collection::vec(prop::sample::select(vec![0.0, 1.0]), n).boxed()
            };
            (
                Just([batch, 1, height, width]),
                prop::collection::vec(0.05..0.95f64, n),
                labels,
                prop::sample::select(vec![1e-5, 0.1]),
                0.5..2.0f64,
            )
        })
        .prop_map(|(shape, probs, labels, eps, grad_scalar)| Mcc {
            shape,
            probs,
            labels,
            eps,
            grad_scalar,
        })
}

impl Mcc {
    fn call(&self) -> Call {
        call(
            "smp.MCCLoss",
            (
                "y_pred",
                Tensor::Float64(array(&self.shape, self.probs.clone())),
            ),
            (
                "y_true",
                Tensor::Float64(array(&self.shape, self.labels.clone())),
            ),
            BTreeMap::from([("eps".to_string(), json!(self.eps))]),
            self.grad_scalar,
        )
    }
}

/// A call of a loss returning a scalar, differentiated with respect to `prediction`.
fn call(
    loss: &'static str,
    prediction: (&'static str, Tensor),
    target: (&'static str, Tensor),
    params: BTreeMap<String, Value>,
    grad_scalar: f64,
) -> Call {
    Call::new(
        loss,
        prediction,
        target,
        params,
        Some(ArrayD::from_elem(vec![], grad_scalar)),
    )
}

/// The prediction rounded to float32, as smp needs it.
fn float32(values: &ArrayD<f64>) -> Tensor {
    Tensor::Float32(values.mapv(|value| value as f32))
}

/// Loss and gradient of two calls agree to rounding.
fn same_output(a: &Call, b: &Call) -> Result<(), TestCaseError> {
    let (a, b) = (a.run(), b.run());
    nearly_equal(&a.loss, &b.loss).map_err(TestCaseError::fail)?;
    nearly_equal(&a.grad_input, &b.grad_input).map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn gradients_match_finite_differences(binary in binaries(), multiclass in multiclasses(), mcc in mccs()) {
        let calls = [
            binary.kornia(Tensor::Float64(binary.pred())),
            multiclass.kornia(Tensor::Float64(multiclass.pred()), false),
            multiclass.kornia(Tensor::Float64(multiclass.pred()), true),
            mcc.call(),
        ];
        for call in calls {
            if let Err(report) = check_gradient(&call, &[], usize::MAX) {
                return Err(TestCaseError::fail(format!("{}: {report}", call.loss)));
            }
        }
    }

    #[test]
    fn lovasz_losses_are_non_negative_and_zero_for_confident_correct_logits(binary in binaries(), multiclass in multiclasses()) {
        for call in [binary.kornia(Tensor::Float64(binary.pred())), binary.smp(false), binary.smp(true), multiclass.kornia(Tensor::Float64(multiclass.pred()), true)] {
            let loss = call.run().loss.sum();
            prop_assert!(loss >= 0.0, "{}: {loss}", call.loss);
        }
        let confident = binary.target().mapv(|label| 2.0 * label as f64 - 1.0).insert_axis(Axis(1)) * 1.5;
        let call = binary.kornia(Tensor::Float64(confident));
        prop_assert_eq!(call.run().loss.sum(), 0.0);
    }

    #[test]
    fn kornia_hinge_is_smp_binary_per_image(binary in binaries()) {
        same_output(&binary.kornia(float32(&binary.pred())), &binary.smp(true))?;
    }

    #[test]
    fn smp_pooled_binary_is_one_image_of_the_whole_batch(binary in binaries()) {
        let [batch, height, width] = binary.shape;
        let mut whole = binary.clone();
        whole.shape = [1, batch * height, width];
        let pooled = binary.smp(false).run();
        let one_image = whole.smp(true).run();
        nearly_equal(&pooled.loss, &one_image.loss).map_err(TestCaseError::fail)?;
        let reshaped = one_image.grad_input.into_shape_with_order(pooled.grad_input.shape()).unwrap();
        nearly_equal(&pooled.grad_input, &reshaped).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn kornia_softmax_is_smp_multiclass_per_image_when_every_class_is_present(
        multiclass in multiclasses().prop_filter("every class present", Multiclass::every_class_in_every_image)
    ) {
        let params = BTreeMap::from([
            ("mode".to_string(), json!("multiclass")),
            ("per_image".to_string(), json!(true)),
        ]);
        let smp = call(
            "smp.LovaszLoss",
            ("y_pred", float32(&multiclass.pred())),
            ("y_true", Tensor::Int64(multiclass.target())),
            params,
            multiclass.grad_scalar,
        );
        same_output(&multiclass.kornia(float32(&multiclass.pred()), false), &smp)?;
    }

    #[test]
    fn ignored_pixels_are_inert(binary in binaries(), replacement in prop::sample::select(vec![7.5f32, -30.0])) {
        // Ignore the first image: its logits may change freely, and get no gradient.
        let mut ignored = binary.clone();
        let per_image = binary.labels.len() / binary.shape[0];
        ignored.labels[..per_image].fill(255);
        let mut call = ignored.smp(false);
        call.params.insert("ignore_index".into(), json!(255));
        let original = call.run();
        let mut changed_logits = ignored.pred().mapv(|value| value as f32);
        changed_logits.as_slice_mut().unwrap()[..per_image].fill(replacement);
        call.tensors.insert("y_pred".into(), Tensor::Float32(changed_logits));
        let changed = call.run();
        nearly_equal(&changed.loss, &original.loss).map_err(TestCaseError::fail)?;
        nearly_equal(&changed.grad_input, &original.grad_input).map_err(TestCaseError::fail)?;
        prop_assert!(original.grad_input.iter().take(per_image).all(|&grad| grad == 0.0));
    }

    #[test]
    fn backward_is_bit_reproducible(binary in binaries(), multiclass in multiclasses(), mcc in mccs()) {
        for call in [binary.smp(false), multiclass.kornia(Tensor::Float64(multiclass.pred()), true), mcc.call()] {
            let (first, second) = (call.run(), call.run());
            let bits = |values: &ArrayD<f64>| values.iter().map(|value| value.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&first.loss), bits(&second.loss));
            prop_assert_eq!(bits(&first.grad_input), bits(&second.grad_input));
        }
    }
}
