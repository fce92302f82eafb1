//! `--explain`: the directory is made when missing, a failing case's heatmaps mark what is beyond
//! the tolerance, a passing case's stay pale however small its differences, and the target map
//! shows the ignored positions.

use std::path::Path;
use std::sync::Arc;

use segloss::certify::explain::explain;
use segloss::certify::{Implementation, LossCall, LossOutput, Outcome, Reference};
use segloss::compare::Tier;
use segloss::corpus::Corpus;
use segloss::fixtures::Fixtures;

fn corpus() -> Corpus {
    Corpus::fixtures(Arc::new(
        Fixtures::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")).unwrap(),
    ))
}

/// The reference's gradient times 1.01.
struct Scaled;

impl Implementation for Scaled {
    fn name(&self) -> &str {
        "gradient times 1.01"
    }

    fn compute(&self, call: &LossCall) -> Outcome {
        match Reference.compute(call) {
            Outcome::Computed(output) => Outcome::Computed(LossOutput {
                loss: output.loss,
                grad_input: output.grad_input.mapv(|value| value * 1.01),
            }),
            other => other,
        }
    }
}

/// The RGB pixels of a PNG file.
fn pixels(path: &Path) -> Vec<[u8; 3]> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut bytes = vec![0; reader.output_buffer_size()];
    reader.next_frame(&mut bytes).unwrap();
    bytes.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect()
}

const CASE: &str = "cross_entropy/f64/N2C3H3W4/none/ignore_index=1";

#[test]
fn a_failing_case_is_red_where_beyond_the_tolerance_in_a_directory_made_for_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("made/for/it");
    let explanation = explain(&corpus(), &Scaled, CASE, Tier::Strict, &dir).unwrap();
    assert!(!explanation.passed);
    assert!(
        explanation.text.contains("gradient: FAILED"),
        "{}",
        explanation.text
    );
    let names: Vec<String> = explanation
        .heatmaps
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "cross_entropy_f64_N2C3H3W4_none_ignore_index_1.gradient.png",
            "cross_entropy_f64_N2C3H3W4_none_ignore_index_1.loss.png",
            "cross_entropy_f64_N2C3H3W4_none_ignore_index_1.target.png",
        ]
    );
    let gradient = pixels(&explanation.heatmaps[0]);
    let red = |p: &&[u8; 3]| p[0] > 120 && p[1] < 60 && p[2] == 0;
    assert!(
        gradient.iter().filter(red).count() > 100,
        "no element drawn beyond the tolerance"
    );
    // The loss is the reference's: within the tolerance, nothing red outside the legend.
    let loss = pixels(&explanation.heatmaps[1]);
    let legend_swatches = 2 * 12 * 12;
    assert!(loss.iter().filter(red).count() <= legend_swatches);
}

#[test]
fn a_passing_case_stays_pale_and_the_target_map_shows_ignored_positions() {
    let dir = tempfile::tempdir().unwrap();
    let explanation = explain(&corpus(), &Reference, CASE, Tier::Strict, dir.path()).unwrap();
    assert!(explanation.passed, "{}", explanation.text);
    let gradient = pixels(&explanation.heatmaps[0]);
    let red = |p: &&[u8; 3]| p[0] > 120 && p[1] < 60 && p[2] == 0;
    assert!(gradient.iter().filter(red).count() <= 2 * 12 * 12);
    let target = pixels(&explanation.heatmaps[2]);
    // Class 1 is ignore_index: its colour appears only in the legend's swatch.
    let orange = target.iter().filter(|p| **p == [255, 127, 14]).count();
    assert!(orange <= 12 * 12, "{orange} pixels of class 1's colour");
    assert!(target.iter().filter(|p| **p == [31, 119, 180]).count() > 12 * 12);
}
