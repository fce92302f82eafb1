//! insta snapshots: the fixture case inventory and the text of every error kind.

use std::path::{Path, PathBuf};

use segloss::fixtures::{ExpectedEntry, Fixtures};
use segloss::tensor::DType;
use segloss::Error;

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
    let examples = [
        Error::TargetOutOfBounds {
            value: 3,
            classes: 3,
        },
        Error::TargetDtype {
            got: DType::Float32,
        },
        Error::ProbabilityTargetDtype { got: DType::Int64 },
        Error::BatchSizeMismatch {
            input: 4,
            target: 3,
        },
        Error::TargetRank {
            got: 2,
            expected: 1,
            input: vec![4, 3],
        },
        Error::TargetShapeMismatch {
            expected: vec![2, 3, 4],
            got: vec![2, 3, 5],
        },
        Error::WeightLength {
            classes: 3,
            got: vec![4],
        },
        Error::WeightDtype {
            expected: DType::Float64,
            got: DType::Float32,
        },
        Error::InputDtype { got: DType::Int64 },
        Error::InputRank { got: 0, min: 1 },
        Error::IgnoreIndexWithProbabilities { value: 0 },
        Error::LabelSmoothingRange { value: 1.5 },
        Error::ProbabilityOutOfRange {
            argument: "input".into(),
            value: 1.5,
        },
        Error::TargetDtypeMismatch {
            expected: DType::Float64,
            got: DType::Int64,
        },
        Error::BroadcastShape {
            name: "pos_weight".into(),
            shape: vec![3],
            to: vec![2, 3, 3, 4],
        },
        Error::AlphaRange { value: -0.5 },
        Error::PerClassLength {
            name: "alpha".into(),
            classes: 3,
            got: 2,
        },
        Error::NegativeParameter {
            name: "lambda_dice".into(),
            value: -1.0,
        },
        Error::UnsupportedOption {
            option: "class_weights".into(),
            context: "with mode=binary".into(),
        },
        Error::InvalidOption {
            name: "mode".into(),
            value: "binry".into(),
            allowed: "binary, multiclass, multilabel",
        },
        Error::ClassIndexDtype { got: DType::Int32 },
        Error::MissingParameter {
            name: "alpha".into(),
        },
        Error::InvalidOption {
            name: "mode".into(),
            value: "foo".into(),
            allowed: "binary, multiclass, multilabel",
        },
        Error::UnsupportedOption {
            option: "sigmoid=True".into(),
            context: "together with softmax=True".into(),
        },
        Error::SelectedClassOutOfBounds {
            index: 3,
            classes: 3,
        },
        Error::ClassIndexDtype {
            got: DType::Float64,
        },
        Error::NegativeParameter {
            name: "weight".into(),
            value: -0.5,
        },
        Error::InputShape {
            expected: "(B, C, H, W)",
            got: vec![1, 3, 2, 3, 2],
        },
        Error::NotSpecified {
            what: "DiceCELoss of a single channel (its BCEWithLogitsLoss part)".into(),
        },
        Error::InvalidReduction {
            value: "avg".into(),
        },
        Error::Float32Only {
            got: DType::Float64,
        },
        Error::BoolSubtraction { argument: "y_true" },
        Error::TooFewClasses {
            shape: vec![2, 1, 3, 4],
        },
        Error::UnexpectedShape {
            argument: "pred",
            expected: "(B, C, H, W)",
            got: vec![2, 3, 2, 2, 3],
        },
        Error::EmptyReshape {
            argument: "pred",
            shape: vec![0, 3, 3, 4],
        },
        Error::PairingMismatch {
            prediction: vec![2, 1, 3, 4],
            target: vec![2, 3, 5],
        },
        Error::VoidAfterScored {
            image: 1,
            classes: 3,
        },
        Error::GradOutputShape {
            expected: vec![],
            got: vec![4],
        },
        Error::UnknownLoss {
            name: "dice".into(),
            known: "cross_entropy, nll_loss".into(),
        },
        Error::UnknownParameter {
            loss: "nll_loss".into(),
            name: "label_smoothing".into(),
            accepted: "reduction, ignore_index".into(),
        },
        Error::ParameterType {
            name: "ignore_index".into(),
            expected: "an integer",
            got: "\"one\"".into(),
        },
        Error::MissingParameter {
            name: "mode".into(),
        },
        Error::MissingTensor {
            name: "target".into(),
        },
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
    let text: Vec<String> = examples
        .iter()
        .map(|error| format!("{}: {error}", error.kind()))
        .collect();
    insta::assert_snapshot!(text.join("\n"));
}
