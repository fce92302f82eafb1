//! The loop the class-axis losses share: every position of an `(N, C, S)` tensor (`S` the
//! flattened spatial axes), its C class values read straight from the caller's float32 or float64
//! data, its gradient lane written straight into the result.
//!
//! Positions are cut into fixed chunks, whatever the number of cores, and the chunks are shared
//! among the cores. Each chunk sums its positions' losses with compensation, and the chunk sums
//! are added in chunk order, so the result does not depend on how many cores ran it.

use std::thread;

use ndarray::{ArrayD, IxDyn};

use super::binary::two_sum;
use super::{
    compensated_sum, grad_output_or_ones, scalar, CompensatedSum, LossOutput, Reduction, Result,
};
use crate::tensor::Tensor;

/// About this many positions make a chunk.
const CHUNK_POSITIONS: usize = 8192;

/// The shape of a class-axis tensor as `(N, C, S)`, row-major: the value of class c at position
/// (n, s) is element (n·C + c)·S + s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// N (1 for an unbatched `(C)` input).
    pub(crate) batch: usize,
    /// C.
    pub(crate) classes: usize,
    /// S, the product of the spatial axes (1 for `(N, C)`).
    pub(crate) spatial: usize,
}

impl Layout {
    /// The layout of a shape whose class axis is `class_axis` (0 or 1).
    pub(crate) fn of(shape: &[usize], class_axis: usize) -> Layout {
        Layout {
            batch: shape[..class_axis].iter().product(),
            classes: shape.get(class_axis).copied().unwrap_or(1),
            spatial: shape[class_axis + 1..].iter().product(),
        }
    }

    /// N·S.
    pub(crate) fn positions(&self) -> usize {
        self.batch * self.spatial
    }

    /// N·C·S.
    pub(crate) fn elements(&self) -> usize {
        self.positions() * self.classes
    }
}

/// A tensor's values in row-major order, read as f64: borrowed where the caller holds float32 or
/// float64 data in row-major order, else a converted copy.
#[derive(Debug, Clone)]
pub(crate) enum Values<'a> {
    /// float32 data, widened to f64 as it is read.
    F32(&'a [f32]),
    /// float64 data.
    F64(&'a [f64]),
    /// Any other dtype or layout, converted.
    Converted(Vec<f64>),
}

impl<'a> Values<'a> {
    /// The values of `tensor`, borrowed where they can be.
    pub(crate) fn read(tensor: &'a Tensor) -> Values<'a> {
        let borrowed = match tensor {
            Tensor::Float32(array) => array.as_slice().map(Values::F32),
            Tensor::Float64(array) => array.as_slice().map(Values::F64),
            _ => None,
        };
        borrowed.unwrap_or_else(|| {
            Values::Converted(
                tensor
                    .to_f64()
                    .as_standard_layout()
                    .iter()
                    .copied()
                    .collect(),
            )
        })
    }

    /// Element `index`.
    #[inline]
    pub(crate) fn at(&self, index: usize) -> f64 {
        match self {
            Values::F32(values) => f64::from(values[index]),
            Values::F64(values) => values[index],
            Values::Converted(values) => values[index],
        }
    }

    /// The values from element `start` on, into `run` (as many as it holds).
    #[inline]
    pub(crate) fn read_run(&self, start: usize, run: &mut [f64]) {
        let end = start + run.len();
        match self {
            Values::F32(values) => {
                for (value, &given) in run.iter_mut().zip(&values[start..end]) {
                    *value = f64::from(given);
                }
            }
            Values::F64(values) => run.copy_from_slice(&values[start..end]),
            Values::Converted(values) => run.copy_from_slice(&values[start..end]),
        }
    }

    /// Every value, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        (0..self.len()).map(|index| self.at(index))
    }

    fn len(&self) -> usize {
        match self {
            Values::F32(values) => values.len(),
            Values::F64(values) => values.len(),
            Values::Converted(values) => values.len(),
        }
    }
}

/// The upstream gradient of each position's loss: g/denominator (`mean`), g (`sum`), or the
/// position's own grad_output (`none`, given in the positions' shape).
pub(crate) enum Upstream {
    /// The same for every position.
    Scalar(f64),
    /// One per position, in position order.
    PerPosition(Vec<f64>),
}

impl Upstream {
    /// The upstream of `reduction` for a grad_output of the reduced loss's shape (ones when
    /// absent), positions of `positions_shape` and the mean's `denominator`.
    pub(crate) fn new(
        reduction: Reduction,
        grad_output: Option<&ArrayD<f64>>,
        positions_shape: &[usize],
        denominator: f64,
    ) -> Result<Upstream> {
        let reduced_shape: &[usize] = match reduction {
            Reduction::None => positions_shape,
            Reduction::Mean | Reduction::Sum => &[],
        };
        let grad_output = grad_output_or_ones(grad_output, reduced_shape)?;
        Ok(match reduction {
            Reduction::None => Upstream::PerPosition(grad_output.iter().copied().collect()),
            Reduction::Sum => Upstream::Scalar(scalar(&grad_output)),
            Reduction::Mean => Upstream::Scalar(scalar(&grad_output) / denominator),
        })
    }

    /// The upstream at `position`.
    #[inline]
    pub(crate) fn at(&self, position: Position) -> f64 {
        match self {
            Upstream::Scalar(value) => *value,
            Upstream::PerPosition(values) => values[position.index],
        }
    }
}

/// One position: (n, s) and its flat index n·S + s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position {
    /// n.
    pub(crate) n: usize,
    /// s.
    pub(crate) s: usize,
    /// n·S + s, the position's index in a per-position array.
    pub(crate) index: usize,
}

