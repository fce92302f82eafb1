//! insta snapshots: the fixture case inventory and the text of every error kind.

use std::path::{Path, PathBuf};

use segloss::error::{Error, Rejection};
use segloss::fixtures::{ExpectedEntry, Fixtures};
use segloss::tensor::DType;

#[test]
fn case_inventory() {
    let fixtures = Fixtures::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")).unwrap();
    let inventory: Vec<String> = fixtures
        .manifest
        .cases
        .iter()
        .map(|case| match &case.expected {
            ExpectedEntry::Values { .. } => case.id.clone(),
            ExpectedEntry::Error { kind, .. } => format!("{} -> {kind}", case.id),
        })
        .collect();
    insta::assert_snapshot!(inventory.join("\n"));
}

#[test]
fn error_messages() {
    let path = PathBuf::from("fixtures/manifest.json");
    let rejections = [
        Rejection::TargetOutOfBounds {
            value: 3,
            classes: 3,
        },
        Rejection::TargetDtype {
            got: DType::Float32,
        },
        Rejection::ProbabilityTargetDtype { got: DType::Int64 },
        Rejection::BatchSizeMismatch {
            input: 4,
            target: 3,
        },
        Rejection::TargetRank {
            got: 2,
            expected: 1,
            input: vec![4, 3],
        },
        Rejection::TargetShapeMismatch {
            expected: vec![2, 3, 4],
            got: vec![2, 3, 5],
        },
        Rejection::WeightLength {
            classes: 3,
            got: vec![4],
        },
        Rejection::WeightDtype {
            expected: DType::Float64,
            got: DType::Float32,
        },
        Rejection::InputDtype { got: DType::Int64 },
        Rejection::InputRank { got: 0, min: 1 },
        Rejection::IgnoreIndexWithProbabilities { value: 0 },
        Rejection::LabelSmoothingRange { value: 1.5 },
        Rejection::ProbabilityOutOfRange {
            argument: "input".into(),
            value: 1.5,
        },
        Rejection::TargetDtypeMismatch {
            expected: DType::Float64,
            got: DType::Int64,
        },
        Rejection::BroadcastShape {
            name: "pos_weight".into(),
            shape: vec![3],
            to: vec![2, 3, 3, 4],
        },
        Rejection::AlphaRange { value: -0.5 },
        Rejection::PerClassLength {
            name: "alpha".into(),
            classes: 3,
            got: 2,
        },
        Rejection::NegativeParameter {
            name: "lambda_dice".into(),
            value: -1.0,
        },
        Rejection::UnsupportedOption {
            option: "class_weights".into(),
            context: "with mode=binary".into(),
        },
        Rejection::InvalidOption {
            name: "mode".into(),
            value: "binry".into(),
            allowed: "binary, multiclass, multilabel",
        },
        Rejection::ClassIndexDtype { got: DType::Int32 },
        Rejection::MissingParameter {
            name: "alpha".into(),
        },
        Rejection::InvalidOption {
            name: "mode".into(),
            value: "foo".into(),
            allowed: "binary, multiclass, multilabel",
        },
        Rejection::UnsupportedOption {
            option: "sigmoid=True".into(),
            context: "together with softmax=True".into(),
        },
        Rejection::SelectedClassOutOfBounds {
            index: 3,
            classes: 3,
        },
        Rejection::ClassIndexDtype {
            got: DType::Float64,
        },
        Rejection::NegativeParameter {
            name: "weight".into(),
            value: -0.5,
        },
        Rejection::InputShape {
            expected: "(B, C, H, W)",
            got: vec![1, 3, 2, 3, 2],
        },
        Rejection::NotSpecified {
            what: "DiceCELoss of a single channel (its BCEWithLogitsLoss part)".into(),
        },
        Rejection::InvalidReduction {
            value: "avg".into(),
        },
        Rejection::Float32Only {
            got: DType::Float64,
        },
        Rejection::BoolSubtraction { argument: "y_true" },
        Rejection::TooFewClasses {
            shape: vec![2, 1, 3, 4],
        },
        Rejection::UnexpectedShape {
            argument: "pred",
            expected: "(B, C, H, W)",
            got: vec![2, 3, 2, 2, 3],
        },
        Rejection::EmptyReshape {
            argument: "pred",
            shape: vec![0, 3, 3, 4],
        },
        Rejection::PairingMismatch {
            prediction: vec![2, 1, 3, 4],
            target: vec![2, 3, 5],
        },
        Rejection::VoidAfterScored {
            image: 1,
            classes: 3,
        },
        Rejection::GradOutputShape {
            expected: vec![],
            got: vec![4],
        },
        Rejection::UnknownLoss {
            name: "dice".into(),
            known: "cross_entropy, nll_loss".into(),
        },
        Rejection::UnknownParameter {
            loss: "nll_loss".into(),
            name: "label_smoothing".into(),
            accepted: "reduction, ignore_index".into(),
        },
        Rejection::ParameterType {
            name: "ignore_index".into(),
            expected: "an integer",
            got: "\"one\"".into(),
        },
        Rejection::MissingParameter {
            name: "mode".into(),
        },
        Rejection::MissingTensor {
            name: "target".into(),
        },
    ];
    let harness = [
        Error::Io {
            path: path.clone(),
            message: "No such file or directory (os error 2)".into(),
        },
        Error::Npy {
            path: path.clone(),
            message: "unreadable header".into(),
        },
        Error::Manifest {
            path: path.clone(),
            message: "missing field `cases`".into(),
        },
        Error::SchemaVersion {
            path: path.clone(),
            found: 2,
            supported: 1,
        },
        Error::Adapter {
            command: "python3 adapter.py".into(),
            reason: "no hello: the adapter closed its output (exit status: 1)".into(),
        },
        Error::UnknownImplementation {
            name: "candle".into(),
            known: "reference".into(),
        },
        Error::Checksum {
            path,
            expected: "ab12".into(),
            actual: "cd34".into(),
        },
    ];
    let text: Vec<String> = rejections
        .into_iter()
        .map(Error::from)
        .chain(harness)
        .map(|error| format!("{}: {error}", error.kind()))
        .collect();
    insta::assert_snapshot!(text.join("\n"));
}
