//! Smoke tests of the adapters of other implementations (Keras 3, optax, ONNX Runtime, the onnx
//! reference evaluator, pytorch-toolbelt, timm, fvcore): each certifies a slice of the fixtures
//! with its known-failure list and must certify something and fail nothing unexpected. They need
//! the implementations' virtualenv (`scripts/setup_implementations.sh`, several GB), which CI does
//! not install, so they are ignored by default:
//!
//! ```sh
//! bash scripts/setup_implementations.sh
//! cargo test --test implementations -- --ignored
//! ```
//!
//! `scripts/conformance.sh` certifies every adapter on the whole corpus.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The implementations' interpreter; a missing virtualenv fails the test with the fix.
fn python() -> PathBuf {
    let python = repo().join("scripts/.venv-impl/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup_implementations.sh first",
        python.display()
    );
    python
}

/// Certifies `adapter` (with its arguments) on the cases matching `filter`, with the known-failure
/// list `known`, at `tier`; asserts a clean run that certified something.
fn smoke(adapter: &str, known: &str, filter: &str, tier: &str) {
    let command = format!(
        "{} {}",
        python().display(),
        repo().join("scripts/adapters").join(adapter).display()
    );
    let output = Command::new(env!("CARGO_BIN_EXE_segloss"))
        .current_dir(repo())
        .args([
            "certify", "--cmd", &command, "--tier", tier, "--filter", filter,
        ])
        .args([
            "--known-failures",
            &format!("scripts/adapters/known-failures/{known}.json"),
        ])
        .args(["--timeout", "120", "--hello-timeout", "120", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    assert!(
        output.status.success() && report["certified_something"] == true,
        "{adapter}: exit {:?}\n{}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr),
        report
    );
}

#[test]
#[ignore = "needs scripts/setup_implementations.sh"]
fn keras3() {
    smoke(
        "keras3.py",
        "keras3",
        "cross_entropy/f32/N2C3H3W4/",
        "strict",
    );
}

#[test]
#[ignore = "needs scripts/setup_implementations.sh"]
fn optax() {
    smoke(
        "optax_losses.py",
        "optax",
        "cross_entropy/f64/N2C3H3W4/",
        "strict",
    );
}

#[test]
#[ignore = "needs scripts/setup_implementations.sh"]
fn onnxruntime() {
    smoke(
        "onnx_losses.py --runtime onnxruntime",
        "onnxruntime",
        "nll_loss/f64/N4C3/",
        "strict",
    );
}

#[test]
#[ignore = "needs scripts/setup_implementations.sh"]
fn onnx_reference() {
    smoke(
        "onnx_losses.py --runtime reference",
        "onnx_reference",
        "nll_loss/f64/N4C3/",
        "strict",
    );
}

#[test]
#[ignore = "needs scripts/setup_implementations.sh"]
fn pytorch_toolbelt() {
    smoke(
        "pytorch_toolbelt.py",
        "pytorch_toolbelt",
        "smp.DiceLoss/f32/",
        "strict",
    );
}

#[test]
#[ignore = "needs scripts/setup_implementations.sh"]
fn timm() {
    smoke(
        "timm_losses.py",
        "timm",
        "cross_entropy/f64/N4C3/",
        "strict",
    );
}

#[test]
#[ignore = "needs scripts/setup_implementations.sh"]
fn fvcore() {
    smoke(
        "fvcore_losses.py",
        "fvcore",
        "sigmoid_focal_loss/f32/",
        "float32",
    );
}
