//! The crate's errors, in two types.
//!
//! [`Rejection`] is what a loss rejects: each variant mirrors an error an anchor raises, names the
//! problem and carries the offending value, and [`Rejection::kind`] gives the stable identifier
//! that fixtures record for it. The spec and the catalog return only rejections.
//!
//! [`Error`] is everything else that can go wrong in the harness (files, manifests, adapters), and
//! wraps a rejection as [`Error::Rejected`], so `?` and [`Error::kind`] work across both.

use std::path::PathBuf;

use crate::tensor::DType;

/// An input a loss rejects, as its anchor rejects it.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Rejection {
    /// A class-index target lies outside `[0, C)` and is not the ignore_index.
    #[error("target {value} is out of bounds for {classes} classes (and is not ignore_index)")]
    TargetOutOfBounds {
        /// The offending target value.
        value: i64,
        /// The number of classes.
        classes: usize,
    },
    /// A class-index target whose dtype is not int64 (or uint8 where PyTorch reads uint8).
    #[error("class-index target must be int64 (uint8 is read only for (C) and (N, C) inputs without weighted mean label smoothing), got {got}")]
    TargetDtype {
        /// The target's dtype.
        got: DType,
    },
    /// A probability target (same shape as the input) that is not floating point.
    #[error("probability target (same shape as the input) must be floating point, got {got}")]
    ProbabilityTargetDtype {
        /// The target's dtype.
        got: DType,
    },
    /// Input and target disagree on the batch size.
    #[error("input batch size {input} does not match target batch size {target}")]
    BatchSizeMismatch {
        /// The input's batch size.
        input: usize,
        /// The target's batch size.
        target: usize,
    },
    /// The target has the wrong number of dimensions for the input.
    #[error("target has {got} dimensions, expected {expected} for an input of shape {input:?}")]
    TargetRank {
        /// The target's number of dimensions.
        got: usize,
        /// The number of dimensions a class-index target must have.
        expected: usize,
        /// The input's shape.
        input: Vec<usize>,
    },
    /// The target's shape does not match the input's (outside the class axis).
    #[error("target shape {got:?} does not match the expected {expected:?}")]
    TargetShapeMismatch {
        /// The shape the target must have.
        expected: Vec<usize>,
        /// The target's shape.
        got: Vec<usize>,
    },
    /// A class-weight vector whose length is not the number of classes.
    #[error("weight must have one entry per class ({classes}), got shape {got:?}")]
    WeightLength {
        /// The number of classes.
        classes: usize,
        /// The weight's shape.
        got: Vec<usize>,
    },
    /// A weight whose dtype differs from the input's.
    #[error("weight dtype {got} differs from the input dtype {expected}")]
    WeightDtype {
        /// The input's dtype.
        expected: DType,
        /// The weight's dtype.
        got: DType,
    },
    /// An input (logits, log-probabilities) that is not floating point.
    #[error("input must be floating point, got {got}")]
    InputDtype {
        /// The input's dtype.
        got: DType,
    },
    /// An input with too few dimensions.
    #[error("input must have at least {min} dimension(s), got {got}")]
    InputRank {
        /// The input's number of dimensions.
        got: usize,
        /// The minimum number of dimensions.
        min: usize,
    },
    /// `ignore_index` set (non-negative) together with probability targets.
    #[error(
        "ignore_index {value} is not supported with probability targets (only negative values are)"
    )]
    IgnoreIndexWithProbabilities {
        /// The ignore_index given.
        value: i64,
    },
    /// `label_smoothing` above 1.
    #[error("label_smoothing must be at most 1.0, got {value}")]
    LabelSmoothingRange {
        /// The label_smoothing given.
        value: f64,
    },
    /// A probability (BCE input or target) outside [0, 1], or NaN.
    #[error("all elements of {argument} must lie in [0, 1], got {value}")]
    ProbabilityOutOfRange {
        /// `input` or `target`.
        argument: String,
        /// The first offending value.
        value: f64,
    },
    /// A target whose dtype the loss cannot combine with the input's.
    #[error("target dtype {got} cannot be used with an input of dtype {expected} (a floating-point target of the accepted dtype is required)")]
    TargetDtypeMismatch {
        /// The input's dtype.
        expected: DType,
        /// The target's dtype.
        got: DType,
    },
    /// A tensor argument that does not broadcast to the shape it is applied to.
    #[error("{name} of shape {shape:?} does not broadcast to shape {to:?}")]
    BroadcastShape {
        /// The argument's name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The shape it must broadcast to.
        to: Vec<usize>,
    },
    /// A focal `alpha` outside what the anchor accepts.
    #[error("alpha must lie in [0, 1] or be exactly -1 (no weighting), got {value}")]
    AlphaRange {
        /// The alpha given.
        value: f64,
    },
    /// A per-class argument (alpha, weight, pos_weight) whose length is not the number of classes.
    #[error("{name} must hold one value per class ({classes}), got {got}")]
    PerClassLength {
        /// The argument's name.
        name: String,
        /// The number of classes (channels).
        classes: usize,
        /// The number of values given.
        got: usize,
    },
    /// An option the anchor does not support in this configuration: combined with another
    /// option's value (`classes with mode=binary`, `sigmoid=True together with softmax=True`) or
    /// for this input (a per-class weight for single-channel outputs).
    #[error("{option} is not supported {context}")]
    UnsupportedOption {
        /// The option.
        option: String,
        /// Where it is not supported, and why.
        context: String,
    },
    /// A class-index target that is not int64, for anchors that read int64 labels only (class
    /// labels to be one-hot encoded included).
    #[error("class-index target must be int64, got {got}")]
    ClassIndexDtype {
        /// The target's dtype.
        got: DType,
    },
    /// A parameter the anchor requires (it has no default) was not given.
    #[error("missing required parameter {name:?}")]
    MissingParameter {
        /// The parameter's name.
        name: String,
    },
    /// A string option outside the values the loss takes (smp's `mode`, kornia's `average`, MONAI's
    /// `w_type`, DiceCELoss's `reduction`).
    #[error("{name} must be one of {allowed}; got {value:?}")]
    InvalidOption {
        /// The option's name.
        name: String,
        /// The value given.
        value: String,
        /// The accepted values, comma-separated.
        allowed: &'static str,
    },
    /// A selected class (smp's `classes`) outside the channels.
    #[error("selected class {index} is out of bounds for {classes} classes")]
    SelectedClassOutOfBounds {
        /// The index given (Python indexing: negative ones count from the end).
        index: i64,
        /// The number of classes it indexes.
        classes: usize,
    },
    /// A parameter that must not be negative (class weights, DiceCELoss's `lambda_dice`, …).
    #[error("{name} must be no less than 0, got {value}")]
    NegativeParameter {
        /// The parameter.
        name: String,
        /// The (first) negative value.
        value: f64,
    },
    /// An input of a shape the loss does not take.
    #[error("input must have shape {expected}, got {got:?}")]
    InputShape {
        /// The shape the loss takes.
        expected: &'static str,
        /// The input's shape.
        got: Vec<usize>,
    },
    /// A call the anchor accepts but segloss does not specify (yet).
    #[error("not specified by segloss: {what}")]
    NotSpecified {
        /// What is not specified.
        what: String,
    },
    /// A reduction name that is not `none`, `mean` or `sum`.
    #[error("reduction must be one of none, mean, sum; got {value:?}")]
    InvalidReduction {
        /// The reduction given.
        value: String,
    },
    /// A prediction dtype the anchor cannot take: smp's Lovász loss computes its Lovász weights in
    /// float32 and takes their dot product with the errors, which must then be float32 too.
    #[error("the Lovász weights are float32 and need a float32 prediction, got {got}")]
    Float32Only {
        /// The prediction's dtype.
        got: DType,
    },
    /// A bool tensor where the anchor computes `1 − tensor`, which PyTorch refuses for bool.
    #[error("{argument} is bool, and 1 − {argument} is not defined for bool tensors")]
    BoolSubtraction {
        /// The tensor argument.
        argument: &'static str,
    },
    /// A softmax Lovász prediction with fewer than two classes (smp also reads a 3-D prediction
    /// `(N, C, L)` as a single sigmoid channel `(N, 1, C, L)`).
    #[error("the Lovász-softmax prediction needs at least 2 classes on axis 1 and, in smp, not exactly 3 dimensions; got shape {shape:?}")]
    TooFewClasses {
        /// The prediction's shape.
        shape: Vec<usize>,
    },
    /// A tensor whose number of dimensions or fixed axis size is not what the anchor requires.
    #[error("{argument} must have shape {expected}, got {got:?}")]
    UnexpectedShape {
        /// The tensor argument.
        argument: &'static str,
        /// The required layout, e.g. `(B, 1, H, W)`.
        expected: &'static str,
        /// Its shape.
        got: Vec<usize>,
    },
    /// A tensor without elements that the anchor reshapes with an inferred (−1) axis, which is
    /// ambiguous.
    #[error("{argument} of shape {shape:?} has no elements, and reshaping it with an inferred axis is ambiguous")]
    EmptyReshape {
        /// The tensor argument.
        argument: &'static str,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// A prediction and a target whose elements cannot be paired as the anchor pairs them
    /// (flattened, per batch or per image).
    #[error("prediction of shape {prediction:?} and target of shape {target:?} cannot be paired element by element")]
    PairingMismatch {
        /// The prediction's shape.
        prediction: Vec<usize>,
        /// The target's shape.
        target: Vec<usize>,
    },
    /// smp's per-image mean adds an all-ignored image's empty `(0, C)` result in place into the
    /// scalar sum of the images before it, which fails.
    #[error("image {image} has only ignored pixels and follows a scored image: its empty (0, {classes}) result cannot be added in place to the scalar running sum")]
    VoidAfterScored {
        /// The index of the all-ignored image.
        image: usize,
        /// The number of classes.
        classes: usize,
    },
    /// A grad_output whose shape is not the loss's.
    #[error("grad_output must have the loss's shape {expected:?}, got {got:?}")]
    GradOutputShape {
        /// The loss's shape.
        expected: Vec<usize>,
        /// The grad_output's shape.
        got: Vec<usize>,
    },
    /// A loss name segloss does not know.
    #[error("unknown loss {name:?}; known losses: {known}")]
    UnknownLoss {
        /// The name given.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A parameter the loss does not take.
    #[error("loss {loss} has no parameter {name:?}; it takes: {accepted}")]
    UnknownParameter {
        /// The loss.
        loss: String,
        /// The parameter name given.
        name: String,
        /// The accepted names, comma-separated.
        accepted: String,
    },
    /// A parameter whose value has the wrong type.
    #[error("parameter {name} must be {expected}, got {got}")]
    ParameterType {
        /// The parameter name.
        name: String,
        /// What the parameter must be.
        expected: &'static str,
        /// The value given.
        got: String,
    },
    /// A tensor argument the loss requires was not given.
    #[error("missing tensor argument {name:?}")]
    MissingTensor {
        /// The argument's name.
        name: String,
    },
}

impl Rejection {
    /// The stable snake_case identifier of this rejection's kind, as fixtures record it.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::TargetOutOfBounds { .. } => "target_out_of_bounds",
            Rejection::TargetDtype { .. } => "target_dtype",
            Rejection::ProbabilityTargetDtype { .. } => "probability_target_dtype",
            Rejection::BatchSizeMismatch { .. } => "batch_size_mismatch",
            Rejection::TargetRank { .. } => "target_rank",
            Rejection::TargetShapeMismatch { .. } => "target_shape_mismatch",
            Rejection::WeightLength { .. } => "weight_length",
            Rejection::WeightDtype { .. } => "weight_dtype",
            Rejection::InputDtype { .. } => "input_dtype",
            Rejection::InputRank { .. } => "input_rank",
            Rejection::IgnoreIndexWithProbabilities { .. } => "ignore_index_with_probabilities",
            Rejection::LabelSmoothingRange { .. } => "label_smoothing_range",
            Rejection::ProbabilityOutOfRange { .. } => "probability_out_of_range",
            Rejection::TargetDtypeMismatch { .. } => "target_dtype_mismatch",
            Rejection::BroadcastShape { .. } => "broadcast_shape",
            Rejection::AlphaRange { .. } => "alpha_range",
            Rejection::PerClassLength { .. } => "per_class_length",
            Rejection::UnsupportedOption { .. } => "unsupported_option",
            Rejection::ClassIndexDtype { .. } => "class_index_dtype",
            Rejection::MissingParameter { .. } => "missing_parameter",
            Rejection::InvalidOption { .. } => "invalid_option",
            Rejection::SelectedClassOutOfBounds { .. } => "selected_class_out_of_bounds",
            Rejection::NegativeParameter { .. } => "negative_parameter",
            Rejection::InputShape { .. } => "input_shape",
            Rejection::NotSpecified { .. } => "not_specified",
            Rejection::InvalidReduction { .. } => "invalid_reduction",
            Rejection::Float32Only { .. } => "float32_only",
            Rejection::BoolSubtraction { .. } => "bool_subtraction",
            Rejection::TooFewClasses { .. } => "too_few_classes",
            Rejection::UnexpectedShape { .. } => "unexpected_shape",
            Rejection::EmptyReshape { .. } => "empty_reshape",
            Rejection::PairingMismatch { .. } => "pairing_mismatch",
            Rejection::VoidAfterScored { .. } => "void_after_scored",
            Rejection::GradOutputShape { .. } => "grad_output_shape",
            Rejection::UnknownLoss { .. } => "unknown_loss",
            Rejection::UnknownParameter { .. } => "unknown_parameter",
            Rejection::ParameterType { .. } => "parameter_type",
            Rejection::MissingTensor { .. } => "missing_tensor",
        }
    }
}

