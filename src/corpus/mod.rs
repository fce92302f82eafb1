//! Corpora: the cases a certification run checks.
//!
//! - `fixtures`: the bundled golden cases, expected values from the anchors.
//! - `large`: realistic sizes ([`large::RECIPES`]), made at run time.
//! - `random`: property-based, drawn from a seed ([`random::recipes`]).
//!
//! A generated case is made from a fixture case, its template: the template gives the loss, the
//! parameters and each tensor's kind (dtype, whether it follows the prediction's shape, the
//! range and kind of its values); a [`Recipe`] gives the prediction's new shape, how labels and
//! values are drawn, and the seed. Its expected values are the reference's, itself certified by
//! the fixtures, the properties and the oracle. A case is made when it is loaded and dropped once
//! judged, so a run holds one case at a time.

pub(crate) mod draw;
pub mod large;
pub mod random;
pub mod recipe;

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use ndarray::{ArrayD, IxDyn};

pub use recipe::{Labels, Recipe, ValueStyle};

use crate::catalog::{self, LossCall};
use crate::certify::CaseCheck;
use crate::error::{Error, Result};
use crate::fixtures::{Case, Defect, Expected, Fixtures};
use crate::tensor::Tensor;

/// Which corpus, and for `random` its size and seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorpusKind {
    /// The bundled golden cases.
    Fixtures,
    /// Realistic sizes, from recorded seeds.
    Large,
    /// `cases` property-based cases drawn from `seed`.
    Random {
        /// How many cases.
        cases: usize,
        /// The seed they are drawn from.
        seed: u64,
    },
}

impl fmt::Display for CorpusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorpusKind::Fixtures => write!(f, "fixtures"),
            CorpusKind::Large => write!(f, "large"),
            CorpusKind::Random { cases, seed } => {
                write!(f, "random (--cases {cases} --seed {seed})")
            }
        }
    }
}

/// One case of a corpus before it is loaded.
#[derive(Debug, Clone)]
pub struct CaseSpec {
    /// The case id.
    pub id: String,
    /// The loss id.
    pub loss: String,
    /// The checks it is judged on.
    pub checks: &'static [CaseCheck],
    /// How it is made, for a generated case.
    pub recipe: Option<Recipe>,
    /// The upstream defects it shows (none for a generated case: defect cases are no templates).
    pub defects: Vec<Arc<Defect>>,
    /// Its manifest entry (the template, for a generated case).
    entry: usize,
}

/// The cases of one corpus, over the fixtures they are read or made from.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Which corpus.
    pub kind: CorpusKind,
    /// The fixtures (the cases, or the templates).
    pub fixtures: Arc<Fixtures>,
    /// The cases, in run order.
    pub cases: Vec<CaseSpec>,
    /// The fixture cases random recipes are made from, loaded once ([`Corpus::templates`]).
    templates: OnceLock<Vec<Case>>,
}

impl Corpus {
    /// The bundled golden cases, in manifest order.
    pub fn fixtures(fixtures: Arc<Fixtures>) -> Corpus {
        let cases = fixtures
            .manifest
            .cases
            .iter()
            .enumerate()
            .map(|(entry, case)| CaseSpec {
                id: case.id.clone(),
                loss: case.loss.clone(),
                checks: CaseCheck::for_entry(case),
                recipe: None,
                defects: case.defects(),
                entry,
            })
            .collect();
        Corpus {
            kind: CorpusKind::Fixtures,
            fixtures,
            cases,
            templates: OnceLock::new(),
        }
    }

