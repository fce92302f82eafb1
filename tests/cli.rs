//! The `segloss` binary: `eval` writes float64 results, and on input the loss rejects it exits
//! non-zero with a one-line message and writes nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::ArrayD;
use segloss::tensor::Tensor;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("segloss-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, tensor: Tensor) -> String {
    let path = dir.join(name);
    tensor.write_npy(&path).unwrap();
    path.to_string_lossy().into_owned()
}

fn logits(dir: &Path) -> String {
    let values = vec![0.5, -1.0, 2.0, 0.0, 0.25, -0.75, 1.5, 1.0];
    write(
        dir,
        "input.npy",
        Tensor::Float32(ArrayD::from_shape_vec(vec![2, 4], values).unwrap()),
    )
}

fn segloss(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_segloss"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn eval_writes_loss_and_gradient_as_float64() {
    let dir = scratch("ok");
    let input = logits(&dir);
    let target = write(
        &dir,
        "target.npy",
        Tensor::Int64(ArrayD::from_shape_vec(vec![2], vec![2, 0]).unwrap()),
    );
    let out = dir.join("out");
    let output = segloss(&[
        "eval",
        "cross_entropy",
        "--input",
        &input,
        "--target",
        &target,
        "--param",
        "reduction=none",
        "--param",
        "label_smoothing=0.1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let loss = Tensor::read_npy(&out.join("loss.npy")).unwrap();
    let grad = Tensor::read_npy(&out.join("grad_input.npy")).unwrap();
    assert!(matches!(loss, Tensor::Float64(ref array) if array.shape() == [2]));
    assert!(matches!(grad, Tensor::Float64(ref array) if array.shape() == [2, 4]));
}

#[test]
fn rejected_input_exits_non_zero_with_one_line_and_writes_nothing() {
    let dir = scratch("reject");
    let input = logits(&dir);
    let target = write(
        &dir,
        "target.npy",
        Tensor::Int64(ArrayD::from_shape_vec(vec![2], vec![4, 0]).unwrap()),
    );
    let out = dir.join("out");
    let output = segloss(&[
        "eval",
        "nll_loss",
        "--input",
        &input,
        "--target",
        &target,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("target 4 is out of bounds"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn unknown_parameters_and_bad_values_are_named() {
    let dir = scratch("params");
    let input = logits(&dir);
    let target = write(
        &dir,
        "target.npy",
        Tensor::Int64(ArrayD::from_shape_vec(vec![2], vec![1, 0]).unwrap()),
    );
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    for (param, expected) in [
        (
            "label_smoothing=0.1",
            "has no parameter \"label_smoothing\"",
        ),
        (
            "reduction=avg",
            "reduction must be one of none, mean, sum; got \"avg\"",
        ),
        (
            "ignore_index=one",
            "parameter ignore_index must be an integer",
        ),
    ] {
        let output = segloss(&[
            "eval", "nll_loss", "--input", &input, "--target", &target, "--param", param, "--out",
            out,
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expected),
            "{param}: {stderr}"
        );
    }
}

#[test]
fn pos_weight_flag_and_anchor_tensor_names() {
    let dir = scratch("pos-weight");
    let input = logits(&dir);
    let target = write(
        &dir,
        "target.npy",
        Tensor::Float32(
            ArrayD::from_shape_vec(vec![2, 4], vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
                .unwrap(),
        ),
    );
    let pos_weight = write(
        &dir,
        "pos_weight.npy",
        Tensor::Float32(ArrayD::from_shape_vec(vec![4], vec![2.0, 1.0, 0.5, 3.0]).unwrap()),
    );
    let run = |loss: &str, extra: &[&str], out: &Path| {
        let mut args = vec!["eval", loss, "--input", &input, "--target", &target];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", out.to_str().unwrap()]);
        let output = segloss(&args);
        assert!(
            output.status.success(),
            "{loss}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tensor::read_npy(&out.join("loss.npy")).unwrap().to_f64()
    };
    let plain = run("binary_cross_entropy_with_logits", &[], &dir.join("plain"));
    let weighted = run(
        "binary_cross_entropy_with_logits",
        &["--pos-weight", &pos_weight],
        &dir.join("weighted"),
    );
    assert_ne!(plain, weighted);
    // --input and --target fill the loss's own first two tensor arguments (inputs, targets).
    let focal = run(
        "sigmoid_focal_loss",
        &[
            "--param",
            "alpha=-1",
            "--param",
            "gamma=0",
            "--param",
            "reduction=mean",
        ],
        &dir.join("focal"),
    );
    assert!((focal[[]] - plain[[]]).abs() < 1e-12);
}
