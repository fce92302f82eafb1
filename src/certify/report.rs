//! Reports of a certification run: a terminal summary per loss and option, JSON for machines,
//! JUnit XML for CI systems, and a Markdown conformance matrix (implementation × loss × option).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::known::{KnownFailures, Status};
use super::{Alternative, CaseCheck, CheckResult, DeclaredCall, Failure, FailureKind, Verdict};
use crate::compare::{tolerance_for, Agreement, Mismatch, Tier, Tolerance};
use crate::error::{Error, Result};
use crate::files::{read_regular_file, MAX_DOCUMENT_BYTES};
use crate::fixtures::dtype_of_segment;

/// A judged run: every check with its status against the known-failure list.
pub struct Report {
    /// The implementation's name.
    pub implementation: String,
    /// The tolerance tier.
    pub tier: Tier,
    /// Every check, in run order, with its status.
    pub checks: Vec<(CheckResult, Status)>,
    /// The corpus the checks came from (`fixtures`, `large`, `random (--cases N --seed S)`).
    pub corpus: String,
    /// Minimal failing cases found by shrinking, each described in a few lines.
    pub reproducers: Vec<String>,
    /// The fixtures' provenance (the manifest's generator record), when the run read fixtures.
    pub provenance: Option<serde_json::Value>,
    /// The command that runs the implementation, for an out-of-process one.
    pub command: Option<String>,
    /// The calls the implementation declares for the catalog losses it implements.
    pub calls: Vec<DeclaredCall>,
    /// How long the run took, and where the time went, when it was measured.
    pub timing: Option<Timing>,
}

/// How long a run took: its cases, in wall time, and for an implementation in another process
/// how much of it was spent waiting for answers (the rest is segloss's: loading cases, writing
/// requests, reading and judging answers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timing {
    /// The adapter processes run side by side (`--jobs`).
    pub jobs: usize,
    /// Starting the implementation: the adapter's start-up and hello, in seconds.
    pub startup_s: f64,
    /// The run's cases, wall time in seconds.
    pub cases_s: f64,
    /// Time waiting for answers, from sending a case to reading its answer, summed over the
    /// cases (over every job: it may exceed `cases_s`); for an out-of-process implementation.
    pub adapter_s: Option<f64>,
}

/// What the terminal table's columns count.
const LEGEND: &str =
    "passed: within tolerance of the anchor's value (or an accepted alternative), or rejected for
  the anchor's reason; failed: not, and not listed; unsup: the implementation does not support it;
  known: failed as its known-failure list says; unexp: listed as failing, but passed.
  Counts are checks (forward, gradient, or rejection); worst abs and rel over passed value checks.
";

/// A tolerance in a few words.
fn tolerance_text(tolerance: &Tolerance) -> String {
    match tolerance.normwise {
        Some(bound) => format!(
            "{} ulps (of {} bits) of the tensor's largest expected magnitude",
            bound.ulps, bound.precision
        ),
        None => format!(
            "rtol {:e}, atol {:e} per element",
            tolerance.rtol, tolerance.atol
        ),
    }
}

/// A check's figures for `--json`: its worst differences (from the expected value, or the
/// accepted alternative), where the worst is for a failure, and the tolerance it was held to.
fn figures(result: &CheckResult, tier: Tier) -> serde_json::Value {
    let CaseCheck::Values(check) = result.check else {
        return json!({});
    };
    let tolerance_json = |tolerance: &Tolerance, reason: &str| {
        json!({
            "rtol": tolerance.rtol,
            "atol": tolerance.atol,
            "normwise_ulps": tolerance.normwise.map(|bound| bound.ulps),
            "reason": reason,
        })
    };
    match &result.verdict {
        Verdict::Failed(Failure {
            comparison: Some(comparison),
            ..
        }) => {
            let tolerance = tolerance_json(&comparison.tolerance, comparison.reason);
            match &comparison.mismatch {
                Mismatch::Values {
                    mismatched,
                    total,
                    worst_abs,
                    worst_rel,
                    ..
                } => json!({
                    "max_abs": finite(worst_abs.0), "max_rel": finite(worst_rel.0),
                    "worst_index": worst_abs.1, "elements_beyond": mismatched,
                    "elements": total, "tolerance": tolerance,
                }),
                Mismatch::Normwise {
                    worst_abs,
                    ulps,
                    over,
                    total,
                    ..
                } => json!({
                    "max_abs": finite(worst_abs.0), "normwise_ulps": finite(*ulps),
                    "worst_index": worst_abs.1, "elements_beyond": over,
                    "elements": total, "tolerance": tolerance,
                }),
                Mismatch::Shape { actual, expected } => json!({
                    "shape": actual, "expected_shape": expected, "tolerance": tolerance,
                }),
            }
        }
        verdict => {
            let dtype = dtype_of_segment(result.case_id.split('/').nth(1).unwrap_or_default());
            let (tolerance, reason) = tolerance_for(&result.case_id, dtype, check, tier);
            let agreement = verdict.agreement();
            json!({
                "max_abs": agreement.map(|a| finite(a.max_abs)),
                "max_rel": agreement.map(|a| finite(a.max_rel)),
                "normwise_ulps": agreement.and_then(|a| a.normwise_ulps).map(finite),
                "tolerance": tolerance_json(&tolerance, reason),
            })
        }
    }
}

/// A figure for JSON, which has no infinity: `null` where it is not finite.
fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// Totals for one loss and option.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The loss id.
    pub loss: String,
    /// The option (`default`, `weight`, `ignore_index`, `target=probs`, `rejections`, …).
    pub option: String,
    /// Checks passed.
    pub passed: usize,
    /// Checks failed and not listed.
    pub failed: usize,
    /// Checks the implementation does not support.
    pub unsupported: usize,
    /// Checks failed and listed as known failures.
    pub known: usize,
    /// Checks passed although listed.
    pub unexpected_passes: usize,
    /// Checks computed by emulating the option.
    pub emulated: usize,
    /// Passed checks whose value is not the anchor's but the exact value an anchor-artefact rule
    /// accepts instead.
    #[serde(default)]
    pub accepted: usize,
    /// Passed checks whose outcome is not the anchor's but the corrected outcome of an upstream
    /// defect the case shows.
    #[serde(default)]
    pub corrected: usize,
    /// The greatest absolute difference over passed value checks.
    #[serde(with = "infinite_as_null")]
    pub worst_abs: f64,
    /// The greatest relative difference over passed value checks (infinite where an expected 0
    /// met a difference within atol).
    #[serde(with = "infinite_as_null")]
    pub worst_rel: f64,
}

/// JSON has no infinity: a non-finite worst difference is written as `null` and read back as +inf.
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::INFINITY))
    }
}

/// The options a case exercises, from its variant: each token, with parameter values dropped
/// (`ignore_index=1` → `ignore_index`) except for `target=…` and `weight=…`, which name kinds of
/// input; error cases are grouped as `rejections`.
pub fn options_of(variant: &str) -> Vec<String> {
    if variant.starts_with("error=") {
        return vec!["rejections".into()];
    }
    // A generated case's scenario follows its template's variant after a '+'.
    let template_variant = variant.split(['+', '#']).next().unwrap_or_default();
    template_variant
        .split(',')
        .map(|token| match token.split_once('=') {
            Some((key, _)) if key != "target" && key != "weight" => key.to_string(),
            _ => token.to_string(),
        })
        .collect()
}