impl Position {
    /// The flat element index of class c here.
    #[inline]
    pub(crate) fn element(&self, layout: &Layout, class: usize) -> usize {
        (self.n * layout.classes + class) * layout.spatial + self.s
    }
}

/// The gradient lane of one position: the C entries a kernel writes.
pub(crate) struct Lane<'c, 'g> {
    pieces: &'c mut [&'g mut [f64]],
    first_piece: usize,
    offset: usize,
}

impl Lane<'_, '_> {
    /// Sets the gradient of class c.
    #[inline]
    pub(crate) fn set(&mut self, class: usize, value: f64) {
        self.pieces[self.first_piece + class][self.offset] = value;
    }
}

/// The most positions a [`Block`] holds: with C = 21, a block's class values in float64 take
/// 5 KiB, so the few arrays a kernel keeps per block stay in the first-level cache.
pub(crate) const BLOCK_POSITIONS: usize = 32;

/// A block: the consecutive positions s0..s0 + width of image n, whose values of one class are
/// consecutive in memory, so a kernel may read and write them class by class.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block {
    /// n.
    pub(crate) n: usize,
    /// The first position's s.
    pub(crate) s0: usize,
    /// How many positions (1 to [`BLOCK_POSITIONS`]).
    pub(crate) width: usize,
    /// n·S + s0, the first position's index in a per-position array.
    pub(crate) index: usize,
}

impl Block {
    /// Position j of the block.
    #[inline]
    pub(crate) fn position(&self, j: usize) -> Position {
        Position {
            n: self.n,
            s: self.s0 + j,
            index: self.index + j,
        }
    }
}

/// The gradient lanes of a block, one run of `width` entries per class.
pub(crate) struct BlockLanes<'c, 'g> {
    pieces: &'c mut [&'g mut [f64]],
    first_piece: usize,
    offset: usize,
    width: usize,
}

impl<'g> BlockLanes<'_, 'g> {
    /// Class c's gradients at the block's positions (all 0 until set).
    #[inline]
    pub(crate) fn run(&mut self, class: usize) -> &mut [f64] {
        &mut self.pieces[self.first_piece + class][self.offset..self.offset + self.width]
    }

    /// The lane of position j.
    #[inline]
    pub(crate) fn lane(&mut self, j: usize) -> Lane<'_, 'g> {
        Lane {
            pieces: &mut *self.pieces,
            first_piece: self.first_piece,
            offset: self.offset + j,
        }
    }
}

/// What a loss sums over its positions: the sum of the losses and their residuals (the rounding
/// errors of exact products), and the per-position losses when they are wanted.
pub(crate) struct Swept {
    /// The gradient, N·C·S in row-major order.
    pub(crate) gradient: Vec<f64>,
    /// l_n per position (N·S), when asked for.
    pub(crate) losses: Option<Vec<f64>>,
    /// Σ_n l_n, compensated, with the residuals the kernel returned.
    pub(crate) total: f64,
}

/// A chunk: images n0.. (one, or several when S is small) and the span s0..s0 + len of each.
struct Chunk<'g, 'l> {
    n0: usize,
    images: usize,
    s0: usize,
    len: usize,
    /// The gradient's runs of this chunk: `images`·C pieces of `len`, piece i·C + c for class c of
    /// image n0 + i.
    gradient: Vec<&'g mut [f64]>,
    /// The per-position losses of this chunk (images·len), when wanted.
    losses: Option<&'l mut [f64]>,
}

