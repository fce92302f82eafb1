//! The Lovász family: the Lovász extension of the Jaccard loss (Berman et al., 2018), over hinge
//! errors of logits (`smp.LovaszLoss` binary and multilabel, `kornia.lovasz_hinge_loss`) or over
//! softmax errors |fg − p| (`smp.LovaszLoss` multiclass, `kornia.lovasz_softmax_loss`).
//!
//! One formula, [`lovasz_extension`], is applied to *groups* of (prediction, label) pairs. The
//! anchors differ only in conventions, each an explicit parameter below:
//!
//! | convention | smp `LovaszLoss` | kornia |
//! |---|---|---|
//! | groups | the whole batch pooled, or one per image (`per_image`) | one per image |
//! | classes of a softmax group | those present in its labels | all |
//! | class weights | none | `weight`, the mean still divides by C |
//! | ignored labels | `ignore_index` (dropped from every group) | none |
//! | dtype | float32 only (its Lovász weights are float32) | float32 or float64 |
//! | averaging | smp's `mean` helper ([`running_mean`]) | plain means (the same numbers) |
//!
//! Kinks and ties, with the gradient convention at each (PyTorch's backward where it has one):
//!
//! * **Ties in the sort.** Errors are sorted by decreasing value, equal errors in their position
//!   order (the stable sort `torch.sort(…, stable=True)` gives). The loss does not depend on how ties are ordered; the
//!   gradient does (each element gets the Lovász weight of its rank), and `torch.sort` promises no
//!   order. The fixtures therefore keep every group's errors at least 1e-4 apart.
//! * **relu at 0** (hinge): slope 0 at e = 0, as PyTorch's relu backward passes gradient only
//!   where e > 0.
//! * **|fg − p| at p = fg** (softmax errors): slope sign(0) = 0, as PyTorch's abs backward.
//! * The Lovász weights are functions of the labels only: no gradient flows through them.
//!
//! Accuracy. The order is taken from keys that f64 resolves where the errors themselves do not
//! ([`margin_key`], [`SplitProbability`]), the weights from a quotient rather than a difference of
//! Jaccard values near 1 ([`JaccardSteps`]), and the softmax backward from differences of ∂L/∂p
//! to that of the most probable class ([`softmax_backward`]), which never subtracts a dominant
//! term from itself.
//!
//! Memory. The prediction is read where it lies ([`Values`]) and the only full-size array is the
//! f64 gradient: a softmax group first parks each probability there (as a [`SplitProbability`]),
//! each class then replaces its probabilities by ∂L/∂p, already scaled by the means that enclose
//! it, and one pass at the end turns ∂L/∂p into ∂L/∂logits position by position. A sort holds
//! one (key, element) pair per element of one class of one group.
//!
//! This file is the core; the anchors' front-ends, which map their arguments, checks and
//! conventions onto it, are `smp.rs` (`smp.LovaszLoss`) and `kornia.rs` (`lovasz_softmax_loss`,
//! `lovasz_hinge_loss`).

use std::ops::Range;
use std::thread;

use ndarray::{ArrayD, IxDyn};

use super::positions::{cores, Values};
use super::softmax::SoftmaxLane;
use super::{compensated_sum, grad_output_or_ones, scalar, CompensatedSum, LossOutput};
use crate::error::Rejection;
use crate::spec::trace::{self, Fact};
use crate::spec::Result;
use crate::tensor::Tensor;

mod kornia;
mod smp;

pub use kornia::{kornia_lovasz_hinge, kornia_lovasz_softmax};

/// Records a Lovász loss's conventions: softmax errors or hinge errors, its groups, which classes
/// a softmax group scores, its class weights and ignored label.
fn record_facts(softmax: bool, groups: &str, classes: &str, weights: &str, ignored: Option<i64>) {
    trace::record(|| {
        let mut facts = vec![
            Fact::new(
                "prediction",
                if softmax {
                    "logits, softmax over the classes; errors |[y = c] − p_c|"
                } else {
                    "logits; hinge errors 1 − x·(2t − 1)"
                },
            ),
            Fact::new("groups", groups),
        ];
        if softmax {
            facts.push(Fact::new("classes of a group", classes));
            facts.push(Fact::new("class weights", weights));
        }
        facts.push(Fact::new(
            "ignored",
            ignored.map_or("nothing".to_string(), |index| {
                format!("labels equal to {index} leave every group")
            }),
        ));
        facts.push(Fact::new(
            "reduction",
            "mean of the Lovász extensions over the groups (and classes)",
        ));
        facts
    });
}
pub use smp::{smp_lovasz, SmpLovaszOptions};

