//! The golden runner: certifies the reference spec against the bundled fixtures, one trial per
//! case and check, plus coverage and integrity trials. `cargo test -- --list` shows the inventory;
//! `cargo test -- cross_entropy/f32` runs a slice of it (whole segments and `*` globs, as
//! `segloss certify --filter` selects: [`segloss::compare::filter_matches`]).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use segloss::catalog::artefacts::{artefacts_for, ANCHOR_ARTEFACTS};
use segloss::catalog::losses;
use segloss::certify::kinds::message_shows_kind;
use segloss::certify::known::KnownFailures;
use segloss::certify::{corpus_checks, run_trials_filtered, trials, Reference};
use segloss::compare::Tier;
use segloss::corpus::Corpus;
use segloss::coverage::{covered_losses, required_case_ids};
use segloss::fixtures::{ExpectedEntry, Fixtures};

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    if let Some(exit) = run_one_case(&args, &root) {
        return exit;
    }
    let fixtures = match Fixtures::open(&root) {
        Ok(fixtures) => Arc::new(fixtures),
        Err(error) => return unusable(&error),
    };
    let corpus = Arc::new(Corpus::fixtures(fixtures.clone()));
    let mut all = reference_trials(corpus.clone());
    // Every check of the corpus is a trial, plus the two run-level trials.
    let checks = corpus_checks(&corpus).len();
    let made = all.len();
    all.push(
        Trial::test("coverage/one_trial_per_check", move || {
            if made == checks + 2 {
                Ok(())
            } else {
                Err(format!("{made} trials for {checks} checks (+2 run-level trials)").into())
            }
        })
        .with_kind("coverage"),
    );
    all.extend(coverage_trials(fixtures));
    run_trials_filtered(&args, all).exit_code()
}

/// A run asked for one trial by its exact name, as `cargo nextest run` starts one process per
/// trial: when the name is a check of a case, only that case is read (through the index that
/// [`Fixtures::open_case`] keeps under Cargo's target directory) and only its trials are made.
/// `None` for any other run, which reads the whole corpus.
fn run_one_case(args: &Arguments, root: &Path) -> Option<ExitCode> {
    if !args.exact || args.list {
        return None;
    }
    // Trials are listed, and asked for, as "[kind] name".
    let name = args.filter.as_deref()?;
    let name = name.split_once("] ").map_or(name, |(_kind, name)| name);
    let (case_id, _check) = name.rsplit_once('/')?;
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("segloss-golden");
    let fixtures = match Fixtures::open_case(root, case_id, &cache) {
        Ok(Some(fixtures)) => Arc::new(fixtures),
        Ok(None) => return None,
        Err(error) => return Some(unusable(&error)),
    };
    let trials = reference_trials(Arc::new(Corpus::fixtures(fixtures)));
    Some(run_trials_filtered(args, trials).exit_code())
}

/// The reference's trials over `corpus`, one per case and check, at the strict tier.
fn reference_trials(corpus: Arc<Corpus>) -> Vec<Trial> {
    trials(
        corpus,
        Arc::new(Reference),
        Tier::Strict,
        Arc::new(KnownFailures::default()),
    )
}

/// The run's end when the fixtures cannot be read: why, and how to make them again.
fn unusable(error: &segloss::Error) -> ExitCode {
    eprintln!("cannot use the fixtures: {error}\nregenerate them with scripts/regen.sh");
    ExitCode::FAILURE
}

/// Trials that fail when the corpus lacks a declared combination, holds a file the manifest does
/// not list, was made by another version of the generator, or when the catalog has a loss without
/// declared coverage.
fn coverage_trials(fixtures: Arc<Fixtures>) -> Vec<Trial> {
    let listed = fixtures.clone();
    let files = fixtures.clone();
    let errors = fixtures.clone();
    let artefacts_cases = fixtures.clone();
    let provenance = fixtures;
    vec![
        Trial::test("coverage/error_kinds_match_anchor_messages", move || {
            let unmatched: Vec<String> = errors
                .manifest
                .cases
                .iter()
                .filter_map(|case| match &case.expected {
                    ExpectedEntry::Error {
                        kind,
                        exception_type,
                        message,
                    } => {
                        let said = format!("{exception_type}: {message}");
                        (message_shows_kind(kind, &said) != Some(true))
                            .then(|| format!("{} ({kind}): {said}", case.id))
                    }
                    ExpectedEntry::Values { .. } => None,
                })
                .collect();
            report(
                "error cases whose anchor message does not match their kind in the error-kind table",
                &unmatched,
            )
        })
        .with_kind("coverage"),
        Trial::test("coverage/fixtures_match_generator", move || {
            let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
            provenance.check_provenance(&scripts).map_err(Failed::from)
        })
        .with_kind("coverage"),
        Trial::test("coverage/declared_cases_present", move || {
            let present: Vec<&str> = listed
                .manifest
                .cases
                .iter()
                .map(|case| case.id.as_str())
                .collect();
            let missing: Vec<String> = required_case_ids()
                .into_iter()
                .filter(|id| !present.contains(&id.as_str()))
                .collect();
            report("declared cases have no fixture", &missing)
        })
        .with_kind("coverage"),
        Trial::test("coverage/every_file_in_manifest", move || {
            report(
                "files are not in the manifest",
                &files.unreferenced_files().map_err(Failed::from)?,
            )
        })
        .with_kind("coverage"),
        Trial::test("coverage/anchor_artefacts_cover_cases", move || {
            let unused: Vec<String> = ANCHOR_ARTEFACTS
                .iter()
                .filter(|rule| {
                    !artefacts_cases.manifest.cases.iter().any(|case| {
                        matches!(case.expected, ExpectedEntry::Values { .. })
                            && artefacts_for(&case.id, rule.check).any(|covering| covering == *rule)
                    })
                })
                .map(|rule| format!("{} ({} {})", rule.id, rule.case_pattern, rule.check.name()))
                .collect();
            report("anchor-artefact rules cover no value case", &unused)
        })
        .with_kind("coverage"),
        Trial::test("coverage/every_loss_declared", || {
            let declared = covered_losses();
            let undeclared: Vec<String> = losses()
                .filter(|loss| !declared.contains(loss.name))
                .map(|loss| loss.name.to_string())
                .collect();
            report("catalog losses have no declared coverage", &undeclared)
        })
        .with_kind("coverage"),
    ]
}

fn report(problem: &str, items: &[String]) -> Result<(), Failed> {
    if items.is_empty() {
        Ok(())
    } else {
        Err(format!("{} {problem}:\n  {}", items.len(), items.join("\n  ")).into())
    }
}
