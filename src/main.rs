//! The `segloss` command line: evaluate the reference on `.npy` files, list the fixture cases,
//! certify the reference against them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value;

use segloss::catalog::{self, LossCall};
use segloss::certify::{certify, summarize, Reference, Verdict};
use segloss::fixtures::{ExpectedEntry, Fixtures};
use segloss::tensor::Tensor;
use segloss::{Error, Result};

#[derive(Parser)]
#[command(
    name = "segloss",
    version,
    about = "Reference spec and differential-testing harness for segmentation losses"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute a loss and its gradient with the reference; writes DIR/loss.npy and DIR/grad_input.npy (float64).
    Eval {
        /// The loss id: the torch.nn.functional name (cross_entropy, binary_cross_entropy, …) or
        /// library.Name (smp.FocalLoss, monai.FocalLoss, kornia.focal_loss, …).
        loss: String,
        /// The prediction (logits, probabilities or log-probabilities), float32 or float64 .npy;
        /// passed as the loss's first tensor argument (input, inputs, y_pred or pred).
        #[arg(long)]
        input: PathBuf,
        /// The target: class indices or probabilities; passed as the loss's second tensor argument
        /// (target, targets or y_true).
        #[arg(long)]
        target: PathBuf,
        /// Weights (per class, or broadcast as the loss broadcasts them).
        #[arg(long)]
        weight: Option<PathBuf>,
        /// Positive-class weights (binary_cross_entropy_with_logits and the losses built on it).
        #[arg(long)]
        pos_weight: Option<PathBuf>,
        /// Any other tensor argument, by its keyword name: NAME=FILE.npy.
        #[arg(long = "tensor", value_name = "NAME=FILE")]
        tensors: Vec<String>,
        /// The grad_output to differentiate with (the loss's shape); ones when absent.
        #[arg(long)]
        grad_output: Option<PathBuf>,
        /// A keyword parameter, PyTorch's name: NAME=VALUE, VALUE parsed as JSON where it parses.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Where to write loss.npy and grad_input.npy.
        #[arg(long)]
        out: PathBuf,
    },
    /// List the fixture cases with their expected outcome.
    List {
        /// The fixtures directory.
        #[arg(long, default_value = "fixtures")]
        fixtures: PathBuf,
    },
    /// Certify the reference against the fixtures and print a per-loss summary.
    Certify {
        /// The fixtures directory.
        #[arg(long, default_value = "fixtures")]
        fixtures: PathBuf,
    },
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Eval {
            loss,
            input,
            target,
            weight,
            pos_weight,
            tensors,
            grad_output,
            params,
            out,
        } => eval(
            loss,
            input,
            target,
            [("weight", weight), ("pos_weight", pos_weight)],
            &tensors,
            grad_output,
            &params,
            &out,
        ),
        Command::List { fixtures } => list(&fixtures),
        Command::Certify { fixtures } => run_certify(&fixtures),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("segloss: {error}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn eval(
    loss: String,
    input: PathBuf,
    target: PathBuf,
    named: [(&str, Option<PathBuf>); 2],
    tensor_args: &[String],
    grad_output: Option<PathBuf>,
    param_args: &[String],
    out: &Path,
) -> Result<ExitCode> {
    let slots = catalog::find(&loss)?.required_tensors;
    let (prediction, target_name) = match slots {
        [prediction, target, ..] => (*prediction, *target),
        _ => ("input", "target"),
    };
    let mut tensors = BTreeMap::from([
        (prediction.to_string(), Tensor::read_npy(&input)?),
        (target_name.to_string(), Tensor::read_npy(&target)?),
    ]);
    for (name, path) in named {
        if let Some(path) = path {
            tensors.insert(name.to_string(), Tensor::read_npy(&path)?);
        }
    }
    for arg in tensor_args {
        let (name, path) = split_assignment("--tensor", arg)?;
        tensors.insert(name.to_string(), Tensor::read_npy(Path::new(path))?);
    }
    let params = param_args
        .iter()
        .map(|arg| {
            let (name, value) = split_assignment("--param", arg)?;
            let value =
                serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
            Ok((name.to_string(), value))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let grad_output = grad_output
        .map(|path| Tensor::read_npy(&path))
        .transpose()?
        .map(|tensor| tensor.to_f64());
    let output = catalog::evaluate(&LossCall {
        loss,
        params,
        tensors,
        grad_output,
    })?;
    // Only now that everything is computed does anything get written.
    std::fs::create_dir_all(out).map_err(|error| Error::Io {
        path: out.to_path_buf(),
        message: error.to_string(),
    })?;
    Tensor::Float64(output.loss).write_npy(&out.join("loss.npy"))?;
    Tensor::Float64(output.grad_input).write_npy(&out.join("grad_input.npy"))?;
    Ok(ExitCode::SUCCESS)
}

/// Splits `NAME=VALUE`.
fn split_assignment<'a>(flag: &str, arg: &'a str) -> Result<(&'a str, &'a str)> {
    arg.split_once('=').ok_or_else(|| Error::ParameterType {
        name: flag.to_string(),
        expected: "NAME=VALUE",
        got: arg.to_string(),
    })
}

fn list(root: &Path) -> Result<ExitCode> {
    let fixtures = Fixtures::open(root)?;
    for case in &fixtures.manifest.cases {
        let outcome = match &case.expected {
            ExpectedEntry::Values { .. } => "values".to_string(),
            ExpectedEntry::Error { kind, .. } => format!("error {kind}"),
        };
        println!("{}\t{outcome}", case.id);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_certify(root: &Path) -> Result<ExitCode> {
    let fixtures = Fixtures::open(root)?;
    let implementation = Reference;
    let results = certify(&fixtures, &implementation);
    for result in &results {
        if let Verdict::Failed(reason) = &result.verdict {
            println!(
                "FAILED {}/{}\n  {}",
                result.case_id,
                result.check.name(),
                reason.replace('\n', "\n  ")
            );
        }
    }
    let summaries = summarize(&results);
    println!(
        "certifying {} against {} (generated by {} with torch {})",
        segloss::certify::Implementation::name(&implementation),
        root.display(),
        fixtures.manifest.generator.script,
        fixtures.manifest.generator.torch
    );
    println!(
        "{:<16} {:>6} {:>7} {:>7} {:>12} {:>12} {:>12}",
        "loss", "cases", "passed", "failed", "unsupported", "worst abs", "worst rel"
    );
    for (loss, summary) in &summaries {
        println!(
            "{:<16} {:>6} {:>7} {:>7} {:>12} {:>12.3e} {:>12.3e}",
            loss,
            summary.cases,
            summary.passed,
            summary.failed,
            summary.unsupported,
            summary.worst.max_abs,
            summary.worst.max_rel
        );
    }
    let failed: usize = summaries
        .values()
        .map(|summary| summary.failed + summary.unsupported)
        .sum();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        println!("{failed} check(s) did not pass");
        ExitCode::FAILURE
    })
}
