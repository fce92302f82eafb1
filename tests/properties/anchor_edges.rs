//! Calls that used to panic the reference, each answered as its anchor answers it (the anchor's
//! value, or a rejection of the kind its message maps to): zero classes, Fortran-order and
//! strided arrays, targets without a channel axis, and clamp bounds that cross.

use std::collections::BTreeMap;

use ndarray::{ArrayD, Axis, IxDyn, Slice};
use segloss::catalog::{evaluate, LossCall};
use segloss::spec::LossOutput;
use segloss::tensor::Tensor;
use serde_json::{json, Value};

use crate::common::nearly_equal;

/// Evaluates `loss` on named tensors and JSON parameters.
fn run(loss: &str, tensors: &[(&str, Tensor)], params: Value) -> Result<LossOutput, String> {
    let params: BTreeMap<String, Value> = params
        .as_object()
        .map(|object| object.clone().into_iter().collect())
        .unwrap_or_default();
    evaluate(&LossCall {
        loss: loss.to_string(),
        params,
        tensors: tensors
            .iter()
            .map(|(name, tensor)| (name.to_string(), tensor.clone()))
            .collect(),
        grad_output: None,
    })
    .map_err(|rejection| rejection.kind().to_string())
}

/// The kind of the rejection, or a description of the value it returned instead.
fn kind(result: Result<LossOutput, String>) -> String {
    match result {
        Ok(output) => format!("a value of shape {:?}", output.loss.shape()),
        Err(kind) => kind,
    }
}

/// The 0-d loss of a call that must succeed.
fn scalar(result: Result<LossOutput, String>) -> f64 {
    let output = result.expect("the anchor returns a value");
    assert!(output.loss.shape().is_empty(), "{:?}", output.loss.shape());
    output.loss.iter().copied().sum()
}

/// float64 values of a shape, varied and reproducible.
fn values(shape: &[usize]) -> ArrayD<f64> {
    let count: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        (0..count).map(|i| (i as f64 * 0.73).sin()).collect(),
    )
    .expect("count matches the shape")
}

fn f64s(shape: &[usize]) -> Tensor {
    Tensor::Float64(values(shape))
}

/// Probabilities in (0, 1).
fn probabilities(shape: &[usize]) -> Tensor {
    Tensor::Float64(values(shape).mapv(|value| (value + 1.0) / 2.2 + 0.02))
}

/// Class indices in [0, classes).
fn labels(shape: &[usize], classes: i64) -> Tensor {
    let count: usize = shape.iter().product();
    Tensor::Int64(
        ArrayD::from_shape_vec(
            IxDyn(shape),
            (0..count as i64).map(|i| (i * 7 + 1) % classes).collect(),
        )
        .expect("count matches the shape"),
    )
}

fn zeros(shape: &[usize]) -> Tensor {
    Tensor::Float64(ArrayD::zeros(IxDyn(shape)))
}

/// The same tensor in NumPy's Fortran order (what `np.save` writes for a transposed array).
fn fortran(tensor: &Tensor) -> Tensor {
    match tensor {
        Tensor::Float64(array) => Tensor::Float64(
            array
                .view()
                .reversed_axes()
                .as_standard_layout()
                .into_owned()
                .reversed_axes(),
        ),
        Tensor::Int64(array) => Tensor::Int64(
            array
                .view()
                .reversed_axes()
                .as_standard_layout()
                .into_owned()
                .reversed_axes(),
        ),
        other => panic!("no Fortran copy of a {} tensor here", other.dtype()),
    }
}

/// The same tensor as every second row of an array twice as long on axis 0.
fn strided(tensor: &Tensor) -> Tensor {
    fn spread<A: Clone + Default>(array: &ArrayD<A>) -> ArrayD<A> {
        let mut shape = array.shape().to_vec();
        shape[0] *= 2;
        let mut doubled = ArrayD::from_elem(IxDyn(&shape), A::default());
        doubled
            .slice_axis_mut(Axis(0), Slice::new(0, None, 2))
            .assign(array);
        doubled.slice_axis_move(Axis(0), Slice::new(0, None, 2))
    }
    match tensor {
        Tensor::Float64(array) => Tensor::Float64(spread(array)),
        Tensor::Int64(array) => Tensor::Int64(spread(array)),
        other => panic!("no strided copy of a {} tensor here", other.dtype()),
    }
}