/// Everything that can go wrong in segloss, from a rejected loss input to a corrupt fixture.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// A loss rejected its input.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A `.npy` file that could not be parsed or holds an unsupported dtype.
    #[error("{path}: not a supported .npy file: {message}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A manifest that does not follow the fixture schema.
    #[error("manifest {path}: {message}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A manifest written for a schema version this build does not understand.
    #[error("manifest {path}: schema version {found} is not supported (this build reads version {supported})")]
    SchemaVersion {
        /// The manifest file.
        path: PathBuf,
        /// The version found.
        found: u64,
        /// The version this build reads.
        supported: u64,
    },
    /// An out-of-process implementation that could not be started or does not speak the protocol.
    #[error("adapter {command:?}: {reason}")]
    Adapter {
        /// The command.
        command: String,
        /// What went wrong.
        reason: String,
    },
    /// An in-process implementation this build does not contain.
    #[error("no built-in implementation {name:?} in this build; it has: {known} (others need their cargo feature)")]
    UnknownImplementation {
        /// The name given.
        name: String,
        /// The names this build has.
        known: String,
    },
    /// A fixture file whose bytes do not match the manifest's sha256.
    #[error("{path}: sha256 {actual} does not match the manifest's {expected}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The sha256 recorded in the manifest.
        expected: String,
        /// The sha256 of the file's bytes.
        actual: String,
    },
    /// A path that names a FIFO, a device, a directory or another non-regular file where segloss
    /// reads a file.
    #[error("{path}: is a {found}, not a regular file; segloss reads only regular files")]
    NotRegularFile {
        /// The path.
        path: PathBuf,
        /// What it is instead (`FIFO`, `character device`, `directory`, …).
        found: &'static str,
    },
    /// A file larger than the limit for what it holds.
    #[error("{path}: {size} bytes or more, over the limit of {limit} bytes for this file; check that it is the file meant")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size, or as much of it as was read before the limit was crossed.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A manifest file path that is not a plain relative path inside the fixtures directory.
    #[error("manifest case {case:?}: file path {path:?} {reason}; manifest paths are relative and stay inside the fixtures directory")]
    FixturePath {
        /// The case id.
        case: String,
        /// The path as the manifest gives it.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Fixtures made by other generator sources than the ones present.
    #[error("stale fixtures: they were made by generator sources hashing to {recorded}, the current sources hash to {current}; regenerate them with scripts/regen.sh")]
    StaleFixtures {
        /// The generator hash the manifest records.
        recorded: String,
        /// The hash of the generator sources present.
        current: String,
    },
    /// Generator sources that cannot be read, so the fixtures' provenance cannot be checked.
    #[error(
        "{path}: cannot check the fixtures' provenance without the generator sources: {message}"
    )]
    MissingGenerator {
        /// The missing or unreadable source file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// `segloss certify --grade` found no case to grade.
    #[error("nothing graded: no selected float64 case of a loss the oracle evaluates ({losses}) was computed")]
    NothingGraded {
        /// The losses the oracle evaluates.
        losses: String,
    },
    /// A generated case names a template the fixtures do not have (or one that expects an error).
    #[error("no fixture case {template} to make generated cases from; the corpus needs the bundled fixtures it was written for")]
    UnknownTemplate {
        /// The template's case id.
        template: String,
    },
    /// The reference rejects a case a corpus generated: a bug in the corpus, which makes valid
    /// calls only.
    #[error("generated case {id} is rejected by the reference ({message}); the corpus should make only valid calls, please report it with its recipe: {recipe}")]
    GeneratedCaseRejected {
        /// The case id.
        id: String,
        /// The recipe, in words.
        recipe: String,
        /// The reference's rejection.
        message: String,
    },
    /// `--cases` or `--seed` given for a corpus that is not drawn.
    #[error("{option} applies to --corpus random only")]
    CorpusOption {
        /// The option given.
        option: String,
    },
    /// No fixtures directory where segloss looked.
    #[error("no segloss fixtures found: no manifest.json in {looked}; give --fixtures DIR, or set SEGLOSS_FIXTURES to a directory holding manifest.json (a segloss checkout's fixtures/)")]
    NoFixtures {
        /// Where it looked.
        looked: String,
    },
    /// A translation or comparison that cannot be made (a loss that takes none of the generated
    /// problems, inputs that do not fit); the message says what and what to give instead.
    #[error("{0}")]
    Rosetta(String),
}

impl Error {
    /// The stable snake_case identifier of this error's kind: the rejection's kind for a rejected
    /// input, else the harness error's.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Rejected(rejection) => rejection.kind(),
            Error::Io { .. } => "io",
            Error::Npy { .. } => "npy",
            Error::Manifest { .. } => "manifest",
            Error::SchemaVersion { .. } => "schema_version",
            Error::Adapter { .. } => "adapter",
            Error::UnknownImplementation { .. } => "unknown_implementation",
            Error::Checksum { .. } => "checksum",
            Error::NotRegularFile { .. } => "not_regular_file",
            Error::FileTooLarge { .. } => "file_too_large",
            Error::FixturePath { .. } => "fixture_path",
            Error::StaleFixtures { .. } => "stale_fixtures",
            Error::MissingGenerator { .. } => "missing_generator",
            Error::NothingGraded { .. } => "nothing_graded",
            Error::UnknownTemplate { .. } => "unknown_template",
            Error::GeneratedCaseRejected { .. } => "generated_case_rejected",
            Error::CorpusOption { .. } => "corpus_option",
            Error::Rosetta(_) => "rosetta",
            Error::NoFixtures { .. } => "no_fixtures",
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
