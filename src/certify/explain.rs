//! `segloss certify --explain CASE`: the full comparison detail of one case, and PNG heatmaps of
//! where the implementation's gradient (and unreduced loss) deviates from the anchor's.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, Axis};

use super::{call_for, compute_guarded, judge, Implementation, Outcome, Verdict};
use crate::compare::{per_tensor_bound, tolerance_for, Check, Tier, Tolerance};
use crate::corpus::Corpus;
use crate::error::{Error, Result};
use crate::fixtures::{Case, Expected};

/// The most pixels an element edge takes, so that small fixture images are visible.
const CELL: usize = 40;
/// How many pixels across a small array's heatmap aims at.
const READABLE: usize = 480;
/// Pixels between tiles.
const GAP: usize = 3;
/// The most pixels a heatmap spans across or down, so that a realistic-size case (millions of
/// elements) draws as an image of a few megabytes rather than gigabytes.
const MAX_SIDE: usize = 2048;

/// A picture to write: its file name and what draws it into a path.
type Drawing<'a> = (String, Box<dyn Fn(&Path) -> Result<()> + 'a>);

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
    let stem = case_id.replace(['/', ',', '='], "_");
    let mut drawings: Vec<Drawing> = Vec::new();
    if let (
        Outcome::Computed(output) | Outcome::Emulated(output, _),
        Expected::Values {
            loss, grad_input, ..
        },
    ) = (&outcome, &case.expected)
    {
        let mut panels = vec![(
            Check::Gradient,
            "gradient",
            output.grad_input.clone(),
            grad_input.to_f64(),
        )];
        if output.loss.ndim() > 0 && output.loss.shape() == loss.shape() {
            // Per-position losses: give them a class axis of 1 so they tile like the gradient.
            let with_class_axis = |array: ArrayD<f64>| array.insert_axis(Axis(1));
            panels.push((
                Check::Forward,
                "loss",
                with_class_axis(output.loss.clone()),
                with_class_axis(loss.to_f64()),
            ));
        }
        for (check, what, actual, expected) in panels {
            if actual.shape() != expected.shape() {
                continue;
            }
            let (tolerance, _) = tolerance_for(&case.id, case.input_dtype(), check, tier);
            drawings.push((
                format!("{stem}.{what}.png"),
                Box::new(move |path: &Path| write_heatmap(&actual, &expected, &tolerance, path)),
            ));
        }
        if let Some((labels, classes)) = target_labels(&case) {
            drawings.push((
                format!("{stem}.target.png"),
                Box::new(move |path: &Path| write_target_map(&labels, classes, path)),
            ));
        }
    }
    if !drawings.is_empty() {
        match std::fs::create_dir_all(png_dir) {
            Err(error) => report.push_str(&format!(
                "heatmaps not written: cannot create {}: {error}\n",
                png_dir.display()
            )),
            Ok(()) => {
                for (name, draw) in drawings {
                    let path = png_dir.join(name);
                    match draw(&path) {
                        Ok(()) => {
                            report.push_str(&format!("heatmap: {}\n", path.display()));
                            written.push(path);
                        }
                        Err(error) => report.push_str(&format!("heatmap not written: {error}\n")),
                    }
                }
                report.push_str(
                    "(difference heatmaps: batch items down, classes across, each element by its \
                     difference over what the tolerance allows there: white equal, pale to amber \
                     within the tolerance, red beyond it, black a NaN or infinity against a \
                     number; the target map: each position by its class, white where ignored)\n",
                );
            }
        }
    }
    Ok(Explanation {
        text: report,
        heatmaps: written,
        passed,
    })
}

