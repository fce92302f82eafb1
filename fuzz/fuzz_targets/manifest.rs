//! Manifest parsing and validation on arbitrary bytes: a manifest or a one-line typed error, never
//! a panic; and every file path an accepted manifest gives is a plain relative path.

#![no_main]

use std::collections::BTreeSet;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use segloss::fixtures::Manifest;

fuzz_target!(|data: &[u8]| {
    let manifest = match Manifest::parse(data, Path::new("manifest.json")) {
        Ok(manifest) => manifest,
        Err(error) => {
            assert!(
                ["manifest", "schema_version", "fixture_path"].contains(&error.kind()),
                "{error}"
            );
            assert!(!error.to_string().contains(char::is_control), "{error}");
            return;
        }
    };
    let mut ids = BTreeSet::new();
    for case in &manifest.cases {
        assert!(ids.insert(&case.id), "case {} accepted twice", case.id);
        assert!(["f32", "f64"].contains(&case.dtype.as_str()));
        for file in case.files() {
            let path = Path::new(&file.path);
            assert!(
                path.components()
                    .all(|component| matches!(component, Component::Normal(_))),
                "{:?} accepted",
                file.path
            );
        }
    }
});
