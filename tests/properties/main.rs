//! Property tests: the reference is right on inputs nobody chose. One module per loss family;
//! `FAMILIES` registers which catalog losses each covers, and a loss without a property set fails
//! `every_catalog_loss_has_properties`. `never_panics` holds every loss to a result or a typed
//! rejection on any call, and `anchor_edges` the calls that once panicked, each answered as its
//! anchor answers it. Failing seeds persist under `proptest-regressions/`.
//! `PROPTEST_CASES=N cargo test --test properties` runs N cases per property (default 64).

mod anchor_edges;
mod binary_focal;
mod common;
mod cross_entropy;
mod lovasz_mcc;
mod never_panics;
mod overlap;

use segloss::catalog::losses;

/// The losses each family module holds properties for.
const FAMILIES: &[&[&str]] = &[
    cross_entropy::LOSSES,
    binary_focal::LOSSES,
    overlap::LOSSES,
    lovasz_mcc::LOSSES,
];

#[test]
fn every_catalog_loss_has_properties() {
    let missing: Vec<&str> = losses()
        .map(|loss| loss.name)
        .filter(|name| !FAMILIES.iter().any(|family| family.contains(name)))
        .collect();
    assert!(
        missing.is_empty(),
        "catalog losses without a property set: {missing:?}"
    );
}
