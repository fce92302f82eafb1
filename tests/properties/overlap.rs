//! Properties of the overlap losses (Dice, Jaccard, Tversky, generalized Dice) on generated inputs.
use ndarray::ArrayD;
use proptest::prelude::*;
use segloss::tensor::Tensor;
use serde_json::{json, Value};

use crate::common::{array, check_gradient, config, nearly_equal, Call};

/// The losses this module holds properties for.
pub const LOSSES: &[&str] = &[
    "segloss.soft_dice",
    "segloss.soft_iou",
    "smp.DiceLoss",
    "smp.JaccardLoss",
    "smp.TverskyLoss",
    "monai.DiceLoss",
    "monai.GeneralizedDiceLoss",
    "monai.TverskyLoss",
    "monai.DiceCELoss",
    "monai.DiceFocalLoss",
    "kornia.dice_loss",
    "kornia.tversky_loss",
];

/// The value of ignore_index in every problem: never a class.
const IGNORE: i64 = 255;

/// A segmentation problem `(N, C, H, W)`: logits, class labels with some positions ignored,
/// probabilities for the losses that take them, and a seeded direction for gradient checks.
#[derive(Debug, Clone)]
struct Problem {
    shape: Vec<usize>,
    logits: Vec<f64>,
    labels: Vec<i64>,
    ignored: Vec<bool>,
    grad_scalar: f64,
    direction: Vec<f64>,
}

/// Problems with 1 to 3 images, 2 to 4 classes, 1 to 3 × 1 to 3 positions, logits in [−3, 3] (no
/// saturated probability, so no clamp or kink is reached).
fn problems() -> impl Strategy<Value = Problem> {
    (1usize..=3, 2usize..=4, 1usize..=3, 1usize..=3)
        .prop_flat_map(|(batch, classes, height, width)| {
            let elements = batch * classes * height * width;
            let positions = batch * height * width;
            (
                Just(vec![batch, classes, height, width]),
                prop::collection::vec(-3.0..3.0f64, elements),
                prop::collection::vec(0..classes as i64, positions),
                prop::collection::vec(prop::bool::weighted(0.25), positions),
                0.5..2.0f64,
                prop::collection::vec(-1.0..1.0f64, elements),
            )
        })
        .prop_map(
            |(shape, logits, labels, ignored, grad_scalar, direction)| Problem {
                shape,
                logits,
                labels,
                ignored,
                grad_scalar,
                direction,
            },
        )
}

impl Problem {
    fn logits(&self) -> ArrayD<f64> {
        array(&self.shape, self.logits.clone())
    }

    /// Labels `(N, H, W)` with the ignored positions at [`IGNORE`] when `with_ignored`.
    fn labels(&self, with_ignored: bool) -> ArrayD<i64> {
        let values = self
            .labels
            .iter()
            .zip(&self.ignored)
            .map(|(&label, &ignored)| {
                if ignored && with_ignored {
                    IGNORE
                } else {
                    label
                }
            })
            .collect();
        let shape = [self.shape[0], self.shape[2], self.shape[3]];
        ArrayD::from_shape_vec(shape.to_vec(), values).unwrap()
    }

    /// The one-hot target `(N, C, H, W)` of the labels (nothing ignored).
    fn one_hot(&self) -> ArrayD<f64> {
        let labels = self.labels(false);
        ArrayD::from_shape_fn(self.shape.clone(), |index| {
            f64::from(u8::from(
                labels[[index[0], index[2], index[3]]] == index[1] as i64,
            ))
        })
    }

    /// softmax of the logits over the classes.
    fn probabilities(&self) -> ArrayD<f64> {
        segloss::spec::softmax::softmax(&self.logits(), 1)
    }