/// The case's class labels `(N, positions…)` and class count, for the target map: an integer
/// target beside an `(N, C, …)` prediction as it is, a float target of the prediction's shape as
/// the class of its largest value (−1, drawn as ignored, where a position has no positive value).
fn target_labels(case: &Case) -> Option<(ArrayD<i64>, usize)> {
    let def = crate::catalog::find(&case.loss).ok()?;
    let prediction = case.tensors.get(def.prediction())?;
    let target = case.tensors.get(def.target())?;
    let classes = *prediction.shape().get(1)?;
    let ignored = case
        .params
        .get("ignore_index")
        .and_then(serde_json::Value::as_i64);
    if !target.dtype().is_floating() {
        let labels = target.to_f64().mapv(|label| label as i64).mapv(|label| {
            if Some(label) == ignored {
                -1
            } else {
                label
            }
        });
        let mut positions = prediction.shape().to_vec();
        positions.remove(1);
        return match labels.shape() {
            shape if shape == positions.as_slice() => Some((labels, classes)),
            [n, 1, rest @ ..] if [*n].iter().chain(rest).eq(positions.iter()) => {
                Some((labels.index_axis_move(Axis(1), 0), classes))
            }
            _ => None,
        };
    }
    if target.shape() != prediction.shape() {
        return None;
    }
    let values = target.to_f64();
    let labels = values.map_axis(Axis(1), |lane| {
        lane.iter()
            .enumerate()
            .filter(|(_, &value)| value > 0.0)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(-1, |(class, _)| class as i64)
    });
    Some((labels, classes))
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

/// How far each element is from its expected value, in units of what the tolerance allows
/// there: 0 where equal (NaN against NaN and equal infinities included), up to 1 within the
/// tolerance, more beyond it, NaN where one side is not finite and the two differ.
pub fn excess_ratios(
    actual: &ArrayD<f64>,
    expected: &ArrayD<f64>,
    tolerance: &Tolerance,
) -> ArrayD<f64> {
    // As the comparison judges it: the per-tensor bound, or atol + rtol·|e| without one.
    let (_, normwise) = per_tensor_bound(tolerance, expected.iter());
    let uniform = normwise.map(|(bound, unit)| bound.ulps * unit);
    ndarray::Zip::from(actual)
        .and(expected)
        .map_collect(|&a, &e| {
            if a == e || (a.is_nan() && e.is_nan()) {
                0.0
            } else if !a.is_finite() || !e.is_finite() {
                f64::NAN
            } else {
                let allowed = uniform.unwrap_or(tolerance.atol + tolerance.rtol * e.abs());
                let difference = (a - e).abs();
                if allowed > 0.0 {
                    difference / allowed
                } else {
                    f64::INFINITY
                }
            }
        })
}

/// The colour of an excess ratio: white for 0; white to amber up to the tolerance; orange-red to
/// dark red from 1× to 1000× the tolerance (log scale); black for a non-finite mismatch.
fn ratio_colour(ratio: f64) -> [u8; 3] {
    if ratio.is_nan() {
        [0, 0, 0]
    } else if ratio == 0.0 {
        [255, 255, 255]
    } else if ratio <= 1.0 {
        [
            255,
            (255.0 - 75.0 * ratio).round() as u8,
            (255.0 - 255.0 * ratio).round() as u8,
        ]
    } else {
        let t = (ratio.log10() / 3.0).clamp(0.0, 1.0);
        [
            (255.0 - 115.0 * t).round() as u8,
            (60.0 * (1.0 - t)).round() as u8,
            0,
        ]
    }
}

/// The legend under a heatmap: each colour with what it means.
fn ratio_legend(allowed: &str) -> Vec<([u8; 3], String)> {
    vec![
        (ratio_colour(0.0), "equal".to_string()),
        (ratio_colour(0.5), "0.5x".to_string()),
        (ratio_colour(1.0), format!("1x = {allowed}")),
        (ratio_colour(10.0), "10x".to_string()),
        (ratio_colour(1000.0), ">=1000x".to_string()),
        (ratio_colour(f64::NAN), "nan/inf mismatch".to_string()),
    ]
}

/// A picture under construction: RGB pixels on a grey ground.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![200; width * height * 3],
        }
    }

    fn fill(&mut self, left: usize, top: usize, width: usize, height: usize, colour: [u8; 3]) {
        for y in top..(top + height).min(self.height) {
            for x in left..(left + width).min(self.width) {
                let offset = (y * self.width + x) * 3;
                self.pixels[offset..offset + 3].copy_from_slice(&colour);
            }
        }
    }

    /// Writes `text` in the 3×5 font at twice its size, black, from (left, top).
    fn text(&mut self, left: usize, top: usize, text: &str) {
        for (index, character) in text.chars().enumerate() {
            let rows = glyph(character);
            for (y, row) in rows.iter().enumerate() {
                for (x, bit) in row.chars().enumerate() {
                    if bit == '#' {
                        self.fill(left + index * 8 + x * 2, top + y * 2, 2, 2, [0, 0, 0]);
                    }
                }
            }
        }
    }

    /// Writes a legend row of swatches with their labels from (left, top); returns its height.
    fn legend(&mut self, left: usize, top: usize, entries: &[([u8; 3], String)]) -> usize {
        let mut x = left;
        for (colour, label) in entries {
            self.fill(x, top, 14, 14, [90, 90, 90]);
            self.fill(x + 1, top + 1, 12, 12, *colour);
            self.text(x + 20, top + 2, label);
            x += 20 + 8 * label.chars().count() + 16;
        }
        LEGEND_HEIGHT
    }

    fn write(&self, path: &Path) -> Result<()> {
        let io_error = |message: String| Error::Io {
            path: path.to_path_buf(),
            message,
        };
        let file = File::create(path).map_err(|error| io_error(error.to_string()))?;
        let mut encoder =
            png::Encoder::new(BufWriter::new(file), self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|error| io_error(error.to_string()))?;
        writer
            .write_image_data(&self.pixels)
            .map_err(|error| io_error(error.to_string()))
    }
}