#[test]
fn zero_classes_give_the_anchors_empty_results() {
    let (pred, target) = (zeros(&[2, 0, 3]), zeros(&[2, 0, 3]));
    // kornia 0.9: none → an empty (2, 0, 3) map, mean → NaN (0/0), sum → 0.
    let kornia = |reduction: &str| {
        run(
            "kornia.binary_focal_loss_with_logits",
            &[("pred", pred.clone()), ("target", target.clone())],
            json!({ "reduction": reduction }),
        )
    };
    assert_eq!(kornia("none").unwrap().loss.shape(), &[2, 0, 3]);
    assert!(scalar(kornia("mean")).is_nan());
    assert_eq!(scalar(kornia("sum")), 0.0);
    // MONAI 1.6 with ignore_index (0, 1 or −100; sigmoid or softmax): none → (2, 0, 3), mean and
    // sum → 0 (the mean divides by the kept positions); without ignore_index the mean is NaN.
    for ignore_index in [0, 1, -100] {
        for use_softmax in [false, true] {
            let monai = |reduction: &str| {
                run(
                    "monai.FocalLoss",
                    &[("input", pred.clone()), ("target", target.clone())],
                    json!({ "reduction": reduction, "ignore_index": ignore_index, "use_softmax": use_softmax }),
                )
            };
            assert_eq!(monai("none").unwrap().loss.shape(), &[2, 0, 3]);
            assert_eq!(scalar(monai("mean")), 0.0);
            assert_eq!(scalar(monai("sum")), 0.0);
        }
    }
    let plain = run(
        "monai.FocalLoss",
        &[("input", pred.clone()), ("target", target.clone())],
        json!({}),
    );
    assert!(scalar(plain).is_nan());
}

#[test]
fn smp_overlap_losses_reject_empty_reshapes_as_smp_does() {
    for loss in ["smp.DiceLoss", "smp.JaccardLoss", "smp.TverskyLoss"] {
        let smp = |mode: &str, y_pred: Tensor, y_true: Tensor| {
            run(
                loss,
                &[("y_pred", y_pred), ("y_true", y_true)],
                json!({ "mode": mode }),
            )
        };
        // smp 0.6: reshape(bs, C, -1) of zero classes, or reshape(0, -1) of an empty batch, fails.
        let empty = "empty_reshape";
        assert_eq!(
            kind(smp("multiclass", zeros(&[2, 0, 3]), labels(&[2, 3], 1))),
            empty
        );
        assert_eq!(
            kind(smp("multiclass", zeros(&[2, 0]), labels(&[2], 1))),
            empty
        );
        assert_eq!(
            kind(smp("multilabel", zeros(&[2, 0, 3]), zeros(&[2, 0, 3]))),
            empty
        );
        assert_eq!(
            kind(smp("multiclass", zeros(&[0, 3, 2]), labels(&[0, 2], 3))),
            empty
        );
        assert_eq!(
            kind(smp("binary", zeros(&[0, 1, 2]), zeros(&[0, 1, 2]))),
            empty
        );
        assert_eq!(
            kind(smp("multilabel", zeros(&[0, 3, 2]), zeros(&[0, 3, 2]))),
            empty
        );
        // … while binary mode reads zero channels as one empty channel, and zero positions pass:
        // every class is absent, so the loss is 0.
        assert_eq!(
            scalar(smp("binary", zeros(&[2, 0, 3]), zeros(&[2, 0, 3]))),
            0.0
        );
        assert_eq!(
            scalar(smp("multiclass", zeros(&[2, 3, 0]), labels(&[2, 0], 3))),
            0.0
        );
        assert_eq!(
            scalar(smp("multilabel", zeros(&[2, 3, 0]), zeros(&[2, 3, 0]))),
            0.0
        );
    }
}

