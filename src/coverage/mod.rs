//! What the fixture corpus must contain: every loss × dtype × shape × reduction × variant
//! combination, plus named edge and error cases. The golden runner fails when one is missing, so a
//! generator change cannot silently drop coverage.

use std::collections::BTreeSet;

mod binary_focal;
mod cross_entropy;
mod lovasz_mcc;
mod overlap;

/// A full cross product of cases the corpus must hold.
pub struct Matrix {
    /// The loss id.
    pub loss: &'static str,
    /// Dtype segments.
    pub dtypes: &'static [&'static str],
    /// Shape tokens.
    pub shapes: &'static [&'static str],
    /// Reduction segments.
    pub reductions: &'static [&'static str],
    /// Variant segments.
    pub variants: &'static [&'static str],
}

/// Every dtype segment.
pub(crate) const DTYPES: &[&str] = &["f32", "f64"];
/// Every reduction segment.
pub(crate) const REDUCTIONS: &[&str] = &["mean", "none", "sum"];

/// What one loss family must have in the corpus.
pub struct FamilyCoverage {
    /// Full cross products.
    pub matrices: &'static [Matrix],
    /// Edge cases, each as (loss/dtype/shape, reductions, variant).
    pub edge_cases: &'static [(&'static str, &'static [&'static str], &'static str)],
    /// Inputs the anchor rejects, as case ids; the expected error kind is in the manifest.
    pub error_cases: &'static [&'static str],
}

/// Every family's coverage.
pub const FAMILIES: &[FamilyCoverage] = &[
    cross_entropy::COVERAGE,
    binary_focal::COVERAGE,
    overlap::COVERAGE,
    lovasz_mcc::COVERAGE,
];

/// Every case id the corpus must contain, sorted.
pub fn required_case_ids() -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for family in FAMILIES {
        ids.extend(family_case_ids(family));
    }
    ids
}

fn family_case_ids(family: &FamilyCoverage) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for matrix in family.matrices {
        for dtype in matrix.dtypes {
            for shape in matrix.shapes {
                for reduction in matrix.reductions {
                    for variant in matrix.variants {
                        ids.insert(format!(
                            "{}/{dtype}/{shape}/{reduction}/{variant}",
                            matrix.loss
                        ));
                    }
                }
            }
        }
    }
    for (prefix, reductions, variant) in family.edge_cases {
        for reduction in *reductions {
            ids.insert(format!("{prefix}/{reduction}/{variant}"));
        }
    }
    ids.extend(family.error_cases.iter().map(|id| id.to_string()));
    ids
}

/// The losses the coverage declaration covers; every catalog loss must appear.
pub fn covered_losses() -> BTreeSet<&'static str> {
    FAMILIES
        .iter()
        .flat_map(|family| family.matrices.iter().map(|matrix| matrix.loss))
        .collect()
}
