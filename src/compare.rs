//! Comparing a result with the expected one: the tolerance policy (data, with reasons) and
//! `torch.testing.assert_close`-style mismatch reports.
//!
//! An element passes when |actual − expected| ≤ atol + rtol·|expected|, or when both are NaN, or
//! both are the same infinity.

use std::fmt;

use ndarray::{ArrayD, Dimension};

use crate::catalog::tolerances::TOLERANCE_OVERRIDES;
use crate::tensor::DType;

/// Which part of a case's outcome is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// The loss value(s).
    Forward,
    /// The gradient with respect to the input.
    Gradient,
}

impl Check {
    /// `forward` or `gradient`, as trial names use it.
    pub fn name(self) -> &'static str {
        match self {
            Check::Forward => "forward",
            Check::Gradient => "gradient",
        }
    }
}

/// An allowed difference: |actual − expected| ≤ atol + rtol·|expected|.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Relative part.
    pub rtol: f64,
    /// Absolute part.
    pub atol: f64,
}

/// The tolerance for cases whose input has a dtype, and why.
pub struct DTypeTolerance {
    /// The input dtype of the case.
    pub dtype: DType,
    /// The tolerance.
    pub tolerance: Tolerance,
    /// Why this tolerance.
    pub reason: &'static str,
}

/// A tolerance for specific cases that replaces the dtype default, and why.
pub struct ToleranceOverride {
    /// Applies to case ids that start with this pattern, where `*` stands for any run of
    /// characters (see [`matches_pattern`]).
    pub case_pattern: &'static str,
    /// Applies to this check only (`None`: both).
    pub check: Option<Check>,
    /// The tolerance.
    pub tolerance: Tolerance,
    /// Why the default does not fit these cases.
    pub reason: &'static str,
}

/// Per-dtype defaults.
pub const DTYPE_TOLERANCES: &[DTypeTolerance] = &[
    DTypeTolerance {
        dtype: DType::Float64,
        tolerance: Tolerance { rtol: 1e-10, atol: 1e-13 },
        reason: "both sides compute in f64 from the same inputs; only summation order differs \
                 (PyTorch's cascade vs the reference's compensated sum), worth a few ulp per element",
    },
    DTypeTolerance {
        dtype: DType::Float32,
        tolerance: Tolerance { rtol: 1.3e-6, atol: 1e-5 },
        reason: "PyTorch computes in float32 and the reference in f64 from the same float32 inputs; \
                 torch.testing's float32 defaults bound float32 rounding of these short sums",
    },
];

/// Whether `id` starts with `pattern`, where each `*` in the pattern matches any run of characters.
pub fn matches_pattern(id: &str, pattern: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = id.strip_prefix(first) else {
        return false;
    };
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// How strictly a certification run compares, chosen by the user of `segloss certify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tier {
    /// The policy above: per-dtype defaults and per-case overrides. The reference runs at this tier.
    #[default]
    Strict,
    /// float32 tolerances for every case, float64 ones included: for implementations that compute
    /// in float32 whatever their input.
    Float32,
    /// rtol 1e-3, atol 1e-4 for every case: for reduced-precision or fast-math kernels, where only
    /// the semantics (reduction, weights, ignore_index, smoothing) are being certified.
    Approximate,
}

impl Tier {
    /// The tier's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Strict => "strict",
            Tier::Float32 => "float32",
            Tier::Approximate => "approximate",
        }
    }
}

/// The tolerance for one check of one case at a tier: at `strict`, the first matching override
/// of the catalog's ([`TOLERANCE_OVERRIDES`]),
/// else the dtype default; at `float32`, the float32 default for every case (overrides are for
/// the strict policy); at `approximate`, the tier's tolerance.
pub fn tolerance_for(
    case_id: &str,
    dtype: DType,
    check: Check,
    tier: Tier,
) -> (Tolerance, &'static str) {
    match tier {
        Tier::Strict => find_override(TOLERANCE_OVERRIDES, case_id, check)
            .map(|rule| (rule.tolerance, rule.reason))
            .unwrap_or_else(|| dtype_default(dtype)),
        Tier::Float32 => {
            let (tolerance, _) = dtype_default(DType::Float32);
            (
                tolerance,
                "float32 tier: float32 tolerances for every case, for implementations that compute \
                 in float32 whatever their input",
            )
        }
        Tier::Approximate => (
            Tolerance {
                rtol: 1e-3,
                atol: 1e-4,
            },
            "approximate tier: semantics only, for reduced-precision implementations",
        ),
    }
}