    /// A call of `loss` whose prediction (`prediction`) is `values`, with `params` and `target`.
    fn call(
        &self,
        loss: &'static str,
        names: (&'static str, &'static str),
        values: ArrayD<f64>,
        target: Tensor,
        params: &[(&str, Value)],
    ) -> Call {
        Call::new(
            loss,
            (names.0, Tensor::Float64(values)),
            (names.1, target),
            params
                .iter()
                .map(|(name, value)| (name.to_string(), value.clone()))
                .collect(),
            Some(ArrayD::from_elem(vec![], self.grad_scalar)),
        )
    }

    /// One representative call of every loss, on this problem's logits (or their softmax), with
    /// ignored positions where the loss takes an ignore_index.
    fn calls(&self) -> Vec<Call> {
        let labels = Tensor::Int64(self.labels(true));
        let label_map = Tensor::Int64(self.labels(true).insert_axis(ndarray::Axis(1)));
        let plain_map = Tensor::Int64(self.labels(false).insert_axis(ndarray::Axis(1)));
        let one_hot = Tensor::Float64(self.one_hot());
        let smp = ("y_pred", "y_true");
        let monai = ("input", "target");
        let kornia = ("pred", "target");
        let multiclass = [
            ("mode", json!("multiclass")),
            ("ignore_index", json!(IGNORE)),
        ];
        let softmax = [
            ("to_onehot_y", json!(true)),
            ("softmax", json!(true)),
            ("ignore_index", json!(IGNORE)),
        ];
        vec![
            self.call(
                "segloss.soft_dice",
                monai,
                self.probabilities(),
                one_hot.clone(),
                &[("smooth", json!(0.5))],
            ),
            self.call(
                "segloss.soft_iou",
                monai,
                self.probabilities(),
                one_hot,
                &[("smooth", json!(0.5))],
            ),
            self.call(
                "smp.DiceLoss",
                smp,
                self.logits(),
                labels.clone(),
                &multiclass,
            ),
            self.call(
                "smp.JaccardLoss",
                smp,
                self.logits(),
                labels.clone(),
                &[
                    multiclass[0].clone(),
                    ("log_loss", json!(true)),
                    multiclass[1].clone(),
                ],
            ),
            self.call(
                "smp.TverskyLoss",
                smp,
                self.logits(),
                labels.clone(),
                &[
                    multiclass[0].clone(),
                    multiclass[1].clone(),
                    ("alpha", json!(0.3)),
                    ("beta", json!(0.7)),
                    ("gamma", json!(1.5)),
                ],
            ),
            self.call(
                "monai.DiceLoss",
                monai,
                self.logits(),
                label_map.clone(),
                &softmax,
            ),
            self.call(
                "monai.GeneralizedDiceLoss",
                monai,
                self.logits(),
                plain_map.clone(),
                &softmax[..2],
            ),
            self.call(
                "monai.TverskyLoss",
                monai,
                self.logits(),
                label_map,
                &[
                    softmax[0].clone(),
                    softmax[1].clone(),
                    softmax[2].clone(),
                    ("alpha", json!(0.3)),
                    ("beta", json!(0.7)),
                ],
            ),
            self.call(
                "monai.DiceCELoss",
                monai,
                self.logits(),
                plain_map.clone(),
                &softmax[..2],
            ),
            // The focal part rounds its input to float32, which finite differences cannot see
            // through: here λ_focal = 0 and the focal part is checked by
            // `dice_focal_is_the_sum_of_its_parts` and the fixtures.
            self.call(
                "monai.DiceFocalLoss",
                monai,
                self.logits(),
                plain_map,
                &[
                    softmax[0].clone(),
                    softmax[1].clone(),
                    ("lambda_focal", json!(0.0)),
                ],
            ),
            self.call(
                "kornia.dice_loss",
                kornia,
                self.logits(),
                labels.clone(),
                &[("average", json!("macro")), ("ignore_index", json!(IGNORE))],
            ),
            self.call(
                "kornia.tversky_loss",
                kornia,
                self.logits(),
                labels,
                &[
                    ("alpha", json!(0.3)),
                    ("beta", json!(0.7)),
                    ("ignore_index", json!(IGNORE)),
                ],
            ),
        ]
    }

