//! The `segloss` command line: evaluate the reference on `.npy` files, list the fixture cases,
//! certify the reference against them.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use segloss::certify::command::{CommandAdapter, CommandPool};
use segloss::certify::explain::explain;
use segloss::certify::grade::{grade, grade_table};
use segloss::certify::known::KnownFailures;
use segloss::certify::report::{
    markdown_matrix, printable, read_report_document, run_summary, splice_matrix, Report, Timing,
    MATRIX_MARKERS,
};
use segloss::certify::reproduce::minimal_failure;
use segloss::certify::{builtin, builtin_names, certify_jobs, corpus_checks, Implementation};
use segloss::compare::{filter_matches, Tier};
use segloss::corpus::{Corpus, CorpusKind};
use segloss::eval::{eval, parse_param, parse_tensor_file, EvalRequest};
use segloss::files::{read_regular_file, MAX_DOCUMENT_BYTES};
use segloss::fixtures::{ExpectedEntry, Fixtures};
use segloss::npy::{read_npy_file, DEFAULT_MAX_FILE_BYTES};
use segloss::rosetta;
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
        #[arg(long = "tensor", value_name = "NAME=FILE", value_parser = parse_tensor_file)]
        tensors: Vec<(String, PathBuf)>,
        /// The grad_output to differentiate with (the loss's shape); ones when absent.
        #[arg(long)]
        grad_output: Option<PathBuf>,
        /// A keyword parameter, PyTorch's name: NAME=VALUE, VALUE parsed as JSON where it parses.
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, serde_json::Value)>,
        /// Where to write loss.npy and grad_input.npy.
        #[arg(long)]
        out: PathBuf,
    },
    /// List the fixture cases with their expected outcome: `values`, or `error` and the error
    /// kind the anchor raised.
    List {
        /// The fixtures directory (default: $SEGLOSS_FIXTURES, else the fixtures of the segloss
        /// sources this binary was built from, else ./fixtures).
        #[arg(long)]
        fixtures: Option<PathBuf>,
        #[command(flatten)]
        filter: CaseFilter,
        /// Print a JSON array of the cases (id, loss, dtype, outcome, error_kind) instead.
        #[arg(long)]
        json: bool,
    },
    /// Certify an implementation (the built-in reference, or --cmd) against the fixtures.
    Certify(CertifyArgs),
    /// Say how loss OTHER computes what LOSS computes: OTHER's parameters and the tensor
    /// transforms, or its closest setting and every convention that still differs, measured on
    /// generated problems through the reference.
    Translate {
        /// The loss to translate, with its parameters (--param).
        loss: String,
        /// A keyword parameter of LOSS: NAME=VALUE, VALUE parsed as JSON where it parses.
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, serde_json::Value)>,
        /// The loss to translate into.
        #[arg(long, value_name = "OTHER")]
        to: String,
        /// How many generated problems to evaluate both on.
        #[arg(long, default_value = "24")]
        problems: usize,
        /// The seed of the generated problems.
        #[arg(long, default_value = "0")]
        seed: u64,
        /// Print the translation as JSON (docs/translate.md).
        #[arg(long)]
        json: bool,
    },
    /// Evaluate two losses side by side on generated problems (or given logits and labels):
    /// values, the difference of values and gradients, and the conventions that explain it.
    /// Usage: segloss compare LOSS_A [--param K=V]... --with LOSS_B [--param K=V]...
    /// [--logits FILE.npy --labels FILE.npy] [--problems N] [--seed S] [--json]
    Compare {
        /// LOSS_A, its --param options, --with LOSS_B and its --param options, then the other
        /// options.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            num_args = 1..,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// Write the generated convention Rosetta (docs/rosetta.md), or print it.
    Rosetta {
        /// Write it to this file instead of printing it.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
        /// Print the page's translations as JSON (each in the `translate --json` format, by family).
        #[arg(long, conflicts_with = "write")]
        json: bool,
        /// The certified implementations' calls to list (`segloss matrix --calls`; default: the
        /// docs/certified-calls.json this binary was built with).
        #[arg(long, value_name = "FILE")]
        certified: Option<PathBuf>,
    },
    /// Join the --json reports of the shards of one run (`certify --shard K/N`) into one report,
    /// printed as JSON: the checks of every shard, totals added up.
    Merge {
        /// The shards' reports (segloss certify --json).
        #[arg(required = true)]
        reports: Vec<PathBuf>,
    },
    /// Render a Markdown conformance matrix from the --json reports of several runs.
    Matrix {
        /// JSON reports written by `segloss certify --json`.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Replace the text between `<!-- conformance-matrix:start -->` and
        /// `<!-- conformance-matrix:end -->` in this file instead of printing.
        #[arg(long)]
        update: Option<PathBuf>,
        /// Also write the calls the implementations declare, with what their certification
        /// found, to this file (docs/certified-calls.json, which the Rosetta page is rendered from).
        #[arg(long, value_name = "FILE")]
        calls: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct CertifyArgs {
    /// The fixtures directory (default: $SEGLOSS_FIXTURES, else the fixtures of the segloss
    /// sources this binary was built from, else ./fixtures).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Certify the implementation behind this command (run by `sh -c`), which speaks the protocol
    /// of docs/certify-protocol.md; without it, the built-in reference is certified.
    #[arg(long)]
    cmd: Option<String>,
    /// Certify an in-process implementation compiled into this build (reference; candle and burn
    /// with the impl-candle and impl-burn features).
    #[arg(long, default_value = "reference", conflicts_with = "cmd")]
    implementation: String,
    /// Seconds an adapter may take to answer one case before it is stopped and restarted
    /// (more than 0, at most a day).
    #[arg(long, default_value = "30", value_parser = parse_timeout, allow_hyphen_values = true)]
    timeout: Duration,
    /// Seconds an adapter may take to start and answer the hello (more than 0, at most a day);
    /// an adapter that fails its hello twice in a row ends the run.
    #[arg(long, default_value = "30", value_parser = parse_timeout, allow_hyphen_values = true)]
    hello_timeout: Duration,
    /// The implementation's known-failure list (JSON).
    #[arg(long)]
    known_failures: Option<PathBuf>,
    /// Remove the entries of the known-failure list that now pass, and rewrite it.
    #[arg(long, requires = "known_failures")]
    promote: bool,
    /// Start a known-failure list from this run: write its failed checks to FILE, one group per
    /// failure kind, each with a placeholder reason that --known-failures refuses until it is
    /// replaced by the real one (docs/known-failures.md). The run still counts the failures.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["known_failures", "explain"])]
    write_known_failures: Option<PathBuf>,
    /// Let --write-known-failures replace an existing file.
    #[arg(long, requires = "write_known_failures")]
    overwrite: bool,
    /// Tolerance tier: strict (per-dtype policy), float32, or approximate.
    #[arg(long, value_enum, default_value_t = TierArg::Strict)]
    tier: TierArg,
    /// The cases to certify on: the bundled golden fixtures; large, realistic-size cases made
    /// from recorded seeds; or random, property-based cases drawn from --seed (failures are
    /// shrunk to a minimal case and a reproducer is printed).
    #[arg(long, value_enum, default_value_t = CorpusArg::Fixtures)]
    corpus: CorpusArg,
    /// How many cases --corpus random draws.
    #[arg(long)]
    cases: Option<usize>,
    /// The seed --corpus random draws its cases from.
    #[arg(long)]
    seed: Option<u64>,
    /// Where the reproducers of shrunk random failures are written (a new directory under the
    /// system's temporary directory when absent).
    #[arg(long, value_name = "DIR")]
    repro_dir: Option<PathBuf>,
    #[command(flatten)]
    filter: CaseFilter,
    /// Run only shard K of N (1 ≤ K ≤ N): every N-th case of the corpus from the K-th, so that N
    /// CI jobs split a run deterministically; `segloss merge` joins their --json reports.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// Answer N cases at once: with --cmd, N processes of the adapter, each given one case at a
    /// time; a built-in implementation is called from N threads. The report is the same whatever
    /// N (its times aside).
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_jobs)]
    jobs: usize,
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
    /// Where --explain writes its PNG files (made when missing; default: a segloss-explain
    /// directory under the system's temporary directory, printed with the pictures).
    #[arg(long, value_name = "DIR")]
    explain_dir: Option<PathBuf>,
    /// Instead of judging checks, report the implementation's error in ulps against the exact
    /// value, per loss, beside the anchor's (float64 cases of the losses the oracle evaluates).
    #[arg(long, conflicts_with_all = ["explain", "known_failures", "promote", "write_known_failures"])]
    grade: bool,
    /// Certify against fixtures whose generator sources are not beside them (`../scripts`) or
    /// have changed since the fixtures were made: skip the provenance check.
    #[arg(long)]
    no_provenance_check: bool,
}

