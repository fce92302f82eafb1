//! The convention Rosetta: the committed page is what the spec renders; every equivalence it claims
//! holds on 100 further generated problems, and in the anchors' own outputs recorded on the same
//! inputs; translations find the equivalences known from the libraries' docs and name the
//! conventions behind the differences; and a wrong claim is caught.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use segloss::rosetta::page::{self, PAGE_PROBLEMS, PAGE_SEED};
use segloss::rosetta::{
    compare, evaluate_in, problem_from, problems, translate, Setting, Translation, SAME,
};
use serde_json::Value;

/// The page's tables, computed once for the tests that read them.
fn page_tables() -> &'static Vec<(&'static page::Table, Vec<Translation>)> {
    static TABLES: OnceLock<Vec<(&'static page::Table, Vec<Translation>)>> = OnceLock::new();
    TABLES.get_or_init(|| page::translations().unwrap())
}

/// The page's translations.
fn page_translations() -> impl Iterator<Item = &'static Translation> {
    page_tables()
        .iter()
        .flat_map(|(_, translations)| translations)
}

fn setting(loss: &str, params: &[(&str, &str)]) -> Setting {
    page::setting(loss, params)
}

#[test]
fn the_committed_page_is_current() {
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rosetta.md"))
            .unwrap();
    let certified = segloss::rosetta::certified::CertifiedCalls::bundled().unwrap();
    let rendered = page::render_translations(page_tables(), &certified);
    assert!(
        committed == rendered,
        "docs/rosetta.md is stale: regenerate it with `cargo run --release -- rosetta --write docs/rosetta.md`"
    );
}

