//! Softmax and log-softmax over one axis (the class axis), one lane or a block of lanes at a time,
//! and the log-softmax backward.

use ndarray::{Array, ArrayView1, Axis, Dimension, Zip};

use super::binary::two_sum;
use super::positions::Values;
use super::{compensated_sum, CompensatedSum};

/// One lane's log-softmax, around the arg-max a (m = x_a, the first largest logit):
///
/// ```text
/// S = Σ_{c≠a} e^(x_c − m),   log p_c = (x_c − m) − log1p(S),   p_c = e^(x_c − m)·p_a,   p_a = e^(−log1p(S))
/// ```
///
/// each e^(x_c − m) with the rounding of x_c − m folded back in ([`shifted_exp`]). Subtracting the
/// maximum keeps exp from overflowing, so logits of ±1e4 are exact; taking the arg-max's term
/// (exactly 1) out of the sum lets log1p keep the digits of a small S, so a dominant class's
/// log p_a = −log1p(S) is accurate to the last bit where log(1 + S) would round S away. p_c from
/// the shifted exponential carries only |log p_a| ≤ |log p_c| times log p's rounding, where
/// exp(log p_c) would carry |log p_c| times it (20 ulp at log p = −40). As in PyTorch, a lane
/// holding +∞ or NaN, or all −∞, has no log-softmax (every output there is NaN), and a single −∞
/// entry stays −∞ while the others remain finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SoftmaxLane {
    arg_max: usize,
    max: f64,
    log_sum: f64,
    p_max: f64,
    /// 1 − p_a.
    q_max: f64,
}

impl SoftmaxLane {
    /// The lane of `logits`, writing e^(x_c − m) into `exps` (1 at the arg-max); `None` for a lane
    /// without a log-softmax.
    pub(crate) fn new(logits: &[f64], exps: &mut [f64]) -> Option<SoftmaxLane> {
        let (arg_max, max) = logits.iter().copied().enumerate().fold(
            (0, f64::NEG_INFINITY),
            |best, (class, value)| if value > best.1 { (class, value) } else { best },
        );
        let max = logits.get(arg_max).copied().unwrap_or(max);
        if !max.is_finite() || logits.iter().any(|value| value.is_nan()) {
            return None;
        }
        for (exp, &logit) in exps.iter_mut().zip(logits) {
            *exp = shifted_exp(logit, max);
        }
        exps[arg_max] = 0.0;
        let others = compensated_sum(exps.iter().copied());
        exps[arg_max] = 1.0;
        Some(SoftmaxLane::from_sum(arg_max, max, others))
    }

    /// The lane whose first largest logit m is class `arg_max`, with S = Σ_{c≠a} e^(x_c − m) =
    /// `others`.
    #[inline]
    fn from_sum(arg_max: usize, max: f64, others: f64) -> SoftmaxLane {
        let log_sum = others.ln_1p();
        let p_max = (-log_sum).exp();
        SoftmaxLane {
            arg_max,
            max,
            log_sum,
            p_max,
            q_max: if p_max > 0.5 {
                -(-log_sum).exp_m1()
            } else {
                1.0 - p_max
            },
        }
    }

    /// p_a, the probability of the first largest logit.
    #[inline]
    pub(crate) fn p_max(&self) -> f64 {
        self.p_max
    }

    /// log p_c, for the logit x_c.
    #[inline]
    pub(crate) fn log_prob(&self, logit: f64) -> f64 {
        (logit - self.max) - self.log_sum
    }

