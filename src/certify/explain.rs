//! `segloss certify --explain CASE`: the full comparison detail of one case, and PNG heatmaps of
//! where the implementation's gradient (and unreduced loss) deviates from the anchor's.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, Axis};

use super::{call_for, judge, Implementation, Outcome, Verdict};
use crate::compare::Tier;
use crate::error::{Error, Result};
use crate::fixtures::{Expected, Fixtures};

/// Pixels per element edge, so that small fixture images are visible.
const CELL: usize = 12;
/// Pixels between tiles.
const GAP: usize = 3;

/// Runs one case, returns a report of every check and the heatmap files written into `png_dir`.
pub fn explain(
    fixtures: &Fixtures,
    implementation: &dyn Implementation,
    case_id: &str,
    tier: Tier,
    png_dir: &Path,
) -> Result<(String, Vec<PathBuf>)> {
    let entry = fixtures
        .manifest
        .cases
        .iter()
        .find(|entry| entry.id == case_id)
        .ok_or_else(|| Error::Manifest {
            path: fixtures.root.join(crate::fixtures::MANIFEST_FILE),
            message: format!("no case {case_id}"),
        })?;
    let case = fixtures.load(entry)?;
    let outcome = implementation.compute(&call_for(&case));
    let mut report = format!(
        "{case_id} ({})\nparams: {}\n",
        implementation.name(),
        serde_json::Value::from_iter(case.entry.params.clone())
    );
    for (check, verdict) in judge(&case, &outcome, tier) {
        let detail = match verdict {
            Verdict::Passed(agreement) => format!(
                "passed (worst abs {:e}, worst rel {:e})",
                agreement.max_abs, agreement.max_rel
            ),
            Verdict::Failed(reason) => format!("FAILED\n  {}", reason.replace('\n', "\n  ")),
            Verdict::Unsupported(reason) => format!("unsupported: {reason}"),
        };
        report.push_str(&format!("{}: {detail}\n", check.name()));
    }
    if let Outcome::Emulated(_, how) = &outcome {
        report.push_str(&format!("emulated: {how}\n"));
    }
    let mut written = Vec::new();
    if let (
        Outcome::Computed(output) | Outcome::Emulated(output, _),
        Expected::Values {
            loss, grad_input, ..
        },
    ) = (&outcome, &case.expected)
    {
        let stem = case_id.replace(['/', ',', '='], "_");
        let mut panels = vec![("gradient", output.grad_input.clone(), grad_input.to_f64())];
        if output.loss.ndim() > 0 {
            // Per-position losses: give them a class axis of 1 so they tile like the gradient.
            let with_class_axis = |array: ArrayD<f64>| array.insert_axis(Axis(1));
            panels.push((
                "loss",
                with_class_axis(output.loss.clone()),
                with_class_axis(loss.to_f64()),
            ));
        }
        for (what, actual, expected) in panels {
            if actual.shape() != expected.shape() {
                continue;
            }
            let path = png_dir.join(format!("{stem}.{what}.png"));
            write_heatmap(&(&actual - &expected), &path)?;
            report.push_str(&format!(
                "{what} difference heatmap: {} (tiles: batch items down, classes across; white = equal, red = largest |difference|, black = non-finite mismatch)\n",
                path.display()
            ));
            written.push(path);
        }
    }
    Ok((report, written))
}

/// Views an array as a grid of tiles: (rows, columns, tile height, tile width) with the batch
/// axis down, the class axis across, and the spatial axes folded into each tile (the last one
/// across).
fn tile_layout(shape: &[usize]) -> [usize; 4] {
    match shape {
        [] => [1, 1, 1, 1],
        [classes] => [1, 1, 1, *classes],
        [batch, classes] => [1, 1, *batch, *classes],
        [batch, classes, width] => [*batch, *classes, 1, *width],
        [batch, classes, middle @ .., width] => [*batch, *classes, middle.iter().product(), *width],
    }
}

/// Writes |difference| as an RGB PNG: white for 0, red for the largest magnitude, black where the
/// difference is not finite (NaN against a number, opposite infinities).
pub fn write_heatmap(difference: &ArrayD<f64>, path: &Path) -> Result<()> {
    let [rows, columns, tile_height, tile_width] = tile_layout(difference.shape());
    let values: Vec<f64> = difference.iter().map(|value| value.abs()).collect();
    let largest = values
        .iter()
        .copied()
        .filter(|value| value.is_finite())
        .fold(0.0, f64::max);
    let width = (columns * (tile_width * CELL + GAP)).max(1);
    let height = (rows * (tile_height * CELL + GAP)).max(1);
    let mut pixels = vec![200u8; width * height * 3];
    for (flat, &value) in values.iter().enumerate() {
        let x = flat % tile_width;
        let y = (flat / tile_width) % tile_height;
        let column = (flat / (tile_width * tile_height)) % columns;
        let row = flat / (tile_width * tile_height * columns);
        let color = if !value.is_finite() {
            [0, 0, 0]
        } else {
            let fade = if largest > 0.0 {
                1.0 - value / largest
            } else {
                1.0
            };
            let channel = (255.0 * fade).round() as u8;
            [255, channel, channel]
        };
        let left = column * (tile_width * CELL + GAP) + x * CELL;
        let top = row * (tile_height * CELL + GAP) + y * CELL;
        for dy in 0..CELL {
            for dx in 0..CELL {
                let offset = ((top + dy) * width + left + dx) * 3;
                pixels[offset..offset + 3].copy_from_slice(&color);
            }
        }
    }
    let io_error = |message: String| Error::Io {
        path: path.to_path_buf(),
        message,
    };
    let file = File::create(path).map_err(|error| io_error(error.to_string()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|error| io_error(error.to_string()))?;
    writer
        .write_image_data(&pixels)
        .map_err(|error| io_error(error.to_string()))
}
