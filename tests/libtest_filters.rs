//! The libtest runners' FILTER and `--skip` select trials as `segloss certify --filter` selects
//! cases (`segloss::compare::filter_matches`), through `run_trials_filtered`, which
//! `tests/golden.rs` and `examples/certify_in_process.rs` run their trials with: here on the
//! golden runner's own trials (the reference over the bundled fixtures) and on named stand-ins.

use std::path::Path;
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Conclusion, FormatSetting, Trial};
use segloss::certify::known::KnownFailures;
use segloss::certify::{corpus_checks, run_trials_filtered, trials, Reference};
use segloss::compare::Tier;
use segloss::corpus::Corpus;
use segloss::fixtures::Fixtures;

/// Quiet arguments with the given FILTER, `--skip`s and `--exact`, output to a scratch log.
fn arguments(
    filter: Option<&str>,
    skip: &[&str],
    exact: bool,
    log: &tempfile::NamedTempFile,
) -> Arguments {
    Arguments {
        filter: filter.map(str::to_string),
        skip: skip.iter().map(|text| text.to_string()).collect(),
        exact,
        test_threads: Some(1),
        format: Some(FormatSetting::Pretty),
        logfile: Some(log.path().to_string_lossy().into_owned()),
        ..Arguments::default()
    }
}

/// Runs trials named `names` under the given selection: the names that ran, and the conclusion.
fn ran(
    names: &[&str],
    filter: Option<&str>,
    skip: &[&str],
    exact: bool,
) -> (Vec<String>, Conclusion) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let trials = names
        .iter()
        .map(|name| {
            let (seen, name) = (seen.clone(), name.to_string());
            Trial::test(name.clone(), move || {
                seen.lock().unwrap().push(name);
                Ok(())
            })
        })
        .collect();
    let log = tempfile::NamedTempFile::new().unwrap();
    let conclusion = run_trials_filtered(&arguments(filter, skip, exact, &log), trials);
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    (seen, conclusion)
}

const NAMES: &[&str] = &[
    "binary_cross_entropy/f32/N4/mean/default/forward",
    "cross_entropy/f32/N4C3/mean/default/forward",
    "cross_entropy/f32/N4C3/mean/default/gradient",
    "cross_entropy/f64/N4C3/mean/default/forward",
    "smp.DiceLoss/f64/N2C3/default/mode=binary/forward",
    "coverage/every_loss_declared",
];

#[test]
fn the_filter_and_skip_select_by_segments_and_the_rest_counts_as_filtered_out() {
    let (names, conclusion) = ran(NAMES, Some("cross_entropy/f32"), &[], false);
    assert_eq!(names, [NAMES[1], NAMES[2]]);
    assert_eq!(conclusion.num_passed, 2);
    assert_eq!(conclusion.num_filtered_out, 4);

    let (names, _) = ran(NAMES, Some("*/*/*/*/*/forward"), &["smp.*"], false);
    assert_eq!(names, [NAMES[0], NAMES[1], NAMES[3]]);

    let (names, conclusion) = ran(NAMES, None, &["**/forward"], false);
    assert_eq!(names, [NAMES[5], NAMES[2]]);
    assert_eq!(conclusion.num_filtered_out, 4);

    // `--exact` keeps libtest's meaning: the one name.
    let (names, _) = ran(NAMES, Some(NAMES[1]), &[], true);
    assert_eq!(names, [NAMES[1]]);
    let (names, _) = ran(NAMES, Some("cross_entropy/f32"), &[], true);
    assert!(names.is_empty());

    // No selection: everything runs, nothing is filtered out.
    let (names, conclusion) = ran(NAMES, None, &[], false);
    assert_eq!(names.len(), NAMES.len());
    assert_eq!(conclusion.num_filtered_out, 0);
}

#[test]
fn the_golden_trials_filtered_by_cross_entropy_f32_are_exactly_its_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let corpus = Arc::new(Corpus::fixtures(Arc::new(Fixtures::open(&root).unwrap())));
    let expected = corpus_checks(&corpus)
        .into_iter()
        .filter(|name| name.starts_with("cross_entropy/f32/"))
        .count();
    assert!(expected > 100);
    let all = trials(
        corpus,
        Arc::new(Reference),
        Tier::Strict,
        Arc::new(KnownFailures::default()),
    );
    let total = all.len();
    assert!(
        all.iter()
            .any(|trial| trial.name().starts_with("binary_cross_entropy/f32/")),
        "a substring filter would have run these"
    );
    let log = tempfile::NamedTempFile::new().unwrap();
    let conclusion =
        run_trials_filtered(&arguments(Some("cross_entropy/f32"), &[], false, &log), all);
    assert_eq!(conclusion.num_failed, 0);
    assert_eq!(conclusion.num_passed as usize, expected);
    assert_eq!(conclusion.num_filtered_out as usize, total - expected);
    // Each line of the log names a trial that ran: `test [kind] name ... ok`.
    let text = std::fs::read_to_string(log.path()).unwrap();
    let ran: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("test ")?.split_once(" ... "))
        .map(|(label, _)| label.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(ran.len(), expected, "{text}");
    assert!(
        ran.iter()
            .all(|name| name.starts_with("cross_entropy/f32/")),
        "{ran:?}"
    );
}