    /// p_c and 1 − p_c at class c (`exp` its e^(x_c − m)):
    ///
    /// ```text
    /// p_c = e^(x_c − m)·p_a,   1 − p_c by subtraction (c ≠ a),   1 − p_a = −expm1(−log1p(S)) where p_a > ½
    /// ```
    ///
    /// Only where p_c > ½ does 1 − p_c cancel, and only the arg-max can get there (p_c ≤ p_a and
    /// p_c + p_a ≤ 1); its 1 − p_a, formed once with the lane, comes from log p_a without
    /// subtraction. Below ½ the subtraction loses nothing, and from ½ to 1 it is exact.
    #[inline]
    pub(crate) fn prob(&self, class: usize, exp: f64) -> (f64, f64) {
        let p = exp * self.p_max;
        if class == self.arg_max {
            (self.p_max, self.q_max)
        } else {
            (p, 1.0 - p)
        }
    }

    /// The vector-Jacobian product at class c (`exp` its e^(x_c − m)), for
    /// g = ∂L/∂(log p):
    ///
    /// ```text
    /// ∂L/∂x_c = g_c − p_c·Σ_k g_k = g_c·(1 − p_c) − p_c·Σ_{k≠c} g_k
    /// ```
    ///
    /// `others` is Σ_{k≠c} g_k and `total` Σ_k g_k. The right-hand form does not cancel where
    /// p_c ≈ 1 and g is concentrated on c (a confident correct class): 1 − p_c comes from log p_c
    /// without subtraction ([`SoftmaxLane::prob`]). Where Σ g is not finite the left-hand form is
    /// evaluated literally, as PyTorch does.
    #[inline]
    pub(crate) fn backward(&self, class: usize, exp: f64, g: f64, others: f64, total: f64) -> f64 {
        let (p, complement) = self.prob(class, exp);
        if total.is_finite() {
            g * complement - p * others
        } else {
            g - p * total
        }
    }
}

/// The log-softmaxes of a block of positions, each position's exactly its [`SoftmaxLane`], from
/// class values stored class by class: entry c·W + j holds class c of position j, W the block's
/// width. Every step runs over the block's positions for one class at a time, without branches,
/// so that the compiler can take several positions per vector instruction.
#[derive(Default)]
pub(crate) struct SoftmaxBlock {
    /// Each position's lane; `None` where it has no log-softmax.
    lanes: Vec<Option<SoftmaxLane>>,
    /// Per position while forming: the first largest logit's class and value, and whether a NaN
    /// was seen.
    arg_max: Vec<usize>,
    max: Vec<f64>,
    nan: Vec<bool>,
    /// Per position: Σ_{c≠a} e^(x_c − m) while forming, Σ g in the backward.
    sums: Vec<CompensatedSum>,
    /// Per position in the backward: how many g_c are nonzero, the last nonzero one, and Σ g as
    /// its f64 value and rounding.
    nonzero: Vec<usize>,
    only: Vec<f64>,
    totals: Vec<(f64, f64)>,
}

impl SoftmaxBlock {
    /// Forms the lanes of a block of width `width` from `logits` (C·W values, class by class),
    /// writing each position's e^(x_c − m) into `exps` (same layout) as [`SoftmaxLane::new`] does.
    pub(crate) fn form(&mut self, logits: &[f64], width: usize, exps: &mut [f64]) {
        self.form_exps(logits, width, exps);
        self.lanes.clear();
        for j in 0..width {
            let lane = self
                .formed(j)
                .then(|| SoftmaxLane::from_sum(self.arg_max[j], self.max[j], self.sums[j].total()));
            self.lanes.push(lane);
        }
    }