/// The Lovász weights Δ_i of ground truth taken in decreasing order of the errors, one rank at a
/// time. With g = Σ_k gt_k, H_i and M_i the sums of gt and of 1 − gt over the first i ranks (so
/// H_i + M_i = i) and U_i = g + M_i:
///
/// ```text
/// J_i = 1 − (g − H_i)/U_i = i/U_i,   J_0 = 0          (smp's lovasz_grad: Δ_1 = J_1, Δ_i = J_i − J_{i−1})
/// Δ_i = J_i − J_{i−1} = [(g − H_{i−1}) + gt_i·(i − 1)] / U_{i−1} / U_i
///     = 1/U_i                            for gt_i = 1 (the numerator is U_{i−1})
///     = (g − H_{i−1}) / U_{i−1} / U_i    for gt_i = 0
/// ```
///
/// (put U_i = U_{i−1} + 1 − gt_i over a common denominator and use i − 1 = H_{i−1} + M_{i−1}).
/// The first line is evaluated; where the sums are exact it gives the other two exactly
/// (U_{i−1}/U_{i−1} = 1). For
/// gt ∈ {0, 1}, J_i is the Jaccard loss of calling the i largest errors wrong. J_i − J_{i−1} of
/// values near 1 loses about |J|/|Δ| ulp; for labels in {0, 1} the quotient has no subtraction, and
/// for integer labels its sums are exact. Labels are read as numbers and not checked (neither smp
/// nor kornia checks them), so a label of 2 counts twice; where U_{i−1} or U_i is 0 (g = 0 for
/// the first rank, or labels outside {0, 1}) the difference of J values is taken as smp takes it.
#[derive(Debug, Clone, Copy)]
struct JaccardSteps {
    /// g.
    total: f64,
    /// g − H_{i−1}.
    remaining: f64,
    /// M_{i−1}.
    misses: f64,
    /// i − 1.
    rank: f64,
}

impl JaccardSteps {
    /// Before the first rank, for labels summing to `total`.
    fn new(total: f64) -> JaccardSteps {
        JaccardSteps {
            total,
            remaining: total,
            misses: 0.0,
            rank: 0.0,
        }
    }

    /// Δ_i of the next rank i, whose label is `truth`.
    fn next(&mut self, truth: f64) -> f64 {
        let before = *self;
        self.remaining -= truth;
        self.misses += 1.0 - truth;
        self.rank += 1.0;
        let union_before = before.total + before.misses;
        let union = self.total + self.misses;
        if union_before != 0.0 && union != 0.0 {
            return (before.remaining + truth * before.rank) / union_before / union;
        }
        let jaccard = 1.0 - self.remaining / union;
        match before.rank {
            0.0 => jaccard,
            _ => jaccard - (1.0 - before.remaining / union_before),
        }
    }
}

/// An element of a group in the sort: the order key of its error and the element's tag. Keys
/// ascend as errors decrease, NaN first (torch's descending sort puts NaN first); tags rise with
/// the element's position in the group, so sorting the pairs is the stable decreasing sort of the
/// errors.
type Entry = (u64, usize);

/// Groups of at least this many elements are sorted on several threads.
const PARALLEL_SORT: usize = 1 << 15;

/// Sorts `entries` ascending. With more than one thread and many entries, the slice is split
/// around its median and each half sorted on its own thread (the pairs are distinct, so the
/// result is the one order).
fn sort_entries(entries: &mut [Entry], threads: usize) {
    if threads < 2 || entries.len() < PARALLEL_SORT {
        entries.sort_unstable();
        return;
    }
    let middle = entries.len() / 2;
    entries.select_nth_unstable(middle);
    let (low, high) = entries.split_at_mut(middle);
    thread::scope(|scope| {
        scope.spawn(|| sort_entries(low, threads / 2));
        sort_entries(high, threads - threads / 2);
    });
}

