//! `segloss certify --grade`: an implementation's error in ulps against the exact value (the
//! arbitrary-precision [`crate::oracle`]), per loss, beside the anchor's own error on the same
//! inputs (the fixture's expected values are the anchor's float64 results).
//!
//! Only float64 cases of the losses the oracle evaluates are graded, and only outcomes the
//! implementation computed: a rejection or an unsupported case has no error to measure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{call_for, compute_guarded, Implementation, Outcome};
use crate::fixtures::{CaseEntry, Expected, Fixtures};
use crate::oracle::{self, Grades};
use crate::spec::LossOutput;

/// The worst normwise errors, in ulps, over the graded cases of one loss.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LossGrades {
    /// How many cases were graded.
    pub cases: usize,
    /// The implementation's worst errors.
    pub implementation: WorstGrades,
    /// The anchor's worst errors on the same cases.
    pub anchor: WorstGrades,
}

/// The worst forward and gradient errors, in ulps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WorstGrades {
    /// The loss.
    pub forward: f64,
    /// The gradient with respect to the prediction.
    pub gradient: f64,
}

impl WorstGrades {
    fn include(&mut self, grades: Grades) {
        self.forward = self.forward.max(grades.forward);
        self.gradient = self.gradient.max(grades.gradient);
    }
}

/// Grades the implementation and the anchor on every selected float64 case the oracle evaluates.
pub fn grade(
    fixtures: &Fixtures,
    implementation: &dyn Implementation,
    selected: impl Fn(&CaseEntry) -> bool,
) -> crate::Result<BTreeMap<String, LossGrades>> {
    let mut by_loss: BTreeMap<String, LossGrades> = BTreeMap::new();
    let gradable = fixtures.manifest.cases.iter().filter(|entry| {
        entry.dtype == "f64" && oracle::LOSSES.contains(&entry.loss.as_str()) && selected(entry)
    });
    for entry in gradable {
        let case = fixtures.load(entry)?;
        let Expected::Values {
            loss, grad_input, ..
        } = &case.expected
        else {
            continue;
        };
        let call = call_for(&case);
        let output = match compute_guarded(implementation, &call) {
            Outcome::Computed(output) | Outcome::Emulated(output, _) => output,
            _ => continue,
        };
        let anchor = LossOutput {
            loss: loss.to_f64(),
            grad_input: grad_input.to_f64(),
        };
        if let (Some(mine), Some(theirs)) =
            (oracle::grade(&call, &output), oracle::grade(&call, &anchor))
        {
            let grades = by_loss.entry(entry.loss.clone()).or_default();
            grades.cases += 1;
            grades.implementation.include(mine);
            grades.anchor.include(theirs);
        }
    }
    Ok(by_loss)
}

/// The grades as a table: per loss, the cases graded and the worst errors of the implementation
/// and of the anchor.
pub fn grade_table(implementation: &str, grades: &BTreeMap<String, LossGrades>) -> String {
    let mut text = format!(
        "error in ulps against the exact value (normwise: |y − exact| / ulp(max |exact|)), float64 cases\n\
         {:<34} {:>6} {:>12} {:>12} {:>12} {:>12}\n",
        "loss", "cases", "forward", "gradient", "anchor fwd", "anchor grad"
    );
    for (loss, grades) in grades {
        let _ = writeln!(
            text,
            "{loss:<34} {:>6} {:>12} {:>12} {:>12} {:>12}",
            grades.cases,
            shown(grades.implementation.forward),
            shown(grades.implementation.gradient),
            shown(grades.anchor.forward),
            shown(grades.anchor.gradient)
        );
    }
    let _ = writeln!(
        text,
        "({implementation} beside the anchor that made the fixtures; ∞: NaN or ±inf where the exact value is finite)"
    );
    text
}

/// An ulp figure: three decimals while small, scientific when large.
fn shown(ulps: f64) -> String {
    if ulps < 1e4 {
        format!("{ulps:.3}")
    } else {
        format!("{ulps:.3e}")
    }
}