    /// The first half of [`SoftmaxBlock::form`], for a caller that needs no log-probability: each
    /// position's e^(x_c − m) into `exps` and Σ_{c≠a} e^(x_c − m), without the lanes.
    pub(crate) fn form_exps(&mut self, logits: &[f64], width: usize, exps: &mut [f64]) {
        let arg_max = reset(&mut self.arg_max, width, 0);
        let max = reset(&mut self.max, width, f64::NEG_INFINITY);
        let nan = reset(&mut self.nan, width, false);
        for (class, row) in logits.chunks_exact(width).enumerate() {
            for (((&value, max), arg_max), nan) in
                row.iter().zip(&mut *max).zip(&mut *arg_max).zip(&mut *nan)
            {
                let larger = value > *max;
                *max = if larger { value } else { *max };
                *arg_max = if larger { class } else { *arg_max };
                *nan |= value.is_nan();
            }
        }
        // No class at all leaves the maximum at −∞: no log-softmax.
        for (j, (max, &arg_max)) in max.iter_mut().zip(&*arg_max).enumerate() {
            *max = logits.get(arg_max * width + j).copied().unwrap_or(*max);
        }
        for (exps, row) in exps.chunks_exact_mut(width).zip(logits.chunks_exact(width)) {
            for ((exp, &logit), &max) in exps.iter_mut().zip(row).zip(&*max) {
                *exp = shifted_exp(logit, max);
            }
        }
        let sums = reset(&mut self.sums, width, CompensatedSum::default());
        for (class, exps) in exps.chunks_exact(width).enumerate() {
            for ((sum, &exp), &arg_max) in sums.iter_mut().zip(exps).zip(&*arg_max) {
                sum.add(if class == arg_max { 0.0 } else { exp });
            }
        }
        for j in 0..width {
            if self.formed(j) {
                exps[self.arg_max[j] * width + j] = 1.0;
            }
        }
    }

    /// Whether position j has a log-softmax (after [`SoftmaxBlock::form_exps`]): no NaN, no +∞,
    /// not all −∞.
    #[inline]
    pub(crate) fn formed(&self, j: usize) -> bool {
        self.max[j].is_finite() && !self.nan[j]
    }

    /// Position j's lane, `None` where it has no log-softmax.
    #[inline]
    pub(crate) fn lane(&self, j: usize) -> Option<&SoftmaxLane> {
        self.lanes[j].as_ref()
    }

    /// The block's vector-Jacobian products in place: `grads` (C·W, class by class) holds
    /// g = ∂L/∂(log p) and receives ∂L/∂x, each position's as [`SoftmaxLane::backward`] gives it
    /// at every class (`exps` as [`SoftmaxBlock::form`] left them). Σ_{k≠c} g_k is the
    /// compensated sum of g carried as hi + lo, minus g_c, exact where g has no other entries (and
    /// then not summed at all: one nonzero g_k is its own exact sum, as a class-index target's g
    /// is). A position whose g is all zero gets the exact gradient 0, whether or not it has a
    /// log-softmax; one without a log-softmax gets NaN throughout.
    pub(crate) fn backward(&mut self, exps: &[f64], grads: &mut [f64]) {
        let width = self.lanes.len();
        let nonzero = reset(&mut self.nonzero, width, 0);
        let only = reset(&mut self.only, width, 0.0);
        for row in grads.chunks_exact(width) {
            for ((count, only), &grad) in nonzero.iter_mut().zip(&mut *only).zip(row) {
                let counted = grad != 0.0;
                *count += usize::from(counted);
                *only = if counted { grad } else { *only };
            }
        }
        let totals = reset(&mut self.totals, width, (0.0, 0.0));
        for (total, &only) in totals.iter_mut().zip(&*only) {
            *total = (only, 0.0);
        }
        if nonzero.iter().any(|&count| count > 1) {
            // Σ g, and the rounding of its f64 value as the same sum continued by −Σ g.
            let sums = reset(&mut self.sums, width, CompensatedSum::default());
            for row in grads.chunks_exact(width) {
                for (sum, &grad) in sums.iter_mut().zip(row) {
                    sum.add(grad);
                }
            }
            for ((total, &count), sum) in totals.iter_mut().zip(&*nonzero).zip(&*sums) {
                if count > 1 {
                    let mut rounding = *sum;
                    let hi = rounding.total();
                    rounding.add(-hi);
                    *total = (hi, rounding.total());
                }
            }
        }
        for (class, (grads, exps)) in grads
            .chunks_exact_mut(width)
            .zip(exps.chunks_exact(width))
            .enumerate()
        {
            let positions = grads.iter_mut().zip(exps).zip(&self.lanes);
            for (((grad, &exp), lane), (&(total, total_lo), &count)) in
                positions.zip(totals.iter().zip(&*nonzero))
            {
                *grad = match lane {
                    _ if count == 0 => 0.0,
                    None => f64::NAN,
                    Some(lane) => {
                        let (rest, rest_lo) = two_sum(total, -*grad);
                        lane.backward(class, exp, *grad, rest + (rest_lo + total_lo), total)
                    }
                };
            }
        }
    }
}