/// The Lovász extension of the Jaccard loss over a group's elements, given as (key, tag)
/// entries, and its gradient:
///
/// ```text
/// σ     = the order of the entries (decreasing error, ties in position order)
/// loss  = Σ_i φ(e_σ(i))·Δ_i(gt_σ)            (Δ from JaccardSteps, g = Σ gt over the group)
/// ∂loss/∂y_σ(i) = φ'(e_σ(i))·∂e_σ(i)/∂y_σ(i)·Δ_i(gt_σ)
/// ```
///
/// `truth(tag)` is gt; `error(key, gt)` gives φ(e) and φ'(e)·∂e/∂y for the prediction y the
/// element's error is taken of; `gradient(tag, value)` receives ∂loss/∂y. No entries give 0.
fn lovasz_extension(
    entries: &mut [Entry],
    truth: impl Fn(usize) -> f64,
    error: impl Fn(u64, f64) -> (f64, f64),
    mut gradient: impl FnMut(usize, f64),
) -> f64 {
    let total = compensated_sum(entries.iter().map(|&(_, tag)| truth(tag)));
    sort_entries(entries, cores());
    let mut steps = JaccardSteps::new(total);
    let mut loss = CompensatedSum::default();
    for &(key, tag) in entries.iter() {
        let gt = truth(tag);
        let weight = steps.next(gt);
        let (value, slope) = error(key, gt);
        loss.add(value * weight);
        gradient(tag, slope * weight);
    }
    loss.total()
}

/// The order key of a hinge error e = 1 − m through its margin m = x·s: increasing in m, so
/// ascending keys are decreasing errors, and NaN is 0, first. The margin is exact where its
/// labels are 0 and 1 (s = ±1), where 1 − m rounds errors an ulp of x apart to one f64.
///
/// The key is m's bits with the sign folded (negative values complemented, positive ones with
/// the top bit set), which orders as the numbers do; −0 keys as +0.
fn margin_key(margin: f64) -> u64 {
    if margin.is_nan() {
        return 0;
    }
    let bits = (margin + 0.0).to_bits();
    if bits >> 63 == 0 {
        bits | 1 << 63
    } else {
        !bits
    }
}

/// The margin of a [`margin_key`] (NaN for 0).
fn margin_of(key: u64) -> f64 {
    f64::from_bits(if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    })
}

/// One Lovász-hinge group over the elements `elements` (indices into the flattened logits x),
/// `label(index)` the label paired with element `index`:
///
/// ```text
/// s_i = 2·gt_i − 1,   e_i = 1 − x_i·s_i,   loss = Σ_i relu(e_σ(i))·Δ_i(gt_σ)
/// ∂loss/∂x_i = −s_i·relu'(e_i)·Δ(rank of i)        relu'(e) = 1 for e > 0 (and NaN), else 0
/// ```
///
/// Errors are ordered by their margins ([`margin_key`]). ∂loss/∂x, times `scale`, goes to
/// `gradient[index]`. A group without elements gives 0 (smp's `logits.sum() * 0.`).
fn hinge_term(
    logits: &Values,
    elements: impl Iterator<Item = usize>,
    label: impl Fn(usize) -> f64,
    scale: f64,
    gradient: &mut [f64],
) -> f64 {
    let sign = |truth: f64| 2.0 * truth - 1.0;
    let mut entries: Vec<Entry> = elements
        .map(|index| (margin_key(logits.at(index) * sign(label(index))), index))
        .collect();
    lovasz_extension(
        &mut entries,
        &label,
        |key, truth| match 1.0 - margin_of(key) {
            error if error > 0.0 || error.is_nan() => (error, -sign(truth)),
            _ => (0.0, 0.0),
        },
        |index, value| gradient[index] = value * scale,
    )
}