/// `--filter`: which cases a command takes, by case id.
#[derive(clap::Args)]
struct CaseFilter {
    /// Only the cases whose id matches FILTER (repeatable; any may match). A case id is
    /// loss/dtype/shape/reduction/variant; FILTER's `/`-separated segments match its first
    /// segments whole: `cross_entropy/f32` selects float32 cross_entropy and no
    /// binary_cross_entropy case. In a segment `*` matches any run of characters
    /// (`smp.*Loss/f64`, `*/f32/*/sum`); a `**` segment any number of segments
    /// (`**/ignore_index*`).
    #[arg(long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
}

impl CaseFilter {
    /// Whether the filters select the case `id` (any may match; none selects every case).
    fn selects(&self, id: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|filter| filter_matches(id, filter))
    }
}

/// The most adapter processes or threads `--jobs` starts.
const MAX_JOBS: usize = 64;

/// Parses `--jobs N`: a whole number from 1 to [`MAX_JOBS`].
fn parse_jobs(text: &str) -> std::result::Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|jobs| (1..=MAX_JOBS).contains(jobs))
        .ok_or_else(|| format!("{text:?} is not a number of jobs: give 1 to {MAX_JOBS}"))
}

/// Parses `--shard K/N`: whole numbers with 1 ≤ K ≤ N.
fn parse_shard(text: &str) -> std::result::Result<(usize, usize), String> {
    let parsed = text
        .split_once('/')
        .and_then(|(k, n)| Some((k.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    match parsed {
        Some((k, n)) if 1 <= k && k <= n => Ok((k, n)),
        _ => Err(format!(
            "{text:?} is not a shard: give K/N with 1 <= K <= N, e.g. 2/4"
        )),
    }
}

/// The longest per-case timeout `--timeout` takes.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses `--timeout` and `--hello-timeout`: seconds, finite, more than zero and at most [`MAX_TIMEOUT`].
fn parse_timeout(text: &str) -> std::result::Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if seconds.is_finite() && seconds > 0.0 && seconds <= MAX_TIMEOUT.as_secs_f64() {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(format!(
            "{text} s is not a usable timeout: give more than 0 and at most {} seconds",
            MAX_TIMEOUT.as_secs()
        ))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CorpusArg {
    Fixtures,
    Large,
    Random,
}

/// The random corpus's size when --cases is not given.
const DEFAULT_RANDOM_CASES: usize = 200;

/// The corpus the arguments ask for.
fn corpus_kind(args: &CertifyArgs) -> Result<CorpusKind> {
    if args.corpus != CorpusArg::Random {
        if let Some(option) = [
            ("--cases", args.cases.is_some()),
            ("--seed", args.seed.is_some()),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
        {
            return Err(Error::CorpusOption {
                option: option.to_string(),
            });
        }
    }
    Ok(match args.corpus {
        CorpusArg::Fixtures => CorpusKind::Fixtures,
        CorpusArg::Large => CorpusKind::Large,
        CorpusArg::Random => CorpusKind::Random {
            cases: args.cases.unwrap_or(DEFAULT_RANDOM_CASES),
            seed: args.seed.unwrap_or(0),
        },
    })
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
        } => {
            let named = [("weight", weight), ("pos_weight", pos_weight)]
                .into_iter()
                .filter_map(|(name, path)| Some((name.to_string(), path?)));
            let request = EvalRequest {
                loss,
                prediction: input,
                target,
                tensors: named.chain(tensors).collect(),
                grad_output,
                params,
            };
            eval(&request, &out).map(|()| ExitCode::SUCCESS)
        }
        Command::List {
            fixtures,
            filter,
            json,
        } => list(fixtures.as_deref(), &filter, json),
        Command::Certify(args) => run_certify(&args),
        Command::Matrix {
            reports,
            update,
            calls,
        } => matrix(&reports, update.as_deref(), calls.as_deref()),
        Command::Merge { reports } => merge(&reports),
        Command::Translate {
            loss,
            params,
            to,
            problems,
            seed,
            json,
        } => translate(&loss, params, &to, problems, seed, json),
        Command::Compare { args } => compare(&args),
        Command::Rosetta {
            write,
            json,
            certified,
        } => rosetta_page(write.as_deref(), json, certified.as_deref()),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!(
                "segloss: {} (error kind: {})",
                printable(&error.to_string()),
                error.kind()
            );
            ExitCode::from(match error {
                Error::Rejected(_) => EXIT_REJECTED,
                _ => EXIT_UNUSABLE,
            })
        }
    }
}

/// Exit status of `segloss eval` when the loss rejects its input, as the loss's anchor does.
const EXIT_REJECTED: u8 = 1;
/// Exit status of a run that found failures (unexpected failures or passes, stale entries).
const EXIT_FAILURES: u8 = 1;
/// Exit status when the job could not be done: unusable input (files, fixtures, arguments), an
/// adapter that cannot be run, or a run that certified nothing.
const EXIT_UNUSABLE: u8 = 2;

/// Writes to stdout; a reader that went away (`segloss list | head`) ends the output quietly.
fn emit(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            path: PathBuf::from("<stdout>"),
            message: error.to_string(),
        }),
        _ => Ok(()),
    }
}