impl Report {
    /// Judges results against a known-failure list.
    pub fn new(
        implementation: &str,
        tier: Tier,
        results: Vec<CheckResult>,
        known: &KnownFailures,
    ) -> Report {
        let checks = results
            .into_iter()
            .map(|result| {
                let status = known.status(&result);
                (result, status)
            })
            .collect();
        Report {
            implementation: implementation.to_string(),
            tier,
            checks,
            corpus: "fixtures".to_string(),
            reproducers: Vec::new(),
            provenance: None,
            command: None,
            calls: Vec::new(),
            timing: None,
        }
    }

    /// The same report, with its timing.
    pub fn with_timing(self, timing: Timing) -> Report {
        Report {
            timing: Some(timing),
            ..self
        }
    }

    /// The cases the implementation computed: answered with values or a rejection, rather than
    /// unsupported or no usable answer.
    pub fn computed_cases(&self) -> usize {
        let mut computed = std::collections::BTreeSet::new();
        for (result, _) in &self.checks {
            let answered = match &result.verdict {
                Verdict::Unsupported(_) => false,
                Verdict::Failed(failure) => failure.kind != FailureKind::NoAnswer,
                Verdict::Passed(_) | Verdict::Accepted { .. } => true,
            };
            if answered {
                computed.insert(result.case_id.as_str());
            }
        }
        computed.len()
    }

    /// The timing line of the terminal summary: computed cases per second of the cases' wall
    /// time, and for an adapter the seconds spent waiting for it against segloss's own
    /// (thread-seconds: with several jobs both add up over the jobs).
    fn timing_text(&self, timing: &Timing) -> String {
        let computed = self.computed_cases();
        let mut text = format!(
            "speed: {computed} computed cases in {:.2} s ({:.0}/s, {} job{}), start-up {:.2} s",
            timing.cases_s,
            computed as f64 / timing.cases_s.max(1e-9),
            timing.jobs,
            if timing.jobs == 1 { "" } else { "s" },
            timing.startup_s
        );
        if let Some(adapter) = timing.adapter_s {
            let busy = timing.cases_s * timing.jobs as f64;
            let _ = write!(
                text,
                "; waiting for the adapter {adapter:.2} s, segloss {:.2} s",
                (busy - adapter).max(0.0)
            );
        }
        text
    }

    /// The same report, with the calls the implementation declares.
    pub fn with_calls(self, calls: Vec<DeclaredCall>) -> Report {
        Report { calls, ..self }
    }

    /// The same report, naming the fixtures' provenance and the implementation's command.
    pub fn with_origin(
        self,
        provenance: Option<serde_json::Value>,
        command: Option<String>,
    ) -> Report {
        Report {
            provenance,
            command,
            ..self
        }
    }

    /// The time the implementation took over the run's cases.
    pub fn elapsed(&self) -> std::time::Duration {
        let mut seen = std::collections::BTreeSet::new();
        self.checks
            .iter()
            .filter(|(result, _)| seen.insert(result.case_id.as_str()))
            .map(|(result, _)| result.elapsed)
            .sum()
    }

    /// The same report, naming the corpus its checks came from.
    pub fn with_corpus(self, corpus: impl Into<String>) -> Report {
        Report {
            corpus: corpus.into(),
            ..self
        }
    }