    /// The ignored positions as a mask over the prediction's elements.
    fn ignored_elements(&self) -> Vec<bool> {
        let ignored = array(
            &[self.shape[0], self.shape[2], self.shape[3]],
            self.ignored
                .iter()
                .map(|&i| f64::from(u8::from(i)))
                .collect(),
        );
        ArrayD::from_shape_fn(self.shape.clone(), |index| {
            ignored[[index[0], index[2], index[3]]] == 1.0
        })
        .iter()
        .copied()
        .collect()
    }
}

fn with_params(call: &Call, params: &[(&str, Value)]) -> Call {
    let mut call = call.clone();
    for (name, value) in params {
        call.params.insert(name.to_string(), value.clone());
    }
    call
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn gradients_match_finite_differences(problem in problems()) {
        let direction = array(&problem.shape, problem.direction.clone());
        for call in problem.calls() {
            if let Err(report) = check_gradient(&call, std::slice::from_ref(&direction), 36) {
                return Err(TestCaseError::fail(format!("{}: {report}", call.loss)));
            }
        }
    }

    #[test]
    fn ignored_positions_are_inert(problem in problems(), replacement in prop::sample::select(vec![7.5, -30.0])) {
        let ignored = problem.ignored_elements();
        for call in problem.calls().into_iter().filter(|call| call.params.contains_key("ignore_index")) {
            let changed_logits = ArrayD::from_shape_vec(
                problem.shape.clone(),
                call.prediction().iter().zip(&ignored).map(|(&logit, &is)| if is { replacement } else { logit }).collect(),
            ).unwrap();
            let (original, changed) = (call.run(), call.with_prediction(changed_logits).run());
            nearly_equal(&changed.loss, &original.loss).map_err(|e| TestCaseError::fail(format!("{}: {e}", call.loss)))?;
            for ((&before, &after), &is) in original.grad_input.iter().zip(changed.grad_input.iter()).zip(&ignored) {
                if is {
                    prop_assert!(before == 0.0 && after == 0.0, "{}: {before} {after}", call.loss);
                }
            }
        }
    }

    #[test]
    fn tversky_at_one_half_is_dice(problem in problems()) {
        let calls = problem.calls();
        let find = |loss: &str| calls.iter().find(|call| call.loss == loss).unwrap().clone();
        let half = [("alpha", json!(0.5)), ("beta", json!(0.5))];

        let smp_dice = find("smp.DiceLoss");
        let mut smp_tversky = with_params(&smp_dice, &half);
        smp_tversky.loss = "smp.TverskyLoss";
        let (dice, tversky) = (smp_dice.run(), smp_tversky.run());
        nearly_equal(&tversky.loss, &dice.loss).map_err(TestCaseError::fail)?;
        nearly_equal(&tversky.grad_input, &dice.grad_input).map_err(TestCaseError::fail)?;

        // kornia: α = β = ½ is the macro Dice with twice the eps.
        let kornia_tversky = with_params(&find("kornia.tversky_loss"), &half);
        let kornia_dice = with_params(&find("kornia.dice_loss"), &[("eps", json!(2e-8))]);
        nearly_equal(&kornia_tversky.run().loss, &kornia_dice.run().loss).map_err(TestCaseError::fail)?;

        // MONAI: equal without smoothing (with it, Tversky's smoothing is not Dice's 2·nr, 2·dr).
        let unsmoothed = [("smooth_nr", json!(0.0)), ("smooth_dr", json!(0.0))];
        let monai_dice = with_params(&find("monai.DiceLoss"), &unsmoothed);
        let mut monai_tversky = with_params(&monai_dice, &half);
        monai_tversky.loss = "monai.TverskyLoss";
        nearly_equal(&monai_tversky.run().loss, &monai_dice.run().loss).map_err(TestCaseError::fail)?;
    }

    /// MONAI's DiceFocalLoss is λ_dice·DiceLoss + λ_focal·FocalLoss on the one-hot target, the
    /// focal part sigmoid whatever `softmax` says, the Dice part's unreduced loss broadcast over
    /// the positions: loss and gradient, with and without the background.
    #[test]
    fn dice_focal_is_the_sum_of_its_parts(
        problem in problems(),
        reduction in prop::sample::select(vec!["none", "mean", "sum"]),
        include_background in any::<bool>(),
        batch in any::<bool>(),
    ) {
        let classes = problem.shape[1] - usize::from(!include_background);
        // One remaining class takes a number: the focal part rejects a sequence there.
        let weight = if classes == 1 {
            json!(0.8)
        } else {
            json!((0..classes).map(|class| 0.5 + 0.25 * class as f64).collect::<Vec<_>>())
        };
        let shared = [
            ("include_background", json!(include_background)),
            ("to_onehot_y", json!(true)),
            ("weight", weight),
            ("reduction", json!(reduction)),
        ];
        let (lambda_dice, lambda_focal) = (0.7, 0.4);
        let target = Tensor::Int64(problem.labels(false).insert_axis(ndarray::Axis(1)));
        let run = |loss: &'static str, own: &[(&str, Value)]| {
            let mut call = problem.call(loss, ("input", "target"), problem.logits(), target.clone(), &shared);
            call.grad_output = None;
            with_params(&call, own).run()
        };
        let dice_params = [("softmax", json!(true)), ("batch", json!(batch))];
        let composed = run(
            "monai.DiceFocalLoss",
            &[
                dice_params[0].clone(),
                dice_params[1].clone(),
                ("gamma", json!(1.5)),
                ("alpha", json!(0.3)),
                ("lambda_dice", json!(lambda_dice)),
                ("lambda_focal", json!(lambda_focal)),
            ],
        );
        let dice = run("monai.DiceLoss", &dice_params);
        let focal = run("monai.FocalLoss", &[("gamma", json!(1.5)), ("alpha", json!(0.3))]);
        let dice_loss = dice.loss.broadcast(focal.loss.raw_dim()).unwrap().to_owned();
        let expected = dice_loss * lambda_dice + &focal.loss * lambda_focal;
        nearly_equal(&composed.loss, &expected).map_err(TestCaseError::fail)?;
        if reduction != "none" {
            let gradient = dice.grad_input * lambda_dice + focal.grad_input * lambda_focal;
            nearly_equal(&composed.grad_input, &gradient).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn textbook_iou_is_dice_over_two_minus_dice(problem in problems()) {
        let calls = problem.calls();
        let unreduced = |loss: &str| {
            let call = calls.iter().find(|call| call.loss == loss).unwrap();
            let mut call = with_params(call, &[("smooth", json!(0.0)), ("reduction", json!("none"))]);
            call.grad_output = None;
            call.run().loss
        };
        let dice = unreduced("segloss.soft_dice").mapv(|loss| 1.0 - loss);
        let iou = unreduced("segloss.soft_iou").mapv(|loss| 1.0 - loss);
        nearly_equal(&iou, &dice.mapv(|d| d / (2.0 - d))).map_err(TestCaseError::fail)?;
        prop_assert!(dice.iter().all(|&d| (0.0..=1.0).contains(&d)), "{dice:?}");
    }

    #[test]
    fn a_perfect_prediction_has_zero_loss(problem in problems()) {
        for loss in ["segloss.soft_dice", "segloss.soft_iou"] {
            let call = problem.calls().into_iter().find(|call| call.loss == loss).unwrap();
            let perfect = call.with_prediction(problem.one_hot()).run();
            prop_assert!(perfect.loss.iter().all(|&value| value.abs() < 1e-15), "{loss}: {:?}", perfect.loss);
        }
    }
}