/// Below this many elements a pass runs on the calling thread: starting threads would cost more
/// than the work (the results are the same either way, the chunks being summed in order).
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// The cores the passes share (asked once per process).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| thread::available_parallelism().map_or(1, |cores| cores.get()))
}

/// The threads for a pass over `elements` elements in `items` pieces: the cores, at most one per
/// piece, one for a small pass.
pub(crate) fn threads_for(elements: usize, items: usize) -> usize {
    if elements < PARALLEL_MIN_ELEMENTS {
        return 1;
    }
    cores().min(items)
}

/// Runs `kernel` at every position and gathers what it returns. The kernel gets the position, its
/// gradient lane (all 0 until it sets a class, so it need only set the nonzero ones) and a
/// scratch vector it may use as it likes, and returns the position's loss as value and residual.
pub(crate) fn sweep<K>(layout: Layout, want_losses: bool, kernel: K) -> Swept
where
    K: Fn(Position, &mut Lane, &mut Vec<f64>) -> (f64, f64) + Sync,
{
    sweep_blocks(layout, want_losses, |block, lanes, scratch, losses| {
        for (j, loss) in losses.iter_mut().enumerate() {
            *loss = kernel(block.position(j), &mut lanes.lane(j), scratch);
        }
    })
}

/// Runs `kernel` on every block of positions and gathers what it writes, as [`sweep`] does: the
/// kernel gets the block, its gradient lanes (all 0 until set), a scratch of its own type (one per
/// chunk, so it is made once and reused) and one (loss, residual) slot per position to fill.
pub(crate) fn sweep_blocks<S, K>(layout: Layout, want_losses: bool, kernel: K) -> Swept
where
    S: Default,
    K: Fn(Block, &mut BlockLanes, &mut S, &mut [(f64, f64)]) + Sync,
{
    let mut gradient = vec![0.0; layout.elements()];
    let mut losses = want_losses.then(|| vec![0.0; layout.positions()]);
    let chunks = chunks(layout, &mut gradient, losses.as_deref_mut());
    let count = chunks.len();
    let threads = threads_for(layout.elements(), count);
    let mut sums = Vec::with_capacity(2 * count);
    if threads <= 1 {
        for chunk in chunks {
            sums.extend(run_chunk(layout, chunk, &kernel));
        }
    } else {
        let per_thread = count.div_ceil(threads);
        let mut chunks = chunks.into_iter();
        thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let share: Vec<Chunk> = chunks.by_ref().take(per_thread).collect();
                    let kernel = &kernel;
                    scope.spawn(move || {
                        share
                            .into_iter()
                            .flat_map(|chunk| run_chunk(layout, chunk, kernel))
                            .collect::<Vec<f64>>()
                    })
                })
                .collect();
            for worker in workers {
                match worker.join() {
                    Ok(partial) => sums.extend(partial),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
    }
    Swept {
        gradient,
        losses,
        total: compensated_sum(sums),
    }
}

impl Swept {
    /// The loss and gradient: the per-position losses in `positions_shape` (`none`), Σ l_n
    /// (`sum`) or Σ l_n / denominator (`mean`), 0-d; the gradient in `input_shape`.
    pub(crate) fn output(
        self,
        reduction: Reduction,
        positions_shape: &[usize],
        denominator: f64,
        input_shape: &[usize],
    ) -> LossOutput {
        let loss = match (reduction, self.losses) {
            (Reduction::None, Some(losses)) => {
                ArrayD::from_shape_vec(IxDyn(positions_shape), losses).unwrap_or_default()
            }
            (Reduction::Mean, _) => ArrayD::from_elem(vec![], self.total / denominator),
            _ => ArrayD::from_elem(vec![], self.total),
        };
        LossOutput {
            loss,
            grad_input: ArrayD::from_shape_vec(IxDyn(input_shape), self.gradient)
                .unwrap_or_default(),
        }
    }
}

