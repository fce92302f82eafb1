//! Comparing a result with the expected one: the tolerance policy (data, with reasons) and
//! `torch.testing.assert_close`-style mismatch reports.
//!
//! An element passes when |actual − expected| ≤ atol + rtol·|expected|, or when both are NaN, or
//! both are the same infinity.

use std::fmt;

use ndarray::ArrayD;

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

/// An allowed difference: |actual − expected| ≤ atol + rtol·|expected| element by element or,
/// when `normwise` is set instead, max |actual − expected| ≤ that many ulps of max |expected|
/// over the tensor. Either way a non-finite value must meet the same non-finite value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Relative part.
    pub rtol: f64,
    /// Absolute part.
    pub atol: f64,
    /// The per-tensor bound, which replaces rtol and atol: it scales with the tensor where atol
    /// does not (at (8, 21, 512, 512) a mean's gradient entries are about 1e-7, below any useful
    /// atol), and a reduced loss's rounding grows with the number of terms, which rtol ignores.
    pub normwise: Option<Normwise>,
}

impl Tolerance {
    /// An elementwise tolerance without a per-tensor bound.
    pub const fn elementwise(rtol: f64, atol: f64) -> Tolerance {
        Tolerance {
            rtol,
            atol,
            normwise: None,
        }
    }
}

/// A per-tensor bound: max |actual − expected| ≤ `ulps` units in the last place of max |expected|
/// in a floating-point format of `precision` significand bits (24: float32, 53: float64).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normwise {
    /// The bound, in ulps of the tensor's largest expected magnitude.
    pub ulps: f64,
    /// The significand bits of the dtype the ulps are counted in.
    pub precision: i32,
}

impl Normwise {
    /// One ulp of `magnitude` in this format (0 for 0 and for a non-finite magnitude).
    pub fn ulp(self, magnitude: f64) -> f64 {
        if magnitude == 0.0 || !magnitude.is_finite() {
            return 0.0;
        }
        2f64.powi(magnitude.abs().log2().floor() as i32 - (self.precision - 1))
    }
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

/// The per-tensor bound of float32 cases, in float32 ulps of the largest expected magnitude.
/// Measured, PyTorch's float32 results against the reference: at most 57 ulps on the bundled
/// cases (smp's TverskyLoss; the torch losses ≤ 11.4) and, on the `large` corpus, 91 ulps
/// (cross_entropy's sum over (2, 19, 1024, 2048)) but for weighted `nll_loss` means
/// (overridden in [`crate::catalog::tolerances`]). A float32 mean accumulated in order is off by
/// about 660 ulps at 2²¹ positions, which this bound catches.
pub const F32_NORMWISE_ULPS: f64 = 128.0;

/// The per-tensor bound of float64 cases, in float64 ulps of the largest expected magnitude.
/// Measured, the anchors' float64 results against the reference: at most 42 ulps on the bundled
/// cases (an `nll_loss` mean; cross_entropy 20) but for the case overridden in
/// [`crate::catalog::tolerances`], and on the `large` corpus 371 (smp's DiceLoss gradient at
/// (8, 21, 512, 512)), 126 for torch's losses (a weighted `nll_loss` mean).
pub const F64_NORMWISE_ULPS: f64 = 512.0;

/// Per-dtype defaults.
pub const DTYPE_TOLERANCES: &[DTypeTolerance] = &[
    DTypeTolerance {
        dtype: DType::Float64,
        tolerance: Tolerance {
            rtol: 1e-10,
            atol: 1e-13,
            normwise: Some(Normwise {
                ulps: F64_NORMWISE_ULPS,
                precision: 53,
            }),
        },
        reason: "the expected values are the anchor's float64 results, whose summation order and \
                 rounding differ from any other f64 computation on the same inputs: between the \
                 anchors and the reference up to 371 float64 ulps of the tensor's largest \
                 magnitude were measured (F64_NORMWISE_ULPS)",
    },
    DTypeTolerance {
        dtype: DType::Float32,
        tolerance: Tolerance {
            rtol: 1.3e-6,
            atol: 1e-5,
            normwise: Some(Normwise {
                ulps: F32_NORMWISE_ULPS,
                precision: 24,
            }),
        },
        reason: "the expected values are the anchor's float32 results, whose rounding grows with \
                 the number of terms a reduction adds: up to 91 float32 ulps of the tensor's \
                 largest magnitude were measured against f64 arithmetic on the same inputs \
                 (F32_NORMWISE_ULPS)",
    },
];

/// The largest finite |expected| (the scale), and the tolerance's per-tensor bound with its unit,
/// one ulp of the scale; no bound where the tolerance has none, or where the expected tensor is all
/// zero (no scale: the elementwise rule, atol, bounds it instead).
pub fn per_tensor_bound<'a>(
    tolerance: &Tolerance,
    expected: impl Iterator<Item = &'a f64>,
) -> (f64, Option<(Normwise, f64)>) {
    let scale = expected
        .filter(|value| value.is_finite())
        .fold(0.0_f64, |max, value| max.max(value.abs()));
    let normwise = tolerance
        .normwise
        .map(|bound| (bound, bound.ulp(scale)))
        .filter(|&(_, unit)| unit > 0.0);
    (scale, normwise)
}