/// A valid call of each overlap loss and of smp's SoftCrossEntropyLoss, on (2, 3, 2, 2)
/// predictions.
fn layout_cases() -> Vec<(&'static str, [&'static str; 2], Tensor, Tensor, Value)> {
    let shape = [2, 3, 2, 2];
    let class_indices = labels(&[2, 2, 2], 3);
    let one_hot_like = probabilities(&shape);
    let mut cases = vec![
        (
            "segloss.soft_dice",
            ["input", "target"],
            probabilities(&shape),
            one_hot_like.clone(),
            json!({}),
        ),
        (
            "segloss.soft_iou",
            ["input", "target"],
            probabilities(&shape),
            one_hot_like.clone(),
            json!({}),
        ),
    ];
    for loss in ["smp.DiceLoss", "smp.JaccardLoss", "smp.TverskyLoss"] {
        cases.push((
            loss,
            ["y_pred", "y_true"],
            f64s(&shape),
            one_hot_like.clone(),
            json!({"mode": "multilabel"}),
        ));
        cases.push((
            loss,
            ["y_pred", "y_true"],
            f64s(&shape),
            class_indices.clone(),
            json!({"mode": "multiclass", "ignore_index": 2}),
        ));
    }
    for loss in [
        "monai.DiceLoss",
        "monai.GeneralizedDiceLoss",
        "monai.TverskyLoss",
        "monai.DiceCELoss",
        "monai.DiceFocalLoss",
    ] {
        cases.push((
            loss,
            ["input", "target"],
            f64s(&shape),
            one_hot_like.clone(),
            json!({"sigmoid": true}),
        ));
    }
    cases.push((
        "monai.DiceLoss",
        ["input", "target"],
        f64s(&shape),
        labels(&[2, 1, 2, 2], 3),
        json!({"softmax": true, "to_onehot_y": true, "ignore_index": 1}),
    ));
    cases.push((
        "kornia.dice_loss",
        ["pred", "target"],
        f64s(&shape),
        class_indices.clone(),
        json!({"average": "macro"}),
    ));
    cases.push((
        "kornia.tversky_loss",
        ["pred", "target"],
        f64s(&shape),
        class_indices.clone(),
        json!({"alpha": 0.3, "beta": 0.7}),
    ));
    cases.push((
        "smp.SoftCrossEntropyLoss",
        ["y_pred", "y_true"],
        f64s(&shape),
        class_indices,
        json!({"smooth_factor": 0.1, "reduction": "none"}),
    ));
    cases
}

#[test]
fn fortran_order_and_strided_arrays_give_the_same_results() {
    for (loss, [prediction, target], pred, truth, params) in layout_cases() {
        let expected = run(
            loss,
            &[(prediction, pred.clone()), (target, truth.clone())],
            params.clone(),
        )
        .unwrap_or_else(|kind| panic!("{loss}: rejected {kind}"));
        for (layout, relayout) in [
            ("Fortran order", fortran as fn(&Tensor) -> Tensor),
            ("strided", strided),
        ] {
            let moved = run(
                loss,
                &[(prediction, relayout(&pred)), (target, relayout(&truth))],
                params.clone(),
            )
            .unwrap_or_else(|kind| panic!("{loss} in {layout}: rejected {kind}"));
            nearly_equal(&moved.loss, &expected.loss)
                .unwrap_or_else(|error| panic!("{loss} in {layout}: {error}"));
            nearly_equal(&moved.grad_input, &expected.grad_input)
                .unwrap_or_else(|error| panic!("{loss} in {layout}: {error}"));
        }
    }
}

#[test]
fn the_spec_itself_reads_fortran_order() {
    use segloss::spec::overlap::smp::{loss as smp_loss, SmpOptions, SmpScore};
    use segloss::spec::smp::SmpMode;
    let (pred, truth) = (f64s(&[2, 3, 2, 2]), probabilities(&[2, 3, 2, 2]));
    let options = SmpOptions {
        mode: SmpMode::Multilabel,
        ..SmpOptions::default()
    };
    let expected = smp_loss(SmpScore::Dice, &pred, &truth, &options, None).unwrap();
    let moved = smp_loss(
        SmpScore::Dice,
        &fortran(&pred),
        &fortran(&truth),
        &options,
        None,
    )
    .unwrap();
    nearly_equal(&moved.loss, &expected.loss).unwrap();
    nearly_equal(&moved.grad_input, &expected.grad_input).unwrap();
}

