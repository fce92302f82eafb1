//! The `random` corpus: cases drawn from a seed, each from a fixture template of any loss and
//! option set, with a fresh shape (every non-class axis 1–6), labels drawn in any scenario and
//! values uniform or at the template's extremes; and shrinking a failing one to a minimal case.

use std::collections::BTreeMap;

use super::draw::{usable_template, Stream};
use super::make;
use super::recipe::{Labels, Recipe, ValueStyle};
use crate::catalog::artefacts::ANCHOR_ARTEFACTS;
use crate::compare::matches_pattern;
use crate::error::Result;
use crate::fixtures::{Case, ExpectedEntry, Fixtures};

/// The largest size a drawn non-class axis takes.
const MAX_AXIS: usize = 6;

/// The fixture cases a random case may take as its template: values cases, none an anchor
/// artefact's (whose inputs are edge cases of their own) nor one showing an upstream defect (whose
/// corrected outcome only the generator knows), with finite tensors, whose prediction has at
/// least two axes.
pub(crate) fn templates(fixtures: &Fixtures) -> Result<Vec<Case>> {
    let mut usable = Vec::new();
    for entry in &fixtures.manifest.cases {
        let artefact = ANCHOR_ARTEFACTS
            .iter()
            .any(|rule| matches_pattern(&entry.id, rule.case_pattern));
        let defect = !entry.alternatives.is_empty();
        if artefact || defect || !matches!(entry.expected, ExpectedEntry::Values { .. }) {
            continue;
        }
        let case = fixtures.load(entry)?;
        if usable_template(&case, &prediction_shape(&case)) {
            usable.push(case);
        }
    }
    Ok(usable)
}

/// The shape of a case's prediction (empty when it has none).
fn prediction_shape(case: &Case) -> Vec<usize> {
    crate::catalog::find(&case.loss)
        .ok()
        .and_then(|def| case.tensors.get(def.prediction()))
        .map(|tensor| tensor.shape().to_vec())
        .unwrap_or_default()
}