/// A probability p kept as the smaller of p and 1 − p, so that a p near 1 keeps the digits of its
/// complement: p itself where p ≤ ½ (sign bit clear), −(1 − p) where p > ½ (sign bit set; −0 for
/// p = 1), NaN for a position without a softmax.
#[derive(Debug, Clone, Copy)]
struct SplitProbability(f64);

/// 2·bits(½): the largest [`SplitProbability::position`].
const FULL: u64 = 2 * 0x3FE0_0000_0000_0000;

impl SplitProbability {
    /// The class's p = e_c/Z with Z = Σ_c' e_c' (e_c = e^(x_c − m), given as `exps`), and above
    /// ½ its complement Σ_{c'≠c} e_c'/Z, summed without the class's own term.
    fn new(exps: &[f64], class: usize, p_max: f64) -> SplitProbability {
        let p = exps[class] * p_max;
        if p <= 0.5 {
            return SplitProbability(p);
        }
        let others = compensated_sum(
            exps.iter()
                .enumerate()
                .filter(|&(other, _)| other != class)
                .map(|(_, &exp)| exp),
        );
        SplitProbability(-(others * p_max))
    }

    /// P(p), a key increasing with p over [0, 1]: bits(p) up to ½, FULL − bits(1 − p) above, so
    /// that P(1 − p) = FULL − P(p).
    fn position(self) -> u64 {
        match self.0 {
            stored if stored.is_sign_negative() => FULL - (-stored).to_bits(),
            stored => stored.to_bits(),
        }
    }

    /// The order key of the error |fg − p|: the error's own [`position`](Self::position) (P(p) for
    /// fg = 0, P(1 − p) = FULL − P(p) for fg = 1), reversed so that keys ascend as errors
    /// decrease; NaN is 0, first. Errors near 1 (a confident wrong class, or a confident right
    /// class's 1 − p where p is small) are told apart by their complements, which f64 resolves
    /// where the errors round to 1.
    fn error_key(self, foreground: bool) -> u64 {
        if self.0.is_nan() {
            return 0;
        }
        let position = match foreground {
            true => FULL - self.position(),
            false => self.position(),
        };
        FULL + 1 - position
    }

    /// The error e = |fg − p| of an [`error_key`](Self::error_key), with de/dp = sign(p − fg)
    /// (0 at e = 0, NaN for NaN).
    fn error_of(key: u64, foreground: bool) -> (f64, f64) {
        if key == 0 {
            return (f64::NAN, f64::NAN);
        }
        let position = FULL + 1 - key;
        let error = match position {
            small if small <= FULL / 2 => f64::from_bits(small),
            large => 1.0 - f64::from_bits(FULL - large),
        };
        let slope = match (error > 0.0, foreground) {
            (false, _) => 0.0,
            (true, true) => -1.0,
            (true, false) => 1.0,
        };
        (error, slope)
    }
}

/// Labels read as numbers: int64 labels (the usual class-index dtype) where they lie, any other
/// dtype as [`Values`] reads it.
enum Labels<'a> {
    Int64(&'a [i64]),
    Other(Values<'a>),
}

impl<'a> Labels<'a> {
    fn read(tensor: &'a Tensor) -> Labels<'a> {
        match tensor {
            Tensor::Int64(array) => array
                .as_slice()
                .map_or_else(|| Labels::Other(Values::read(tensor)), Labels::Int64),
            _ => Labels::Other(Values::read(tensor)),
        }
    }

    /// Label `index`.
    fn at(&self, index: usize) -> f64 {
        match self {
            Labels::Int64(labels) => labels[index] as f64,
            Labels::Other(values) => values.at(index),
        }
    }
}

/// The logits of a Lovász-softmax loss, `(N, C, S)` read in place, and the positions the groups
/// score: image n of the gradient reads logits image n, or image 0 for kornia's one pred image
/// scored against every target image.
struct SoftmaxInput<'a> {
    logits: Values<'a>,
    classes: usize,
    spatial: usize,
    one_image: bool,
}

impl SoftmaxInput<'_> {
    /// C·S, the values of one image.
    fn image_len(&self) -> usize {
        self.classes * self.spatial
    }

    /// The softmax at position s of image n: its logits read into `logits`, e^(x_c − m) into
    /// `exps` ([`SoftmaxLane::new`]), and p_max = e^(−log1p(Σ_{c≠a} e^(x_c − m))), the probability
    /// of the first largest logit ([`SoftmaxLane::p_max`]), so that p_c = e^(x_c − m)·p_max.
    /// `None` for a lane without a softmax.
    fn softmax_at(
        &self,
        image: usize,
        s: usize,
        logits: &mut [f64],
        exps: &mut [f64],
    ) -> Option<f64> {
        let base = if self.one_image { 0 } else { image } * self.image_len() + s;
        for (class, logit) in logits.iter_mut().enumerate() {
            *logit = self.logits.at(base + class * self.spatial);
        }
        SoftmaxLane::new(logits, exps).map(|lane| lane.p_max())
    }
}