/// The first override among `rules` for this case and check.
pub fn find_override<'a>(
    rules: &'a [ToleranceOverride],
    case_id: &str,
    check: Check,
) -> Option<&'a ToleranceOverride> {
    rules.iter().find(|rule| {
        matches_pattern(case_id, rule.case_pattern) && rule.check.is_none_or(|only| only == check)
    })
}

/// The per-dtype default of [`DTYPE_TOLERANCES`]; exact for a dtype without one.
fn dtype_default(dtype: DType) -> (Tolerance, &'static str) {
    DTYPE_TOLERANCES
        .iter()
        .find(|rule| rule.dtype == dtype)
        .map(|rule| (rule.tolerance, rule.reason))
        .unwrap_or((
            Tolerance {
                rtol: 0.0,
                atol: 0.0,
            },
            "no tolerance declared for this dtype: exact",
        ))
}

/// The worst differences of a comparison that passed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Agreement {
    /// The greatest absolute difference over finite elements.
    pub max_abs: f64,
    /// The greatest relative difference over finite elements.
    pub max_rel: f64,
}

/// Why a comparison failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// The shapes differ.
    Shape {
        /// The actual shape.
        actual: Vec<usize>,
        /// The expected shape.
        expected: Vec<usize>,
    },
    /// Some elements are not close.
    Values {
        /// How many elements are not close.
        mismatched: usize,
        /// How many elements there are.
        total: usize,
        /// The greatest absolute difference, where, and what was allowed there.
        worst_abs: (f64, Vec<usize>),
        /// The greatest relative difference and where.
        worst_rel: (f64, Vec<usize>),
        /// The first element that is not close: index, actual, expected.
        first: (Vec<usize>, f64, f64),
        /// The tolerance applied.
        tolerance: Tolerance,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Shape { actual, expected } => {
                write!(
                    f,
                    "The values for attribute 'shape' do not match: {actual:?} != {expected:?}."
                )
            }
            Mismatch::Values {
                mismatched,
                total,
                worst_abs,
                worst_rel,
                first,
                tolerance,
            } => {
                writeln!(f, "Tensor-likes are not close!")?;
                writeln!(
                    f,
                    "Mismatched elements: {mismatched} / {total} ({:.1}%)",
                    100.0 * *mismatched as f64 / *total as f64
                )?;
                writeln!(
                    f,
                    "Greatest absolute difference: {:e} at index {:?} (up to {:e} allowed)",
                    worst_abs.0, worst_abs.1, tolerance.atol
                )?;
                writeln!(
                    f,
                    "Greatest relative difference: {:e} at index {:?} (up to {:e} allowed)",
                    worst_rel.0, worst_rel.1, tolerance.rtol
                )?;
                write!(
                    f,
                    "First mismatch at index {:?}: actual {:e}, expected {:e}",
                    first.0, first.1, first.2
                )
            }
        }
    }
}