/// The prediction axes a tensor of fewer axes broadcasts along (PyTorch aligns it with the
/// last ones: a `(C,)` weight meets the last axis), which must keep their template size.
fn broadcast_axes(template: &Case) -> Vec<usize> {
    let rank = prediction_shape(template).len();
    let positions = rank.saturating_sub(1);
    template
        .tensors
        .values()
        .filter(|tensor| tensor.shape().len() < positions)
        .flat_map(|tensor| {
            let shape = tensor.shape();
            let offset = rank - shape.len();
            shape
                .iter()
                .enumerate()
                .filter(|&(_, &size)| size != 1)
                .map(move |(axis, _)| axis + offset)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// How many templates a case tries before it is left out (each draw that the reference rejects
/// moves on to another).
const DRAWS_PER_CASE: usize = 16;

/// `cases` recipes drawn from `seed` over `templates` ([`templates`]), case i from its own stream (so case i is the same whatever
/// `cases` is). A draw is kept only when the reference accepts the case it makes: some templates
/// hold only under their own values (every pixel ignored, a batch of targets unlike the
/// prediction's), and redrawn values leave the loss's domain.
pub fn recipes(templates: &[Case], cases: usize, seed: u64) -> Vec<Recipe> {
    (0..cases)
        .filter_map(|index| {
            let mut stream = Stream::new(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            (0..DRAWS_PER_CASE).find_map(|_| {
                let template = templates.get(stream.below(templates.len()))?;
                let recipe = draw_recipe(template, index, &mut stream);
                make(template, &recipe).is_ok().then_some(recipe)
            })
        })
        .collect()
}

/// Whether a loss's gradient depends on how tied values are ordered: the Lovász losses sort
/// their errors, and at equal errors each order gives another valid subgradient (PyTorch's sort
/// promises none), so their cases draw values without ties (uniform, never at the range's ends
/// or on a coarse grid), as the fixtures keep their errors apart.
fn tie_sensitive(loss_or_case: &str) -> bool {
    loss_or_case.to_ascii_lowercase().contains("lovasz")
}

/// One recipe from `template`. float32 cases draw uniform values: at the range's ends a position
/// can be so confident that its loss and gradient are far smaller than its logits, and a float32
/// log-softmax (PyTorch's) is then off by about a float32 ulp of the logits, hundreds of ulps of
/// the result, which a bound relative to the result does not model.: a fresh shape, labels and values style, and seed.
fn draw_recipe(template: &Case, index: usize, stream: &mut Stream) -> Recipe {
    let pinned = broadcast_axes(template);
    let shape = prediction_shape(template)
        .iter()
        .enumerate()
        .map(|(axis, &size)| match (axis, size) {
            (1, classes) => classes,
            (_, 1) => 1,
            _ if pinned.contains(&axis) => size,
            _ => 1 + stream.below(MAX_AXIS),
        })
        .collect();
    Recipe {
        template: template.id.clone(),
        params: BTreeMap::new(),
        shape,
        labels: Labels::ALL[stream.below(Labels::ALL.len())],
        values: if stream.below(2) == 0 || tie_sensitive(&template.loss) || template.dtype == "f32"
        {
            ValueStyle::Uniform
        } else {
            ValueStyle::Edges
        },
        seed: stream.bits(),
        tag: Some(format!("r{index}")),
    }
}

/// The simpler recipes to try in place of `recipe`, simplest first: each non-class axis set to 1
/// or halved, the uniform labels, plainer values, and a template of the same loss, dtype and
/// reduction with a subset of the options.
fn simpler(recipe: &Recipe, templates: &[Case]) -> Vec<Recipe> {
    let mut out = Vec::new();
    for axis in (0..recipe.shape.len()).filter(|&axis| axis != 1) {
        let size = recipe.shape[axis];
        for smaller in [1, size / 2] {
            if smaller >= 1 && smaller < size {
                let mut shape = recipe.shape.clone();
                shape[axis] = smaller;
                out.push(Recipe {
                    shape,
                    ..recipe.clone()
                });
            }
        }
    }
    if recipe.labels != Labels::Uniform {
        out.push(Recipe {
            labels: Labels::Uniform,
            ..recipe.clone()
        });
    }
    let plainer = match recipe.values {
        ValueStyle::Edges => Some(ValueStyle::Uniform),
        ValueStyle::Uniform if !tie_sensitive(&recipe.template) => Some(ValueStyle::Coarse),
        _ => None,
    };
    if let Some(values) = plainer {
        out.push(Recipe {
            values,
            ..recipe.clone()
        });
    }
    let current = templates.iter().find(|case| case.id == recipe.template);
    if let Some(current) = current {
        let segments = |id: &str| -> Vec<String> { id.split('/').map(str::to_string).collect() };
        let mine = segments(&current.id);
        for other in templates {
            let theirs = segments(&other.id);
            let same_call = mine.len() == 5
                && theirs.len() == 5
                && mine[..2] == theirs[..2]
                && mine[3] == theirs[3]
                && prediction_shape(other).len() == recipe.shape.len()
                && prediction_shape(other).get(1) == recipe.shape.get(1);
            let fewer = other.params.len() < current.params.len()
                && other
                    .params
                    .iter()
                    .all(|(name, value)| current.params.get(name) == Some(value));
            if same_call && fewer && usable_template(other, &recipe.shape) {
                out.push(Recipe {
                    template: other.id.clone(),
                    ..recipe.clone()
                });
            }
        }
    }
    out
}

/// What shrinking found: the smallest failing recipe, and how many candidates it tried.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The minimal failing recipe.
    pub recipe: Recipe,
    /// Candidates evaluated.
    pub tried: usize,
}

/// Shrinks a failing `recipe`: repeatedly takes the first simpler recipe that still `fails`, until
/// none does or `budget` candidates have been tried. `fails` gets the candidate and its template.
pub fn shrink(
    recipe: Recipe,
    templates: &[Case],
    budget: usize,
    mut fails: impl FnMut(&Recipe, &Case) -> bool,
) -> Shrunk {
    let mut current = recipe;
    let mut tried = 0;
    'outer: loop {
        for candidate in simpler(&current, templates) {
            if tried >= budget {
                break 'outer;
            }
            let Some(template) = templates.iter().find(|case| case.id == candidate.template) else {
                continue;
            };
            tried += 1;
            if fails(&candidate, template) {
                current = candidate;
                continue 'outer;
            }
        }
        break;
    }
    Shrunk {
        recipe: current,
        tried,
    }
}
