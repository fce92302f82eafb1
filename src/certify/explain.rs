//! `segloss certify --explain CASE`: the full comparison detail of one case, and PNG heatmaps of
//! where the implementation's gradient (and unreduced loss) deviates from the anchor's.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, Axis};

use super::{call_for, compute_guarded, judge, Implementation, Outcome, Verdict};
use crate::compare::Tier;
use crate::corpus::Corpus;
use crate::error::{Error, Result};
use crate::fixtures::Expected;

/// Pixels per element edge, so that small fixture images are visible.
const CELL: usize = 12;
/// Pixels between tiles.
const GAP: usize = 3;
/// The most pixels a heatmap spans across or down, so that a realistic-size case (millions of
/// elements) draws as an image of a few megabytes rather than gigabytes.
const MAX_SIDE: usize = 2048;

/// The explanation of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Every check in detail, as text.
    pub text: String,
    /// The heatmap files written.
    pub heatmaps: Vec<PathBuf>,
    /// Whether every check passed.
    pub passed: bool,
}

/// Runs one case; returns a report of every check and the heatmap files written into `png_dir`.
pub fn explain(
    corpus: &Corpus,
    implementation: &dyn Implementation,
    case_id: &str,
    tier: Tier,
    png_dir: &Path,
) -> Result<Explanation> {
    let spec = corpus.find(case_id).ok_or_else(|| Error::Manifest {
        path: corpus.fixtures.root.join(crate::fixtures::MANIFEST_FILE),
        message: format!("no case {case_id} in the {} corpus", corpus.kind),
    })?;
    let case = corpus.load(spec)?;
    let outcome = compute_guarded(implementation, &call_for(&case));
    let mut report = format!(
        "{case_id} ({})\nparams: {}\n",
        implementation.name(),
        serde_json::Value::from_iter(case.params.clone())
    );
    let verdicts = judge(&case, &outcome, tier);
    let passed = verdicts.iter().all(|(_, verdict)| verdict.passed());
    for (check, verdict) in verdicts {
        let detail = match verdict {
            Verdict::Passed(agreement) => format!(
                "passed (worst abs {:e}, worst rel {:e})",
                agreement.max_abs, agreement.max_rel
            ),
            Verdict::Accepted {
                agreement,
                alternative,
            } => format!(
                "passed: not the anchor's value but {} (worst abs {:e}, worst rel {:e} from it)\n  {}",
                alternative.label(),
                agreement.max_abs,
                agreement.max_rel,
                alternative.reason()
            ),
            Verdict::Failed(failure) => format!(
                "FAILED ({})\n  {}",
                failure.kind.name(),
                failure.detail.replace('\n', "\n  ")
            ),
            Verdict::Unsupported(reason) => format!("unsupported: {reason}"),
        };
        report.push_str(&format!("{}: {detail}\n", check.name()));
    }
    if let Outcome::Emulated(_, how)
    | Outcome::ForwardOnly {
        emulated: Some(how),
        ..
    } = &outcome
    {
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
        if output.loss.ndim() > 0 && output.loss.shape() == loss.shape() {
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
    Ok(Explanation {
        text: report,
        heatmaps: written,
        passed,
    })
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
/// difference is not finite (NaN against a number, opposite infinities). A difference too large
/// to draw at 12 pixels per element within 2048 pixels is shown in blocks of
/// elements, each block coloured by its largest |difference|.
pub fn write_heatmap(difference: &ArrayD<f64>, path: &Path) -> Result<()> {
    let [rows, columns, tile_height, tile_width] = tile_layout(difference.shape());
    let largest = difference
        .iter()
        .map(|value| value.abs())
        .filter(|value| value.is_finite())
        .fold(0.0, f64::max);
    let elements_across = (columns * tile_width).max(rows * tile_height).max(1);
    let (block, cell) = if elements_across <= MAX_SIDE {
        (1, (MAX_SIDE / elements_across).clamp(1, CELL))
    } else {
        (elements_across.div_ceil(MAX_SIDE), 1)
    };
    let (block_height, block_width) = (tile_height.div_ceil(block), tile_width.div_ceil(block));
    // The largest |difference| of each block, NaN where any element's is not finite.
    let mut blocks = vec![0.0f64; rows * columns * block_height * block_width];
    for (flat, &value) in difference.iter().enumerate() {
        let x = flat % tile_width.max(1);
        let y = (flat / tile_width.max(1)) % tile_height.max(1);
        let column = (flat / (tile_width * tile_height).max(1)) % columns.max(1);
        let row = flat / (tile_width * tile_height * columns).max(1);
        let index = ((row * columns + column) * block_height + y / block) * block_width + x / block;
        let magnitude = value.abs();
        let slot = &mut blocks[index];
        *slot = if magnitude.is_finite() && !slot.is_nan() {
            slot.max(magnitude)
        } else {
            f64::NAN
        };
    }
    let width = (columns * (block_width * cell + GAP)).max(1);
    let height = (rows * (block_height * cell + GAP)).max(1);
    let mut pixels = vec![200u8; width * height * 3];
    for (index, &value) in blocks.iter().enumerate() {
        let x = index % block_width;
        let y = (index / block_width) % block_height;
        let tile = index / (block_width * block_height);
        let (row, column) = (tile / columns, tile % columns);
        let color = if value.is_nan() {
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
        let left = column * (block_width * cell + GAP) + x * cell;
        let top = row * (block_height * cell + GAP) + y * cell;
        for dy in 0..cell {
            let offset = ((top + dy) * width + left) * 3;
            for pixel in pixels[offset..offset + 3 * cell].chunks_exact_mut(3) {
                pixel.copy_from_slice(&color);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The width and height a PNG file's header gives.
    fn png_size(path: &Path) -> (u32, u32) {
        let bytes = std::fs::read(path).unwrap();
        let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        (word(16), word(20))
    }

    /// The RGB pixels of a PNG file, row by row, and its width.
    fn png_pixels(path: &Path) -> (Vec<u8>, usize) {
        let decoder = png::Decoder::new(std::io::BufReader::new(File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).unwrap();
        (pixels, info.width as usize)
    }

    #[test]
    fn each_element_is_coloured_by_its_difference_in_its_tile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("colours.png");
        // Two batch items, two classes, 2 × 3 positions.
        let mut difference = ArrayD::zeros(vec![2, 2, 2, 3]);
        difference[[1, 1, 1, 2]] = -4.0;
        difference[[1, 0, 1, 1]] = 2.0;
        difference[[0, 1, 0, 0]] = f64::NAN;
        write_heatmap(&difference, &path).unwrap();
        let (pixels, width) = png_pixels(&path);
        let pixel = |batch: usize, class: usize, y: usize, x: usize| {
            let left = class * (3 * CELL + GAP) + x * CELL + CELL / 2;
            let top = batch * (2 * CELL + GAP) + y * CELL + CELL / 2;
            let offset = (top * width + left) * 3;
            [pixels[offset], pixels[offset + 1], pixels[offset + 2]]
        };
        assert_eq!(
            pixel(1, 1, 1, 2),
            [255, 0, 0],
            "the largest difference is red"
        );
        assert_eq!(
            pixel(1, 0, 1, 1),
            [255, 128, 128],
            "half the largest is half faded"
        );
        assert_eq!(
            pixel(0, 1, 0, 0),
            [0, 0, 0],
            "a non-finite difference is black"
        );
        assert_eq!(pixel(0, 0, 0, 0), [255, 255, 255], "no difference is white");
        assert_eq!(pixel(0, 1, 1, 2), [255, 255, 255]);
        assert_eq!(pixel(1, 1, 1, 1), [255, 255, 255]);
        let gap = (CELL / 2 * width + 3 * CELL + 1) * 3;
        assert_eq!(pixels[gap..gap + 3], [200, 200, 200], "tiles are apart");
    }

    #[test]
    fn small_differences_are_drawn_in_cells_of_several_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.png");
        write_heatmap(&ArrayD::from_elem(vec![2, 3, 4], 1.0), &path).unwrap();
        let (width, height) = (3 * (4 * CELL + GAP), 2 * (CELL + GAP));
        assert_eq!(png_size(&path), (width as u32, height as u32));
    }

    #[test]
    fn large_differences_are_drawn_in_blocks_within_the_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("large.png");
        let mut difference = ArrayD::zeros(vec![1, 2, 3, 5000]);
        difference[[0, 1, 2, 4999]] = f64::NAN;
        write_heatmap(&difference, &path).unwrap();
        let (width, height) = png_size(&path);
        // 2 tiles of 5000 elements across: blocks of 5 elements, 1000 pixels a tile.
        assert_eq!((width, height), (2 * (1000 + GAP as u32), 1 + GAP as u32));
        let (pixels, _) = png_pixels(&path);
        let block = |tile: usize, index: usize| {
            let offset = (tile * (1000 + GAP) + index) * 3;
            [pixels[offset], pixels[offset + 1], pixels[offset + 2]]
        };
        assert_eq!(block(1, 999), [0, 0, 0], "the block holding the NaN");
        assert_eq!(block(1, 998), [255, 255, 255]);
        assert_eq!(block(0, 999), [255, 255, 255]);
    }
}