/// Whether `id` starts with `pattern`, where each `*` in the pattern matches any run of characters
/// (`/` included: `cross_entropy/*smoothing` reaches into later segments). The tolerance and
/// artefact rules' patterns; case selection uses [`filter_matches`].
pub fn matches_pattern(id: &str, pattern: &str) -> bool {
    glob(id, pattern, Anchor::Prefix)
}

/// Where a [`glob`] must match up to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Anchor {
    /// The text need only start with a match.
    Prefix,
    /// The whole text must match.
    Whole,
}

/// Whether `text` matches `pattern`, where each `*` matches any run of characters (none
/// included): the whole text or, with [`Anchor::Prefix`], a start of it.
fn glob(text: &str, pattern: &str, anchor: Anchor) -> bool {
    let mut parts: Vec<&str> = pattern.split('*').collect();
    let first = parts.remove(0);
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    if anchor == Anchor::Whole {
        // The last part ends the text; the parts between match leftmost in what precedes it.
        match parts.pop() {
            None => return rest.is_empty(),
            Some(last) => match rest.strip_suffix(last) {
                Some(before) => rest = before,
                None => return false,
            },
        }
    }
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether the case-selection filter `filter` selects `name`, a case id
/// (`loss/dtype/shape/reduction/variant`) or a trial name (a case id and its check, or
/// `coverage/…`, `run/…`): the one matcher of `segloss certify --filter`, `segloss list
/// --filter` and the libtest runners' FILTER.
///
/// A filter is `/`-separated segments that match the name's first segments, each segment whole:
/// `cross_entropy/f32` selects the float32 `cross_entropy` cases and not `binary_cross_entropy`'s.
/// Within a segment `*` matches any run of characters (`smp.*Loss/f64`, `nll_loss/*/*/sum`,
/// `*/*/*/*/ignore_index*`); a segment `**` matches any number of segments, none included
/// (`**/label_smoothing*`). Empty segments are ignored, so `cross_entropy/f32/` is
/// `cross_entropy/f32`, and an empty filter selects everything.
pub fn filter_matches(name: &str, filter: &str) -> bool {
    let names: Vec<&str> = name.split('/').collect();
    let filters: Vec<&str> = filter.split('/').filter(|part| !part.is_empty()).collect();
    segments_match(&names, &filters)
}

/// Whether the filter segments `filter` match a start of the name segments `names`.
fn segments_match(names: &[&str], filter: &[&str]) -> bool {
    match filter.split_first() {
        None => true,
        Some((&"**", rest)) => (0..=names.len()).any(|skip| segments_match(&names[skip..], rest)),
        Some((segment, rest)) => names.split_first().is_some_and(|(name, names)| {
            glob(name, segment, Anchor::Whole) && segments_match(names, rest)
        }),
    }
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
            Tolerance::elementwise(1e-3, 1e-4),
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
            Tolerance::elementwise(0.0, 0.0),
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
    /// The greatest absolute difference in ulps of the largest expected magnitude, when the
    /// tolerance has a per-tensor bound.
    pub normwise_ulps: Option<f64>,
}

impl Agreement {
    /// The worse of two agreements, figure by figure (a per-tensor figure is kept if either has one).
    pub fn worst(self, other: Agreement) -> Agreement {
        Agreement {
            max_abs: self.max_abs.max(other.max_abs),
            max_rel: self.max_rel.max(other.max_rel),
            normwise_ulps: match (self.normwise_ulps, other.normwise_ulps) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// Why a comparison failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// Every element is within the elementwise tolerance, but the tensor as a whole is not within
    /// its per-tensor bound.
    Normwise {
        /// The greatest absolute difference and where.
        worst_abs: (f64, Vec<usize>),
        /// It in ulps of `scale`.
        ulps: f64,
        /// max |expected|.
        scale: f64,
        /// How many elements differ by more than the bound allows.
        over: usize,
        /// How many elements there are.
        total: usize,
        /// The bound.
        bound: Normwise,
    },
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
            Mismatch::Normwise {
                worst_abs,
                ulps,
                scale,
                over,
                total,
                bound,
            } => {
                writeln!(f, "Tensor-likes are not close as a whole!")?;
                writeln!(
                    f,
                    "Elements beyond the per-tensor bound: {over} / {total} ({:.1}%)",
                    100.0 * *over as f64 / *total as f64
                )?;
                write!(
                    f,
                    "Greatest absolute difference: {:e} at index {:?}, {ulps:.3} ulps (of {} significand bits) of the largest expected magnitude {scale:e} (up to {} ulps allowed)",
                    worst_abs.0, worst_abs.1, bound.precision, bound.ulps
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
    // Flat row-major indices while scanning; multi-indices only for the report.
    let mut worst_abs = (0.0, 0);
    let mut worst_rel = (0.0, 0);
    let mut mismatched = 0;
    let mut first = None;
    let (actual, expected) = (actual.as_standard_layout(), expected.as_standard_layout());
    let (scale, normwise) = per_tensor_bound(&tolerance, expected.iter());
    let pairs = actual.iter().zip(expected.iter()).enumerate();
    for (index, (&got, &want)) in pairs {
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
        // Under a per-tensor bound, finite pairs are judged together below.
        let close = same_special
            || (got.is_finite()
                && want.is_finite()
                && (normwise.is_some()
                    || abs_diff <= tolerance.atol + tolerance.rtol * want.abs()));
        if abs_diff > worst_abs.0 {
            worst_abs = (abs_diff, index);
        }
        if rel_diff > worst_rel.0 {
            worst_rel = (rel_diff, index);
        }
        agreement.max_abs = agreement.max_abs.max(abs_diff);
        agreement.max_rel = agreement.max_rel.max(rel_diff);
        if !close {
            mismatched += 1;
            first.get_or_insert((index, got, want));
        }
    }
    let shape = expected.shape();
    if let (None, Some((bound, unit))) = (first, normwise) {
        let ulps = worst_abs.0 / unit;
        let allowed = bound.ulps * unit;
        agreement.normwise_ulps = Some(ulps);
        if ulps > bound.ulps {
            let over = actual
                .iter()
                .zip(expected.iter())
                .filter(|&(&got, &want)| (got - want).abs() > allowed)
                .count();
            return Err(Box::new(Mismatch::Normwise {
                worst_abs: (worst_abs.0, unravel(worst_abs.1, shape)),
                ulps,
                scale,
                over,
                total: expected.len(),
                bound,
            }));
        }
    }
    match first {
        None => Ok(agreement),
        Some((index, got, want)) => Err(Box::new(Mismatch::Values {
            mismatched,
            total: expected.len(),
            worst_abs: (worst_abs.0, unravel(worst_abs.1, shape)),
            worst_rel: (worst_rel.0, unravel(worst_rel.1, shape)),
            first: (unravel(index, shape), got, want),
            tolerance,
        })),
    }
}

/// The multi-index of row-major flat index `flat` in `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (slot, &size) in index.iter_mut().zip(shape).rev() {
        *slot = flat % size.max(1);
        flat /= size.max(1);
    }
    index
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

    #[test]
    fn filters_match_whole_segments_from_the_start() {
        let id = "cross_entropy/f32/N2C3H3W4/mean/label_smoothing=0.1";
        for filter in [
            "",
            "cross_entropy",
            "cross_entropy/",
            "cross_entropy/f32",
            "cross_entropy/f32/*",
            "cross_entropy/f32/N2C3H3W4/mean/label_smoothing=0.1",
            "*/f32",
            "cross_*/f*",
            "*entropy",
            "cross_entropy/f32/*/mean/*smoothing*",
            "**/label_smoothing=*",
            "**/mean",
            "cross_entropy/**/mean/**",
        ] {
            assert!(filter_matches(id, filter), "{filter} should select {id}");
        }
        for filter in [
            "entropy",
            "cross_entropy/f3",
            "cross_entropy/f32/N2C3",
            "f32",
            "*/f64",
            "cross_entropy/f32/N2C3H3W4/mean/label_smoothing=0.1/forward",
            "cross_entropy/f32/*/*/*/*",
            "**/label_smoothing",
            "*smoothing*",
        ] {
            assert!(
                !filter_matches(id, filter),
                "{filter} should not select {id}"
            );
        }
        assert!(!filter_matches(
            "binary_cross_entropy/f32/N4/mean/default",
            "cross_entropy/f32"
        ));
        assert!(filter_matches(
            "smp.DiceLoss/f64/N2C3H3W4/default/mode=multiclass",
            "smp.*Loss/f64"
        ));
        assert!(!filter_matches(
            "smp.DiceLoss/f32/N2C3H3W4/default/mode=multiclass",
            "smp.*Loss/f64"
        ));
        assert!(filter_matches("aXbXc/x", "a*b*c"));
        assert!(!filter_matches("aXbXcd/x", "a*b*c"));
        assert!(filter_matches("abc/x", "a*bc"));
        assert!(!filter_matches("ab/x", "a*bc"));
    }

    const TIGHT: Tolerance = Tolerance::elementwise(1e-10, 1e-13);

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
        let f64_default = DTYPE_TOLERANCES[0].tolerance;
        let f32_default = DTYPE_TOLERANCES[1].tolerance;
        assert_eq!(f64_default.normwise.map(|bound| bound.precision), Some(53));
        assert_eq!(f32_default.normwise.map(|bound| bound.precision), Some(24));
        let strict = |id| tolerance_for(id, DType::Float64, Check::Forward, Tier::Strict).0;
        assert_eq!(strict(plain), f64_default);
        assert_eq!(strict(weighted), Tolerance::elementwise(3e-7, 1e-13));
        for id in [plain, weighted] {
            let (tolerance, reason) =
                tolerance_for(id, DType::Float64, Check::Gradient, Tier::Float32);
            assert_eq!(tolerance, f32_default);
            assert!(reason.starts_with("float32 tier"), "{reason}");
            assert_eq!(
                tolerance_for(id, DType::Float64, Check::Forward, Tier::Approximate).0,
                Tolerance::elementwise(1e-3, 1e-4)
            );
        }
        assert_eq!(
            tolerance_for(plain, DType::Float32, Check::Forward, Tier::Strict).0,
            f32_default
        );
        assert_eq!(
            tolerance_for(plain, DType::Int64, Check::Forward, Tier::Strict).0,
            Tolerance::elementwise(0.0, 0.0)
        );
    }

    const F32_BOUND: Tolerance = Tolerance {
        rtol: 1.3e-6,
        atol: 1e-5,
        normwise: Some(Normwise {
            ulps: 128.0,
            precision: 24,
        }),
    };

    #[test]
    fn an_ulp_is_counted_in_the_bound_s_format() {
        let float32 = Normwise {
            ulps: 1.0,
            precision: 24,
        };
        let float64 = Normwise {
            ulps: 1.0,
            precision: 53,
        };
        assert_eq!(float32.ulp(1.0), 2f64.powi(-23));
        assert_eq!(float32.ulp(3.0), 2f64.powi(-22));
        assert_eq!(float32.ulp(-0.75), 2f64.powi(-24));
        assert_eq!(float64.ulp(1.0), f64::EPSILON);
        assert_eq!(float64.ulp(1e-300), 2f64.powi(-997 - 52));
        assert_eq!(float64.ulp(0.0), 0.0);
        assert_eq!(float64.ulp(f64::INFINITY), 0.0);
    }

    #[test]
    fn opposite_infinities_differ_infinitely_in_both_measures() {
        let error = assert_close(
            &array(&[f64::INFINITY]),
            &array(&[f64::NEG_INFINITY]),
            TIGHT,
        )
        .unwrap_err();
        let Mismatch::Values {
            worst_abs,
            worst_rel,
            ..
        } = *error
        else {
            panic!("{error}")
        };
        assert_eq!((worst_abs.0, worst_rel.0), (f64::INFINITY, f64::INFINITY));
    }

    #[test]
    fn a_per_tensor_bound_scales_with_the_tensor() {
        // Gradient entries of 1e-7 all 2% off: within atol, far beyond 128 ulps of 1e-7.
        let expected = ArrayD::from_elem(vec![1000], 1e-7);
        let actual = expected.mapv(|value| value * 1.02);
        assert!(assert_close(&actual, &expected, Tolerance::elementwise(1.3e-6, 1e-5)).is_ok());
        let error = assert_close(&actual, &expected, F32_BOUND).unwrap_err();
        let Mismatch::Normwise { ulps, over, .. } = *error.clone() else {
            panic!("{error}")
        };
        assert_eq!(over, 1000);
        assert!(ulps > 128.0, "{ulps}");
        assert!(
            error.to_string().contains("up to 128 ulps allowed"),
            "{error}"
        );
        // A sum of millions of terms 5e-6 off relative: beyond rtol, within 128 ulps (1.5e-5).
        let sum = array(&[1.8e7]);
        let agreement = assert_close(&array(&[1.8e7 * (1.0 + 5e-6)]), &sum, F32_BOUND).unwrap();
        assert!(agreement.normwise_ulps.is_some_and(|ulps| ulps < 128.0));
        assert!(assert_close(
            &array(&[1.8e7 * (1.0 + 5e-6)]),
            &sum,
            Tolerance::elementwise(1.3e-6, 1e-5)
        )
        .is_err());
        // Exactly the bound passes; the count is of the elements beyond it.
        let ones = array(&[1.0, 1.0, 1.0]);
        let at_bound = array(&[1.0 + 2f64.powi(-16), 1.0, 1.0]);
        assert_eq!(
            assert_close(&at_bound, &ones, F32_BOUND)
                .unwrap()
                .normwise_ulps,
            Some(128.0)
        );
        let mixed = array(&[
            1.0 + 2f64.powi(-16),
            1.0 + 2f64.powi(-10),
            1.0 + 2f64.powi(-20),
        ]);
        let error = assert_close(&mixed, &ones, F32_BOUND).unwrap_err();
        let Mismatch::Normwise { over, ulps, .. } = *error.clone() else {
            panic!("{error}")
        };
        assert_eq!((over, ulps), (1, 8192.0));
        // An all-zero expected tensor has no scale: atol bounds it.
        let zeros = array(&[0.0, 0.0]);
        assert!(assert_close(&array(&[0.5e-5, 0.0]), &zeros, F32_BOUND).is_ok());
        let error = assert_close(&array(&[2e-5, 0.0]), &zeros, F32_BOUND).unwrap_err();
        assert!(
            matches!(*error, Mismatch::Values { mismatched: 1, .. }),
            "{error}"
        );
        // A NaN must still meet a NaN.
        let error =
            assert_close(&array(&[f64::NAN, 1.0]), &array(&[0.0, 1.0]), F32_BOUND).unwrap_err();
        assert!(
            matches!(*error, Mismatch::Values { mismatched: 1, .. }),
            "{error}"
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
        let loose = Tolerance::elementwise(0.1, 0.0);
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