    /// A corpus of generated cases; a recipe whose template is not a case of `fixtures` is
    /// [`Error::UnknownTemplate`].
    pub fn generated(
        kind: CorpusKind,
        fixtures: Arc<Fixtures>,
        recipes: Vec<Recipe>,
    ) -> Result<Corpus> {
        let cases = recipes
            .into_iter()
            .map(|recipe| {
                let entry = fixtures
                    .manifest
                    .cases
                    .iter()
                    .position(|case| case.id == recipe.template)
                    .ok_or_else(|| Error::UnknownTemplate {
                        template: recipe.template.clone(),
                    })?;
                Ok(CaseSpec {
                    id: recipe.id(),
                    loss: fixtures.manifest.cases[entry].loss.clone(),
                    checks: CaseCheck::VALUES,
                    recipe: Some(recipe),
                    defects: Vec::new(),
                    entry,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Corpus {
            kind,
            fixtures,
            cases,
            templates: OnceLock::new(),
        })
    }

    /// The corpus `kind` over `fixtures`.
    pub fn open(kind: CorpusKind, fixtures: Arc<Fixtures>) -> Result<Corpus> {
        match kind {
            CorpusKind::Fixtures => Ok(Corpus::fixtures(fixtures)),
            CorpusKind::Large => Corpus::generated(kind, fixtures, large::recipes()),
            CorpusKind::Random { cases, seed } => {
                let templates = random::templates(&fixtures)?;
                let recipes = random::recipes(&templates, cases, seed);
                let corpus = Corpus::generated(kind, fixtures, recipes)?;
                corpus.templates.get_or_init(|| templates);
                Ok(corpus)
            }
        }
    }

    /// The fixture cases a random case may take as its template (and shrinking may move it to),
    /// loaded on first need and kept.
    pub fn templates(&self) -> Result<&[Case]> {
        if let Some(templates) = self.templates.get() {
            return Ok(templates);
        }
        let loaded = random::templates(&self.fixtures)?;
        Ok(self.templates.get_or_init(|| loaded))
    }

    /// The case `id`, if the corpus has it.
    pub fn find(&self, id: &str) -> Option<&CaseSpec> {
        self.cases.iter().find(|case| case.id == id)
    }

    /// Loads a fixture case, or makes a generated one and computes its expected values with the
    /// reference ([`Prepared::finish`]).
    pub fn load(&self, spec: &CaseSpec) -> Result<Case> {
        self.prepare(spec)?.finish()
    }

    /// A case ready to run: a fixture case loaded, or a generated case's call made, its expected
    /// values not yet computed (an implementation that does not support it costs nothing more).
    pub fn prepare(&self, spec: &CaseSpec) -> Result<Prepared> {
        let entry = &self.fixtures.manifest.cases[spec.entry];
        let template = self.fixtures.load(entry)?;
        match &spec.recipe {
            None => Ok(Prepared::Loaded(template)),
            Some(recipe) => prepare(&template, recipe),
        }
    }
}

/// A case ready to run.
// One per case, run once: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Prepared {
    /// A fixture case, expected values and all.
    Loaded(Case),
    /// A generated case: its call, and what its [`Case`] will carry.
    Generated {
        /// The call, grad_output included.
        call: LossCall,
        /// The case id.
        id: String,
        /// `f32` or `f64`.
        dtype: String,
        /// The recipe's seed.
        seed: u64,
        /// The recipe, in words (for a rejection's report).
        recipe: String,
    },
}

impl Prepared {
    /// The call an implementation computes: a generated case's own (its arrays are not
    /// copied), a fixture case's built from it.
    pub fn call(&self) -> Cow<'_, LossCall> {
        match self {
            Prepared::Loaded(case) => Cow::Owned(crate::certify::call_for(case)),
            Prepared::Generated { call, .. } => Cow::Borrowed(call),
        }
    }

    /// The case with its expected values: for a generated case, the reference's loss and gradient
    /// for the call's grad_output. One the reference rejects is [`Error::GeneratedCaseRejected`]:
    /// a corpus makes valid calls only.
    pub fn finish(self) -> Result<Case> {
        match self {
            Prepared::Loaded(case) => Ok(case),
            Prepared::Generated {
                call,
                id,
                dtype,
                seed,
                recipe,
            } => {
                let output =
                    catalog::evaluate(&call).map_err(|error| Error::GeneratedCaseRejected {
                        id: id.clone(),
                        recipe,
                        message: error.to_string(),
                    })?;
                Ok(Case {
                    id,
                    loss: call.loss,
                    dtype,
                    seed,
                    params: call.params,
                    tensors: call.tensors,
                    expected: Expected::Values {
                        grad_output: Tensor::Float64(call.grad_output.unwrap_or_default()),
                        loss: Tensor::Float64(output.loss),
                        grad_input: Tensor::Float64(output.grad_input),
                    },
                    corrected: Vec::new(),
                })
            }
        }
    }
}

/// The case `recipe` makes from `template`, with the reference's loss and gradient.
pub fn make(template: &Case, recipe: &Recipe) -> Result<Case> {
    prepare(template, recipe)?.finish()
}

/// The call `recipe` makes from `template`. A reduced loss keeps the template's grad_output; an
/// unreduced one gets grad_output drawn in [0.5, 1.5) in the loss's shape (which takes one
/// evaluation of the reference to learn).
fn prepare(template: &Case, recipe: &Recipe) -> Result<Prepared> {
    let rejected = |error: crate::error::Rejection| Error::GeneratedCaseRejected {
        id: recipe.id(),
        recipe: recipe.to_string(),
        message: error.to_string(),
    };
    let template_grad = match &template.expected {
        Expected::Values { grad_output, .. } => grad_output.to_f64(),
        Expected::Error { .. } => {
            return Err(Error::UnknownTemplate {
                template: format!("{} (it expects an error, not values)", template.id),
            })
        }
    };
    let mut params = template.params.clone();
    params.extend(recipe.params.clone());
    let mut call = LossCall {
        loss: template.loss.clone(),
        params,
        tensors: draw::tensors(template, recipe),
        grad_output: None,
    };
    call.grad_output = Some(if template_grad.ndim() == 0 {
        template_grad
    } else {
        let shape = catalog::evaluate(&call)
            .map_err(rejected)?
            .loss
            .shape()
            .to_vec();
        let mut stream = draw::Stream::new(recipe.seed ^ 0x6772_6164);
        ArrayD::from_shape_simple_fn(IxDyn(&shape), || 0.5 + stream.unit())
    });
    Ok(Prepared::Generated {
        call,
        id: recipe.id(),
        dtype: template.dtype.clone(),
        seed: recipe.seed,
        recipe: recipe.to_string(),
    })
}