/// Runs `work(n, block)` on the image blocks of `images` (C·S values each, `gradient` holding
/// those images only), the images shared among the cores in contiguous runs.
fn for_each_image(
    gradient: &mut [f64],
    images: Range<usize>,
    image_len: usize,
    work: impl Fn(usize, &mut [f64]) + Sync,
) {
    if image_len == 0 {
        return;
    }
    let per_thread = images.len().div_ceil(cores()).max(1);
    let run = |first: usize, blocks: &mut [f64]| {
        for (offset, block) in blocks.chunks_mut(image_len).enumerate() {
            work(first + offset, block);
        }
    };
    let mut runs = gradient.chunks_mut(per_thread * image_len);
    let own = runs.next();
    thread::scope(|scope| {
        for (index, blocks) in runs.enumerate() {
            let run = &run;
            scope.spawn(move || run(images.start + (index + 1) * per_thread, blocks));
        }
        if let Some(blocks) = own {
            run(images.start, blocks);
        }
    });
}

/// One Lovász-softmax group: the images `images` of the gradient, its row r = (n − first)·S + s
/// labelled `label(r)` (`None` where ignored), over the classes with a weight in `weights` (K of
/// them; `None` marks a class not scored):
///
/// ```text
/// fg_{r,c} = [y_r = c],   e_{r,c} = |fg_{r,c} − p_{r,c}|
/// l_c      = Σ_i e_{σ(i),c}·Δ_i(fg_{σ,c})        (σ sorts e_{·,c} by decreasing value)
/// loss     = Σ_{c scored} w_c·l_c / K     (running_mean over the classes: the sum itself for K = 1)
/// ∂loss/∂p_{r,c} = sign(p_{r,c} − fg_{r,c})·Δ(rank of r)·w_c / K,   0 at p = fg
/// ```
///
/// The group's probabilities are parked in its slots of `gradient` as [`SplitProbability`]
/// values; each scored class replaces them by ∂loss/∂p times `upstream`/`groups` (the enclosing
/// mean over groups and the grad_output), each other class by 0. Ignored rows are not touched.
/// `gradient` holds every image of the layout.
fn softmax_term(
    input: &SoftmaxInput,
    images: Range<usize>,
    label: &(impl Fn(usize) -> Option<f64> + Sync),
    weights: &[Option<f64>],
    upstream: f64,
    groups: usize,
    gradient: &mut [f64],
) -> Term {
    let (classes, spatial, image_len) = (input.classes, input.spatial, input.image_len());
    let count = weights.iter().flatten().count();
    if count == 0 {
        return Term::Zero;
    }
    let first = images.start;
    let blocks = &mut gradient[first * image_len..images.end * image_len];
    for_each_image(blocks, images.clone(), image_len, |image, block| {
        let (mut logits, mut exps) = (vec![0.0; classes], vec![0.0; classes]);
        for s in 0..spatial {
            if label((image - first) * spatial + s).is_none() {
                continue;
            }
            let p_max = input.softmax_at(image, s, &mut logits, &mut exps);
            for class in 0..classes {
                block[class * spatial + s] = match p_max {
                    Some(p_max) => SplitProbability::new(&exps, class, p_max).0,
                    None => f64::NAN,
                };
            }
        }
    });
    // The unignored rows' elements of class c, in row order, with their labels.
    let kept = |class: usize| {
        images
            .clone()
            .flat_map(move |image| (0..spatial).map(move |s| (image, s)))
            .filter_map(move |(image, s)| {
                let value = label((image - first) * spatial + s)?;
                Some((image * image_len + class * spatial + s, value))
            })
    };
    let mut entries: Vec<Entry> = Vec::with_capacity(kept(0).count());
    let mut loss = CompensatedSum::default();
    for (class, &weight) in weights.iter().enumerate() {
        let Some(weight) = weight else {
            for (index, _) in kept(class) {
                gradient[index] = 0.0;
            }
            continue;
        };
        // Tagged 2·element + fg: tags rise with the row.
        entries.clear();
        entries.extend(kept(class).map(|(index, value)| {
            let foreground = value == class as f64;
            let key = SplitProbability(gradient[index]).error_key(foreground);
            (key, 2 * index + usize::from(foreground))
        }));
        let scale = upstream * weight / (count * groups) as f64;
        let class_loss = lovasz_extension(
            &mut entries,
            |tag| (tag & 1) as f64,
            |key, truth| SplitProbability::error_of(key, truth == 1.0),
            |tag, value| gradient[tag / 2] = value * scale,
        );
        loss.add(weight * class_loss);
    }
    Term::Scored(match count {
        1 => loss.total(),
        _ => loss.total() / count as f64,
    })
}