#[test]
fn monai_focal_targets_without_a_channel_axis_follow_monai() {
    let input = zeros(&[2, 3]);
    let focal = |target: Tensor, params: Value| {
        run(
            "monai.FocalLoss",
            &[("input", input.clone()), ("target", target)],
            params,
        )
    };
    let (flat, scalar_target) = (zeros(&[2]), zeros(&[]));
    // MONAI 1.6: "ground truth has different shape" …
    assert_eq!(
        kind(focal(flat.clone(), json!({}))),
        "target_shape_mismatch"
    );
    assert_eq!(
        kind(focal(scalar_target.clone(), json!({}))),
        "target_shape_mismatch"
    );
    assert_eq!(
        kind(focal(scalar_target.clone(), json!({"to_onehot_y": true}))),
        "target_shape_mismatch"
    );
    assert_eq!(
        kind(focal(
            scalar_target.clone(),
            json!({"to_onehot_y": true, "include_background": false})
        )),
        "target_shape_mismatch"
    );
    // … "tuple index out of range" (create_ignore_mask reads target.shape[1]) …
    for target in [flat.clone(), scalar_target.clone()] {
        assert_eq!(
            kind(focal(target.clone(), json!({"ignore_index": 0}))),
            "unexpected_shape"
        );
        assert_eq!(
            kind(focal(
                target,
                json!({"ignore_index": 0, "to_onehot_y": true})
            )),
            "unexpected_shape"
        );
    }
    // … "too many indices for tensor of dimension 1" (target[:, 1:]) …
    for target in [flat.clone(), scalar_target] {
        assert_eq!(
            kind(focal(target, json!({"include_background": false}))),
            "unsupported_option"
        );
    }
    // … and one_hot makes a (B,) label vector (B, 1) first: MONAI returns ln 2 / 4 for zero
    // logits (one positive of three channels at p = ½, (1 − ½)² weighting, the mean of six).
    for include_background in [true, false] {
        let loss = scalar(focal(
            flat.clone(),
            json!({"to_onehot_y": true, "include_background": include_background}),
        ));
        assert!((loss - std::f64::consts::LN_2 / 4.0).abs() < 1e-7, "{loss}");
    }
}

#[test]
fn smp_focal_clamp_bounds_that_cross_give_one_minus_eps() {
    // torch.clamp(p, eps, 1 − eps) with eps > ½ is 1 − eps everywhere, with a zero gradient.
    let y_pred = probabilities(&[2, 1, 4]);
    let y_true = Tensor::Float64(values(&[2, 1, 4]).mapv(|value| f64::from(u8::from(value > 0.0))));
    let focal = |y_pred: Tensor, eps: f64| {
        run(
            "smp.FocalLoss",
            &[("y_pred", y_pred), ("y_true", y_true.clone())],
            json!({"mode": "binary", "from_logits": false, "eps": eps}),
        )
        .unwrap()
    };
    let crossed = focal(y_pred.clone(), 0.6);
    let flat = focal(
        Tensor::Float64(ArrayD::from_elem(IxDyn(&[2, 1, 4]), 0.4)),
        1e-7,
    );
    nearly_equal(&crossed.loss, &flat.loss).unwrap();
    assert!(crossed.grad_input.iter().all(|&grad| grad == 0.0));
    // eps > 1: the clamp gives a negative p, log(p / (1 − p)) is NaN, and still no gradient passes.
    let beyond = focal(y_pred, 1.5);
    assert!(beyond.loss.iter().all(|loss| loss.is_nan()));
    assert!(beyond.grad_input.iter().all(|&grad| grad == 0.0));
}

#[test]
fn a_zero_dimensional_probability_input_is_rejected() {
    // PyTorch's cross_entropy of a 0-d input and a 0-d float target fails in log_softmax over
    // dim 1 (an IndexError); the reference rejects the input's rank.
    let result = run(
        "cross_entropy",
        &[("input", zeros(&[])), ("target", zeros(&[]))],
        json!({}),
    );
    assert_eq!(kind(result), "input_rank");
}