/// The height of a legend row.
const LEGEND_HEIGHT: usize = 22;

/// The width a legend row needs.
fn legend_width(entries: &[([u8; 3], String)]) -> usize {
    entries
        .iter()
        .map(|(_, label)| 20 + 8 * label.chars().count() + 16)
        .sum::<usize>()
        + 2 * GAP
}

/// A 3×5 glyph ('#' set) for the characters legends use; a blank for any other.
fn glyph(character: char) -> [&'static str; 5] {
    match character {
        '0' => ["###", "#.#", "#.#", "#.#", "###"],
        '1' => [".#.", "##.", ".#.", ".#.", "###"],
        '2' => ["###", "..#", "###", "#..", "###"],
        '3' => ["###", "..#", ".##", "..#", "###"],
        '4' => ["#.#", "#.#", "###", "..#", "..#"],
        '5' => ["###", "#..", "###", "..#", "###"],
        '6' => ["###", "#..", "###", "#.#", "###"],
        '7' => ["###", "..#", ".#.", ".#.", ".#."],
        '8' => ["###", "#.#", "###", "#.#", "###"],
        '9' => ["###", "#.#", "###", "..#", "###"],
        '.' => ["...", "...", "...", "...", ".#."],
        '-' => ["...", "...", "###", "...", "..."],
        '+' => ["...", ".#.", "###", ".#.", "..."],
        '=' => ["...", "###", "...", "###", "..."],
        '>' => ["#..", ".#.", "..#", ".#.", "#.."],
        '<' => ["..#", ".#.", "#..", ".#.", "..#"],
        '/' => ["..#", "..#", ".#.", "#..", "#.."],
        'a' => ["...", "##.", ".##", "#.#", "###"],
        'c' => ["...", "###", "#..", "#..", "###"],
        'd' => ["..#", "..#", "###", "#.#", "###"],
        'e' => ["...", "###", "###", "#..", "###"],
        'f' => [".##", "#..", "###", "#..", "#.."],
        'g' => ["...", "###", "#.#", "###", "..#"],
        'h' => ["#..", "#..", "###", "#.#", "#.#"],
        'i' => [".#.", "...", ".#.", ".#.", ".#."],
        'l' => [".#.", ".#.", ".#.", ".#.", ".##"],
        'm' => ["...", "###", "###", "#.#", "#.#"],
        'n' => ["...", "##.", "#.#", "#.#", "#.#"],
        'o' => ["...", "###", "#.#", "#.#", "###"],
        'p' => ["...", "###", "#.#", "###", "#.."],
        'q' => ["...", "###", "#.#", "###", "..#"],
        'r' => ["...", "###", "#..", "#..", "#.."],
        's' => ["...", ".##", ".#.", "..#", "##."],
        't' => [".#.", "###", ".#.", ".#.", ".##"],
        'u' => ["...", "#.#", "#.#", "#.#", "###"],
        'w' => ["...", "#.#", "#.#", "###", "###"],
        'x' => ["...", "#.#", ".#.", "#.#", "#.#"],
        'y' => ["...", "#.#", "###", "..#", "###"],
        _ => ["...", "...", "...", "...", "..."],
    }
}