/// ∂L/∂logits from G = ∂L/∂p through p = softmax(x) over the classes, in place, position by
/// position over the images `images` of `gradient` (which holds those images only). With a the
/// class of the largest p and Σ_c p_c = 1:
///
/// ```text
/// ∂L/∂x_k = Σ_c G_c·p_c·([c = k] − p_k) = p_k·Σ_{c≠k} (G_k − G_c)·p_c = p_k·(D_k − Σ_c D_c·p_c)
/// D_c = G_c − G_a
/// ```
///
/// (write G_k − G_c = D_k − D_c). The dominant class's p_a·D_a = 0 drops out of the sum, so
/// neither G_k − Σ_c p_c·G_c (which cancels to noise where p_a ≈ 1 and the gradient is tiny) nor
/// 1 − p_a is formed. Where G is not finite the literal form p_k·(G_k − Σ_c p_c·G_c) is
/// evaluated, as PyTorch does. A position whose G is all zero (not scored, or ignored) keeps its
/// zero gradient and is not read; one without a softmax (a NaN or +∞ logit) gets NaN, as in
/// PyTorch.
fn softmax_backward(input: &SoftmaxInput, images: Range<usize>, gradient: &mut [f64]) {
    let (classes, spatial) = (input.classes, input.spatial);
    for_each_image(gradient, images, input.image_len(), |image, block| {
        let (mut logits, mut exps) = (vec![0.0; classes], vec![0.0; classes]);
        let (mut p, mut g) = (vec![0.0; classes], vec![0.0; classes]);
        for s in 0..spatial {
            for (class, slot) in g.iter_mut().enumerate() {
                *slot = block[class * spatial + s];
            }
            if g.iter().all(|&value| value == 0.0) {
                continue;
            }
            let Some(p_max) = input.softmax_at(image, s, &mut logits, &mut exps) else {
                for class in 0..classes {
                    block[class * spatial + s] = f64::NAN;
                }
                continue;
            };
            for (slot, &exp) in p.iter_mut().zip(&exps) {
                *slot = exp * p_max;
            }
            let reference = match g.iter().all(|value| value.is_finite()) {
                true => {
                    g[(0..classes).fold(
                        0,
                        |top, class| {
                            if p[class] > p[top] {
                                class
                            } else {
                                top
                            }
                        },
                    )]
                }
                false => 0.0,
            };
            let mean = compensated_sum(p.iter().zip(&g).map(|(&p, &g)| (g - reference) * p));
            for class in 0..classes {
                block[class * spatial + s] = p[class] * ((g[class] - reference) - mean);
            }
        }
    });
}