/// Compares `actual` with `expected` element by element under `tolerance`.
///
/// NaN matches NaN and an infinity matches the same infinity (equal_nan, as the fixtures record
/// PyTorch's NaN results on purpose); any other pairing with a non-finite value is a mismatch with
/// an infinite difference.
pub fn assert_close(
    actual: &ArrayD<f64>,
    expected: &ArrayD<f64>,
    tolerance: Tolerance,
) -> Result<Agreement, Box<Mismatch>> {
    if actual.shape() != expected.shape() {
        return Err(Box::new(Mismatch::Shape {
            actual: actual.shape().to_vec(),
            expected: expected.shape().to_vec(),
        }));
    }
    let mut agreement = Agreement::default();
    let mut worst_abs = (0.0, vec![]);
    let mut worst_rel = (0.0, vec![]);
    let mut mismatched = 0;
    let mut first = None;
    for ((index, &got), &want) in actual.indexed_iter().zip(expected.iter()) {
        let same_special = (got.is_nan() && want.is_nan()) || (got.is_infinite() && got == want);
        let abs_diff = if same_special {
            0.0
        } else {
            (got - want).abs()
        };
        let abs_diff = if abs_diff.is_nan() {
            f64::INFINITY
        } else {
            abs_diff
        };
        let rel_diff = match abs_diff / want.abs() {
            _ if abs_diff == 0.0 => 0.0,
            ratio if ratio.is_nan() => f64::INFINITY,
            ratio => ratio,
        };
        let close = same_special
            || (got.is_finite()
                && want.is_finite()
                && abs_diff <= tolerance.atol + tolerance.rtol * want.abs());
        if abs_diff > worst_abs.0 {
            worst_abs = (abs_diff, index.slice().to_vec());
        }
        if rel_diff > worst_rel.0 {
            worst_rel = (rel_diff, index.slice().to_vec());
        }
        agreement.max_abs = agreement.max_abs.max(abs_diff);
        agreement.max_rel = agreement.max_rel.max(rel_diff);
        if !close {
            mismatched += 1;
            first.get_or_insert((index.slice().to_vec(), got, want));
        }
    }
    match first {
        None => Ok(agreement),
        Some(first) => Err(Box::new(Mismatch::Values {
            mismatched,
            total: expected.len(),
            worst_abs,
            worst_rel,
            first,
            tolerance,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(values: &[f64]) -> ArrayD<f64> {
        ArrayD::from_shape_vec(vec![values.len()], values.to_vec()).unwrap()
    }

    #[test]
    fn patterns_match_prefixes_with_wildcards() {
        assert!(matches_pattern(
            "smp.DiceLoss/f64/N2C3H3W4/default/mode=multiclass,class_weights",
            "smp.*/f64/*class_weights"
        ));
        assert!(matches_pattern("cross_entropy/f64/N4C3", "cross_entropy/"));
        assert!(!matches_pattern(
            "smp.DiceLoss/f32/N2C3H3W4/default/mode=multiclass,class_weights",
            "smp.*/f64/*class_weights"
        ));
        assert!(!matches_pattern("xsmp.DiceLoss/f64", "smp.*"));
    }

    const TIGHT: Tolerance = Tolerance {
        rtol: 1e-10,
        atol: 1e-13,
    };

    #[test]
    fn nan_and_matching_infinities_are_equal() {
        let values = array(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.0]);
        assert!(assert_close(&values, &values, TIGHT).is_ok());
    }

    #[test]
    fn nan_against_a_number_and_opposite_infinities_differ() {
        let error = assert_close(
            &array(&[f64::NAN, f64::INFINITY]),
            &array(&[1.0, f64::NEG_INFINITY]),
            TIGHT,
        )
        .unwrap_err();
        assert!(
            matches!(*error, Mismatch::Values { mismatched: 2, .. }),
            "{error}"
        );
    }

    #[test]
    fn a_perturbation_of_twice_the_tolerance_is_caught() {
        let expected = array(&[1.0, -3.0, 0.0]);
        let allowed = TIGHT.atol + TIGHT.rtol * 3.0;
        let actual = array(&[1.0, -3.0 - 2.0 * allowed, 0.0]);
        let error = assert_close(&actual, &expected, TIGHT).unwrap_err();
        let report = error.to_string();
        assert!(report.contains("Mismatched elements: 1 / 3"), "{report}");
        assert!(report.contains("at index [1]"), "{report}");
        let within = array(&[1.0, -3.0 - 0.5 * allowed, 0.0]);
        assert!(assert_close(&within, &expected, TIGHT).is_ok());
    }

    #[test]
    fn an_override_applies_to_its_pattern_and_check_only() {
        let rules = [
            ToleranceOverride {
                case_pattern: "a/f64/*",
                check: Some(Check::Gradient),
                tolerance: TIGHT,
                reason: "gradient of a",
            },
            ToleranceOverride {
                case_pattern: "a/*",
                check: None,
                tolerance: TIGHT,
                reason: "all of a",
            },
        ];
        let reason = |id, check| find_override(&rules, id, check).map(|rule| rule.reason);
        assert_eq!(reason("a/f64/x", Check::Gradient), Some("gradient of a"));
        assert_eq!(reason("a/f64/x", Check::Forward), Some("all of a"));
        assert_eq!(reason("a/f32/x", Check::Gradient), Some("all of a"));
        assert_eq!(reason("b/f64/x", Check::Gradient), None);
    }

    #[test]
    fn tiers_choose_their_tolerances() {
        let weighted = "smp.DiceLoss/f64/N2C3H3W4/default/mode=multiclass,class_weights";
        let plain = "smp.DiceLoss/f64/N2C3H3W4/default/mode=multiclass";
        let f64_default = Tolerance {
            rtol: 1e-10,
            atol: 1e-13,
        };
        let f32_default = Tolerance {
            rtol: 1.3e-6,
            atol: 1e-5,
        };
        let strict = |id| tolerance_for(id, DType::Float64, Check::Forward, Tier::Strict).0;
        assert_eq!(strict(plain), f64_default);
        assert_eq!(
            strict(weighted),
            Tolerance {
                rtol: 3e-7,
                atol: 1e-13
            }
        );
        for id in [plain, weighted] {
            let (tolerance, reason) =
                tolerance_for(id, DType::Float64, Check::Gradient, Tier::Float32);
            assert_eq!(tolerance, f32_default);
            assert!(reason.starts_with("float32 tier"), "{reason}");
            assert_eq!(
                tolerance_for(id, DType::Float64, Check::Forward, Tier::Approximate).0,
                Tolerance {
                    rtol: 1e-3,
                    atol: 1e-4
                }
            );
        }
        assert_eq!(
            tolerance_for(plain, DType::Float32, Check::Forward, Tier::Strict).0,
            f32_default
        );
        assert_eq!(
            tolerance_for(plain, DType::Int64, Check::Forward, Tier::Strict).0,
            Tolerance {
                rtol: 0.0,
                atol: 0.0
            }
        );
    }

    #[test]
    fn a_mismatch_reports_counts_worst_differences_and_where() {
        let expected = array(&[1.0, 2.0, -4.0, 0.5]);
        let actual = array(&[1.0, 2.5, -4.0 + 1e-3, 0.25]);
        let error = assert_close(&actual, &expected, TIGHT).unwrap_err();
        let Mismatch::Values {
            mismatched,
            total,
            worst_abs,
            worst_rel,
            first,
            tolerance,
        } = *error.clone()
        else {
            panic!("{error}")
        };
        assert_eq!((mismatched, total), (3, 4));
        assert_eq!(worst_abs, (0.5, vec![1]));
        assert_eq!(worst_rel, (0.5, vec![3]));
        assert_eq!(first, (vec![1], 2.5, 2.0));
        assert_eq!(tolerance, TIGHT);
        let report = error.to_string();
        assert!(
            report.contains("Mismatched elements: 3 / 4 (75.0%)"),
            "{report}"
        );
        assert!(
            report
                .contains("Greatest absolute difference: 5e-1 at index [1] (up to 1e-13 allowed)"),
            "{report}"
        );
        assert!(
            report
                .contains("Greatest relative difference: 5e-1 at index [3] (up to 1e-10 allowed)"),
            "{report}"
        );
        assert!(
            report.contains("First mismatch at index [1]: actual 2.5e0, expected 2e0"),
            "{report}"
        );
    }

    #[test]
    fn an_agreement_reports_the_worst_differences_within_tolerance() {
        let loose = Tolerance {
            rtol: 0.1,
            atol: 0.0,
        };
        let agreement =
            assert_close(&array(&[1.05, -2.0, 0.0]), &array(&[1.0, -2.1, 0.0]), loose).unwrap();
        assert!((agreement.max_abs - 0.1).abs() < 1e-12, "{agreement:?}");
        assert!((agreement.max_rel - 0.05).abs() < 1e-12, "{agreement:?}");
    }

    #[test]
    fn the_first_of_equally_bad_elements_is_the_worst() {
        let error =
            assert_close(&array(&[1.5, 2.5, 1.5]), &array(&[1.0, 2.0, 1.0]), TIGHT).unwrap_err();
        let Mismatch::Values {
            worst_abs,
            worst_rel,
            ..
        } = *error
        else {
            panic!("{error}")
        };
        assert_eq!(worst_abs, (0.5, vec![0]));
        assert_eq!(worst_rel, (0.5, vec![0]));
    }

    #[test]
    fn shapes_must_match() {
        let error = assert_close(&array(&[1.0]), &ArrayD::zeros(vec![]), TIGHT).unwrap_err();
        assert!(matches!(*error, Mismatch::Shape { .. }));
    }
}