/// What a softmax loss keeps per block of positions: the block's logits and their e^(x_c − m),
/// class by class (class c of position j at c·W + j), and its log-softmaxes.
#[derive(Default)]
pub(crate) struct LogitsBlock {
    /// W, the block's width.
    pub(crate) width: usize,
    /// The logits.
    pub(crate) logits: Vec<f64>,
    /// e^(x_c − m), as [`SoftmaxBlock::form`] or [`SoftmaxBlock::form_exps`] writes them.
    pub(crate) exps: Vec<f64>,
    /// The log-softmaxes.
    pub(crate) softmax: SoftmaxBlock,
}

impl LogitsBlock {
    /// Reads the logits of `width` consecutive positions from `values`, `classes` runs of them,
    /// class c's starting at element `first` + c·`stride`.
    pub(crate) fn read(
        &mut self,
        values: &Values,
        (first, stride): (usize, usize),
        classes: usize,
        width: usize,
    ) {
        self.resize(classes, width);
        for (class, run) in self.logits.chunks_exact_mut(width).enumerate() {
            values.read_run(first + class * stride, run);
        }
    }

    /// Room for `classes` classes of `width` positions.
    pub(crate) fn resize(&mut self, classes: usize, width: usize) {
        self.width = width;
        self.logits.resize(classes * width, 0.0);
        self.exps.resize(classes * width, 0.0);
    }

    /// Position j's exponentials, into `exps`.
    pub(crate) fn exps_at(&self, j: usize, exps: &mut [f64]) {
        for (exp, &value) in exps
            .iter_mut()
            .zip(self.exps.iter().skip(j).step_by(self.width))
        {
            *exp = value;
        }
    }
}

/// `values` emptied and filled with `width` copies of `value`.
fn reset<T: Clone>(values: &mut Vec<T>, width: usize, value: T) -> &mut [T] {
    values.clear();
    values.resize(width, value);
    values
}

/// log softmax(x) over `axis`, lane by lane ([`SoftmaxLane`]).
pub fn log_softmax<D: Dimension>(logits: &Array<f64, D>, axis: usize) -> Array<f64, D> {
    let mut log_probs = logits.clone();
    let mut scratch = Vec::new();
    for mut lane in log_probs.lanes_mut(Axis(axis)) {
        let (values, exps) = lane_scratch(&mut scratch, lane.view());
        match SoftmaxLane::new(values, exps) {
            Some(softmax) => lane.mapv_inplace(|logit| softmax.log_prob(logit)),
            None => lane.fill(f64::NAN),
        }
    }
    log_probs
}

/// The lane's values copied to the front of `scratch`, and as much room again after them.
fn lane_scratch<'s>(
    scratch: &'s mut Vec<f64>,
    lane: ArrayView1<f64>,
) -> (&'s mut [f64], &'s mut [f64]) {
    scratch.clear();
    scratch.extend(lane.iter().copied());
    scratch.resize(2 * lane.len(), 0.0);
    scratch.split_at_mut(lane.len())
}

/// exp(x − m) with the rounding of x − m folded back in: x − m = d + δ exactly, and
/// exp(d + δ) = exp(d)·(1 + δ) to first order. x − m rounds by up to ½ ulp(m), an absolute error
/// that exp turns into a relative one (16 ulp of exp(−40.5) when m = 40).
#[inline]
fn shifted_exp(x: f64, m: f64) -> f64 {
    let (d, delta) = two_sum(x, -m);
    let e = exp_non_positive(d);
    if delta.is_finite() {
        e + e * delta
    } else {
        e
    }
}

