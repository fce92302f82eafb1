//! A failing `random` case shrunk to a minimal one, and its reproducer: the `.npy` files of the
//! minimal case in a directory, and the `segloss eval` command line that computes the reference's
//! answer from them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{call_for, compute_guarded, judge, Implementation, Verdict};
use crate::catalog;
use crate::compare::Tier;
use crate::corpus::random::shrink;
use crate::corpus::{make, CaseSpec, Corpus, CorpusKind, Recipe};
use crate::error::{Error, Result};
use crate::fixtures::{Case, Expected};

/// How many simpler candidates shrinking tries at most.
pub const SHRINK_BUDGET: usize = 300;

/// A minimal failing case.
#[derive(Debug, Clone)]
pub struct Reproducer {
    /// The failing case's id.
    pub original: String,
    /// The minimal failing recipe.
    pub recipe: Recipe,
    /// The prediction's element count in the minimal case.
    pub elements: usize,
    /// Candidates tried while shrinking.
    pub tried: usize,
    /// The minimal case, its expected values included.
    pub case: Case,
    /// Where its files are, once saved.
    pub dir: Option<PathBuf>,
}

impl Reproducer {
    /// Writes the case's files into `dir` ([`write_case`]).
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        write_case(&self.case, dir)?;
        self.dir = Some(dir.to_path_buf());
        Ok(())
    }

    /// The `segloss eval` command line that computes the reference's answer from the saved files
    /// (`DIR` standing for their directory until they are saved).
    pub fn command(&self) -> String {
        eval_command(&self.case, self.dir.as_deref().unwrap_or(Path::new("DIR")))
    }

    /// A few lines for a report: the minimal case, its files and the command.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "shrunk {} (after {} candidates) to {} ({} prediction elements)",
            self.original,
            self.tried,
            self.recipe.id(),
            self.elements
        );
        let _ = write!(text, "\n  recipe: {}", self.recipe);
        if let Some(dir) = &self.dir {
            let _ = write!(text, "\n  files: {}", dir.display());
        }
        let _ = write!(text, "\n  reference: {}", self.command());
        text
    }
}

/// Whether the implementation fails some check of `case` at `tier`.
fn fails(case: &Case, implementation: &dyn Implementation, tier: Tier) -> bool {
    let outcome = compute_guarded(implementation, &call_for(case));
    judge(case, &outcome, tier)
        .iter()
        .any(|(_, verdict)| matches!(verdict, Verdict::Failed(_)))
}

/// For a failing case of a `random` corpus: [`shrink_failure`], its files saved under `root` (in a
/// directory named after the case) or, without one, in a new directory under the system's
/// temporary directory (kept). `None` for any other corpus, when the case does not fail again, or
/// when its files cannot be written.
pub fn minimal_failure(
    corpus: &Corpus,
    spec: &CaseSpec,
    implementation: &dyn Implementation,
    tier: Tier,
    root: Option<&Path>,
) -> Option<Reproducer> {
    let mut reproducer = shrink_failure(corpus, spec, implementation, tier)?;
    let dir = match root {
        Some(root) => root.join(spec.id.replace(['/', '#'], "_")),
        None => tempfile::Builder::new()
            .prefix("segloss-repro-")
            .tempdir()
            .ok()?
            .keep(),
    };
    reproducer.save(&dir).ok()?;
    Some(reproducer)
}

/// The smallest case a failing case of a `random` corpus shrinks to that still fails (files not
/// written). `None` for any other corpus, or when the case does not fail again.
pub fn shrink_failure(
    corpus: &Corpus,
    spec: &CaseSpec,
    implementation: &dyn Implementation,
    tier: Tier,
) -> Option<Reproducer> {
    if !matches!(corpus.kind, CorpusKind::Random { .. }) {
        return None;
    }
    let recipe = spec.recipe.clone()?;
    let templates = corpus.templates().ok()?;
    let template = templates.iter().find(|case| case.id == recipe.template)?;
    if !make(template, &recipe).is_ok_and(|case| fails(&case, implementation, tier)) {
        return None;
    }
    let shrunk = shrink(recipe, templates, SHRINK_BUDGET, |candidate, template| {
        make(template, candidate).is_ok_and(|case| fails(&case, implementation, tier))
    });
    let template = templates
        .iter()
        .find(|case| case.id == shrunk.recipe.template)?;
    Some(Reproducer {
        original: spec.id.clone(),
        elements: shrunk.recipe.elements(),
        case: make(template, &shrunk.recipe).ok()?,
        recipe: shrunk.recipe,
        tried: shrunk.tried,
        dir: None,
    })
}

/// Writes a case's tensors, grad_output and expected values as `.npy` files into `dir`.
pub fn write_case(case: &Case, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|error| Error::Io {
        path: dir.to_path_buf(),
        message: error.to_string(),
    })?;
    for (name, tensor) in &case.tensors {
        tensor.write_npy(&dir.join(format!("{name}.npy")))?;
    }
    if let Expected::Values {
        grad_output,
        loss,
        grad_input,
    } = &case.expected
    {
        grad_output.write_npy(&dir.join("grad_output.npy"))?;
        loss.write_npy(&dir.join("expected_loss.npy"))?;
        grad_input.write_npy(&dir.join("expected_grad_input.npy"))?;
    }
    Ok(())
}

/// The `segloss eval` command line of a case whose files are (or would be) in `dir`.
fn eval_command(case: &Case, dir: &Path) -> String {
    let file = |name: &str| dir.join(format!("{name}.npy")).display().to_string();
    let (prediction, target) = catalog::find(&case.loss)
        .map(|def| (def.prediction(), def.target()))
        .unwrap_or(("input", "target"));
    let mut command = format!(
        "segloss eval {} --input {} --target {}",
        case.loss,
        file(prediction),
        file(target)
    );
    for name in case.tensors.keys() {
        if name != prediction && name != target {
            let _ = write!(command, " --tensor {name}={}", file(name));
        }
    }
    if matches!(case.expected, Expected::Values { .. }) {
        let _ = write!(command, " --grad-output {}", file("grad_output"));
    }
    for (name, value) in &case.params {
        let _ = write!(command, " --param '{name}={value}'");
    }
    let _ = write!(command, " --out {}", dir.join("reference").display());
    command
}