/// Cuts the positions into chunks of about [`CHUNK_POSITIONS`], in position order.
fn chunks<'g, 'l>(
    layout: Layout,
    gradient: &'g mut [f64],
    mut losses: Option<&'l mut [f64]>,
) -> Vec<Chunk<'g, 'l>> {
    let Layout {
        batch,
        classes,
        spatial,
    } = layout;
    let mut chunks = Vec::new();
    if spatial == 0 || batch == 0 {
        return chunks;
    }
    // Whole images per chunk when an image is small, else spans of one image.
    let (images_per_chunk, span) = if spatial >= CHUNK_POSITIONS {
        (1, CHUNK_POSITIONS)
    } else {
        ((CHUNK_POSITIONS / spatial).max(1), spatial)
    };
    let mut rows = gradient.chunks_mut(spatial.max(1));
    let mut n0 = 0;
    while n0 < batch {
        let images = images_per_chunk.min(batch - n0);
        // The rows of these images, each cut into spans: pieces[span][i·C + c].
        let spans = spatial.div_ceil(span);
        let mut pieces: Vec<Vec<&mut [f64]>> = (0..spans).map(|_| Vec::new()).collect();
        for _ in 0..images * classes {
            let row = rows.next().unwrap_or_default();
            for (k, piece) in row.chunks_mut(span).enumerate() {
                pieces[k].push(piece);
            }
        }
        for (k, gradient) in pieces.into_iter().enumerate() {
            let s0 = k * span;
            let len = span.min(spatial - s0);
            let chunk_losses = match losses.take() {
                Some(rest) => {
                    let (mine, rest) = rest.split_at_mut(images * len);
                    losses = Some(rest);
                    Some(mine)
                }
                None => None,
            };
            chunks.push(Chunk {
                n0,
                images,
                s0,
                len,
                gradient,
                losses: chunk_losses,
            });
        }
        n0 += images;
    }
    chunks
}