/// `segloss list`: the selected cases, a line each (`id<TAB>values` or `id<TAB>error KIND`), or
/// a JSON array of them.
fn list(root: Option<&Path>, filter: &CaseFilter, json: bool) -> Result<ExitCode> {
    let fixtures = open_fixtures(root)?;
    let cases: Vec<_> = fixtures
        .manifest
        .cases
        .iter()
        .filter(|case| filter.selects(&case.id))
        .collect();
    if cases.is_empty() {
        eprintln!("segloss: no case selected (check --filter and the fixtures)");
        return Ok(ExitCode::from(EXIT_UNUSABLE));
    }
    let text = if json {
        let entries: Vec<serde_json::Value> = cases
            .iter()
            .map(|case| {
                let mut entry = serde_json::json!({
                    "id": case.id,
                    "loss": case.loss,
                    "dtype": case.dtype,
                    "outcome": "values",
                });
                if let ExpectedEntry::Error { kind, .. } = &case.expected {
                    entry["outcome"] = "error".into();
                    entry["error_kind"] = kind.as_str().into();
                }
                entry
            })
            .collect();
        format!("{:#}\n", serde_json::Value::Array(entries))
    } else {
        cases
            .iter()
            .map(|case| match &case.expected {
                ExpectedEntry::Values { .. } => format!("{}\tvalues\n", case.id),
                ExpectedEntry::Error { kind, .. } => format!("{}\terror {kind}\n", case.id),
            })
            .collect()
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn run_certify(args: &CertifyArgs) -> Result<ExitCode> {
    let fixtures = open_fixtures(args.fixtures.as_deref())?;
    if !args.no_provenance_check {
        check_provenance(&fixtures)?;
    }
    let kind = corpus_kind(args)?;
    let tier = Tier::from(args.tier);
    if let Some(path) = args
        .write_known_failures
        .as_deref()
        .filter(|_| !args.overwrite)
    {
        KnownFailures::check_new(path)?;
    }
    let starting = Instant::now();
    let implementation: Box<dyn Implementation> = match &args.cmd {
        Some(command) if args.jobs > 1 => Box::new(CommandPool::start(
            command,
            args.jobs,
            args.timeout,
            args.hello_timeout,
        )?),
        Some(command) => Box::new(CommandAdapter::start(
            command,
            args.timeout,
            args.hello_timeout,
        )?),
        None => builtin(&args.implementation).ok_or_else(|| Error::UnknownImplementation {
            name: args.implementation.clone(),
            known: builtin_names().join(", "),
        })?,
    };
    if args.grade {
        let grades = grade(&fixtures, implementation.as_ref(), |entry| {
            args.filter.selects(&entry.id)
        })?;
        if grades.is_empty() {
            return Err(Error::NothingGraded {
                losses: segloss::oracle::LOSSES.join(", "),
            });
        }
        emit(&printable(&grade_table(implementation.name(), &grades)))?;
        return Ok(ExitCode::SUCCESS);
    }
    let corpus = Corpus::open(kind, Arc::new(fixtures))?;
    if let Some(case_id) = &args.explain {
        let explanation = explain(
            &corpus,
            implementation.as_ref(),
            case_id,
            tier,
            &args
                .explain_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("segloss-explain")),
        )?;
        emit(&printable(&explanation.text))?;
        return Ok(ExitCode::from(if explanation.passed {
            0
        } else {
            EXIT_FAILURES
        }));
    }
    let mut known = match &args.known_failures {
        Some(path) => KnownFailures::load(path)?,
        None => KnownFailures::default(),
    };
    let show_progress = std::io::stderr().is_terminal() && !args.json;
    let in_shard: std::collections::HashSet<&str> = corpus
        .cases
        .iter()
        .enumerate()
        .filter(|(index, _)| args.shard.is_none_or(|(k, n)| index % n == k - 1))
        .map(|(_, spec)| spec.id.as_str())
        .collect();
    let startup_s = starting.elapsed().as_secs_f64();
    let running = Instant::now();
    let results = certify_jobs(
        &corpus,
        implementation.as_ref(),
        tier,
        |spec| args.filter.selects(&spec.id) && in_shard.contains(spec.id.as_str()),
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
        args.jobs,
    );
    if let Some(reason) = implementation.abandoned() {
        return Err(Error::Adapter {
            command: implementation.name().to_string(),
            reason: format!("{reason}; the run stopped after {} checks", results.len()),
        });
    }
    let timing = Timing {
        jobs: args.jobs,
        startup_s,
        cases_s: running.elapsed().as_secs_f64(),
        adapter_s: implementation.waited().map(|waited| waited.as_secs_f64()),
    };
    let reproducers = shrink_failures(&corpus, &results, implementation.as_ref(), tier, args)?;
    let checks = corpus_checks(&corpus);
    if args.promote {
        let removed = known.promote(&results, &checks);
        if let Some(path) = &args.known_failures {
            known.save(path)?;
        }
        eprintln!("--promote removed {removed} entries that now pass or name no check");
    }
    if let Some(path) = &args.write_known_failures {
        let written = KnownFailures::from_failures(implementation.name(), &results);
        written.write(path, args.overwrite)?;
        eprintln!(
            "segloss: wrote {} failing checks in {} group(s) to {}; replace each {:?} reason \
             with why its checks fail (split groups that fail for several reasons), then certify \
             with --known-failures {}",
            written
                .groups
                .iter()
                .map(|group| group.checks.len())
                .sum::<usize>(),
            written.groups.len(),
            path.display(),
            segloss::certify::known::PLACEHOLDER_MARKER,
            path.display()
        );
    }
    let stale = known.stale_entries(&checks);
    let provenance = serde_json::to_value(&corpus.fixtures.manifest.generator).ok();
    let mut report = Report::new(implementation.name(), tier, results, &known)
        .with_corpus(corpus.kind.to_string())
        .with_origin(provenance, args.cmd.clone())
        .with_calls(implementation.calls())
        .with_timing(timing);
    report.reproducers = reproducers;
    if args.json {
        emit(&format!("{:#}\n", report.json()))?;
    } else {
        emit(&report.terminal())?;
    }
    if let Some(path) = &args.junit {
        write_text(path, &report.junit())?;
    }
    if let Some(path) = &args.markdown {
        write_text(path, &markdown_matrix(&[report.summary()]))?;
    }
    if !stale.is_empty() {
        eprintln!(
            "segloss: {} known-failure entries name no check of the corpus (remove them with --promote): {}",
            stale.len(),
            stale.join(", ")
        );
    }
    if report.failed() || !stale.is_empty() {
        return Ok(ExitCode::from(EXIT_FAILURES));
    }
    if !report.certified_something() {
        eprintln!(
            "segloss: nothing certified: {}",
            if report.checks.is_empty() {
                "no case was selected (check --filter and the fixtures)".to_string()
            } else {
                format!(
                    "none of the {} selected checks passed (each is unsupported or a known failure)",
                    report.checks.len()
                )
            }
        );
        return Ok(ExitCode::from(EXIT_UNUSABLE));
    }
    Ok(ExitCode::SUCCESS)
}

/// How many failing random cases are shrunk (each takes up to a few hundred runs).
const SHRUNK_FAILURES: usize = 3;

/// The first few failing cases of a random run, shrunk to minimal ones whose files are written
/// under --repro-dir (or a new temporary directory), each described on stderr.
fn shrink_failures(
    corpus: &Corpus,
    results: &[segloss::certify::CheckResult],
    implementation: &dyn Implementation,
    tier: Tier,
    args: &CertifyArgs,
) -> Result<Vec<String>> {
    if !matches!(corpus.kind, CorpusKind::Random { .. }) {
        return Ok(Vec::new());
    }
    let mut failing: Vec<&str> = results
        .iter()
        .filter(|result| matches!(result.verdict, segloss::certify::Verdict::Failed(_)))
        .map(|result| result.case_id.as_str())
        .collect();
    failing.dedup();
    let mut described = Vec::new();
    for id in failing.into_iter().take(SHRUNK_FAILURES) {
        let Some(spec) = corpus.find(id) else {
            continue;
        };
        let reproducer = minimal_failure(
            corpus,
            spec,
            implementation,
            tier,
            args.repro_dir.as_deref(),
        );
        if let Some(reproducer) = reproducer {
            let text = reproducer.describe();
            eprintln!("segloss: {text}");
            described.push(text);
        }
    }
    Ok(described)
}

/// Fails unless the fixtures were made by the generator sources beside them (`../scripts`).
fn check_provenance(fixtures: &Fixtures) -> Result<()> {
    let scripts = fixtures
        .root
        .parent()
        .unwrap_or(Path::new("."))
        .join("scripts");
    fixtures
        .check_provenance(&scripts)
        .map_err(|error| match error {
            Error::MissingGenerator { path, message } => Error::MissingGenerator {
                path,
                message: format!(
                    "{message} (to certify without the check, pass --no-provenance-check)"
                ),
            },
            other => other,
        })
}

fn matrix(reports: &[PathBuf], update: Option<&Path>, calls: Option<&Path>) -> Result<ExitCode> {
    let documents = reports
        .iter()
        .map(|path| read_report_document(path))
        .collect::<Result<Vec<_>>>()?;
    let runs = documents
        .iter()
        .zip(reports)
        .map(|(document, path)| run_summary(document, path))
        .collect::<Result<Vec<_>>>()?;
    if let Some(path) = calls {
        let certified = rosetta::certified::CertifiedCalls::from_reports(&documents).map_err(
            |(index, message)| Error::Manifest {
                path: reports[index].clone(),
                message: format!("not a segloss certify --json report: {message}"),
            },
        )?;
        write_text(
            path,
            &(serde_json::to_string_pretty(&certified).unwrap_or_default() + "\n"),
        )?;
    }
    let table = markdown_matrix(&runs);
    let Some(path) = update else {
        emit(&table)?;
        return Ok(ExitCode::SUCCESS);
    };
    let text = String::from_utf8_lossy(&read_regular_file(path, MAX_DOCUMENT_BYTES)?).into_owned();
    let updated = splice_matrix(&text, &table).ok_or_else(|| Error::Manifest {
        path: path.to_path_buf(),
        message: format!(
            "no {} … {} markers to replace between",
            MATRIX_MARKERS.0, MATRIX_MARKERS.1
        ),
    })?;
    write_text(path, &updated)?;
    Ok(ExitCode::SUCCESS)
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

/// `segloss translate`.
fn translate(
    loss: &str,
    params: Vec<(String, serde_json::Value)>,
    to: &str,
    problems: usize,
    seed: u64,
    json: bool,
) -> Result<ExitCode> {
    let setting = rosetta::Setting {
        loss: loss.to_string(),
        params: params.into_iter().collect(),
    };
    let translation = rosetta::translate(&setting, to, problems.max(1), seed)?;
    emit(&if json {
        serde_json::to_string_pretty(&translation).unwrap_or_default() + "\n"
    } else {
        translation.terminal()
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The arguments of `segloss compare`, parsed from its words.
struct CompareRequest {
    a: rosetta::Setting,
    b: rosetta::Setting,
    logits: Option<PathBuf>,
    labels: Option<PathBuf>,
    problems: usize,
    seed: u64,
    json: bool,
}

/// Parses `LOSS_A [--param K=V]... --with LOSS_B [--param K=V]... [options]`: a --param belongs
/// to the loss named last before it.
fn parse_compare(args: &[String]) -> Result<CompareRequest> {
    let usage = |problem: String| {
        Error::Rosetta(format!(
            "{problem}; usage: segloss compare LOSS_A [--param K=V]... --with LOSS_B [--param K=V]... \
             [--logits FILE.npy --labels FILE.npy] [--problems N] [--seed S] [--json]"
        ))
    };
    let mut words = args.iter();
    let mut settings: Vec<rosetta::Setting> = Vec::new();
    let mut request = CompareRequest {
        a: rosetta::Setting {
            loss: String::new(),
            params: Default::default(),
        },
        b: rosetta::Setting {
            loss: String::new(),
            params: Default::default(),
        },
        logits: None,
        labels: None,
        problems: 8,
        seed: 0,
        json: false,
    };
    let value = |words: &mut std::slice::Iter<String>, option: &str| {
        words
            .next()
            .cloned()
            .ok_or_else(|| usage(format!("{option} needs a value")))
    };
    while let Some(word) = words.next() {
        match word.as_str() {
            "--with" => {
                let loss = value(&mut words, "--with")?;
                settings.push(rosetta::Setting {
                    loss,
                    params: Default::default(),
                });
            }
            "--param" => {
                let (name, parsed) = parse_param(&value(&mut words, "--param")?).map_err(usage)?;
                let setting = settings
                    .last_mut()
                    .ok_or_else(|| usage("--param before any loss".into()))?;
                setting.params.insert(name, parsed);
            }
            "--logits" => request.logits = Some(PathBuf::from(value(&mut words, "--logits")?)),
            "--labels" => request.labels = Some(PathBuf::from(value(&mut words, "--labels")?)),
            "--problems" | "--seed" => {
                let text = value(&mut words, word)?;
                let number: u64 = text
                    .parse()
                    .map_err(|_| usage(format!("{word} {text:?} is not a whole number")))?;
                if word == "--problems" {
                    request.problems = (number as usize).max(1);
                } else {
                    request.seed = number;
                }
            }
            "--json" => request.json = true,
            option if option.starts_with("--") => {
                return Err(usage(format!("unknown option {option}")))
            }
            loss if settings.is_empty() => settings.push(rosetta::Setting {
                loss: loss.to_string(),
                params: Default::default(),
            }),
            other => return Err(usage(format!("unexpected {other:?}"))),
        }
    }
    match <[rosetta::Setting; 2]>::try_from(settings) {
        Ok([a, b]) => {
            request.a = a;
            request.b = b;
            Ok(request)
        }
        Err(_) => Err(usage("give one LOSS_A and one --with LOSS_B".into())),
    }
}

/// `segloss compare`.
fn compare(args: &[String]) -> Result<ExitCode> {
    let request = parse_compare(args)?;
    let problems = match (&request.logits, &request.labels) {
        (None, None) => rosetta::problems(request.problems, request.seed),
        (Some(logits), Some(labels)) => {
            let logits = read_npy_file(logits, DEFAULT_MAX_FILE_BYTES)?.to_f64();
            let labels = read_npy_file(labels, DEFAULT_MAX_FILE_BYTES)?;
            let labels = match labels {
                segloss::tensor::Tensor::Int64(labels) => labels,
                other => other.to_f64().mapv(|label| label as i64),
            };
            vec![rosetta::problem_from(logits, labels)?]
        }
        _ => {
            return Err(Error::Rosetta(
                "give both --logits and --labels, or neither (generated problems)".into(),
            ))
        }
    };
    let comparison = rosetta::compare(&request.a, &request.b, &problems)?;
    emit(&if request.json {
        serde_json::to_string_pretty(&comparison).unwrap_or_default() + "\n"
    } else {
        comparison.terminal()
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `segloss rosetta`.
fn rosetta_page(write: Option<&Path>, json: bool, certified: Option<&Path>) -> Result<ExitCode> {
    if json {
        let tables: Vec<serde_json::Value> = rosetta::page::translations()?
            .into_iter()
            .map(|(table, translations)| {
                serde_json::json!({"family": table.family, "translations": translations})
            })
            .collect();
        emit(&(serde_json::to_string_pretty(&tables).unwrap_or_default() + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let certified = match certified {
        Some(path) => rosetta::certified::CertifiedCalls::parse(&String::from_utf8_lossy(
            &read_regular_file(path, MAX_DOCUMENT_BYTES)?,
        )),
        None => rosetta::certified::CertifiedCalls::bundled(),
    }
    .map_err(Error::Rosetta)?;
    let page = rosetta::page::render(&certified)?;
    match write {
        Some(path) => std::fs::write(path, page).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?,
        None => emit(&page)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The fixtures at `given`, or where [`segloss::fixtures::locate`] finds them.
fn open_fixtures(given: Option<&Path>) -> Result<Fixtures> {
    match given {
        Some(dir) => Fixtures::open(dir),
        None => Fixtures::open_located(),
    }
}

/// `segloss merge`: the shards' reports joined, printed as JSON.
fn merge(reports: &[PathBuf]) -> Result<ExitCode> {
    let documents = reports
        .iter()
        .map(|path| read_report_document(path))
        .collect::<Result<Vec<_>>>()?;
    let merged = segloss::certify::report::merge_json_reports(&documents).map_err(|message| {
        Error::Manifest {
            path: reports[0].clone(),
            message,
        }
    })?;
    emit(&format!("{merged:#}\n"))?;
    Ok(ExitCode::SUCCESS)
}