    /// Whether any check fails the run (an unlisted failure, a listed one failing another way, an
    /// unexpected pass).
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|(_, status)| status.fails_run())
    }

    /// Whether at least one check passed: a run in which every check is unsupported, a known
    /// failure or failed certified nothing.
    pub fn certified_something(&self) -> bool {
        self.checks
            .iter()
            .any(|(_, status)| *status == Status::Passed)
    }

    /// Totals per loss and option, sorted; each loss also gets an `all` row.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
        for (result, status) in &self.checks {
            let variant = result.case_id.rsplit('/').next().unwrap_or_default();
            for option in options_of(variant).into_iter().chain(["all".to_string()]) {
                let row = rows
                    .entry((result.loss.clone(), option.clone()))
                    .or_insert_with(|| Row {
                        loss: result.loss.clone(),
                        option,
                        ..Row::default()
                    });
                match status {
                    Status::Passed => row.passed += 1,
                    Status::Failed | Status::FailsDifferently { .. } => row.failed += 1,
                    Status::Unsupported => row.unsupported += 1,
                    Status::KnownFailure(_) => row.known += 1,
                    Status::UnexpectedPass(_) => row.unexpected_passes += 1,
                }
                if result.emulated.is_some() {
                    row.emulated += 1;
                }
                match &result.verdict {
                    Verdict::Accepted {
                        alternative: Alternative::Exact(_),
                        ..
                    } => row.accepted += 1,
                    Verdict::Accepted {
                        alternative: Alternative::Corrected(_),
                        ..
                    } => row.corrected += 1,
                    _ => {}
                }
                if let Some(Agreement {
                    max_abs, max_rel, ..
                }) = result.verdict.agreement()
                {
                    row.worst_abs = row.worst_abs.max(max_abs);
                    row.worst_rel = row.worst_rel.max(max_rel);
                }
            }
        }
        rows.into_values().collect()
    }

    /// The terminal summary: a table per loss and option, then every check that fails the run.
    pub fn terminal(&self) -> String {
        let mut text = format!(
            "certified {} at the {} tier on the {} corpus\n",
            self.implementation,
            self.tier.name(),
            self.corpus
        );
        let rows = self.rows();
        let width = |header: &str, cell: fn(&Row) -> &str| {
            rows.iter()
                .map(|row| cell(row).chars().count())
                .fold(header.len(), usize::max)
        };
        let (loss_width, option_width) = (
            width("loss", |row| &row.loss),
            width("option", |row| &row.option),
        );
        let _ = writeln!(
            text,
            "{:<loss_width$}  {:<option_width$} {:>6} {:>6} {:>6} {:>6} {:>6} {:>10} {:>10}",
            "loss",
            "option",
            "passed",
            "failed",
            "unsup",
            "known",
            "unexp",
            "worst abs",
            "worst rel"
        );
        for row in &rows {
            let notes: String = [
                (row.emulated, "emulated"),
                (row.accepted, "anchor artefact accepted"),
                (row.corrected, "upstream defect corrected"),
            ]
            .iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, label)| format!("  ({count} {label})"))
            .collect();
            let _ = writeln!(
                text,
                "{:<loss_width$}  {:<option_width$} {:>6} {:>6} {:>6} {:>6} {:>6} {:>10.2e} {:>10.2e}{notes}",
                row.loss,
                row.option,
                row.passed,
                row.failed,
                row.unsupported,
                row.known,
                row.unexpected_passes,
                row.worst_abs,
                row.worst_rel,
            );
        }
        text.push_str(LEGEND);
        // Only the defects whose cases the implementation answered.
        for count in self
            .defect_counts()
            .into_iter()
            .filter(|count| count.anchor + count.corrected > 0)
        {
            let _ = writeln!(
                text,
                "upstream defect {} ({}): checks giving the anchor's outcome {}, the corrected one {}",
                count.defect, count.upstream, count.anchor, count.corrected
            );
        }
        // Each tolerance reason is printed once, after the failures that cite it.
        let mut reasons: Vec<&str> = Vec::new();
        for (result, status) in &self.checks {
            if let Some(problem) = failing_detail(status, &result.verdict) {
                let _ = writeln!(
                    text,
                    "FAILED {}\n  {}",
                    result.trial_name(),
                    problem.replace('\n', "\n  ")
                );
                if let (
                    Status::Failed | Status::FailsDifferently { .. },
                    Verdict::Failed(failure),
                ) = (status, &result.verdict)
                {
                    if let Some(comparison) = &failure.comparison {
                        let number = match reasons.iter().position(|&r| r == comparison.reason) {
                            Some(at) => at + 1,
                            None => {
                                reasons.push(comparison.reason);
                                reasons.len()
                            }
                        };
                        let _ = writeln!(
                            text,
                            "  allowed: {} (why: [{number}])",
                            tolerance_text(&comparison.tolerance)
                        );
                    }
                }
            }
        }
        for (index, reason) in reasons.iter().enumerate() {
            let _ = writeln!(text, "[{}] {reason}", index + 1);
        }
        let failing = self
            .checks
            .iter()
            .filter(|(_, status)| status.fails_run())
            .count();
        let cases = self
            .checks
            .iter()
            .map(|(result, _)| result.case_id.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let _ = writeln!(
            text,
            "{cases} cases, {} checks: {failing} fail the run",
            self.checks.len()
        );
        if let Some(timing) = &self.timing {
            let _ = writeln!(text, "{}", self.timing_text(timing));
        }
        printable(&text)
    }

    /// The run for machines: the segloss version, where the cases came from and what was run,
    /// the tier, totals and every check with its figures, tolerance and time.
    pub fn json(&self) -> serde_json::Value {
        let checks: Vec<_> = self
            .checks
            .iter()
            .map(|(result, status)| {
                let (failure, detail) = match &result.verdict {
                    Verdict::Passed(_) => (None, None),
                    Verdict::Accepted { alternative, .. } => {
                        (None, Some(format!("accepted: {}", alternative.label())))
                    }
                    Verdict::Failed(failure) => {
                        (Some(failure.kind.name()), Some(failure.detail.clone()))
                    }
                    Verdict::Unsupported(reason) => (None, Some(reason.clone())),
                };
                let mut check = json!({
                    "check": result.trial_name(),
                    "loss": result.loss,
                    "status": status.label(),
                    "failure": failure,
                    "detail": detail,
                    "emulated": result.emulated,
                    "upstream_defects": result.defects.iter().map(|defect| &defect.id).collect::<Vec<_>>(),
                    "elapsed_s": result.elapsed.as_secs_f64(),
                });
                if let (Some(check), Some(figures)) =
                    (check.as_object_mut(), figures(result, self.tier).as_object())
                {
                    check.extend(figures.clone());
                }
                if let Status::KnownFailure(reason) = status {
                    check["known_reason"] = json!(reason);
                }
                check
            })
            .collect();
        json!({
            "segloss_version": env!("CARGO_PKG_VERSION"),
            "implementation": self.implementation,
            "command": self.command,
            "fixtures": self.provenance,
            "tier": self.tier.name(),
            "corpus": self.corpus,
            "reproducers": self.reproducers,
            "failed": self.failed(),
            "certified_something": self.certified_something(),
            "elapsed_s": self.elapsed().as_secs_f64(),
            "rows": self.rows(),
            "known_failures": self.known_failure_counts(),
            "upstream_defects": self.defect_counts(),
            "calls": self.calls,
            "timing": self.timing.map(|timing| {
                let mut value = json!(timing);
                value["computed_cases"] = json!(self.computed_cases());
                value
            }),
            "checks": checks,
        })
    }

    /// What the conformance matrix takes from this run.
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            name: self.implementation.clone(),
            rows: self.rows(),
            known_failures: self.known_failure_counts(),
            defects: self.defect_counts(),
        }
    }

    /// For each upstream defect the run's cases show, how many passed checks gave the anchor's
    /// (defective) outcome and how many the corrected one.
    pub fn defect_counts(&self) -> Vec<DefectCount> {
        let mut counts: BTreeMap<&str, DefectCount> = BTreeMap::new();
        for (result, _) in &self.checks {
            for defect in &result.defects {
                let count = counts.entry(&defect.id).or_insert_with(|| DefectCount {
                    defect: defect.id.clone(),
                    upstream: defect.upstream.clone(),
                    ..DefectCount::default()
                });
                match &result.verdict {
                    Verdict::Passed(_) => count.anchor += 1,
                    Verdict::Accepted {
                        alternative: Alternative::Corrected(corrected),
                        ..
                    } if corrected.id == defect.id => count.corrected += 1,
                    _ => {}
                }
            }
        }
        counts.into_values().collect()
    }

    /// Each known-failure reason with how many of this run's checks failed as listed under it.
    pub fn known_failure_counts(&self) -> Vec<KnownFailureCount> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, status) in &self.checks {
            if let Status::KnownFailure(reason) = status {
                *counts.entry(reason).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|(reason, checks)| KnownFailureCount {
                reason: reason.to_string(),
                checks,
            })
            .collect()
    }

    /// JUnit XML: one test suite per loss, one test case per check.
    pub fn junit(&self) -> String {
        let mut by_loss: BTreeMap<&str, Vec<&(CheckResult, Status)>> = BTreeMap::new();
        for check in &self.checks {
            by_loss
                .entry(check.0.loss.as_str())
                .or_default()
                .push(check);
        }
        // A case's time is shared evenly by its checks.
        let mut checks_per_case: BTreeMap<&str, u32> = BTreeMap::new();
        for (result, _) in &self.checks {
            *checks_per_case.entry(&result.case_id).or_default() += 1;
        }
        let time = |result: &CheckResult| {
            (result.elapsed / checks_per_case[result.case_id.as_str()]).as_secs_f64()
        };
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            xml,
            "<testsuites name=\"{}\">",
            escape(&self.implementation)
        );
        for (loss, checks) in by_loss {
            let failures = checks
                .iter()
                .filter(|(_, status)| status.fails_run())
                .count();
            let skipped = checks
                .iter()
                .filter(|(_, status)| {
                    matches!(status, Status::Unsupported | Status::KnownFailure(_))
                })
                .count();
            let suite_time: f64 = checks.iter().map(|(result, _)| time(result)).sum();
            let _ = writeln!(
                xml,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{suite_time:.6}\">",
                escape(loss),
                checks.len()
            );
            for (result, status) in checks {
                let _ = write!(
                    xml,
                    "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.6}\"",
                    escape(loss),
                    escape(&result.trial_name()),
                    time(result)
                );
                let body = match (status, &result.verdict) {
                    (Status::Unsupported, Verdict::Unsupported(reason)) => {
                        format!("<skipped message=\"unsupported: {}\"/>", escape(reason))
                    }
                    (Status::KnownFailure(reason), _) => {
                        format!("<skipped message=\"known failure: {}\"/>", escape(reason))
                    }
                    (status, verdict) => failing_detail(status, verdict)
                        .map(|problem| {
                            format!(
                                "<failure message=\"{}\">{}</failure>",
                                status.label(),
                                escape(&problem)
                            )
                        })
                        .unwrap_or_default(),
                };
                if body.is_empty() {
                    xml.push_str("/>\n");
                } else {
                    let _ = writeln!(xml, ">{body}</testcase>");
                }
            }
            xml.push_str("  </testsuite>\n");
        }
        xml.push_str("</testsuites>\n");
        xml
    }
}