/// Runs the kernel over a chunk, block by block; returns the chunk's loss sum as (sum,
/// compensation), the positions' losses added in position order.
fn run_chunk<S, K>(layout: Layout, mut chunk: Chunk, kernel: &K) -> [f64; 2]
where
    S: Default,
    K: Fn(Block, &mut BlockLanes, &mut S, &mut [(f64, f64)]),
{
    let mut scratch = S::default();
    let mut block_losses = [(0.0, 0.0); BLOCK_POSITIONS];
    let mut total = CompensatedSum::default();
    for i in 0..chunk.images {
        let n = chunk.n0 + i;
        for j0 in (0..chunk.len).step_by(BLOCK_POSITIONS) {
            let width = BLOCK_POSITIONS.min(chunk.len - j0);
            let s0 = chunk.s0 + j0;
            let block = Block {
                n,
                s0,
                width,
                index: n * layout.spatial + s0,
            };
            let mut lanes = BlockLanes {
                pieces: &mut chunk.gradient,
                first_piece: i * layout.classes,
                offset: j0,
                width,
            };
            let losses = &mut block_losses[..width];
            kernel(block, &mut lanes, &mut scratch, losses);
            if let Some(chunk_losses) = chunk.losses.as_deref_mut() {
                let start = i * chunk.len + j0;
                for (slot, &(loss, _)) in
                    chunk_losses[start..start + width].iter_mut().zip(&*losses)
                {
                    *slot = loss;
                }
            }
            for &(loss, residual) in losses.iter() {
                total.add(loss);
                if loss.is_finite() {
                    total.add(residual);
                }
            }
        }
    }
    let (hi, lo) = total.parts();
    let (sum, error) = two_sum(hi, lo);
    if !sum.is_finite() {
        return [sum, 0.0];
    }
    [sum, error]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel whose every output says where it was computed: gradient (n·C + c)·S + s + ½ at
    /// class c of position (n, s) (the element's own flat index, plus ½), loss n·S + s (the
    /// position's index) with residual 1.
    fn marking(position: Position, lane: &mut Lane, classes: usize, spatial: usize) -> (f64, f64) {
        for class in 0..classes {
            let element = (position.n * classes + class) * spatial + position.s;
            lane.set(class, element as f64 + 0.5);
        }
        assert_eq!(position.index, position.n * spatial + position.s);
        (position.index as f64, 1.0)
    }

    #[test]
    fn every_position_is_swept_once_whatever_the_chunking() {
        // Spans of one image (S above a chunk, with a ragged last span), whole images per chunk
        // (S below a chunk, with a ragged last chunk of images), and one position per image.
        for (batch, classes, spatial) in
            [(2, 3, 2 * CHUNK_POSITIONS + 5), (5000, 2, 3), (9000, 4, 1)]
        {
            let layout = Layout {
                batch,
                classes,
                spatial,
            };
            let swept = sweep(layout, true, |position, lane, _| {
                marking(position, lane, classes, spatial)
            });
            let expected_gradient: Vec<f64> =
                (0..layout.elements()).map(|i| i as f64 + 0.5).collect();
            assert_eq!(
                swept.gradient, expected_gradient,
                "{batch}×{classes}×{spatial}"
            );
            let positions = layout.positions();
            let expected_losses: Vec<f64> = (0..positions).map(|p| p as f64).collect();
            assert_eq!(swept.losses.as_ref(), Some(&expected_losses));
            // Σ p + Σ 1 over the positions, exact in f64 at these sizes.
            let total = (positions * (positions - 1) / 2 + positions) as f64;
            assert_eq!(swept.total, total, "{batch}×{classes}×{spatial}");
        }
    }

    #[test]
    fn a_block_kernel_sees_its_positions_class_by_class() {
        // Blocks of a span whose length is no multiple of a block, and of small images, several
        // to a chunk: each run of a class and each loss slot is where its position says.
        for (batch, classes, spatial) in [(2, 3, 2 * CHUNK_POSITIONS + 45), (700, 2, 37)] {
            let layout = Layout {
                batch,
                classes,
                spatial,
            };
            let swept = sweep_blocks(layout, true, |block, lanes, _: &mut (), losses| {
                assert!((1..=BLOCK_POSITIONS).contains(&block.width));
                assert_eq!(losses.len(), block.width);
                for class in 0..classes {
                    for (j, value) in lanes.run(class).iter_mut().enumerate() {
                        *value = block.position(j).element(&layout, class) as f64 + 0.5;
                    }
                }
                for (j, loss) in losses.iter_mut().enumerate() {
                    *loss = (block.position(j).index as f64, 1.0);
                }
            });
            let expected: Vec<f64> = (0..layout.elements()).map(|i| i as f64 + 0.5).collect();
            assert_eq!(swept.gradient, expected, "{batch}×{classes}×{spatial}");
            let positions = layout.positions();
            let expected_losses: Vec<f64> = (0..positions).map(|p| p as f64).collect();
            assert_eq!(swept.losses.as_ref(), Some(&expected_losses));
            let total = (positions * (positions - 1) / 2 + positions) as f64;
            assert_eq!(swept.total, total, "{batch}×{classes}×{spatial}");
        }
    }

    #[test]
    fn nothing_to_sweep_gives_empty_outputs() {
        for (batch, classes, spatial) in [(0, 3, 5), (2, 3, 0), (2, 0, 5)] {
            let layout = Layout {
                batch,
                classes,
                spatial,
            };
            let swept = sweep(layout, true, |position, lane, _| {
                marking(position, lane, classes, spatial)
            });
            assert_eq!(swept.gradient.len(), layout.elements());
            assert_eq!(
                swept.losses.map(|losses| losses.len()),
                Some(layout.positions())
            );
        }
    }

    #[test]
    fn an_infinite_loss_is_not_compensated_into_nan() {
        let layout = Layout {
            batch: 1,
            classes: 1,
            spatial: 3,
        };
        let swept = sweep(layout, false, |position, lane, _| {
            lane.set(0, 0.0);
            match position.s {
                1 => (f64::INFINITY, f64::NAN),
                _ => (1.0, 0.0),
            }
        });
        assert_eq!(swept.total, f64::INFINITY);
        assert!(swept.losses.is_none());
    }

    #[test]
    fn values_are_read_in_place_or_converted_in_row_major_order() {
        let f32s = Tensor::Float32(ndarray::arr2(&[[1.5_f32, 2.0], [3.0, 4.0]]).into_dyn());
        let values = Values::read(&f32s);
        assert!(matches!(values, Values::F32(_)));
        assert_eq!(values.iter().collect::<Vec<_>>(), [1.5, 2.0, 3.0, 4.0]);
        let transposed = Tensor::Float64(
            ndarray::arr2(&[[1.0, 2.0], [3.0, 4.0]])
                .reversed_axes()
                .into_dyn(),
        );
        let values = Values::read(&transposed);
        assert!(matches!(values, Values::Converted(_)));
        assert_eq!(values.iter().collect::<Vec<_>>(), [1.0, 3.0, 2.0, 4.0]);
        let mut run = [0.0; 2];
        values.read_run(1, &mut run);
        assert_eq!(run, [3.0, 2.0]);
        Values::read(&f32s).read_run(2, &mut run);
        assert_eq!(run, [3.0, 4.0]);
        let f64s = Tensor::Float64(ndarray::arr1(&[0.25, 0.5, 0.75]).into_dyn());
        Values::read(&f64s).read_run(0, &mut run);
        assert_eq!(run, [0.25, 0.5]);
        let labels = Tensor::Int64(ndarray::arr1(&[2_i64, -1]).into_dyn());
        assert_eq!(
            Values::read(&labels).iter().collect::<Vec<_>>(),
            [2.0, -1.0]
        );
    }
}