/// Pixels per element edge for an array `elements_across` elements across, and how many elements
/// a drawn block holds: small arrays are enlarged (at most [`CELL`] pixels an element, aiming at a
/// picture [`READABLE`] pixels across), large ones drawn in blocks within [`MAX_SIDE`].
fn cell_and_block(elements_across: usize) -> (usize, usize) {
    let elements_across = elements_across.max(1);
    if elements_across <= MAX_SIDE {
        (1, (READABLE / elements_across).clamp(1, CELL))
    } else {
        (elements_across.div_ceil(MAX_SIDE), 1)
    }
}

/// Draws `values` (laid out as [`tile_layout`] of `shape`), each block of elements in
/// `colour(folded)`, where `fold` combines the values of a block; returns the canvas with
/// `legend_rows` of room underneath and where the legend starts.
fn draw_tiles(
    shape: &[usize],
    values: impl Iterator<Item = f64>,
    fold: impl Fn(f64, f64) -> f64,
    colour: impl Fn(f64) -> [u8; 3],
    legend_width_needed: usize,
    legend_rows: usize,
) -> (Canvas, usize) {
    let [rows, columns, tile_height, tile_width] = tile_layout(shape);
    let (block, cell) = cell_and_block((columns * tile_width).max(rows * tile_height));
    let (block_height, block_width) = (tile_height.div_ceil(block), tile_width.div_ceil(block));
    let mut blocks: Vec<Option<f64>> = vec![None; rows * columns * block_height * block_width];
    for (flat, value) in values.enumerate() {
        let x = flat % tile_width.max(1);
        let y = (flat / tile_width.max(1)) % tile_height.max(1);
        let column = (flat / (tile_width * tile_height).max(1)) % columns.max(1);
        let row = flat / (tile_width * tile_height * columns).max(1);
        let index = ((row * columns + column) * block_height + y / block) * block_width + x / block;
        let slot = &mut blocks[index];
        *slot = Some(slot.map_or(value, |held| fold(held, value)));
    }
    let tiles_width = (columns * (block_width * cell + GAP)).max(1);
    let tiles_height = (rows * (block_height * cell + GAP)).max(1);
    let width = tiles_width.max(legend_width_needed);
    let mut canvas = Canvas::new(width, tiles_height + legend_rows * LEGEND_HEIGHT + GAP);
    for (index, value) in blocks.iter().enumerate() {
        let Some(value) = value else { continue };
        let x = index % block_width;
        let y = (index / block_width) % block_height;
        let tile = index / (block_width * block_height);
        let (row, column) = (tile / columns, tile % columns);
        let left = column * (block_width * cell + GAP) + x * cell;
        let top = row * (block_height * cell + GAP) + y * cell;
        canvas.fill(left, top, cell, cell, colour(*value));
        if cell >= 8 {
            // A hairline between elements, so that a uniform tile still shows its grid.
            canvas.fill(left, top, cell, 1, [225, 225, 225]);
            canvas.fill(left, top, 1, cell, [225, 225, 225]);
        }
    }
    (canvas, tiles_height + GAP)
}