#[test]
fn one_hot_targets_are_not_built_beyond_the_input() {
    // A label target whose one-hot encoding would hold 10^10 values, beside inputs of 10^5: the
    // anchors' shape checks reject it, and the reference does so without building it.
    let wide = zeros(&[1, 100_000, 1]);
    let tall = zeros(&[100_000, 1, 1]);
    for loss in ["monai.FocalLoss", "monai.DiceLoss", "monai.DiceFocalLoss"] {
        let result = run(
            loss,
            &[("input", wide.clone()), ("target", tall.clone())],
            json!({"to_onehot_y": true}),
        );
        assert_eq!(kind(result), "target_shape_mismatch", "{loss}");
    }
    let result = run(
        "smp.DiceLoss",
        &[
            ("y_pred", zeros(&[2, 100_000, 1])),
            ("y_true", labels(&[2, 100_000], 1)),
        ],
        json!({"mode": "multiclass"}),
    );
    assert_eq!(kind(result), "target_shape_mismatch");
}

#[test]
fn a_class_selection_counts_each_selected_class_once_per_selection() {
    // smp averages loss[classes]: selecting [2, 2, −1, 0] of three classes weights class 2 three
    // times and class 0 once, which class_weights [1, 0, 3] say as well; a selection of 10^5
    // indices costs no more memory than the classes it names.
    let (y_pred, y_true) = (f64s(&[2, 3, 4, 4]), probabilities(&[2, 3, 4, 4]));
    let dice = |params: Value| {
        run(
            "smp.DiceLoss",
            &[("y_pred", y_pred.clone()), ("y_true", y_true.clone())],
            params,
        )
        .unwrap()
    };
    let selected = dice(json!({"mode": "multilabel", "classes": [2, 2, -1, 0]}));
    let weighted = dice(json!({"mode": "multilabel", "class_weights": [1.0, 0.0, 3.0]}));
    nearly_equal(&selected.loss, &weighted.loss).unwrap();
    nearly_equal(&selected.grad_input, &weighted.grad_input).unwrap();
    let once = dice(json!({"mode": "multilabel", "classes": [1]}));
    let many = dice(json!({"mode": "multilabel", "classes": vec![1; 100_000]}));
    nearly_equal(&many.loss, &once.loss).unwrap();
    nearly_equal(&many.grad_input, &once.grad_input).unwrap();
}

#[test]
fn a_lovasz_hinge_over_many_images_is_the_mean_of_their_hinges() {
    // One pixel per image: Δ = 1, so l_b = relu(1 − x_b·s_b) with s_b = 2t_b − 1, and the loss is
    // their mean. 10^5 images take milliseconds: each image's gradient holds its own pixel only
    // (a dense gradient per image made this 10^10 operations).
    let images = 100_000;
    let logits = values(&[images, 1, 1, 1]);
    let truth = values(&[images, 1, 1]).mapv(|value| f64::from(u8::from(value > 0.2)));
    let output = run(
        "kornia.lovasz_hinge_loss",
        &[
            ("pred", Tensor::Float64(logits.clone())),
            ("target", Tensor::Float64(truth.clone())),
        ],
        json!({}),
    )
    .unwrap();
    let signs: Vec<f64> = truth.iter().map(|&t| 2.0 * t - 1.0).collect();
    let errors: Vec<f64> = logits
        .iter()
        .zip(&signs)
        .map(|(x, s)| 1.0 - x * s)
        .collect();
    let mean = errors.iter().map(|&e| e.max(0.0)).sum::<f64>() / images as f64;
    let expected_grad = ArrayD::from_shape_vec(
        IxDyn(&[images, 1, 1, 1]),
        errors
            .iter()
            .zip(&signs)
            .map(|(&e, &s)| if e > 0.0 { -s / images as f64 } else { 0.0 })
            .collect(),
    )
    .unwrap();
    assert!((output.loss.sum() - mean).abs() < 1e-12 * mean.abs().max(1.0));
    nearly_equal(&output.grad_input, &expected_grad).unwrap();
}
