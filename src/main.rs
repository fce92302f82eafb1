//! The `segloss` command line: evaluate the reference on `.npy` files, list the fixture cases,
//! certify the reference against them.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;

use segloss::catalog::{self, LossCall};
use segloss::certify::command::CommandAdapter;
use segloss::certify::explain::explain;
use segloss::certify::known::KnownFailures;
use segloss::certify::report::{markdown_matrix, Report, Row};
use segloss::certify::{builtin, builtin_names, certify, Implementation};
use segloss::compare::Tier;
use segloss::files::{read_regular_file, MAX_DOCUMENT_BYTES};
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
    /// Certify an implementation (the built-in reference, or --cmd) against the fixtures.
    Certify(CertifyArgs),
    /// Render a Markdown conformance matrix from the --json reports of several runs.
    Matrix {
        /// JSON reports written by `segloss certify --json`.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Replace the text between `<!-- conformance-matrix:start -->` and
        /// `<!-- conformance-matrix:end -->` in this file instead of printing.
        #[arg(long)]
        update: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct CertifyArgs {
    /// The fixtures directory.
    #[arg(long, default_value = "fixtures")]
    fixtures: PathBuf,
    /// Certify the implementation behind this command (run by `sh -c`), which speaks the protocol
    /// of docs/certify-protocol.md; without it, the built-in reference is certified.
    #[arg(long)]
    cmd: Option<String>,
    /// Certify an in-process implementation compiled into this build (reference; candle and burn
    /// with the impl-candle and impl-burn features).
    #[arg(long, default_value = "reference", conflicts_with = "cmd")]
    implementation: String,
    /// Seconds an adapter may take to answer one case before it is stopped and restarted.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// The implementation's known-failure list (JSON).
    #[arg(long)]
    known_failures: Option<PathBuf>,
    /// Remove the entries of the known-failure list that now pass, and rewrite it.
    #[arg(long, requires = "known_failures")]
    promote: bool,
    /// Tolerance tier: strict (per-dtype policy), float32, or approximate.
    #[arg(long, value_enum, default_value_t = TierArg::Strict)]
    tier: TierArg,
    /// Only cases whose id contains this text (repeatable; any may match).
    #[arg(long = "filter")]
    filters: Vec<String>,
    /// Print the report as JSON on stdout instead of the terminal summary.
    #[arg(long)]
    json: bool,
    /// Also write the report as JUnit XML.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write this run's conformance matrix as Markdown.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Explain one case: every check in detail, and PNG heatmaps of the differences.
    #[arg(long, value_name = "CASE")]
    explain: Option<String>,
    /// Where --explain writes its PNG files.
    #[arg(long, default_value = ".")]
    explain_dir: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TierArg {
    Strict,
    Float32,
    Approximate,
}

impl From<TierArg> for Tier {
    fn from(tier: TierArg) -> Tier {
        match tier {
            TierArg::Strict => Tier::Strict,
            TierArg::Float32 => Tier::Float32,
            TierArg::Approximate => Tier::Approximate,
        }
    }
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
        Command::Certify(args) => run_certify(&args),
        Command::Matrix { reports, update } => matrix(&reports, update.as_deref()),
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
    let definition = catalog::find(&loss)?;
    let mut tensors = BTreeMap::from([
        (
            definition.prediction().to_string(),
            Tensor::read_npy(&input)?,
        ),
        (definition.target().to_string(), Tensor::read_npy(&target)?),
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

fn run_certify(args: &CertifyArgs) -> Result<ExitCode> {
    let fixtures = Fixtures::open(&args.fixtures)?;
    let tier = Tier::from(args.tier);
    let implementation: Box<dyn Implementation> = match &args.cmd {
        Some(command) => Box::new(CommandAdapter::start(
            command,
            Duration::from_secs_f64(args.timeout),
            segloss::certify::command::DEFAULT_HELLO_TIMEOUT,
        )?),
        None => builtin(&args.implementation).ok_or_else(|| Error::UnknownImplementation {
            name: args.implementation.clone(),
            known: builtin_names().join(", "),
        })?,
    };
    if let Some(case_id) = &args.explain {
        let (text, _) = explain(
            &fixtures,
            implementation.as_ref(),
            case_id,
            tier,
            &args.explain_dir,
        )?;
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut known = match &args.known_failures {
        Some(path) => KnownFailures::load(path)?,
        None => KnownFailures::default(),
    };
    let show_progress = std::io::stderr().is_terminal() && !args.json;
    let results = certify(
        &fixtures,
        implementation.as_ref(),
        tier,
        |entry| {
            args.filters.is_empty()
                || args
                    .filters
                    .iter()
                    .any(|filter| entry.id.contains(filter.as_str()))
        },
        |done, total| {
            if show_progress {
                let filled = done * 40 / total.max(1);
                eprint!(
                    "\r[{}{}] {done}/{total}",
                    "#".repeat(filled),
                    " ".repeat(40 - filled)
                );
                if done == total {
                    eprintln!();
                }
            }
        },
    );
    if args.promote {
        let removed = known.promote(&results);
        known.save(
            args.known_failures
                .as_ref()
                .expect("clap requires it with --promote"),
        )?;
        eprintln!("--promote removed {removed} entries that now pass");
    }
    let report = Report::new(implementation.name(), tier, results, &known);
    if args.json {
        println!("{:#}", report.json());
    } else {
        print!("{}", report.terminal());
    }
    if let Some(path) = &args.junit {
        write_text(path, &report.junit())?;
    }
    if let Some(path) = &args.markdown {
        write_text(
            path,
            &markdown_matrix(&[(report.implementation.clone(), report.rows())]),
        )?;
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The start and end markers of the generated matrix in a Markdown file.
const MATRIX_MARKERS: (&str, &str) = (
    "<!-- conformance-matrix:start -->",
    "<!-- conformance-matrix:end -->",
);

fn matrix(reports: &[PathBuf], update: Option<&Path>) -> Result<ExitCode> {
    let runs = reports
        .iter()
        .map(|path| {
            let manifest_error = |message: String| Error::Manifest {
                path: path.clone(),
                message,
            };
            let report: Value =
                serde_json::from_slice(&read_regular_file(path, MAX_DOCUMENT_BYTES)?)
                    .map_err(|error| manifest_error(error.to_string()))?;
            let name = report["implementation"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let rows: Vec<Row> =
                serde_json::from_value(report["rows"].clone()).map_err(|error| {
                    manifest_error(format!("not a segloss certify --json report: {error}"))
                })?;
            Ok((name, rows))
        })
        .collect::<Result<Vec<_>>>()?;
    let table = markdown_matrix(&runs);
    let Some(path) = update else {
        print!("{table}");
        return Ok(ExitCode::SUCCESS);
    };
    let text = String::from_utf8_lossy(&read_regular_file(path, MAX_DOCUMENT_BYTES)?).into_owned();
    let (start, end) = MATRIX_MARKERS;
    let (Some(head_end), Some(tail_start)) = (text.find(start), text.find(end)) else {
        return Err(Error::Manifest {
            path: path.to_path_buf(),
            message: format!("no {start} … {end} markers to replace between"),
        });
    };
    let updated = format!(
        "{}{start}\n\n{table}{}",
        &text[..head_end],
        &text[tail_start..]
    );
    write_text(path, &updated)?;
    Ok(ExitCode::SUCCESS)
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}