/// Writes a heatmap of how far `actual` is from `expected` against `tolerance`: each element
/// coloured by its excess ratio ([`excess_ratios`], [`ratio_colour`]), so that differences within
/// the tolerance stay pale however small they are and every element beyond it is red; equal
/// non-finite values are equal. Batch items run down, classes across; a large array is drawn in
/// blocks of elements, each coloured by its largest ratio. A legend names the colours and what
/// the tolerance allows.
pub fn write_heatmap(
    actual: &ArrayD<f64>,
    expected: &ArrayD<f64>,
    tolerance: &Tolerance,
    path: &Path,
) -> Result<()> {
    let ratios = excess_ratios(actual, expected, tolerance);
    let allowed = match tolerance.normwise {
        Some(bound) => format!("{} ulps of max", bound.ulps),
        None => format!("{:.1e}+{:.1e}e", tolerance.atol, tolerance.rtol),
    };
    let legend = ratio_legend(&allowed);
    let (mut canvas, legend_top) = draw_tiles(
        ratios.shape(),
        ratios.iter().copied(),
        |held, value| {
            if held.is_nan() || value.is_nan() {
                f64::NAN
            } else {
                held.max(value)
            }
        },
        ratio_colour,
        legend_width(&legend),
        1,
    );
    canvas.legend(GAP, legend_top, &legend);
    canvas.write(path)
}

/// A distinct colour per class (cycling after ten).
fn class_colour(class: i64) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 10] = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
        [188, 189, 34],
        [23, 190, 207],
    ];
    PALETTE[class.rem_euclid(10) as usize]
}

