//! The golden runner: certifies the reference spec against the bundled fixtures, one trial per
//! case and check, plus coverage and integrity trials. `cargo test -- --list` shows the inventory;
//! `cargo test -- cross_entropy/f32` runs a slice of it.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use segloss::catalog::losses;
use segloss::certify::known::KnownFailures;
use segloss::certify::{trials, Reference};
use segloss::compare::Tier;
use segloss::coverage::{covered_losses, required_case_ids};
use segloss::fixtures::{generator_sources_sha256, Fixtures};

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let fixtures = match Fixtures::open(&root) {
        Ok(fixtures) => Arc::new(fixtures),
        Err(error) => {
            eprintln!("cannot use the fixtures: {error}\nregenerate them with scripts/regen.sh");
            return ExitCode::FAILURE;
        }
    };
    let mut all = trials(
        fixtures.clone(),
        Arc::new(Reference),
        Tier::Strict,
        Arc::new(KnownFailures::default()),
    );
    all.extend(coverage_trials(fixtures));
    libtest_mimic::run(&args, all).exit_code()
}

/// Trials that fail when the corpus lacks a declared combination, holds a file the manifest does
/// not list, was made by another version of the generator, or when the catalog has a loss without
/// declared coverage.
fn coverage_trials(fixtures: Arc<Fixtures>) -> Vec<Trial> {
    let listed = fixtures.clone();
    let files = fixtures.clone();
    let provenance = fixtures;
    vec![
        Trial::test("coverage/fixtures_match_generator", move || {
            let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
            let current = generator_sources_sha256(&scripts).map_err(Failed::from)?;
            let recorded = &provenance.manifest.generator.script_sha256;
            if &current == recorded {
                Ok(())
            } else {
                Err(format!(
                    "the generator sources hash to {current}, the fixtures were made by {recorded}: \
                     regenerate them with scripts/regen.sh"
                )
                .into())
            }
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
