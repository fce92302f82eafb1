//! The cross-entropy family in the catalog: `cross_entropy` and `nll_loss`.

use super::domain::{CLASS_INDEX, REDUCTIONS, UNIT};
use super::{LossDef, Param};
use crate::spec::cross_entropy::{self, CrossEntropyOptions, NllOptions, DEFAULT_IGNORE_INDEX};

/// `cross_entropy` and `nll_loss`, with PyTorch's keyword names and defaults.
pub(super) const LOSSES: &[LossDef] = &[
    LossDef {
        name: "cross_entropy",
        summary: "torch.nn.functional.cross_entropy: class-index or probability targets, weights, ignore_index, label smoothing",
        params: &[
            Param::new("reduction", REDUCTIONS),
            Param::new("ignore_index", CLASS_INDEX),
            Param::new("label_smoothing", UNIT),
        ],
        required_tensors: &["input", "target"],
        optional_tensors: &["weight"],
        evaluate: |call| {
            let options = CrossEntropyOptions {
                reduction: call.reduction()?,
                ignore_index: call.int_param("ignore_index", DEFAULT_IGNORE_INDEX)?,
                label_smoothing: call.float_param("label_smoothing", 0.0)?,
            };
            call.weighted_loss(["input", "target"], cross_entropy::cross_entropy, &options)
        },
    },
    LossDef {
        name: "nll_loss",
        summary: "torch.nn.functional.nll_loss: negative log-likelihood of log-probabilities, weights, ignore_index",
        params: &[
            Param::new("reduction", REDUCTIONS),
            Param::new("ignore_index", CLASS_INDEX),
        ],
        required_tensors: &["input", "target"],
        optional_tensors: &["weight"],
        evaluate: |call| {
            let options = NllOptions {
                reduction: call.reduction()?,
                ignore_index: call.int_param("ignore_index", DEFAULT_IGNORE_INDEX)?,
            };
            call.weighted_loss(["input", "target"], cross_entropy::nll_loss, &options)
        },
    },
];
