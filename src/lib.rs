//! segloss: a reference specification and differential-testing harness for semantic-segmentation
//! loss functions.
//!
//! * [`spec`] — the reference implementations, forward and gradient, in f64.
//! * [`tensor`] — dtype-tagged arrays and `.npy` files.
//! * [`error`] — the one error type.

pub mod error;
pub mod spec;
pub mod tensor;

pub use error::{Error, Result};