/// 1.5·2⁵²: adding it to |v| < 2⁵¹ rounds v to the nearest integer k and leaves k in the low bits.
const ROUNDER: f64 = 6_755_399_441_055_744.0;

/// ln 2 = LN2_HI + LN2_LO, LN2_HI with its low 21 bits zero so that k·LN2_HI is exact for
/// |k| < 2²¹ (fdlibm's split).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
/// The rest of ln 2.
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// e^d for d ≤ 0 (a logit minus its lane's maximum), without branches, so that a loop over a
/// block's positions vectorizes (the C library's exp is one call per element, and a softmax is
/// little else):
///
/// ```text
/// d = k·ln 2 + r,   k = round(d / ln 2),   |r| ≤ ½ ln 2,   e^d = 2^k_a · (2^k_b · e^r),   k_a + k_b = k
/// e^r = Σ_{i=0}^{13} r^i / i!
/// ```
///
/// r = (d − k·LN2_HI) − k·LN2_LO, the first difference exact. The Taylor sum's truncation is
/// below 0.05 ulp on |r| ≤ ½ ln 2; it is evaluated by Horner's rule with its first two terms added
/// last (1 + (r + r²·q(r))), so that the rounding of the small terms stays small. Splitting 2^k
/// in two halves keeps each power a normal number down to the subnormal results (d ≥ −745.2), which
/// the last multiplication rounds once. d below −746 is clamped there (e^d rounds to 0 either way),
/// NaN stays NaN; d = 0 gives exactly 1. Within 0.6 ulp of e^d over the whole range (the test
/// `exp_is_within_0_6_ulp` measures it against the oracle's correctly rounded exp).
#[inline]
fn exp_non_positive(d: f64) -> f64 {
    let d = if d < -746.0 { -746.0 } else { d };
    let k = (d * std::f64::consts::LOG2_E + ROUNDER) - ROUNDER;
    let (r, r_lo) = two_sum(d - k * LN2_HI, -k * LN2_LO);
    let mut q = 1.0 / 6_227_020_800.0;
    for factorial in [
        479_001_600.0,
        39_916_800.0,
        3_628_800.0,
        362_880.0,
        40_320.0,
        5_040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
    ] {
        q = q * r + 1.0 / factorial;
    }
    let (sum, sum_lo) = two_sum(r, r * r * q);
    let (e_r, e_r_lo) = two_sum(1.0, sum);
    let e_r = e_r + (e_r_lo + sum_lo + r_lo * (1.0 + sum));
    let k_a = (k * 0.5 + ROUNDER) - ROUNDER;
    e_r * power_of_two(k - k_a) * power_of_two(k_a)
}

/// 2^k for an integral k in [−1022, 1023], built from its exponent bits.
#[inline]
fn power_of_two(k: f64) -> f64 {
    let biased = (k + ROUNDER)
        .to_bits()
        .wrapping_sub(ROUNDER.to_bits())
        .wrapping_add(1023);
    f64::from_bits(biased << 52)
}

/// softmax(x)_c = exp(log softmax(x)_c).
pub fn softmax<D: Dimension>(logits: &Array<f64, D>, axis: usize) -> Array<f64, D> {
    log_softmax(logits, axis).mapv(f64::exp)
}