/// A recorded array: its shape and row-major values.
fn recorded_array<T: Clone>(value: &Value, element: impl Fn(&Value) -> T) -> ndarray::ArrayD<T> {
    let shape: Vec<usize> = value["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|size| size.as_u64().unwrap() as usize)
        .collect();
    let values = value["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(element)
        .collect();
    ndarray::ArrayD::from_shape_vec(shape, values).unwrap()
}

/// max |a − b| / max(max |a|, max |b|), the agreement scripts/rosetta_anchors.py measures.
fn relative(a: &ndarray::ArrayD<f64>, b: &ndarray::ArrayD<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let largest = |x: &ndarray::ArrayD<f64>| x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let scale = largest(a).max(largest(b)).max(f64::MIN_POSITIVE);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// The anchors' outputs recorded by `scripts/rosetta_anchors.py --write
/// tests/data/rosetta_anchors.json` agree as the page claims, and the reference reproduces each
/// anchor's on the same inputs: every claimed equivalence must have its record (1e-6 relative, the
/// room MONAI's float32 arithmetic needs; the others agree to about 1e-15).
#[test]
fn every_equivalence_the_page_claims_holds_in_the_anchors_recorded_outputs() {
    use sha2::{Digest, Sha256};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let record: Value = serde_json::from_slice(
        &std::fs::read(root.join("tests/data/rosetta_anchors.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["format"], "segloss-rosetta-anchors");
    let script = std::fs::read(root.join("scripts/rosetta_anchors.py")).unwrap();
    let digest: String = Sha256::digest(&script)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(
        record["generator"]["script_sha256"], digest,
        "tests/data/rosetta_anchors.json was recorded by another version of scripts/rosetta_anchors.py: \
         rerun it with --write tests/data/rosetta_anchors.json"
    );
    const ANCHORS_AGREE: f64 = 1e-6;
    let pairs = record["pairs"].as_array().unwrap();
    let mut checked = 0;
    for translation in page_translations().filter(|translation| translation.same) {
        let (from, to) = (&translation.from, &translation.to);
        let pair = pairs
            .iter()
            .find(|pair| {
                pair["from"] == serde_json::to_value(&from.setting).unwrap()
                    && pair["to"] == serde_json::to_value(&to.setting).unwrap()
            })
            .unwrap_or_else(|| {
                panic!(
                    "no recorded anchor outputs for {} = {}: rerun scripts/rosetta_anchors.py \
                     --write tests/data/rosetta_anchors.json",
                    from.setting.call_text(),
                    to.setting.call_text()
                )
            });
        let recorded = pair["problems"].as_array().unwrap();
        assert_eq!(recorded.len(), 4, "one problem per scenario");
        for entry in recorded {
            let problem = problem_from(
                recorded_array(&entry["logits"], |v| v.as_f64().unwrap()),
                recorded_array(&entry["labels"], |v| v.as_i64().unwrap()),
            )
            .unwrap();
            let anchor = |side: &str, what: &str| {
                recorded_array(&entry[side][what], |v| v.as_f64().unwrap())
            };
            let name = format!("{} = {}", from.setting.call_text(), to.setting.call_text());
            for what in ["loss", "grad"] {
                let difference = relative(&anchor("from", what), &anchor("to", what));
                assert!(
                    difference <= ANCHORS_AGREE,
                    "{name}: the anchors' {what} differ by {difference:.1e}"
                );
            }
            for (side, described) in [("from", from), ("to", to)] {
                let (loss, grad) =
                    evaluate_in(&described.setting, described.form, &problem).unwrap();
                for (what, reference) in [("loss", loss), ("grad", grad)] {
                    let difference = relative(&reference, &anchor(side, what));
                    assert!(
                        difference <= ANCHORS_AGREE,
                        "{name}: the reference's {what} of {} differs from the anchor's by {difference:.1e}",
                        described.setting.call_text()
                    );
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} equivalences checked");
}

#[test]
fn every_equivalence_the_page_claims_holds_on_100_more_problems() {
    let fresh = problems(100, PAGE_SEED + 1);
    let claimed: Vec<&Translation> = page_translations()
        .filter(|translation| translation.same)
        .collect();
    assert!(claimed.len() >= 8, "only {} equivalences", claimed.len());
    for translation in claimed {
        assert_eq!(translation.problems, PAGE_PROBLEMS);
        assert_eq!(translation.factor, None, "the page shows no factors yet");
        let comparison =
            compare(&translation.from.setting, &translation.to.setting, &fresh).unwrap();
        assert_eq!(comparison.b.form, translation.to.form);
        assert!(
            comparison.largest_difference <= SAME,
            "{} is not {} on 100 problems: {:.1e}",
            translation.from.setting.call_text(),
            translation.to.setting.call_text(),
            comparison.largest_difference
        );
    }
}

#[test]
fn known_equivalences_are_found() {
    let dice = setting("smp.DiceLoss", &[("mode", "\"multiclass\"")]);
    let tversky = translate(&dice, "smp.TverskyLoss", 24, 3).unwrap();
    assert!(tversky.same, "{}", tversky.terminal());
    let smoothed = setting("cross_entropy", &[("label_smoothing", "0.1")]);
    let soft = translate(&smoothed, "smp.SoftCrossEntropyLoss", 24, 3).unwrap();
    assert!(soft.same, "{}", soft.terminal());
    assert_eq!(soft.to.setting.params["smooth_factor"], Value::from(0.1));
    let focal = setting("sigmoid_focal_loss", &[("reduction", "\"mean\"")]);
    let smp_focal = translate(&focal, "smp.FocalLoss", 24, 3).unwrap();
    assert!(smp_focal.same, "{}", smp_focal.terminal());
    assert_eq!(smp_focal.to.setting.params["alpha"], Value::from(0.25));
}

#[test]
fn smp_dice_as_monai_dice_pools_the_batch_and_differs_only_on_absent_classes() {
    let dice = setting("smp.DiceLoss", &[("mode", "\"multiclass\"")]);
    let monai = translate(&dice, "monai.DiceLoss", 24, 0).unwrap();
    let params = &monai.to.setting.params;
    for (name, value) in [("batch", true), ("softmax", true), ("to_onehot_y", true)] {
        assert_eq!(params[name], Value::from(value), "{}", monai.terminal());
    }
    assert!(!monai.same);
    assert_eq!(
        monai
            .disagreeing_scenarios
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        ["a class absent from the batch"],
        "{}",
        monai.terminal()
    );
    assert!(monai
        .differences
        .iter()
        .any(|difference| difference.axis == "classes absent from the target"));
    // Per image, MONAI's default, it differs on every batch of more than one image.
    let per_image = compare(
        &dice,
        &setting(
            "monai.DiceLoss",
            &[
                ("softmax", "true"),
                ("to_onehot_y", "true"),
                ("smooth_nr", "0"),
                ("smooth_dr", "0"),
            ],
        ),
        &problems(24, 0),
    )
    .unwrap();
    assert!(per_image
        .differences
        .iter()
        .any(|difference| difference.axis == "sums over"));
    for row in &per_image.rows {
        let one_image = row.shape[0] == 1 && row.scenario != "a class absent from the batch";
        assert_eq!(row.difference <= SAME, one_image, "{row:?}");
    }
}

#[test]
fn different_functions_are_reported_different_with_the_convention_that_differs() {
    let dice = setting("smp.DiceLoss", &[("mode", "\"multiclass\"")]);
    let jaccard = setting("smp.JaccardLoss", &[("mode", "\"multiclass\"")]);
    let comparison = compare(&dice, &jaccard, &problems(8, 0)).unwrap();
    assert!(comparison.largest_difference > 0.01);
    assert_eq!(
        comparison
            .differences
            .iter()
            .map(|difference| difference.axis.as_str())
            .collect::<Vec<_>>(),
        ["score"]
    );
    let ignoring = setting("cross_entropy", &[("ignore_index", "1")]);
    let smp = setting(
        "smp.SoftCrossEntropyLoss",
        &[("ignore_index", "1"), ("smooth_factor", "0.0")],
    );
    let comparison = compare(&ignoring, &smp, &problems(8, 0)).unwrap();
    assert!(comparison.largest_difference > 0.01);
    assert!(comparison.differences.iter().any(|difference| {
        difference.axis == "reduction" && difference.to.contains("ignored ones included")
    }));
}

fn segloss(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_segloss"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn the_commands_print_json_in_the_documented_format_and_refuse_bad_usage() {
    // The JSON a command prints, which must succeed.
    let json_of = |args: &[&str]| -> Value {
        let output = segloss(args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let report = json_of(&[
        "compare",
        "smp.DiceLoss",
        "--param",
        "mode=multiclass",
        "--with",
        "monai.DiceLoss",
        "--param",
        "softmax=true",
        "--param",
        "to_onehot_y=true",
        "--problems",
        "3",
        "--json",
    ]);
    assert_eq!(report["format"], "segloss-compare");
    assert_eq!(report["version"], 1);
    assert_eq!(report["rows"].as_array().unwrap().len(), 3);
    assert_eq!(report["b"]["setting"]["params"]["softmax"], true);

    let translation = json_of(&[
        "translate",
        "cross_entropy",
        "--param",
        "label_smoothing=0.1",
        "--to",
        "smp.SoftCrossEntropyLoss",
        "--problems",
        "4",
        "--json",
    ]);
    assert_eq!(translation["format"], "segloss-translate");
    assert_eq!(translation["same"], true);
    assert_eq!(translation["to"]["setting"]["params"]["smooth_factor"], 0.1);

    for (args, says) in [
        (
            &["compare", "smp.DiceLoss"][..],
            "give one LOSS_A and one --with LOSS_B",
        ),
        (
            &["compare", "--param", "a=1"][..],
            "--param before any loss",
        ),
        (
            &[
                "compare",
                "smp.DiceLoss",
                "--with",
                "monai.DiceLoss",
                "--frobnicate",
            ][..],
            "unknown option --frobnicate",
        ),
        (
            &["translate", "smp.DiceLoss", "--to", "no.SuchLoss"][..],
            "no.SuchLoss",
        ),
    ] {
        let output = segloss(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn given_logits_and_labels_are_checked_before_use() {
    let dir = tempfile::tempdir().unwrap();
    let logits = dir.path().join("logits.npy");
    let labels = dir.path().join("labels.npy");
    let write = |path: &Path, header: &str, data: &[u8]| {
        let mut header = format!("{{'descr': {header}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        std::fs::write(path, bytes).unwrap();
    };
    let logits_data: Vec<u8> = (0..2 * 3 * 2)
        .flat_map(|i| (i as f64 * 0.1).to_le_bytes())
        .collect();
    write(
        &logits,
        "'<f8', 'fortran_order': False, 'shape': (2, 3, 2)",
        &logits_data,
    );
    let labels_data: Vec<u8> = [0i64, 1, 2, 7]
        .iter()
        .flat_map(|l| l.to_le_bytes())
        .collect();
    write(
        &labels,
        "'<i8', 'fortran_order': False, 'shape': (2, 2)",
        &labels_data,
    );
    let (logits, labels) = (logits.to_str().unwrap(), labels.to_str().unwrap());
    let output = segloss(&[
        "compare",
        "cross_entropy",
        "--with",
        "smp.SoftCrossEntropyLoss",
        "--param",
        "smooth_factor=0.0",
        "--logits",
        logits,
        "--labels",
        labels,
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("label 7 is not a class of the 3"),
        "{stderr}"
    );
}
