//! Reports of a certification run: a terminal summary per loss and option, JSON for machines,
//! JUnit XML for CI systems, and a Markdown conformance matrix (implementation × loss × option).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::known::{KnownFailures, Status};
use super::{CheckResult, Verdict};
use crate::compare::{Agreement, Tier};
use crate::error::{Error, Result};
use crate::files::{read_regular_file, MAX_DOCUMENT_BYTES};

/// A judged run: every check with its status against the known-failure list.
pub struct Report {
    /// The implementation's name.
    pub implementation: String,
    /// The tolerance tier.
    pub tier: Tier,
    /// Every check, in run order, with its status.
    pub checks: Vec<(CheckResult, Status)>,
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
    variant
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
                if let Verdict::Passed(Agreement { max_abs, max_rel }) = result.verdict {
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
            "certified {} at the {} tier\n",
            self.implementation,
            self.tier.name()
        );
        let _ = writeln!(
            text,
            "{:<24} {:<32} {:>6} {:>6} {:>6} {:>6} {:>6} {:>10} {:>10}",
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
        for row in self.rows() {
            let _ = writeln!(
                text,
                "{:<24} {:<32} {:>6} {:>6} {:>6} {:>6} {:>6} {:>10.2e} {:>10.2e}{}",
                row.loss,
                row.option,
                row.passed,
                row.failed,
                row.unsupported,
                row.known,
                row.unexpected_passes,
                row.worst_abs,
                row.worst_rel,
                if row.emulated > 0 {
                    format!("  ({} emulated)", row.emulated)
                } else {
                    String::new()
                }
            );
        }
        for (result, status) in &self.checks {
            if let Some(problem) = failing_detail(status, &result.verdict) {
                let _ = writeln!(
                    text,
                    "FAILED {}\n  {}",
                    result.trial_name(),
                    problem.replace('\n', "\n  ")
                );
            }
        }
        let failing = self
            .checks
            .iter()
            .filter(|(_, status)| status.fails_run())
            .count();
        let _ = writeln!(
            text,
            "{} checks: {} fail the run",
            self.checks.len(),
            failing
        );
        printable(&text)
    }

    /// The run for machines: the implementation, tier, totals and every check.
    pub fn json(&self) -> serde_json::Value {
        let checks: Vec<_> = self
            .checks
            .iter()
            .map(|(result, status)| {
                let (max_abs, max_rel, failure, detail) = match &result.verdict {
                    Verdict::Passed(agreement) => {
                        (Some(agreement.max_abs), Some(agreement.max_rel), None, None)
                    }
                    Verdict::Failed(failure) => (
                        None,
                        None,
                        Some(failure.kind.name()),
                        Some(failure.detail.clone()),
                    ),
                    Verdict::Unsupported(reason) => (None, None, None, Some(reason.clone())),
                };
                json!({
                    "check": result.trial_name(),
                    "loss": result.loss,
                    "status": status.label(),
                    "failure": failure,
                    "max_abs": max_abs,
                    "max_rel": max_rel,
                    "detail": detail,
                    "emulated": result.emulated,
                })
            })
            .collect();
        json!({
            "implementation": self.implementation,
            "tier": self.tier.name(),
            "failed": self.failed(),
            "certified_something": self.certified_something(),
            "rows": self.rows(),
            "checks": checks,
        })
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
            let _ = writeln!(
                xml,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">",
                escape(loss),
                checks.len()
            );
            for (result, status) in checks {
                let _ = write!(
                    xml,
                    "    <testcase classname=\"{}\" name=\"{}\"",
                    escape(loss),
                    escape(&result.trial_name())
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

/// The implementation's name and the rows of a `segloss certify --json` report.
pub fn read_json_report(path: &Path) -> Result<(String, Vec<Row>)> {
    let invalid = |message: String| Error::Manifest {
        path: path.to_path_buf(),
        message: format!("not a segloss certify --json report: {message}"),
    };
    let report: serde_json::Value =
        serde_json::from_slice(&read_regular_file(path, MAX_DOCUMENT_BYTES)?)
            .map_err(|error| invalid(error.to_string()))?;
    let name = report["implementation"]
        .as_str()
        .ok_or_else(|| invalid("no implementation name".into()))?
        .to_string();
    let rows: Vec<Row> = serde_json::from_value(report["rows"].clone())
        .map_err(|error| invalid(error.to_string()))?;
    Ok((name, rows))
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

/// A Markdown conformance matrix from the `rows` of several runs' JSON reports: one table per
/// loss, options down, implementations across.
pub fn markdown_matrix(runs: &[(String, Vec<Row>)]) -> String {
    let mut losses: BTreeMap<&str, BTreeMap<&str, Vec<Option<&Row>>>> = BTreeMap::new();
    for (column, (_, rows)) in runs.iter().enumerate() {
        for row in rows {
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
        let header: Vec<String> = runs.iter().map(|(name, _)| escape_markdown(name)).collect();
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
    text
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
