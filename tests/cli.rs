//! The `segloss` binary: `eval` writes float64 results, and on input the loss rejects it exits
//! non-zero with a one-line message and writes nothing; `list` and `certify` select cases by
//! whole id segments and globs; `--write-known-failures` starts a list that is refused until its
//! reasons are given.

use std::path::Path;
use std::process::Command;

use ndarray::ArrayD;
use segloss::tensor::Tensor;

/// A fresh directory for one test, removed with everything in it when the test ends.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("segloss-cli-{name}-"))
        .tempdir()
        .unwrap()
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
    let scratch_dir = scratch("ok");
    let dir = scratch_dir.path();
    let input = logits(dir);
    let target = write(
        dir,
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
    let scratch_dir = scratch("reject");
    let dir = scratch_dir.path();
    let input = logits(dir);
    let target = write(
        dir,
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
    assert_eq!(output.status.code(), Some(1), "a rejection exits 1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("target 4 is out of bounds"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn unknown_parameters_and_bad_values_are_named() {
    let scratch_dir = scratch("params");
    let dir = scratch_dir.path();
    let input = logits(dir);
    let target = write(
        dir,
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
    let scratch_dir = scratch("pos-weight");
    let dir = scratch_dir.path();
    let input = logits(dir);
    let target = write(
        dir,
        "target.npy",
        Tensor::Float32(
            ArrayD::from_shape_vec(vec![2, 4], vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
                .unwrap(),
        ),
    );
    let pos_weight = write(
        dir,
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

/// `segloss certify` run from the repository root.
fn certify(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_segloss"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("certify")
        .args(args)
        .output()
        .unwrap()
}

fn one_line_error(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("segloss: ") && !stderr.contains("panicked"),
        "{stderr}"
    );
    stderr
}

#[test]
fn a_run_that_certifies_nothing_exits_2_and_says_why() {
    let output = certify(&["--filter", "no case has this in its id"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = one_line_error(&output);
    assert!(
        stderr.contains("nothing certified: no case was selected"),
        "{stderr}"
    );
    let output = certify(&["--filter", "nll_loss/f64/N4C3/sum/default"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
}

#[test]
fn unusable_timeouts_are_refused_before_anything_runs() {
    for flag in ["--timeout", "--hello-timeout"] {
        for timeout in ["-1", "0", "nan", "inf", "1e30", "soon"] {
            let output = certify(&["--cmd", "true", flag, timeout]);
            assert_eq!(output.status.code(), Some(2), "{flag} {timeout}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains(flag) && !stderr.contains("panicked"),
                "{flag} {timeout}: {stderr}"
            );
        }
    }
}

#[test]
fn stale_or_unprovable_fixtures_are_refused_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("fixtures");
    std::fs::create_dir(&fixtures).unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/manifest.json");
    std::fs::copy(manifest, fixtures.join("manifest.json")).unwrap();
    let fixtures = fixtures.to_string_lossy().into_owned();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--fixtures",
            &fixtures,
            "--filter",
            "nll_loss/f64/N4C3/sum/default",
        ];
        args.extend(extra);
        certify(&args)
    };
    let output = run(&[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(one_line_error(&output).contains("--no-provenance-check"));
    std::fs::create_dir_all(dir.path().join("scripts/segloss_gen")).unwrap();
    std::fs::write(dir.path().join("scripts/generate_fixtures.py"), "changed").unwrap();
    let output = run(&[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(one_line_error(&output).contains("stale fixtures"));
    // Past the provenance check, the copied manifest's files are missing: each case fails.
    let output = run(&["--no-provenance-check"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("fixture unusable"));
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_segloss"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("list")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe is closed now (its reader dropped): the rest of the listing meets EPIPE.
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn explain_exits_0_on_a_passing_case_and_draws_into_the_given_directory() {
    let dir = tempfile::tempdir().unwrap();
    let case = "nll_loss/f64/N4C3/none/weight";
    let output = certify(&[
        "--explain",
        case,
        "--explain-dir",
        &dir.path().to_string_lossy(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("forward: passed") && text.contains("gradient: passed"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        3,
        "gradient and loss heatmaps, and the target map"
    );
}

#[test]
fn grade_reports_ulps_beside_the_anchor_and_refuses_to_grade_nothing() {
    let output = certify(&["--grade", "--filter", "nll_loss/f64/N4C3/mean/"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let row = text
        .lines()
        .find(|line| line.starts_with("nll_loss "))
        .unwrap_or_else(|| panic!("{text}"));
    let figures: Vec<f64> = row
        .split_whitespace()
        .skip(1)
        .map(|figure| figure.parse().unwrap())
        .collect();
    assert_eq!(figures.len(), 5, "{row}");
    assert_eq!(figures[0], 9.0, "the nine value cases: {row}");
    assert!(
        figures[1..].iter().all(|ulps| (0.0..100.0).contains(ulps)),
        "{row}"
    );
    // Error cases only: nothing to grade.
    let output = certify(&["--grade", "--filter", "nll_loss/f64/N4C3/mean/error=*"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(one_line_error(&output).contains("nothing graded"));
}

/// `segloss list` with `args`, from the repository root: its exit status and stdout.
fn list(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_segloss"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("list")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
    )
}

/// The case ids of `segloss list`'s text output.
fn ids(text: &str) -> Vec<&str> {
    text.lines()
        .map(|line| line.split('\t').next().unwrap())
        .collect()
}

#[test]
fn filters_select_whole_segments_not_substrings() {
    let (status, every) = list(&[]);
    assert_eq!(status, Some(0));
    let every = ids(&every);
    let (status, text) = list(&["--filter", "cross_entropy/f32"]);
    assert_eq!(status, Some(0));
    let selected = ids(&text);
    let expected: Vec<&str> = every
        .iter()
        .copied()
        .filter(|id| id.starts_with("cross_entropy/f32/"))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(selected, expected);
    assert!(
        every
            .iter()
            .any(|id| id.starts_with("binary_cross_entropy/f32/")),
        "the substring would have matched these"
    );
    // The same with a trailing slash or a trailing glob segment.
    for filter in ["cross_entropy/f32/", "cross_entropy/f32/*"] {
        assert_eq!(ids(&list(&["--filter", filter]).1), expected, "{filter}");
    }
    // certify selects by the same matcher: no binary_cross_entropy check is run.
    let output = certify(&["--json", "--filter", "cross_entropy/f32"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    for check in checks {
        let name = check["check"].as_str().unwrap();
        assert!(name.starts_with("cross_entropy/f32/"), "{name}");
    }
}

#[test]
fn globs_match_within_a_segment_and_double_stars_across_segments() {
    let every = list(&[]).1;
    let every = ids(&every);
    let smp_f64 = list(&["--filter", "smp.*Loss/f64"]).1;
    let smp_f64 = ids(&smp_f64);
    let expected: Vec<&str> = every
        .iter()
        .copied()
        .filter(|id| {
            let segments: Vec<&str> = id.split('/').collect();
            segments[0].starts_with("smp.") && segments[0].ends_with("Loss") && segments[1] == "f64"
        })
        .collect();
    assert!(expected.len() > 10, "{expected:?}");
    assert_eq!(smp_f64, expected);
    // Repeated filters: any may match.
    let (status, text) = list(&[
        "--filter",
        "**/ignore_index=255",
        "--filter",
        "nll_loss/*/N4C3/sum",
    ]);
    assert_eq!(status, Some(0));
    let selected = ids(&text);
    assert!(!selected.is_empty());
    for id in &selected {
        let segments: Vec<&str> = id.split('/').collect();
        assert!(
            segments[4] == "ignore_index=255"
                || (segments[0] == "nll_loss" && segments[2] == "N4C3" && segments[3] == "sum"),
            "{id}"
        );
    }
    // A filter that selects nothing is a one-line error, as certify's.
    let output = Command::new(env!("CARGO_BIN_EXE_segloss"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["list", "--filter", "entropy"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(one_line_error(&output).contains("no case selected"));
}

#[test]
fn list_json_carries_what_the_text_says() {
    let (status, text) = list(&["--filter", "nll_loss/f64"]);
    assert_eq!(status, Some(0));
    let (status, json) = list(&["--json", "--filter", "nll_loss/f64"]);
    assert_eq!(status, Some(0));
    let cases: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(cases.len(), lines.len());
    assert!(cases.len() > 10);
    let mut errors = 0;
    for (case, line) in cases.iter().zip(&lines) {
        let (id, outcome) = line.split_once('\t').unwrap();
        assert_eq!(case["id"], id);
        assert_eq!(case["loss"], "nll_loss");
        assert_eq!(case["dtype"], "f64");
        match outcome.strip_prefix("error ") {
            Some(kind) => {
                errors += 1;
                assert_eq!(case["outcome"], "error", "{case}");
                assert_eq!(case["error_kind"], kind, "{case}");
            }
            None => {
                assert_eq!(outcome, "values");
                assert_eq!(case["outcome"], "values", "{case}");
                assert!(case.get("error_kind").is_none(), "{case}");
            }
        }
    }
    assert!(errors > 0);
    // The whole inventory too: as many cases as lines.
    let every: Vec<serde_json::Value> = serde_json::from_str(&list(&["--json"]).1).unwrap();
    assert_eq!(every.len(), list(&[]).1.lines().count());
}

/// `segloss certify` of the deliberately broken adapter (`tests/adapters/broken_adapter.py`, which
/// needs `python3`) in `mode`, on the cases `filter` selects, with `args`.
fn certify_broken(mode: &str, filter: &str, args: &[&str]) -> std::process::Output {
    let adapter = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/adapters/broken_adapter.py"
    );
    Command::new(env!("CARGO_BIN_EXE_segloss"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SEGLOSS_BIN", env!("CARGO_BIN_EXE_segloss"))
        .env_remove("SEGLOSS_ADAPTER_PIDS")
        .args(["certify", "--timeout", "10", "--filter", filter])
        .args(["--cmd", &format!("python3 {adapter} {mode}")])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_known_failure_list_is_started_from_a_run_and_refused_until_its_reasons_are_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known.json");
    let file = path.to_string_lossy().into_owned();
    let filter = "nll_loss/f64/N4C3/mean";
    let written = certify_broken("wrong-mean", filter, &["--write-known-failures", &file]);
    // The failures still fail the run: a fresh list explains nothing.
    assert_eq!(written.status.code(), Some(1), "{written:?}");
    let stderr = String::from_utf8_lossy(&written.stderr);
    assert!(
        stderr.contains("REPLACE ME") && stderr.contains(&file),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let mut list: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["implementation"], "broken (wrong-mean)");
    let groups = list["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{list:#}");
    assert_eq!(groups[0]["fails_as"], "mismatch");
    assert!(groups[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("REPLACE ME"));
    let checks: Vec<&str> = groups[0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| check.as_str().unwrap())
        .collect();
    assert!(
        checks.contains(&"nll_loss/f64/N4C3/mean/weight/forward"),
        "{checks:?}"
    );
    assert!(checks
        .iter()
        .all(|check| check.starts_with("nll_loss/f64/N4C3/mean/")));
    assert!(checks.windows(2).all(|pair| pair[0] < pair[1]), "sorted");

    // An existing file is not replaced unless asked, and nothing runs.
    let again = certify_broken("wrong-mean", filter, &["--write-known-failures", &file]);
    assert_eq!(again.status.code(), Some(2));
    let error = one_line_error(&again);
    assert!(
        error.contains(&file) && error.contains("--overwrite"),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    let replaced = certify_broken(
        "wrong-mean",
        filter,
        &["--write-known-failures", &file, "--overwrite"],
    );
    assert_eq!(replaced.status.code(), Some(1), "{replaced:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    // Placeholder reasons are refused, naming the file and the fix.
    let refused = certify_broken("wrong-mean", filter, &["--known-failures", &file]);
    assert_eq!(refused.status.code(), Some(2));
    let error = one_line_error(&refused);
    assert!(
        error.contains(&file) && error.contains("placeholder") && error.contains("replace"),
        "{error}"
    );

    // With the reason given, the list explains the run.
    list["groups"][0]["reason"] =
        "divides the sum by the number of target positions, ignoring weights and ignore_index"
            .into();
    std::fs::write(&path, list.to_string()).unwrap();
    let explained = certify_broken("wrong-mean", filter, &["--known-failures", &file]);
    assert_eq!(explained.status.code(), Some(0), "{explained:?}");
}

#[test]
fn the_json_report_names_version_fixtures_and_times_and_explain_defaults_to_a_temporary_directory()
{
    let output = certify(&["--json", "--filter", "nll_loss/f64/N4C3/mean"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["segloss_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(report["command"], serde_json::Value::Null);
    assert_eq!(report["fixtures"]["torch"], "2.15.0");
    assert!(report["fixtures"]["script_sha256"].is_string());
    for check in report["checks"].as_array().unwrap() {
        assert!(check["elapsed_s"].as_f64().unwrap() >= 0.0, "{check}");
        if check["check"].as_str().unwrap().ends_with("/forward") {
            assert!(check["max_abs"].is_number(), "{check}");
            assert!(check["tolerance"]["reason"].is_string(), "{check}");
        }
    }

    // The system's temporary directory, as the child process sees it: one of the test's own, so
    // that nothing is left behind.
    let temporary = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_segloss"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TMPDIR", temporary.path())
        .args(["certify", "--explain", "nll_loss/f64/N4C3/none/weight"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let heatmap = text
        .lines()
        .find_map(|line| line.strip_prefix("heatmap: "))
        .expect("a heatmap path is printed");
    let path = std::path::Path::new(heatmap);
    assert!(
        path.starts_with(temporary.path().join("segloss-explain")),
        "{heatmap}"
    );
    assert!(std::fs::read(path).unwrap().starts_with(b"\x89PNG"));
}

#[test]
fn outside_the_repository_the_fixtures_are_found_or_the_error_says_how_to_name_them() {
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |env: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_segloss"));
        command
            .current_dir(elsewhere.path())
            .args(["list", "--filter", "nll_loss/f64/N4C3/mean"]);
        match env {
            Some(value) => command.env("SEGLOSS_FIXTURES", value),
            None => command.env_remove("SEGLOSS_FIXTURES"),
        };
        command.output().unwrap()
    };
    let found = run(None);
    assert_eq!(found.status.code(), Some(0), "{found:?}");
    assert!(String::from_utf8_lossy(&found.stdout).contains("nll_loss/f64/N4C3/mean/default"));
    let named = run(Some(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures")));
    assert_eq!(named.status.code(), Some(0), "{named:?}");
    let missing = run(Some("no/such/fixtures"));
    assert_eq!(missing.status.code(), Some(2));
    let error = one_line_error(&missing);
    assert!(
        error.contains("SEGLOSS_FIXTURES=no/such/fixtures")
            && error.contains("give --fixtures DIR"),
        "{error}"
    );
}

#[test]
fn shards_split_a_run_and_merge_back_into_the_same_report() {
    let run = |extra: &[&str]| {
        let mut args = vec!["--json", "--filter", "nll_loss"];
        args.extend(extra);
        let output = certify(&args);
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let whole = run(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    let mut sizes = Vec::new();
    for shard in ["1/3", "2/3", "3/3"] {
        let report = run(&["--shard", shard]);
        sizes.push(report["checks"].as_array().unwrap().len());
        let path = dir.path().join(format!("shard{}.json", paths.len()));
        std::fs::write(&path, report.to_string()).unwrap();
        paths.push(path.to_string_lossy().into_owned());
    }
    assert!(sizes.iter().all(|&size| size > 0), "{sizes:?}");
    let output = Command::new(env!("CARGO_BIN_EXE_segloss"))
        .arg("merge")
        .args(&paths)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let merged: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // Counts exactly; the worst differences up to the last digit JSON reading may move.
    let rows = |report: &serde_json::Value| report["rows"].as_array().unwrap().clone();
    assert_eq!(rows(&merged).len(), rows(&whole).len());
    for (merged, whole) in rows(&merged).iter().zip(rows(&whole).iter()) {
        for (field, value) in whole.as_object().unwrap() {
            match (value.as_f64(), merged[field].as_f64()) {
                (Some(a), Some(b)) if field.starts_with("worst") => {
                    assert!((a - b).abs() <= 1e-15 * a.abs(), "{field}: {a} {b}")
                }
                _ => assert_eq!(&merged[field], value, "{field}"),
            }
        }
    }
    assert_eq!(merged["known_failures"], whole["known_failures"]);
    assert_eq!(merged["upstream_defects"], whole["upstream_defects"]);
    let names = |report: &serde_json::Value| {
        let mut names: Vec<String> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|check| check["check"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&merged), names(&whole));
    assert_eq!(merged["shards"], 3);

    let bad = certify(&["--shard", "4/3"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("1 <= K <= N"));
    let mut other = whole.clone();
    other["implementation"] = "someone else".into();
    let other_path = dir.path().join("other.json");
    std::fs::write(&other_path, other.to_string()).unwrap();
    let mismatch = Command::new(env!("CARGO_BIN_EXE_segloss"))
        .args(["merge", &paths[0], &other_path.to_string_lossy()])
        .output()
        .unwrap();
    assert_eq!(mismatch.status.code(), Some(2));
    assert!(one_line_error(&mismatch).contains("shards of one run only"));
}

/// A report without what differs from run to run: the times.
fn without_times(mut report: serde_json::Value) -> serde_json::Value {
    report["elapsed_s"] = serde_json::Value::Null;
    report["timing"] = serde_json::Value::Null;
    for check in report["checks"].as_array_mut().unwrap() {
        check["elapsed_s"] = serde_json::Value::Null;
    }
    report
}

#[test]
fn jobs_answer_cases_side_by_side_with_the_same_report() {
    let run = |jobs: &str| {
        let output = certify(&["--json", "--jobs", jobs, "--filter", "cross_entropy/f64"]);
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let (one, three) = (run("1"), run("3"));
    assert_eq!(three["timing"]["jobs"], 3);
    let cases = one["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| check["check"].as_str().unwrap().rsplit_once('/').unwrap().0)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(one["timing"]["computed_cases"], cases);
    assert_eq!(without_times(one), without_times(three));
    // The terminal summary ends with the run's speed; the reference has no adapter to wait for.
    let output = certify(&["--jobs", "2", "--filter", "cross_entropy/f64"]);
    let text = String::from_utf8_lossy(&output.stdout);
    let speed = text.lines().last().unwrap();
    let pattern = regex::Regex::new(&format!(
        r"^speed: {cases} computed cases in [0-9.]+ s \([0-9]+/s, 2 jobs\), start-up [0-9.]+ s$"
    ))
    .unwrap();
    assert!(pattern.is_match(speed), "{speed}");
    for jobs in ["0", "65", "two"] {
        let output = certify(&["--jobs", jobs]);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("is not a number of jobs: give 1 to 64"),
            "{stderr}"
        );
    }
}