/// A value smp's `mean` helper folds. kornia's groups always give `Scored`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Term {
    /// A scalar loss. Its gradient is already in the gradient buffer, scaled by the means
    /// enclosing it.
    Scored(f64),
    /// The empty `(0, C)` tensor smp returns for a softmax group without unignored positions
    /// (`probas * 0.`).
    Void,
    /// The Python number 0 that smp's `mean` returns when there is nothing to average.
    Zero,
}

/// smp's `mean(values)` helper, evaluated lazily in order as smp's generators are:
///
/// ```text
/// acc = v_1;   acc += v_k for k = 2..n (in place);   result = acc (n = 1), acc / n (n > 1), 0 (n = 0)
/// ```
///
/// In place, a scalar `acc` cannot take an empty `(0, C)` value ([`Rejection::VoidAfterScored`]); an
/// empty `acc` absorbs every later value and stays empty; the number 0 plus a value is the value.
/// When every value is a scalar this is the plain mean, which is what kornia computes. Every value
/// counts in n, so the callers scale each group's gradient by 1/n as they score it.
fn running_mean(terms: impl IntoIterator<Item = Result<Term>>, classes: usize) -> Result<Term> {
    let mut acc: Option<Term> = None;
    let mut count = 0;
    for (index, term) in terms.into_iter().enumerate() {
        let term = term?;
        count += 1;
        acc = Some(match (acc, term) {
            (None | Some(Term::Zero), term) => term,
            (Some(Term::Void), _) => Term::Void,
            (Some(Term::Scored(_)), Term::Void) => {
                return Err(Rejection::VoidAfterScored {
                    image: index,
                    classes,
                })
            }
            (Some(scored), Term::Zero) => scored,
            (Some(Term::Scored(loss)), Term::Scored(more)) => Term::Scored(loss + more),
        });
    }
    Ok(match acc {
        None => Term::Zero,
        Some(Term::Scored(loss)) if count > 1 => Term::Scored(loss / count as f64),
        Some(term) => term,
    })
}

/// The grad_output's value where it is a scalar, which scales the gradient as it is accumulated;
/// its shape is checked against the loss's in [`finish`].
fn upstream(grad_output: Option<&ArrayD<f64>>) -> f64 {
    grad_output
        .filter(|given| given.ndim() == 0)
        .map_or(1.0, scalar)
}