/// Writes the target's class labels `(N, positions…)` as tiles (one per batch item), each
/// position in its class's colour and ignored positions (labels outside `[0, classes)`) in white
/// with a grey frame; a legend names the colours.
pub fn write_target_map(labels: &ArrayD<i64>, classes: usize, path: &Path) -> Result<()> {
    let mut shape = labels.shape().to_vec();
    if shape.is_empty() {
        shape.push(1);
    }
    shape.insert(1.min(shape.len()), 1);
    let ignored = |label: i64| label < 0 || label >= classes as i64;
    let mut legend: Vec<([u8; 3], String)> = (0..classes.min(10))
        .map(|class| (class_colour(class as i64), format!("{class}")))
        .collect();
    legend.push(([255, 255, 255], "ignored".to_string()));
    let (mut canvas, legend_top) = draw_tiles(
        &shape,
        labels.iter().map(|&label| label as f64),
        |held, value| if held < 0.0 { held } else { value },
        |label| {
            if ignored(label as i64) {
                [255, 255, 255]
            } else {
                class_colour(label as i64)
            }
        },
        legend_width(&legend),
        1,
    );
    canvas.legend(GAP, legend_top, &legend);
    canvas.write(path)
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
    fn each_element_is_coloured_by_its_difference_over_the_tolerance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("colours.png");
        // Two batch items, two classes, 2 × 3 positions; atol 1 allows 1 everywhere.
        let expected = ArrayD::from_elem(vec![2, 2, 2, 3], 1.0);
        let mut actual = expected.clone();
        let mut expected = expected;
        actual[[1, 1, 1, 2]] = 5.0; // 4× the tolerance
        actual[[1, 0, 1, 1]] = 1.5; // half of it
        actual[[0, 1, 0, 0]] = f64::NAN; // NaN against a number
        actual[[0, 0, 1, 1]] = f64::NAN; // NaN against NaN: equal
        expected[[0, 0, 1, 1]] = f64::NAN;
        let tolerance = Tolerance::elementwise(0.0, 1.0);
        write_heatmap(&actual, &expected, &tolerance, &path).unwrap();
        let (pixels, width) = png_pixels(&path);
        let (_, cell) = cell_and_block(6);
        let pixel = |batch: usize, class: usize, y: usize, x: usize| {
            let left = class * (3 * cell + GAP) + x * cell + cell / 2;
            let top = batch * (2 * cell + GAP) + y * cell + cell / 2;
            let offset = (top * width + left) * 3;
            [pixels[offset], pixels[offset + 1], pixels[offset + 2]]
        };
        assert_eq!(pixel(1, 1, 1, 2), ratio_colour(4.0), "beyond the tolerance");
        let red = pixel(1, 1, 1, 2);
        assert!(
            red[0] > 200 && red[1] < 60 && red[2] == 0,
            "is red: {red:?}"
        );
        assert_eq!(
            pixel(1, 0, 1, 1),
            [255, 218, 128],
            "half the tolerance is pale amber"
        );
        assert_eq!(
            pixel(0, 1, 0, 0),
            [0, 0, 0],
            "a non-finite mismatch is black"
        );
        assert_eq!(
            pixel(0, 0, 1, 1),
            [255, 255, 255],
            "NaN against NaN is equal"
        );
        assert_eq!(pixel(0, 0, 0, 0), [255, 255, 255], "no difference is white");
        let gap = (cell / 2 * width + 3 * cell + 1) * 3;
        assert_eq!(pixels[gap..gap + 3], [200, 200, 200], "tiles are apart");
    }

    #[test]
    fn tiny_differences_within_the_tolerance_stay_pale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pale.png");
        let expected = ArrayD::from_elem(vec![1, 1, 1, 4], 0.25);
        let actual = expected.mapv(|value: f64| value + 5.5e-17);
        let tolerance = Tolerance::elementwise(1e-10, 1e-13);
        write_heatmap(&actual, &expected, &tolerance, &path).unwrap();
        let (pixels, width) = png_pixels(&path);
        let ratio = 5.5e-17 / (1e-13 + 1e-10 * 0.25);
        let colour = ratio_colour(ratio);
        assert!(colour[1] > 250 && colour[2] > 250, "{colour:?}");
        let centre = cell_and_block(4).1 / 2;
        let offset = (centre * width + centre) * 3;
        assert_eq!(pixels[offset..offset + 3], colour);
    }

    #[test]
    fn small_arrays_are_enlarged_and_large_ones_drawn_in_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.png");
        let values = ArrayD::from_elem(vec![2, 3, 4], 1.0);
        let tolerance = Tolerance::elementwise(0.0, 1.0);
        write_heatmap(&values, &values, &tolerance, &small).unwrap();
        let (cell, block) = (cell_and_block(4).1, cell_and_block(4).0);
        assert_eq!((block, cell), (1, CELL));
        let (width, height) = png_size(&small);
        assert!(width as usize >= 3 * (4 * CELL + GAP), "{width}");
        assert_eq!(height as usize, 2 * (CELL + GAP) + LEGEND_HEIGHT + GAP);

        let large = dir.path().join("large.png");
        let expected: ArrayD<f64> = ArrayD::zeros(vec![1, 2, 3, 5000]);
        let mut actual = expected.clone();
        actual[[0, 1, 2, 4999]] = f64::NAN;
        write_heatmap(&actual, &expected, &tolerance, &large).unwrap();
        let (width, _) = png_size(&large);
        // 2 tiles of 5000 elements across: blocks of 5 elements, 1000 pixels a tile.
        assert_eq!(width, 2 * (1000 + GAP as u32));
        let (pixels, _) = png_pixels(&large);
        let block = |tile: usize, index: usize| {
            let offset = (tile * (1000 + GAP) + index) * 3;
            [pixels[offset], pixels[offset + 1], pixels[offset + 2]]
        };
        assert_eq!(block(1, 999), [0, 0, 0], "the block holding the NaN");
        assert_eq!(block(1, 998), [255, 255, 255]);
        assert_eq!(block(0, 999), [255, 255, 255]);
    }

    #[test]
    fn the_target_map_colours_classes_and_leaves_ignored_positions_white() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target.png");
        let labels = ArrayD::from_shape_vec(vec![1, 2, 2], vec![0, 1, 2, 255]).unwrap();
        write_target_map(&labels, 3, &path).unwrap();
        let (pixels, width) = png_pixels(&path);
        let (_, cell) = cell_and_block(2);
        let pixel = |y: usize, x: usize| {
            let offset = ((y * cell + cell / 2) * width + x * cell + cell / 2) * 3;
            [pixels[offset], pixels[offset + 1], pixels[offset + 2]]
        };
        assert_eq!(pixel(0, 0), class_colour(0));
        assert_eq!(pixel(0, 1), class_colour(1));
        assert_eq!(pixel(1, 0), class_colour(2));
        assert_eq!(pixel(1, 1), [255, 255, 255]);
    }
}
