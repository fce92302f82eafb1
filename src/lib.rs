//! segloss: a reference specification and differential-testing harness for semantic-segmentation
//! loss functions.
//!
//! * [`spec`] — the reference implementations, forward and gradient, in f64.
//! * [`catalog`] — every loss with its parameters, callable uniformly ([`catalog::LossCall`]).
//! * [`fixtures`] — the golden corpus generated from PyTorch: manifest, cases, integrity checks.
//! * [`compare`] — tolerances (data, with reasons) and mismatch reports.
//! * [`eval`] — one loss call from `.npy` files, as `segloss eval` runs it.
//! * [`certify`] — running an [`certify::Implementation`] on the corpus, as a report or as
//!   libtest-mimic trials.
//! * [`coverage`] — the combinations the corpus must contain.
//! * [`tensor`] — dtype-tagged arrays.
//! * [`npy`] — `.npy` files, parsed within bounds.
//! * [`oracle`] — exact (arbitrary-precision) losses and gradients, and grading in ulps.
//! * [`files`] — bounded reading of untrusted regular files.
//! * [`error`] — [`error::Rejection`] (what an anchor rejects) and [`Error`] (everything else:
//!   files, manifests, adapters, wrapping a rejection).
//! * [`rosetta`] — why two libraries' losses differ: translations, comparisons, the Rosetta page.
//!
//! A downstream crate certifies its own loss with [`certify::run_conformance`] (see
//! `templates/downstream/` and the README); [`ndarray`] is re-exported so that its arrays are the
//! ones segloss takes.

pub mod catalog;
pub mod certify;
pub mod compare;
pub mod corpus;
pub mod coverage;
pub mod error;
pub mod eval;
pub mod files;
pub mod fixtures;
pub mod npy;
pub mod oracle;
pub mod rosetta;
pub mod spec;
pub mod tensor;

pub use error::{Error, Result};
pub use ndarray;