/// What the conformance matrix takes from one run: the implementation's name, its rows and its
/// known-failure reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The implementation's name.
    pub name: String,
    /// Totals per loss and option.
    pub rows: Vec<Row>,
    /// Each known-failure reason with its check count.
    pub known_failures: Vec<KnownFailureCount>,
    /// The upstream defects the run's cases show, with the outcomes given.
    pub defects: Vec<DefectCount>,
}

/// How a run answered the cases showing one upstream defect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefectCount {
    /// The defect's id.
    pub defect: String,
    /// Its upstream issue or pull request.
    pub upstream: String,
    /// Passed checks that gave the anchor's (defective) outcome.
    pub anchor: usize,
    /// Passed checks that gave the corrected outcome.
    pub corrected: usize,
}

/// The [`RunSummary`] of a `segloss certify --json` report (no known failures in a report
/// without them).
pub fn read_json_report(path: &Path) -> Result<RunSummary> {
    run_summary(&read_report_document(path)?, path)
}

/// The [`RunSummary`] of a `--json` report already read from `path`.
pub fn run_summary(report: &serde_json::Value, path: &Path) -> Result<RunSummary> {
    let invalid = |message: String| not_a_report(path, message);
    let name = report["implementation"]
        .as_str()
        .ok_or_else(|| invalid("no implementation name".into()))?
        .to_string();
    let rows: Vec<Row> = serde_json::from_value(report["rows"].clone())
        .map_err(|error| invalid(error.to_string()))?;
    Ok(RunSummary {
        name,
        rows,
        known_failures: serde_json::from_value(report["known_failures"].clone())
            .unwrap_or_default(),
        defects: serde_json::from_value(report["upstream_defects"].clone()).unwrap_or_default(),
    })
}

/// The `--json` reports of the shards of one run joined into one: every shard's checks and
/// reproducers, the rows, known-failure and defect counts added up (worst differences the
/// largest), `failed` and `certified_something` if any shard's. The shards must name the same
/// implementation, tier and corpus; the error says which does not.
pub fn merge_json_reports(
    reports: &[serde_json::Value],
) -> std::result::Result<serde_json::Value, String> {
    let first = reports.first().ok_or("no reports to merge")?;
    for (index, report) in reports.iter().enumerate() {
        for field in ["implementation", "tier", "corpus"] {
            if report[field] != first[field] || !report[field].is_string() {
                return Err(format!(
                    "report {} has {field} {} where the first has {}: shards of one run only",
                    index + 1,
                    report[field],
                    first[field]
                ));
            }
        }
    }
    let parse = |value: &serde_json::Value,
                 what: &str|
     -> std::result::Result<Vec<serde_json::Value>, String> {
        value
            .as_array()
            .cloned()
            .ok_or_else(|| format!("a report without {what}"))
    };
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    let mut known: BTreeMap<String, usize> = BTreeMap::new();
    let mut defects: BTreeMap<String, DefectCount> = BTreeMap::new();
    let (mut checks, mut reproducers) = (Vec::new(), Vec::new());
    for report in reports {
        for row in parse(&report["rows"], "rows")? {
            let row: Row = serde_json::from_value(row).map_err(|error| error.to_string())?;
            let total = rows
                .entry((row.loss.clone(), row.option.clone()))
                .or_insert_with(|| Row {
                    loss: row.loss.clone(),
                    option: row.option.clone(),
                    ..Row::default()
                });
            total.passed += row.passed;
            total.failed += row.failed;
            total.unsupported += row.unsupported;
            total.known += row.known;
            total.unexpected_passes += row.unexpected_passes;
            total.emulated += row.emulated;
            total.accepted += row.accepted;
            total.corrected += row.corrected;
            total.worst_abs = total.worst_abs.max(row.worst_abs);
            total.worst_rel = total.worst_rel.max(row.worst_rel);
        }
        for count in parse(&report["known_failures"], "known_failures")? {
            let count: KnownFailureCount =
                serde_json::from_value(count).map_err(|error| error.to_string())?;
            *known.entry(count.reason).or_default() += count.checks;
        }
        for count in parse(&report["upstream_defects"], "upstream_defects")? {
            let count: DefectCount =
                serde_json::from_value(count).map_err(|error| error.to_string())?;
            let total = defects
                .entry(count.defect.clone())
                .or_insert_with(|| DefectCount {
                    anchor: 0,
                    corrected: 0,
                    ..count.clone()
                });
            total.anchor += count.anchor;
            total.corrected += count.corrected;
        }
        checks.extend(parse(&report["checks"], "checks")?);
        reproducers.extend(parse(&report["reproducers"], "reproducers")?);
    }
    let any = |field: &str| reports.iter().any(|report| report[field] == true);
    let mut merged = first.clone();
    merged["rows"] = json!(rows.into_values().collect::<Vec<_>>());
    merged["known_failures"] = json!(known
        .into_iter()
        .map(|(reason, checks)| KnownFailureCount { reason, checks })
        .collect::<Vec<_>>());
    merged["upstream_defects"] = json!(defects.into_values().collect::<Vec<_>>());
    merged["checks"] = json!(checks);
    merged["reproducers"] = json!(reproducers);
    merged["failed"] = json!(any("failed"));
    merged["certified_something"] = json!(any("certified_something"));
    merged["elapsed_s"] = json!(reports
        .iter()
        .filter_map(|report| report["elapsed_s"].as_f64())
        .sum::<f64>());
    merged["shards"] = json!(reports.len());
    Ok(merged)
}

/// A `segloss certify --json` report as JSON, read within the document size limit.
pub fn read_report_document(path: &Path) -> Result<serde_json::Value> {
    serde_json::from_slice(&read_regular_file(path, MAX_DOCUMENT_BYTES)?)
        .map_err(|error| not_a_report(path, error.to_string()))
}

/// A call as the Rosetta shows it: the text, and for which cases when not all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallText {
    /// The implementation's call.
    pub call: String,
    /// For which cases of the loss, when not all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// A catalog loss an implementation declares calls for, with what its certification found over
/// every check of that loss.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedLoss {
    /// The catalog loss id.
    pub loss: String,
    /// The calls the implementation makes for it.
    pub calls: Vec<CallText>,
    /// Checks passed.
    pub passed: usize,
    /// Checks failed as its known-failure list says.
    pub known: usize,
    /// Checks failed otherwise (unexpected passes included: the list is wrong).
    pub failed: usize,
    /// Checks of options it does not support.
    pub unsupported: usize,
    /// Checks it computed by emulating an option it lacks.
    pub emulated: usize,
    /// The reasons of its known failures on this loss, each once, in order of first appearance.
    pub known_reasons: Vec<String>,
    /// What it does not support, in its own words, each once, in order of first appearance.
    pub unsupported_reasons: Vec<String>,
}