/// The loss and gradient of the folded term, `gradient` holding the prediction's gradient
/// (scaled by the grad_output) for a scalar term.
///
/// A scalar term gives a 0-d loss. [`Term::Void`] gives smp's empty `(0, C)` loss with a zero
/// gradient (its grad_output has that empty shape). [`Term::Zero`] stands for the Python number 0
/// smp returns: the reference gives a 0-d 0 with a zero gradient (smp's number cannot be
/// differentiated, so no fixture records it).
fn finish(
    term: Term,
    prediction_shape: &[usize],
    classes: usize,
    grad_output: Option<&ArrayD<f64>>,
    mut gradient: Vec<f64>,
) -> Result<LossOutput> {
    let (loss, loss_shape) = match term {
        Term::Scored(loss) => (ArrayD::from_elem(vec![], loss), vec![]),
        Term::Void => (ArrayD::zeros(vec![0, classes]), vec![0, classes]),
        Term::Zero => (ArrayD::from_elem(vec![], 0.0), vec![]),
    };
    grad_output_or_ones(grad_output, &loss_shape)?;
    if !matches!(term, Term::Scored(_)) {
        gradient.fill(0.0);
    }
    Ok(LossOutput {
        loss,
        grad_input: ArrayD::from_shape_vec(IxDyn(prediction_shape), gradient).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weights of `truth` in the given order.
    fn weights(truth: &[f64]) -> Vec<f64> {
        let mut steps = JaccardSteps::new(truth.iter().sum());
        truth.iter().map(|&gt| steps.next(gt)).collect()
    }

    #[test]
    fn weights_of_binary_truth_are_jaccard_increments() {
        // gt sorted = [1, 0, 1]: J = [1 − 1/2, 1 − 1/3, 1 − 0/3] = [1/2, 2/3, 1].
        assert_eq!(weights(&[1.0, 0.0, 1.0]), [0.5, 1.0 / 6.0, 1.0 / 3.0]);
        // No positives: the largest error takes the whole weight.
        assert_eq!(weights(&[0.0; 3]), [1.0, 0.0, 0.0]);
        // Labels read as numbers: g = 0 with a positive first (U_1 = 0) follows smp's 1 − (g − H)/U.
        assert_eq!(weights(&[1.0, -1.0]), [f64::INFINITY, f64::NEG_INFINITY]);
    }

    #[test]
    fn margins_and_split_probabilities_key_in_order() {
        let margins = [f64::NAN, f64::NEG_INFINITY, -2.0, -0.0, 0.0, 1e-300, 3.0];
        let keys: Vec<u64> = margins.iter().map(|&m| margin_key(m)).collect();
        assert!(keys.windows(2).all(|pair| pair[0] <= pair[1]), "{keys:?}");
        assert_eq!(keys[3], keys[4]);
        for &m in &margins[1..] {
            assert_eq!(margin_of(margin_key(m)), m + 0.0);
        }
        // p = 1 − 2^−60 and 1 − 2^−61 both round to 1; their complements keep them apart.
        let exps = |tail: f64| [1.0, tail];
        let near_one = |tail: f64| SplitProbability::new(&exps(tail), 0, 1.0 / (1.0 + tail));
        let (a, b) = (near_one(2f64.powi(-60)), near_one(2f64.powi(-61)));
        assert!(a.position() < b.position());
        assert!(a.error_key(false) > b.error_key(false));
        assert!(a.error_key(true) < b.error_key(true));
        assert_eq!(
            SplitProbability::error_of(b.error_key(true), true),
            (2f64.powi(-61) / (1.0 + 2f64.powi(-61)), -1.0)
        );
        let half = SplitProbability(0.25);
        assert_eq!(
            SplitProbability::error_of(half.error_key(false), false),
            (0.25, 1.0)
        );
        assert_eq!(
            SplitProbability::error_of(half.error_key(true), true),
            (0.75, -1.0)
        );
        assert_eq!(SplitProbability(0.0).error_key(false), FULL + 1);
        assert_eq!(SplitProbability::error_of(FULL + 1, false), (0.0, 0.0));
    }

    #[test]
    fn absent_class_weights_pick_the_largest_error() {
        // p = 0.2, 0.7 (kept as its complement 0.3) and 0.1.
        let mut entries: Vec<Entry> = [0.2, -0.3, 0.1]
            .iter()
            .enumerate()
            .map(|(index, &p)| (SplitProbability(p).error_key(false), index))
            .collect();
        let mut grad = [0.0; 3];
        let loss = lovasz_extension(
            &mut entries,
            |_| 0.0,
            |key, _| SplitProbability::error_of(key, false),
            |index, value| grad[index] = value,
        );
        assert_eq!(loss, 1.0 - 0.3);
        assert_eq!(grad, [0.0, 1.0, 0.0]);
    }

    #[test]
    fn relu_has_slope_zero_at_the_kink() {
        // Margins 1 (error 0, the kink) and 0.5 (error 0.5), both positive labels.
        let logits = Values::F64(&[1.0, 0.5]);
        let mut grad = [f64::NAN; 2];
        let loss = hinge_term(&logits, 0..2, |_| 1.0, 1.0, &mut grad);
        // Sorted: error 0.5 first (Δ = 1/2), then 0 (Δ = 1/2).
        assert_eq!(loss, 0.25);
        assert_eq!(grad, [0.0, -0.5]);
    }

    #[test]
    fn an_empty_result_after_a_scored_image_fails_as_in_smp() {
        let scored = || Ok(Term::Scored(1.0));
        let error = running_mean([scored(), Ok(Term::Void)], 3).unwrap_err();
        assert_eq!(error.kind(), "void_after_scored");
        assert_eq!(running_mean([Ok(Term::Void), scored()], 3), Ok(Term::Void));
        assert_eq!(
            running_mean([Ok(Term::Zero), scored()], 3),
            Ok(Term::Scored(0.5))
        );
    }
}