/// The log-softmax vector-Jacobian product: given g = ∂L/∂(log p), each lane's as a block of one
/// position ([`SoftmaxBlock::backward`]). `lanes` holds the logits, or their log-probabilities
/// (log_softmax of log p is log p): the logits give p_c to the last bit, the log-probabilities
/// carry their own rounding (|log p_c| times an ulp). A lane whose g is all zero (an ignored
/// position) has the exact gradient 0, so a NaN there stays out of the gradient (PyTorch's
/// backward returns a NaN row there: the anchor artefact `ignored-nan-logits`).
pub fn log_softmax_backward<D: Dimension>(
    lanes: &Array<f64, D>,
    grad_log_probs: &Array<f64, D>,
    axis: usize,
) -> Array<f64, D> {
    let mut grad_logits = grad_log_probs.clone();
    let (mut scratch, mut grads, mut softmax) = (Vec::new(), Vec::new(), SoftmaxBlock::default());
    Zip::from(grad_logits.lanes_mut(Axis(axis)))
        .and(lanes.lanes(Axis(axis)))
        .for_each(|mut grad_lane, lane| {
            let (values, exps) = lane_scratch(&mut scratch, lane);
            softmax.form(values, 1, exps);
            grads.clear();
            grads.extend(grad_lane.iter().copied());
            softmax.backward(exps, &mut grads);
            grad_lane.assign(&ArrayView1::from(&grads[..]));
        });
    grad_logits
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, ArrayD};

    /// Logits of `classes` classes at `width` positions, class by class: drawn from a splitmix64
    /// stream over [−30, 30), with lanes that have no log-softmax (a NaN, a +∞, all −∞), a single
    /// −∞, ties for the maximum and logits of ±1e4 placed at fixed positions.
    fn block_logits(classes: usize, width: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        let mut logits: Vec<f64> = (0..classes * width)
            .map(|_| {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 * 60.0 - 30.0
            })
            .collect();
        let mut set = |j: usize, class: usize, value: f64| {
            if j < width && class < classes {
                logits[class * width + j] = value;
            }
        };
        set(1, classes / 2, f64::NAN);
        set(2, 0, f64::INFINITY);
        for class in 0..classes {
            set(3, class, f64::NEG_INFINITY);
            set(5, class, 7.0);
        }
        set(4, classes - 1, f64::NEG_INFINITY);
        set(6, 0, 1e4);
        set(6, classes - 1, -1e4);
        logits
    }

    /// The block's vector-Jacobian products for g = `grads` (both stored class by class).
    fn block_backward(logits: &[f64], width: usize, grads: &[f64]) -> Vec<f64> {
        let mut exps = vec![0.0; logits.len()];
        let mut block = SoftmaxBlock::default();
        block.form(logits, width, &mut exps);
        let mut result = grads.to_vec();
        block.backward(&exps, &mut result);
        result
    }

    /// The values' bits, so that NaN compares equal to NaN.
    fn bits(values: &[f64]) -> Vec<u64> {
        values.iter().map(|value| value.to_bits()).collect()
    }

    /// Position j's values, from a block stored class by class.
    fn column(values: &[f64], width: usize, j: usize) -> Vec<f64> {
        values.iter().skip(j).step_by(width).copied().collect()
    }

    #[test]
    fn a_block_forms_each_position_as_its_lane_alone() {
        for (classes, width) in [(1, 3), (2, 32), (3, 7), (21, 32), (21, 1), (1000, 9)] {
            let logits = block_logits(classes, width, classes as u64);
            let mut exps = vec![0.0; classes * width];
            let mut block = SoftmaxBlock::default();
            block.form(&logits, width, &mut exps);
            for j in 0..width {
                let mut lane_exps = vec![0.0; classes];
                let lane = SoftmaxLane::new(&column(&logits, width, j), &mut lane_exps);
                assert_eq!(block.lane(j), lane.as_ref(), "C = {classes}, position {j}");
                if lane.is_some() {
                    let block_exps = column(&exps, width, j);
                    assert_eq!(
                        bits(&block_exps),
                        bits(&lane_exps),
                        "C = {classes}, position {j}"
                    );
                }
            }
        }
        // No class at all: no log-softmax anywhere.
        let mut block = SoftmaxBlock::default();
        block.form(&[], 4, &mut []);
        assert!((0..4).all(|j| block.lane(j).is_none()));
    }

    #[test]
    fn a_block_backward_gives_each_position_what_it_gets_alone() {
        let (classes, width) = (21, 32);
        let logits = block_logits(classes, width, 7);
        // g by position: all zero, one nonzero class, two, every class, and one with an ∞.
        let grads: Vec<f64> = (0..classes * width)
            .map(|element| {
                let (class, j) = (element / width, element % width);
                match j % 5 {
                    0 => 0.0,
                    1 => f64::from(u8::from(class == j % classes)) * -0.25,
                    2 if class < 2 => 0.5 - class as f64,
                    2 => 0.0,
                    3 => (class as f64 - 10.0) * 1e-3,
                    _ if class == 4 => f64::INFINITY,
                    _ => 1.0,
                }
            })
            .collect();
        let together = block_backward(&logits, width, &grads);
        for j in 0..width {
            let alone = block_backward(&column(&logits, width, j), 1, &column(&grads, width, j));
            assert_eq!(
                bits(&column(&together, width, j)),
                bits(&alone),
                "position {j}"
            );
        }
        // Position 0's g is all zero: its gradient is 0. Position 1 holds a NaN logit: it has no
        // log-softmax, and its gradient is NaN throughout.
        assert!(column(&together, width, 0).iter().all(|&grad| grad == 0.0));
        assert!(column(&together, width, 1).iter().all(|grad| grad.is_nan()));
    }

    #[test]
    fn a_block_backward_is_the_log_softmax_vjp() {
        // ∂L/∂x_c = g_c − p_c·Σ g, against its plain evaluation at moderate logits.
        let (classes, width) = (5, 3);
        let logits: Vec<f64> = (0..classes * width)
            .map(|i| (i as f64 * 0.7).sin() * 3.0)
            .collect();
        let grads: Vec<f64> = (0..classes * width)
            .map(|i| (i as f64 * 1.3).cos())
            .collect();
        let result = block_backward(&logits, width, &grads);
        for j in 0..width {
            let x = column(&logits, width, j);
            let g = column(&grads, width, j);
            let z: f64 = x.iter().map(|v| v.exp()).sum();
            let total: f64 = g.iter().sum();
            for class in 0..classes {
                let expected = g[class] - x[class].exp() / z * total;
                let got = result[class * width + j];
                assert!((got - expected).abs() <= 1e-15, "{got} against {expected}");
            }
        }
    }

    #[test]
    fn large_logits_are_exact() {
        let log_probs = log_softmax(&arr1(&[1e4, 0.0, -1e4]).into_dyn(), 0);
        assert_eq!(log_probs.as_slice().unwrap(), &[0.0, -1e4, -2e4]);
    }

    #[test]
    fn a_dominant_class_keeps_its_digits() {
        // x = (40, 0): log p_0 = −log1p(e^−40) = −4.24835425529158898630…e-18 and
        // ∂(−log p_0)/∂x = (−σ(−40), σ(−40)), σ(−40) = 4.24835425529158897728…e-18 (mpmath, 50
        // digits). log(1 + e^−40) rounds to 0, and 1 − p_0 formed by subtraction is 0.
        let log_probs = log_softmax(&arr1(&[40.0, 0.0]).into_dyn(), 0);
        assert_eq!(
            log_probs.as_slice().unwrap(),
            &[-4.248354255291589e-18, -40.0]
        );
        let grad = log_softmax_backward(&log_probs, &arr1(&[-1.0, 0.0]).into_dyn(), 0);
        assert_eq!(
            grad.as_slice().unwrap(),
            &[-4.248354255291589e-18, 4.248354255291589e-18]
        );
    }

    #[test]
    fn the_shift_by_the_maximum_does_not_round_the_exponent() {
        // x = (40, 0.1): log p_0 = −log1p(e^(0.1 − 40)) = −4.695157572631189691459…e-18 (mpmath,
        // with 0.1 the float64 nearest it). 0.1 − 40 rounds by 3.5e-15, which exp turns into a
        // relative error of 15 ulp (−4.6951575726311964e-18).
        let log_probs = log_softmax(&arr1(&[40.0, 0.1]).into_dyn(), 0);
        assert_eq!(log_probs[0], -4.6951575726311895e-18);
        // p_1 = e^(0.1 − 40)/(1 + e^(0.1 − 40)) = 4.695157572631189680437…e-18, and the gradient
        // of −log p_0 is (−p_1, p_1); exp(log p_1) would be 15 ulp off for the same reason
        // (4.6951575726311964e-18).
        let grad = log_softmax_backward(
            &arr1(&[40.0, 0.1]).into_dyn(),
            &arr1(&[-1.0, 0.0]).into_dyn(),
            0,
        );
        assert_eq!(
            grad.as_slice().unwrap(),
            &[-4.6951575726311895e-18, 4.6951575726311895e-18]
        );
    }

    #[test]
    fn non_finite_lanes_follow_pytorch() {
        let with_neg_inf = log_softmax(&arr1(&[0.0, f64::NEG_INFINITY]).into_dyn(), 0);
        assert_eq!(with_neg_inf.as_slice().unwrap(), &[0.0, f64::NEG_INFINITY]);
        assert!(log_softmax(&arr1(&[0.0, f64::INFINITY]).into_dyn(), 0)
            .iter()
            .all(|v| v.is_nan()));
        assert!(log_softmax(&arr1(&[1.0, f64::NAN]).into_dyn(), 0)
            .iter()
            .all(|v| v.is_nan()));
        assert!(log_softmax(&arr1(&[f64::NEG_INFINITY; 2]).into_dyn(), 0)
            .iter()
            .all(|v| v.is_nan()));
    }

    #[test]
    fn softmax_sums_to_one_along_the_axis() {
        let logits =
            ArrayD::from_shape_vec(vec![2, 3], vec![0.5, -1.0, 2.0, 3.0, 3.0, -7.0]).unwrap();
        for row in softmax(&logits, 1).rows() {
            assert!((row.sum() - 1.0).abs() < 1e-15);
        }
    }

    /// The ulps by which `computed` misses the exact e^d, in ulps of the exact value (the smallest
    /// subnormal below 2⁻¹⁰²²).
    fn exp_ulps(d: f64) -> f64 {
        use crate::oracle::Real;
        let exact = Real::from_f64(d).exp();
        let error = (&Real::from_f64(exp_non_positive(d)) - &exact)
            .abs()
            .to_f64();
        let ulp = f64::from_bits(exact.to_f64().to_bits() & (0x7ff << 52)).max(2f64.powi(-1022))
            * f64::EPSILON;
        error / ulp
    }

    #[test]
    fn exp_is_within_0_6_ulp() {
        let edges = [
            0.0,
            -0.0,
            -5e-324,
            -1e-300,
            -1e-17,
            -0.5 * std::f64::consts::LN_2,
            -std::f64::consts::LN_2,
            -1.0,
            -40.5,
            -708.39,
            -708.4,
            -709.0,
            -744.44,
            -745.13,
            -745.14,
            -745.2,
            -746.0,
            -1e4,
            f64::NEG_INFINITY,
        ];
        // A splitmix64 stream: uniform over [−746, 0] and log-uniform magnitudes in [1e-20, 1e3).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let drawn: Vec<f64> = (0..1500)
            .map(|i| {
                let u = next();
                if i % 2 == 0 {
                    -746.0 * u
                } else {
                    -(10f64.powf(-20.0 + 23.0 * u))
                }
            })
            .collect();
        let worst = edges.iter().chain(&drawn).map(|&d| (exp_ulps(d), d)).fold(
            (0.0, 0.0),
            |worst, next| if next.0 > worst.0 { next } else { worst },
        );
        assert!(worst.0 <= 0.6, "{} ulp at d = {:e}", worst.0, worst.1);
        assert_eq!(exp_non_positive(0.0), 1.0);
        assert_eq!(exp_non_positive(f64::NEG_INFINITY), 0.0);
    }
}