/// The losses a `--json` report's implementation declares calls for, with their checks counted
/// (from the report's `calls` and `checks`; none in a report that declares no calls).
pub fn certified_losses(
    report: &serde_json::Value,
) -> std::result::Result<Vec<CertifiedLoss>, String> {
    let declared: Vec<DeclaredCall> = match &report["calls"] {
        serde_json::Value::Null => Vec::new(),
        calls => {
            serde_json::from_value(calls.clone()).map_err(|error| format!("calls: {error}"))?
        }
    };
    let mut losses: BTreeMap<String, CertifiedLoss> = BTreeMap::new();
    for DeclaredCall { loss, call, when } in declared {
        let entry = losses.entry(loss.clone()).or_insert_with(|| CertifiedLoss {
            loss,
            ..CertifiedLoss::default()
        });
        entry.calls.push(CallText { call, when });
    }
    let checks = report["checks"]
        .as_array()
        .ok_or("a report without checks")?;
    for check in checks {
        let text = |key: &str| check[key].as_str().map(str::to_string);
        let Some(entry) = text("loss").and_then(|loss| losses.get_mut(&loss)) else {
            continue;
        };
        let remember = |reasons: &mut Vec<String>, reason: Option<String>| {
            if let Some(reason) = reason.filter(|reason| !reasons.contains(reason)) {
                reasons.push(reason);
            }
        };
        match text("status").as_deref() {
            Some("passed") => entry.passed += 1,
            Some("known failure") => {
                entry.known += 1;
                remember(&mut entry.known_reasons, text("known_reason"));
            }
            Some("unsupported") => {
                entry.unsupported += 1;
                remember(&mut entry.unsupported_reasons, text("detail"));
            }
            _ => entry.failed += 1,
        }
        if !check["emulated"].is_null() {
            entry.emulated += 1;
        }
    }
    Ok(losses.into_values().collect())
}

/// The error for a file that is not a `--json` report, saying why.
fn not_a_report(path: &Path, message: String) -> Error {
    Error::Manifest {
        path: path.to_path_buf(),
        message: format!("not a segloss certify --json report: {message}"),
    }
}

/// A known-failure reason of a run and how many checks failed as listed under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownFailureCount {
    /// The list's reason.
    pub reason: String,
    /// How many checks.
    pub checks: usize,
}

/// A Markdown list of the upstream defects each run reproduces: the defect cases where it gave the
/// anchor's outcome (or the corrected one), then its known-failure reasons that cite an upstream
/// issue or pull request (`project#123`, `PR #123`), with their check counts.
fn upstream_defects_markdown(runs: &[RunSummary]) -> String {
    let cites = |reason: &str| {
        reason
            .split('#')
            .skip(1)
            .any(|after| after.starts_with(|c: char| c.is_ascii_digit()))
    };
    let mut text = String::from("#### Upstream defects reproduced\n\n");
    let mut any = false;
    for run in runs {
        for count in &run.defects {
            for (checks, gave) in [(count.anchor, "reproduces"), (count.corrected, "corrects")] {
                if checks > 0 {
                    any = true;
                    let _ = writeln!(
                        text,
                        "* **{}** ({checks} check{}): {gave} upstream defect `{}` ({})",
                        escape_markdown(&run.name),
                        if checks == 1 { "" } else { "s" },
                        count.defect,
                        escape_markdown(&count.upstream)
                    );
                }
            }
        }
        for count in run
            .known_failures
            .iter()
            .filter(|count| cites(&count.reason))
        {
            any = true;
            let _ = writeln!(
                text,
                "* **{}** ({} checks): {}",
                escape_markdown(&run.name),
                count.checks,
                escape_markdown(&count.reason)
            );
        }
    }
    if !any {
        text.push_str(
            "None of these runs answers a defect case or has a known failure citing an upstream issue.\n",
        );
    }
    text.push('\n');
    text
}

/// The start and end markers of the generated matrix in a Markdown file.
pub const MATRIX_MARKERS: (&str, &str) = (
    "<!-- conformance-matrix:start -->",
    "<!-- conformance-matrix:end -->",
);

/// `text` with the part between the [`MATRIX_MARKERS`] replaced by `table`; `None` when the
/// markers are missing or out of order.
pub fn splice_matrix(text: &str, table: &str) -> Option<String> {
    let (start, end) = MATRIX_MARKERS;
    let head_end = text.find(start)?;
    let tail_start = text[head_end..].find(end)? + head_end;
    Some(format!(
        "{}{start}\n\n{table}{}",
        &text[..head_end],
        &text[tail_start..]
    ))
}

/// A Markdown conformance matrix from several runs: one table per loss, options down,
/// implementations across, then the upstream defects each run reproduces.
pub fn markdown_matrix(runs: &[RunSummary]) -> String {
    let mut losses: BTreeMap<&str, BTreeMap<&str, Vec<Option<&Row>>>> = BTreeMap::new();
    for (column, run) in runs.iter().enumerate() {
        for row in &run.rows {
            let cells = losses
                .entry(&row.loss)
                .or_default()
                .entry(&row.option)
                .or_insert_with(|| vec![None; runs.len()]);
            cells[column] = Some(row);
        }
    }
    let mut text = String::new();
    for (loss, options) in losses {
        let _ = writeln!(text, "#### `{loss}`\n");
        let header: Vec<String> = runs.iter().map(|run| escape_markdown(&run.name)).collect();
        let _ = writeln!(text, "| option | {} |", header.join(" | "));
        let _ = writeln!(text, "|---|{}", "---|".repeat(runs.len()));
        for (option, cells) in options {
            let cells: Vec<String> = cells
                .iter()
                .map(|cell| cell.map_or("—".to_string(), cell_text))
                .collect();
            let _ = writeln!(text, "| {option} | {} |", cells.join(" | "));
        }
        text.push('\n');
    }
    text + &upstream_defects_markdown(runs)
}

/// One matrix cell: all passed, or the counts that did not.
fn cell_text(row: &Row) -> String {
    let total = row.passed + row.failed + row.unsupported + row.known + row.unexpected_passes;
    if row.unsupported == total {
        return "➖ unsupported".to_string();
    }
    let mut parts = vec![format!("{}/{total} pass", row.passed)];
    for (count, label) in [
        (row.failed, "fail"),
        (row.known, "known fail"),
        (row.unsupported, "unsupported"),
        (row.unexpected_passes, "unexpected pass"),
        (row.emulated, "emulated"),
        (row.accepted, "anchor artefact accepted"),
        (row.corrected, "upstream defect corrected"),
    ] {
        if count > 0 {
            parts.push(format!("{count} {label}"));
        }
    }
    let mark = if row.passed == total {
        "✅"
    } else if row.passed == 0 {
        "❌"
    } else {
        "⚠️"
    };
    format!("{mark} {}", parts.join(", "))
}

/// Why a check fails the run, in words; `None` when it does not.
fn failing_detail(status: &Status, verdict: &Verdict) -> Option<String> {
    match (status, verdict) {
        (Status::Failed, Verdict::Failed(failure)) => Some(failure.detail.clone()),
        (Status::FailsDifferently { listed, reason }, Verdict::Failed(failure)) => Some(format!(
            "listed as a known failure ({}: {reason}), but fails as {}: {}",
            listed.name(),
            failure.kind.name(),
            failure.detail
        )),
        (Status::UnexpectedPass(reason), _) => Some(format!(
            "passes, but is listed as a known failure ({reason}); remove it with --promote"
        )),
        _ => None,
    }
}

/// Text for a terminal: control characters other than newlines (ANSI escapes from an adapter's
/// messages among them) are shown as `\u{..}` escapes instead of being obeyed.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|character| {
            if character.is_control() && character != '\n' {
                character.escape_unicode().to_string()
            } else {
                character.to_string()
            }
        })
        .collect()
}

/// Text for XML 1.0 attributes and content: markup escaped, and every control character (which
/// XML 1.0 forbids, or which would be normalised away in attributes) shown as a `\u{..}` escape.
fn escape(text: &str) -> String {
    text.chars()
        .map(|character| match character {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\n' => "&#10;".to_string(),
            '\u{FFFE}' | '\u{FFFF}' => character.escape_unicode().to_string(),
            _ if character.is_control() => character.escape_unicode().to_string(),
            _ => character.to_string(),
        })
        .collect()
}

/// Text for a Markdown table cell: pipes escaped, line breaks and control characters shown as
/// escapes.
fn escape_markdown(text: &str) -> String {
    printable(&text.replace('\n', " ")).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certify::known::KnownGroup;
    use crate::certify::{CaseCheck, FailureKind};
    use crate::compare::Check;

    fn check(case_id: &str, check: CaseCheck, verdict: Verdict) -> CheckResult {
        CheckResult {
            case_id: case_id.into(),
            loss: case_id.split('/').next().unwrap().into(),
            check,
            verdict,
            emulated: None,
            defects: Vec::new(),
            elapsed: std::time::Duration::ZERO,
        }
    }

    fn passed(max_abs: f64, max_rel: f64) -> Verdict {
        Verdict::Passed(Agreement {
            max_abs,
            max_rel,
            normwise_ulps: None,
        })
    }

    #[test]
    fn upstream_defects_list_known_failures_that_cite_an_issue() {
        let plain = report().summary();
        assert_eq!(
            plain.known_failures,
            vec![KnownFailureCount {
                reason: "takes anything".into(),
                checks: 1
            }]
        );
        let runs = vec![
            plain,
            RunSummary {
                name: "cited".into(),
                rows: vec![],
                known_failures: vec![KnownFailureCount {
                    reason: "divides by all elements (onnx/onnx#8433)".into(),
                    checks: 3,
                }],
                defects: vec![DefectCount {
                    defect: "smp-tversky-gamma-on-mean".into(),
                    upstream: "qubvel-org/segmentation_models.pytorch#734".into(),
                    anchor: 2,
                    corrected: 0,
                }],
            },
        ];
        let text = upstream_defects_markdown(&runs);
        assert!(
            text.contains("* **cited** (3 checks): divides by all elements (onnx/onnx#8433)"),
            "{text}"
        );
        assert!(
            text.contains("* **cited** (2 checks): reproduces upstream defect `smp-tversky-gamma-on-mean` (qubvel-org/segmentation_models.pytorch#734)"),
            "{text}"
        );
        assert!(!text.contains("corrects"), "{text}");
        assert!(!text.contains("takes anything"), "{text}");
        assert!(upstream_defects_markdown(&runs[..1]).contains("None of these runs"));
    }

    /// A failed value check whose values are off by `factor`, as the judge words it.
    fn mismatched(case_id: &str, factor: f64) -> CheckResult {
        let expected = ndarray::ArrayD::from_shape_vec(vec![3], vec![1.0, 2.0, 4.0]).unwrap();
        let actual = expected.mapv(|value| value * factor);
        let (tolerance, reason) = tolerance_for(
            case_id,
            crate::tensor::DType::Float64,
            Check::Forward,
            Tier::Strict,
        );
        let mismatch = *crate::compare::assert_close(&actual, &expected, tolerance).unwrap_err();
        let verdict = Verdict::Failed(Failure {
            kind: FailureKind::Mismatch,
            detail: mismatch.to_string(),
            comparison: Some(Box::new(crate::certify::ValueComparison {
                mismatch,
                tolerance,
                reason,
            })),
        });
        check(case_id, CaseCheck::Values(Check::Forward), verdict)
    }

    #[test]
    fn failed_checks_carry_their_figures_and_tolerance_and_reasons_are_printed_once() {
        let report = Report::new(
            "example",
            Tier::Strict,
            vec![
                mismatched(
                    "a_rather_long_loss_name_for_the_column/f64/N4C3/mean/default",
                    1.5,
                ),
                mismatched("ce/f64/N4C3/sum/default", 1.25),
            ],
            &KnownFailures::default(),
        )
        .with_origin(
            Some(json!({"torch": "2.15"})),
            Some("python3 adapter.py".into()),
        );
        let json = report.json();
        let failed = &json["checks"][0];
        assert_eq!(failed["failure"], "mismatch");
        assert_eq!(failed["max_abs"], 2.0);
        assert_eq!(failed["worst_index"], json!([2]));
        assert_eq!(failed["elements_beyond"], 3);
        assert_eq!(failed["elements"], 3);
        assert_eq!(failed["tolerance"]["normwise_ulps"], 512.0);
        assert!(failed["tolerance"]["reason"]
            .as_str()
            .unwrap()
            .contains("f64"));
        assert_eq!(json["command"], "python3 adapter.py");
        assert_eq!(json["fixtures"]["torch"], "2.15");
        assert_eq!(json["segloss_version"], env!("CARGO_PKG_VERSION"));
        let terminal = report.terminal();
        assert_eq!(terminal.matches("[1] ").count(), 1, "{terminal}");
        assert_eq!(terminal.matches("(why: [1])").count(), 2, "{terminal}");
        assert!(terminal.contains("passed: within tolerance"), "{terminal}");
        assert!(
            terminal.contains("2 cases, 2 checks: 2 fail the run"),
            "{terminal}"
        );
        // The header and rows stay aligned with a loss name longer than the old fixed column.
        let lines: Vec<&str> = terminal.lines().collect();
        let header = lines
            .iter()
            .position(|line| line.starts_with("loss"))
            .unwrap();
        let passed_at = lines[header].find("passed").unwrap();
        assert!(lines[header + 1..]
            .iter()
            .take_while(|line| !line.starts_with("passed:"))
            .all(|row| row.len() > passed_at && row[..passed_at].ends_with(' ')));
    }

    /// A run over two losses with every status: passed, failed, unsupported, known, unexpected.
    fn report() -> Report {
        let forward = CaseCheck::Values(Check::Forward);
        let gradient = CaseCheck::Values(Check::Gradient);
        let mut emulated = check("ce/f64/N4C3/mean/weight", gradient, passed(1e-15, 1e-14));
        emulated.emulated = Some("weights by hand".into());
        let results = vec![
            check("ce/f64/N4C3/mean/weight", forward, passed(2e-16, 3e-16)),
            emulated,
            check(
                "ce/f64/N4C3/mean/weight,ignore_index=1",
                forward,
                Verdict::failed(FailureKind::Mismatch, "off <by> \u{1b}[31mred"),
            ),
            check(
                "ce/f64/N4C3/sum/default",
                forward,
                Verdict::Unsupported("no sum".into()),
            ),
            check(
                "ce/f64/N4C3/mean/error=target_float",
                CaseCheck::Rejection,
                Verdict::failed(FailureKind::AcceptsRejectedInput, "accepted"),
            ),
            check("nll/f64/N4C3/mean/default", forward, passed(0.0, 0.0)),
        ];
        let known = KnownFailures {
            implementation: "example".into(),
            groups: vec![
                KnownGroup {
                    reason: "takes anything".into(),
                    fails_as: FailureKind::AcceptsRejectedInput,
                    checks: vec!["ce/f64/N4C3/mean/error=target_float/error".into()],
                },
                KnownGroup {
                    reason: "thought broken".into(),
                    fails_as: FailureKind::Mismatch,
                    checks: vec!["nll/f64/N4C3/mean/default/forward".into()],
                },
            ],
        };
        Report::new("example", Tier::Strict, results, &known)
    }

    fn row<'a>(rows: &'a [Row], loss: &str, option: &str) -> &'a Row {
        rows.iter()
            .find(|row| row.loss == loss && row.option == option)
            .unwrap_or_else(|| panic!("no row {loss} {option}"))
    }

    #[test]
    fn rows_count_every_status_per_option_and_in_all() {
        let rows = report().rows();
        let all = row(&rows, "ce", "all");
        assert_eq!(
            (
                all.passed,
                all.failed,
                all.unsupported,
                all.known,
                all.unexpected_passes,
                all.emulated
            ),
            (2, 1, 1, 1, 0, 1)
        );
        assert_eq!((all.worst_abs, all.worst_rel), (1e-15, 1e-14));
        let weight = row(&rows, "ce", "weight");
        assert_eq!((weight.passed, weight.failed), (2, 1));
        assert_eq!(row(&rows, "ce", "ignore_index").failed, 1);
        assert_eq!(row(&rows, "ce", "rejections").known, 1);
        assert_eq!(row(&rows, "ce", "default").unsupported, 1);
        assert_eq!(row(&rows, "nll", "all").unexpected_passes, 1);
        assert_eq!(rows.len(), 7);
    }

    #[test]
    fn the_terminal_summary_lists_what_fails_the_run_escaped() {
        let text = report().terminal();
        assert!(
            text.starts_with("certified example at the strict tier on the fixtures corpus\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "FAILED ce/f64/N4C3/mean/weight,ignore_index=1/forward\n  off <by> \\u{1b}[31mred"
            ),
            "{text}"
        );
        assert!(
            text.contains("FAILED nll/f64/N4C3/mean/default/forward\n  passes, but is listed"),
            "{text}"
        );
        assert!(
            !text.contains("FAILED ce/f64/N4C3/mean/error"),
            "a known failure does not fail: {text}"
        );
        assert!(text.ends_with("6 checks: 2 fail the run\n"), "{text}");
        assert!(!text.contains('\u{1b}'));
    }

    #[test]
    fn the_json_report_gives_statuses_failure_kinds_and_figures() {
        let report = report();
        let json = report.json();
        assert_eq!(json["implementation"], "example");
        assert_eq!(json["failed"], true);
        assert_eq!(json["certified_something"], true);
        let checks = json["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 6);
        assert_eq!(checks[0]["status"], "passed");
        assert_eq!(checks[0]["max_abs"], 2e-16);
        assert_eq!(checks[2]["status"], "failed");
        assert_eq!(checks[2]["failure"], "mismatch");
        assert_eq!(checks[4]["status"], "known failure");
        assert_eq!(checks[4]["failure"], "accepts_rejected_input");
        assert_eq!(checks[5]["status"], "unexpected pass");
        assert_eq!(checks[1]["emulated"], "weights by hand");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, json.to_string()).unwrap();
        assert_eq!(read_json_report(&path).unwrap(), report.summary());
        std::fs::write(&path, "{\"rows\": []}").unwrap();
        assert!(read_json_report(&path).is_err());
    }

    #[test]
    fn a_run_certifies_something_only_when_a_check_passed() {
        let nothing = Report::new(
            "none",
            Tier::Strict,
            vec![check(
                "ce/f64/N4C3/sum/default",
                CaseCheck::Values(Check::Forward),
                Verdict::Unsupported("no".into()),
            )],
            &KnownFailures::default(),
        );
        assert!(!nothing.certified_something() && !nothing.failed());
        assert!(report().certified_something());
    }

    #[test]
    fn junit_counts_failures_and_skips_per_loss() {
        let mut report = report();
        // The first case (two checks) took 4 ms: 2 ms each.
        for (result, _) in report.checks.iter_mut().take(2) {
            result.elapsed = std::time::Duration::from_millis(4);
        }
        let xml = report.junit();
        assert!(
            xml.contains(
                "<testsuite name=\"ce\" tests=\"5\" failures=\"1\" skipped=\"2\" time=\"0.004000\">"
            ),
            "{xml}"
        );
        assert!(
            xml.contains("name=\"ce/f64/N4C3/mean/weight/gradient\" time=\"0.002000\""),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<testsuite name=\"nll\" tests=\"1\" failures=\"1\" skipped=\"0\" time=\"0.000000\">"
            ),
            "{xml}"
        );
        assert_eq!(report.elapsed(), std::time::Duration::from_millis(4));
        assert!(
            xml.contains("<failure message=\"failed\">off &lt;by&gt; \\u{1b}[31mred</failure>"),
            "{xml}"
        );
        assert!(
            xml.contains("<skipped message=\"unsupported: no sum\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("<skipped message=\"known failure: takes anything\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"unexpected pass\">passes, but is listed"),
            "{xml}"
        );
    }

    #[test]
    fn matrix_cells_say_all_passed_or_the_counts_that_did_not() {
        let rows = report().rows();
        let other = vec![Row {
            loss: "ce".into(),
            option: "all".into(),
            unsupported: 3,
            ..Row::default()
        }];
        let run = |name: &str, rows| RunSummary {
            name: name.into(),
            rows,
            known_failures: vec![],
            defects: vec![],
        };
        let table = markdown_matrix(&[run("a|b", rows), run("other", other)]);
        assert!(
            table.contains("#### `ce`\n\n| option | a\\|b | other |\n|---|---|---|\n"),
            "{table}"
        );
        assert!(
            table.contains("| all | ⚠️ 2/5 pass, 1 fail, 1 known fail, 1 unsupported, 1 emulated | ➖ unsupported |"),
            "{table}"
        );
        assert!(
            table.contains("| rejections | ❌ 0/1 pass, 1 known fail | — |"),
            "{table}"
        );
        assert!(
            table.contains("| ignore_index | ❌ 0/1 pass, 1 fail | — |"),
            "{table}"
        );
        assert!(table.contains("#### `nll`"), "{table}");
        assert!(
            table.contains("| default | ❌ 0/1 pass, 1 unexpected pass | — |"),
            "{table}"
        );
        let passing = Row {
            passed: 2,
            ..Row::default()
        };
        assert_eq!(cell_text(&passing), "✅ 2/2 pass");
        let corrected = Row {
            passed: 2,
            corrected: 1,
            ..Row::default()
        };
        assert_eq!(
            cell_text(&corrected),
            "✅ 2/2 pass, 1 upstream defect corrected"
        );
    }

    #[test]
    fn rows_survive_json_with_infinite_differences() {
        let row = Row {
            worst_rel: f64::INFINITY,
            worst_abs: 1e-9,
            ..Row::default()
        };
        let text = serde_json::to_string(&row).unwrap();
        assert!(text.contains("\"worst_rel\":null"), "{text}");
        assert_eq!(serde_json::from_str::<Row>(&text).unwrap(), row);
    }

    #[test]
    fn the_matrix_is_spliced_between_its_markers_only() {
        let text = "intro\n<!-- conformance-matrix:start -->\nold\n<!-- conformance-matrix:end -->\nrest\n";
        assert_eq!(
            splice_matrix(text, "new\n").unwrap(),
            "intro\n<!-- conformance-matrix:start -->\n\nnew\n<!-- conformance-matrix:end -->\nrest\n"
        );
        assert_eq!(splice_matrix("no markers", "new"), None);
        let reversed = "<!-- conformance-matrix:end --> <!-- conformance-matrix:start -->";
        assert_eq!(splice_matrix(reversed, "new"), None);
    }

    #[test]
    fn the_speed_line_counts_computed_cases_and_splits_the_time() {
        let mut report = report();
        // Computed: a pass, a mismatch, a wrong acceptance, a listed failure; not: unsupported,
        // no usable answer.
        let crashed = Verdict::failed(FailureKind::NoAnswer, "crashed");
        let forward = CaseCheck::Values(Check::Forward);
        report.checks.push((
            check("ce/f64/N4C3/none/default", forward, crashed),
            Status::Failed,
        ));
        assert_eq!(report.computed_cases(), 4);
        let timing = Timing {
            jobs: 2,
            startup_s: 1.0,
            cases_s: 2.0,
            adapter_s: Some(1.5),
        };
        assert_eq!(
            report.timing_text(&timing),
            "speed: 4 computed cases in 2.00 s (2/s, 2 jobs), start-up 1.00 s; waiting for the \
             adapter 1.50 s, segloss 2.50 s"
        );
        let alone = Timing {
            jobs: 1,
            adapter_s: None,
            ..timing
        };
        assert_eq!(
            report.timing_text(&alone),
            "speed: 4 computed cases in 2.00 s (2/s, 1 job), start-up 1.00 s"
        );
    }

    #[test]
    fn merged_shards_add_up_their_defect_counts() {
        let shard = |anchor: usize, corrected: usize| {
            json!({"implementation": "x", "tier": "strict", "corpus": "fixtures", "rows": [],
                   "known_failures": [], "checks": [], "reproducers": [],
                   "upstream_defects": [{"defect": "d", "upstream": "u#1", "anchor": anchor,
                                         "corrected": corrected}]})
        };
        let merged = merge_json_reports(&[shard(1, 2), shard(4, 8)]).unwrap();
        assert_eq!(
            merged["upstream_defects"],
            json!([{"defect": "d", "upstream": "u#1", "anchor": 5, "corrected": 10}])
        );
    }

    #[test]
    fn certified_losses_count_the_checks_of_declared_losses_with_their_reasons() {
        let check = |loss: &str, status: &str, detail: Option<&str>, known: Option<&str>| {
            let mut check = json!({"loss": loss, "status": status, "detail": detail,
                                   "emulated": null});
            if let Some(reason) = known {
                check["known_reason"] = json!(reason);
            }
            check
        };
        let mut emulated = check("nll_loss", "passed", None, None);
        emulated["emulated"] = json!("sum as mean times count");
        let report = json!({
            "calls": [
                {"loss": "nll_loss", "call": "lib.nll()"},
                {"loss": "cross_entropy", "call": "lib.ce()", "when": "class indices"},
                {"loss": "cross_entropy", "call": "lib.soft_ce()", "when": "probabilities"},
            ],
            "checks": [
                check("cross_entropy", "passed", None, None),
                check("cross_entropy", "known failure", Some("off"), Some("float32 inside")),
                check("cross_entropy", "known failure", Some("off"), Some("float32 inside")),
                check("cross_entropy", "known failure", Some("off"), Some("no range check")),
                check("cross_entropy", "unsupported", Some("no weights; case 3"), None),
                check("cross_entropy", "failed", Some("off"), None),
                check("cross_entropy", "unexpected pass", None, None),
                emulated,
                check("binary_cross_entropy", "passed", None, None),
            ],
        });
        let losses = certified_losses(&report).unwrap();
        assert_eq!(
            losses,
            vec![
                CertifiedLoss {
                    loss: "cross_entropy".into(),
                    calls: vec![
                        CallText {
                            call: "lib.ce()".into(),
                            when: Some("class indices".into())
                        },
                        CallText {
                            call: "lib.soft_ce()".into(),
                            when: Some("probabilities".into())
                        },
                    ],
                    passed: 1,
                    known: 3,
                    failed: 2,
                    unsupported: 1,
                    emulated: 0,
                    known_reasons: vec!["float32 inside".into(), "no range check".into()],
                    unsupported_reasons: vec!["no weights; case 3".into()],
                },
                CertifiedLoss {
                    loss: "nll_loss".into(),
                    calls: vec![CallText {
                        call: "lib.nll()".into(),
                        when: None
                    }],
                    passed: 1,
                    emulated: 1,
                    ..CertifiedLoss::default()
                },
            ]
        );
        assert_eq!(certified_losses(&json!({"checks": []})), Ok(vec![]));
        assert!(certified_losses(&json!({"calls": [{"loss": 1}], "checks": []})).is_err());
        assert!(certified_losses(&json!({"calls": []})).is_err());
    }

    #[test]
    fn adapter_text_cannot_drive_a_terminal_or_break_xml() {
        let hostile = "bad\u{1b}[31mred\u{7}\u{0} <x> & \"q\"\nnext";
        let shown = printable(hostile);
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{0}'),
            "{shown}"
        );
        assert!(
            shown.contains("\\u{1b}[31mred") && shown.contains("\nnext"),
            "{shown}"
        );
        assert_eq!(
            escape("\u{FFFE}\u{FFFF}"),
            "\\u{fffe}\\u{ffff}",
            "not characters in XML 1.0"
        );
        let xml = escape(hostile);
        assert!(
            xml.chars().all(|character| !character.is_control()),
            "{xml}"
        );
        assert!(
            xml.contains("&lt;x&gt; &amp; &quot;q&quot;&#10;next"),
            "{xml}"
        );
        assert_eq!(escape_markdown("a|b\nc"), "a\\|b c");
    }

    #[test]
    fn options_drop_values_but_keep_input_kinds() {
        assert_eq!(
            options_of("weight,ignore_index=1,label_smoothing=0.1"),
            ["weight", "ignore_index", "label_smoothing"]
        );
        assert_eq!(
            options_of("target=probs,weight=zeros_negatives"),
            ["target=probs", "weight=zeros_negatives"]
        );
        assert_eq!(
            options_of("error=target_too_large,label_smoothing=0.1"),
            ["rejections"]
        );
        assert_eq!(options_of("default"), ["default"]);
    }
}
