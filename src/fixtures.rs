//! The golden-fixture corpus: the versioned manifest, its cases, and their `.npy` files with
//! sha256 integrity checks. The format is described in `docs/fixture-format.md`.
//!
//! A corpus is untrusted input: the manifest is read within a size limit, every path it gives must
//! be a plain relative path that resolves (symlinks followed) inside the fixtures directory, and
//! every file must be a regular file within the `.npy` size limit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::files::{read_regular_file, sha256_hex, MAX_DOCUMENT_BYTES};
use crate::npy::{parse_npy, DEFAULT_MAX_FILE_BYTES};
use crate::tensor::{DType, Tensor};

mod index;

/// The manifest schema version this build reads; any other version is rejected.
pub const SCHEMA_VERSION: u64 = 1;

/// The manifest's file name inside a fixtures directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The size limit of a manifest. The bundled corpus of about 2,400 cases has a 5 MB manifest;
/// 256 MiB admits fifty times that and refuses a runaway file before parsing it.
pub const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// The whole manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Must equal [`SCHEMA_VERSION`].
    pub schema_version: u64,
    /// Where the fixtures came from.
    pub generator: Provenance,
    /// Every case, sorted by id.
    pub cases: Vec<CaseEntry>,
}

/// The provenance of a corpus: which script made it, with which library versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The generator's entry point, relative to the repository root.
    pub script: String,
    /// sha256 over the generator's source files.
    pub script_sha256: String,
    /// Python version.
    pub python: String,
    /// PyTorch version.
    pub torch: String,
    /// NumPy version.
    pub numpy: String,
    /// The device the anchors ran on.
    pub device: String,
    /// Versions of the other anchor libraries.
    #[serde(default)]
    pub libraries: BTreeMap<String, String>,
}

/// One case as the manifest lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseEntry {
    /// `loss/dtype/shape/reduction/variant`.
    pub id: String,
    /// The loss id (`cross_entropy`, `nll_loss`, …).
    pub loss: String,
    /// `f64` or `f32`: the input's dtype.
    pub dtype: String,
    /// The shape token, e.g. `N2C3H3W4`.
    pub shape: String,
    /// The reduction segment of the id.
    pub reduction: String,
    /// The variant segment of the id.
    pub variant: String,
    /// The seed every random input of the case came from.
    pub seed: u64,
    /// The non-tensor keyword arguments, as passed to the anchor.
    pub params: BTreeMap<String, Value>,
    /// The tensor arguments by keyword name.
    pub tensors: BTreeMap<String, FileRef>,
    /// What the anchor did.
    pub expected: ExpectedEntry,
    /// Outcomes accepted instead of the anchor's: the corrected outcome of each upstream defect
    /// the case shows (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<AlternativeEntry>,
}

/// An upstream defect an anchor shows: its outcome is kept as the case's expected one, and the
/// corrected outcome is accepted too (see `docs/fixture-format.md`, "Alternatives").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defect {
    /// A short stable name, as reports print it.
    pub id: String,
    /// The upstream issue or pull request, `owner/repository#number`.
    pub upstream: String,
    /// What the anchor does, in a sentence.
    pub anchor_does: String,
    /// What the accepted corrected outcome is, in a sentence.
    pub accepted: String,
}

impl Defect {
    /// `id (upstream)`, as reports name the defect.
    pub fn name(&self) -> String {
        format!("{} ({})", self.id, self.upstream)
    }
}

/// The corrected outcome of an upstream defect, as the manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlternativeEntry {
    /// The defect whose correction this is.
    pub defect: Defect,
    /// The corrected loss and gradient, for the recorded grad_output (the case's own when the
    /// anchor returned values).
    pub values: ValueFiles,
}

/// The files of a loss, its gradient and the grad_output it was computed for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueFiles {
    /// The grad_output the gradient was computed with.
    pub grad_output: FileRef,
    /// The loss.
    pub loss: FileRef,
    /// The gradient with respect to `input`.
    pub grad_input: FileRef,
}

/// A `.npy` file of the corpus.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// Relative to the fixtures directory.
    pub path: String,
    /// sha256 of the file's bytes.
    pub sha256: String,
    /// NumPy dtype name.
    pub dtype: String,
    /// The array's shape.
    pub shape: Vec<usize>,
}

/// What the anchor did with a case, as the manifest records it.
// One per case, read once: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExpectedEntry {
    /// The anchor returned a loss; its gradient is for the given grad_output.
    Values {
        /// The grad_output the gradient was computed with.
        grad_output: FileRef,
        /// The loss the anchor returned.
        loss: FileRef,
        /// The anchor's gradient with respect to `input`.
        grad_input: FileRef,
    },
    /// The anchor raised.
    Error {
        /// The segloss error kind the exception corresponds to.
        kind: String,
        /// The Python exception type.
        #[serde(rename = "type")]
        exception_type: String,
        /// The exception's message.
        message: String,
    },
}

/// A case with its tensors loaded: a fixture's, or one a corpus generated.
#[derive(Debug, Clone)]
pub struct Case {
    /// `loss/dtype/shape/reduction/variant`, with a corpus's suffix for a generated case.
    pub id: String,
    /// The loss id.
    pub loss: String,
    /// `f64` or `f32`: the input's dtype.
    pub dtype: String,
    /// The seed its random inputs came from.
    pub seed: u64,
    /// The non-tensor keyword arguments.
    pub params: BTreeMap<String, Value>,
    /// The tensor arguments by keyword name.
    pub tensors: BTreeMap<String, Tensor>,
    /// The expected outcome with its tensors loaded.
    pub expected: Expected,
    /// The corrected outcomes of the upstream defects the case shows, accepted too.
    pub corrected: Vec<Corrected>,
}

/// The corrected outcome of an upstream defect a case shows, loaded.
#[derive(Debug, Clone)]
pub struct Corrected {
    /// The defect.
    pub defect: Arc<Defect>,
    /// The grad_output the gradient was computed with.
    pub grad_output: Tensor,
    /// The corrected loss.
    pub loss: Tensor,
    /// The corrected gradient with respect to `input`.
    pub grad_input: Tensor,
}

/// The expected outcome of a case, loaded.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Expected {
    /// Loss and gradient for a grad_output.
    Values {
        /// The grad_output the gradient was computed with.
        grad_output: Tensor,
        /// The expected loss.
        loss: Tensor,
        /// The expected gradient with respect to `input`.
        grad_input: Tensor,
    },
    /// The error the anchor raised.
    Error {
        /// The segloss error kind.
        kind: String,
        /// The anchor's exception type and message, for reports.
        anchor_said: String,
    },
}

impl Case {
    /// The dtype of the case's input, from the id's dtype segment (`Fixtures::open` admits only
    /// `f32` and `f64`, and generated cases take their template's).
    pub fn input_dtype(&self) -> DType {
        dtype_of_segment(&self.dtype)
    }
}

/// The input dtype a case id's dtype segment names: `f32`, else (`f64`) float64.
pub fn dtype_of_segment(segment: &str) -> DType {
    if segment == "f32" {
        DType::Float32
    } else {
        DType::Float64
    }
}

/// The sha256 the generator records as `generator.script_sha256`: over the bytes of
/// `generate_fixtures.py`, `segloss_gen/*.py` and `segloss_gen/*.json` (data tables such as the
/// error kinds) in `scripts_dir`, concatenated in sorted
/// relative-path order. When it differs from the manifest's, the fixtures predate the generator.
/// A missing or unreadable source is [`Error::MissingGenerator`].
pub fn generator_sources_sha256(scripts_dir: &Path) -> Result<String> {
    let package = scripts_dir.join("segloss_gen");
    let entries = std::fs::read_dir(&package).map_err(|error| Error::MissingGenerator {
        path: package.clone(),
        message: error.to_string(),
    })?;
    let mut sources = vec!["generate_fixtures.py".to_string()];
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".py") || name.ends_with(".json") {
            sources.push(format!("segloss_gen/{name}"));
        }
    }
    sources.sort();
    let mut bytes = Vec::new();
    for source in &sources {
        let source_bytes = read_regular_file(&scripts_dir.join(source), MAX_DOCUMENT_BYTES)
            .map_err(|error| match error {
                Error::Io { path, message } => Error::MissingGenerator { path, message },
                other => other,
            })?;
        bytes.extend(source_bytes);
    }
    Ok(sha256_hex(&bytes))
}

impl Manifest {
    /// Parses and validates a manifest's bytes; `path` only names the file in errors. Rejects
    /// unknown schema versions, duplicate or inconsistent case ids, dtype segments other than `f32`
    /// and `f64`, and file paths that are not plain relative paths (see `docs/fixture-format.md`).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let manifest_error = |message: String| Error::Manifest {
            path: path.to_path_buf(),
            message: escape_controls(&message),
        };
        let raw: Value =
            serde_json::from_slice(bytes).map_err(|error| manifest_error(error.to_string()))?;
        let found = raw
            .get("schema_version")
            .and_then(Value::as_u64)
            .ok_or_else(|| manifest_error("no integer schema_version".into()))?;
        if found != SCHEMA_VERSION {
            return Err(Error::SchemaVersion {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let manifest: Manifest =
            serde_json::from_value(raw).map_err(|error| manifest_error(error.to_string()))?;
        let mut seen = BTreeSet::new();
        for case in &manifest.cases {
            if !seen.insert(case.id.as_str()) {
                return Err(manifest_error(format!(
                    "case {:?} is listed twice",
                    case.id
                )));
            }
            case.check(path)?;
        }
        Ok(manifest)
    }
}

impl CaseEntry {
    /// The checks [`Manifest::parse`] makes of each case: its dtype segment, its id against its
    /// fields, each defect once, every file path inside the fixtures directory.
    fn check(&self, path: &Path) -> Result<()> {
        let manifest_error = |message: String| Error::Manifest {
            path: path.to_path_buf(),
            message: escape_controls(&message),
        };
        if !["f32", "f64"].contains(&self.dtype.as_str()) {
            return Err(manifest_error(format!(
                "case {:?} has dtype {:?}; the dtype segment is f32 or f64",
                self.id, self.dtype
            )));
        }
        let expected_id = [
            &self.loss,
            &self.dtype,
            &self.shape,
            &self.reduction,
            &self.variant,
        ]
        .map(String::as_str)
        .join("/");
        if self.id != expected_id {
            return Err(manifest_error(format!(
                "case id {:?} does not match its fields ({expected_id:?})",
                self.id
            )));
        }
        let mut defects = BTreeSet::new();
        if let Some(twice) = self
            .alternatives
            .iter()
            .find(|alternative| !defects.insert(alternative.defect.id.as_str()))
        {
            return Err(manifest_error(format!(
                "case {:?} lists defect {:?} twice",
                self.id, twice.defect.id
            )));
        }
        for file in self.files() {
            if let Some(reason) = path_problem(&file.path) {
                return Err(Error::FixturePath {
                    case: self.id.clone(),
                    path: file.path.clone(),
                    reason: reason.into(),
                });
            }
        }
        Ok(())
    }

    /// Every file the case references: its tensors, then the expected outcome's.
    pub fn files(&self) -> impl Iterator<Item = &FileRef> {
        let expected = match &self.expected {
            ExpectedEntry::Values {
                grad_output,
                loss,
                grad_input,
            } => vec![grad_output, loss, grad_input],
            ExpectedEntry::Error { .. } => Vec::new(),
        };
        let alternatives = self.alternatives.iter().flat_map(|alternative| {
            let values = &alternative.values;
            [&values.grad_output, &values.loss, &values.grad_input]
        });
        self.tensors.values().chain(expected).chain(alternatives)
    }

    /// The upstream defects the case shows.
    pub fn defects(&self) -> Vec<Arc<Defect>> {
        self.alternatives
            .iter()
            .map(|alternative| Arc::new(alternative.defect.clone()))
            .collect()
    }
}

/// `text` with control characters escaped, so that a message quoting the manifest (serde's messages
/// quote keys and values as they are) stays on one line.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|character| {
            if character.is_control() {
                character.escape_default().to_string()
            } else {
                character.to_string()
            }
        })
        .collect()
}

/// Why a manifest file path is not a plain relative path of `/`-separated names, if it is not.
fn path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("is empty");
    }
    if path.starts_with('/') {
        return Some("is absolute");
    }
    if path.contains('\\') {
        return Some("contains a backslash (the separator is '/')");
    }
    if path.contains(':') {
        return Some("contains ':' (a drive or stream name)");
    }
    if path.chars().any(char::is_control) {
        return Some("contains a control character");
    }
    path.split('/').find_map(|component| match component {
        "" => Some("has an empty component (a doubled or trailing '/')"),
        "." => Some("has a '.' component"),
        ".." => Some("has a '..' component"),
        _ => None,
    })
}

/// The environment variable that names a fixtures directory (the one holding `manifest.json`),
/// for a crate or a binary outside the segloss repository.
pub const FIXTURES_ENV: &str = "SEGLOSS_FIXTURES";

/// Where the golden fixtures are: `$SEGLOSS_FIXTURES` when it is set (it must hold a manifest);
/// else the `fixtures` directory of the segloss sources this library was built from (a path or
/// git dependency's checkout, or this repository); else `fixtures` under the current directory.
pub fn locate() -> Result<PathBuf> {
    let holds_manifest = |dir: &Path| dir.join(MANIFEST_FILE).is_file();
    if let Some(dir) = std::env::var_os(FIXTURES_ENV) {
        let dir = PathBuf::from(dir);
        return if holds_manifest(&dir) {
            Ok(dir)
        } else {
            Err(Error::NoFixtures {
                looked: format!("{FIXTURES_ENV}={}", dir.display()),
            })
        };
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let here = PathBuf::from("fixtures");
    [built_from.clone(), here.clone()]
        .into_iter()
        .find(|dir| holds_manifest(dir))
        .ok_or_else(|| Error::NoFixtures {
            looked: format!("{} and {}", built_from.display(), here.display()),
        })
}

/// A fixtures directory with its parsed manifest.
#[derive(Debug, Clone)]
pub struct Fixtures {
    /// The directory holding `manifest.json`.
    pub root: PathBuf,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// `root` with every symlink resolved: the directory every fixture file must lie in.
    canonical_root: PathBuf,
}

impl Fixtures {
    /// Opens the fixtures [`locate`] finds.
    pub fn open_located() -> Result<Fixtures> {
        Fixtures::open(&locate()?)
    }

    /// Opens a fixtures directory: reads the manifest within [`MAX_MANIFEST_BYTES`] and validates
    /// it ([`Manifest::parse`]). File contents are checked when a case is loaded.
    pub fn open(root: &Path) -> Result<Fixtures> {
        let path = root.join(MANIFEST_FILE);
        let manifest = Manifest::parse(&read_regular_file(&path, MAX_MANIFEST_BYTES)?, &path)?;
        Fixtures::with_manifest(root, manifest)
    }

    /// The fixtures in `root` described by `manifest`.
    fn with_manifest(root: &Path, manifest: Manifest) -> Result<Fixtures> {
        let canonical_root = root.canonicalize().map_err(|error| Error::Io {
            path: root.to_path_buf(),
            message: error.to_string(),
        })?;
        Ok(Fixtures {
            root: root.to_path_buf(),
            manifest,
            canonical_root,
        })
    }

    /// Checks that the fixtures were made by the generator sources in `scripts_dir` (see
    /// [`generator_sources_sha256`]): [`Error::StaleFixtures`] if not, [`Error::MissingGenerator`]
    /// if the sources cannot be read.
    pub fn check_provenance(&self, scripts_dir: &Path) -> Result<()> {
        let current = generator_sources_sha256(scripts_dir)?;
        let recorded = &self.manifest.generator.script_sha256;
        if &current == recorded {
            Ok(())
        } else {
            Err(Error::StaleFixtures {
                recorded: recorded.clone(),
                current,
            })
        }
    }

    /// Loads a case's tensors, checking every file's sha256, dtype and shape against the manifest.
    pub fn load(&self, entry: &CaseEntry) -> Result<Case> {
        let tensors = entry
            .tensors
            .iter()
            .map(|(name, file)| Ok((name.clone(), self.read(&entry.id, file)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let expected = match &entry.expected {
            ExpectedEntry::Values {
                grad_output,
                loss,
                grad_input,
            } => Expected::Values {
                grad_output: self.read(&entry.id, grad_output)?,
                loss: self.read(&entry.id, loss)?,
                grad_input: self.read(&entry.id, grad_input)?,
            },
            ExpectedEntry::Error {
                kind,
                exception_type,
                message,
            } => Expected::Error {
                kind: kind.clone(),
                anchor_said: format!("{exception_type}: {message}"),
            },
        };
        let corrected = entry
            .alternatives
            .iter()
            .map(|alternative| {
                let values = &alternative.values;
                Ok(Corrected {
                    defect: Arc::new(alternative.defect.clone()),
                    grad_output: self.read(&entry.id, &values.grad_output)?,
                    loss: self.read(&entry.id, &values.loss)?,
                    grad_input: self.read(&entry.id, &values.grad_input)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Case {
            id: entry.id.clone(),
            loss: entry.loss.clone(),
            dtype: entry.dtype.clone(),
            seed: entry.seed,
            params: entry.params.clone(),
            tensors,
            expected,
            corrected,
        })
    }

    /// Every file the manifest references, relative to the fixtures directory.
    pub fn referenced_files(&self) -> BTreeSet<String> {
        self.manifest
            .cases
            .iter()
            .flat_map(CaseEntry::files)
            .map(|file| file.path.clone())
            .collect()
    }

    /// Files under the fixtures directory that the manifest does not reference.
    pub fn unreferenced_files(&self) -> Result<Vec<String>> {
        let referenced = self.referenced_files();
        let mut unreferenced = Vec::new();
        let mut pending = vec![self.root.clone()];
        while let Some(dir) = pending.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|error| Error::Io {
                path: dir.clone(),
                message: error.to_string(),
            })?;
            for entry in entries {
                let entry = entry.map_err(|error| Error::Io {
                    path: dir.clone(),
                    message: error.to_string(),
                })?;
                let path = entry.path();
                // A symlink is listed, not followed: a link to a parent would walk forever.
                if entry.file_type().is_ok_and(|file_type| file_type.is_dir()) {
                    pending.push(path);
                    continue;
                }
                let relative = path
                    .strip_prefix(&self.root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                if relative != MANIFEST_FILE && !referenced.contains(&relative) {
                    unreferenced.push(relative);
                }
            }
        }
        unreferenced.sort();
        Ok(unreferenced)
    }

    /// Reads a fixture file: it must resolve inside the fixtures directory, be a regular file
    /// within the `.npy` size limit, match its sha256, and hold the dtype and shape recorded.
    fn read(&self, case: &str, file: &FileRef) -> Result<Tensor> {
        let path = self.root.join(&file.path);
        let resolved = path.canonicalize().map_err(|error| Error::Io {
            path: path.clone(),
            message: error.to_string(),
        })?;
        if !resolved.starts_with(&self.canonical_root) {
            return Err(Error::FixturePath {
                case: case.to_string(),
                path: file.path.clone(),
                reason: format!(
                    "resolves to {} outside {} (through a symlink)",
                    resolved.display(),
                    self.canonical_root.display()
                ),
            });
        }
        let bytes = read_regular_file(&resolved, DEFAULT_MAX_FILE_BYTES)?;
        let actual = sha256_hex(&bytes);
        if actual != file.sha256 {
            return Err(Error::Checksum {
                path,
                expected: file.sha256.clone(),
                actual,
            });
        }
        let tensor = parse_npy(&bytes, &path)?;
        if tensor.dtype().name() != file.dtype || tensor.shape() != file.shape.as_slice() {
            return Err(Error::Manifest {
                path,
                message: format!(
                    "file holds {} {:?}, the manifest says {} {:?}",
                    tensor.dtype(),
                    tensor.shape(),
                    file.dtype,
                    file.shape
                ),
            });
        }
        Ok(tensor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(script_sha256: &str, cases: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schema_version": 1,
            "generator": {
                "script": "scripts/generate_fixtures.py",
                "script_sha256": script_sha256,
                "python": "3", "torch": "2", "numpy": "2", "device": "cpu"
            },
            "cases": cases
        }))
        .unwrap()
    }

    fn error_case(id: &str) -> Value {
        let segments: Vec<&str> = id.splitn(5, '/').collect();
        serde_json::json!({
            "id": id, "loss": segments[0], "dtype": segments[1], "shape": segments[2],
            "reduction": segments[3], "variant": segments[4], "seed": 0, "params": {},
            "tensors": {},
            "expected": {"outcome": "error", "kind": "k", "type": "T", "message": "m"}
        })
    }

    #[test]
    fn manifest_paths_are_plain_relative_paths() {
        for good in [
            "cases/cross_entropy/f64/N4C3/mean/weight,ignore_index=1/input.npy",
            "a.npy",
            "cases/..hidden/x.npy",
        ] {
            assert_eq!(path_problem(good), None, "{good}");
        }
        for (bad, reason) in [
            ("", "is empty"),
            ("/etc/passwd", "is absolute"),
            ("../outside.npy", "'..'"),
            ("cases/../../x.npy", "'..'"),
            ("cases/./x.npy", "'.'"),
            ("cases//x.npy", "empty component"),
            ("cases/x/", "empty component"),
            ("cases\\..\\x.npy", "backslash"),
            ("C:x.npy", "':'"),
            ("cases/x\n.npy", "control character"),
            ("cases/x\0.npy", "control character"),
        ] {
            let problem = path_problem(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(problem.contains(reason), "{bad:?}: {problem}");
        }
    }

    #[test]
    fn manifest_errors_stay_on_one_line() {
        // Found by the manifest fuzz target: a case id with a control character was quoted raw.
        let case = error_case("cr\u{7f}ss/f64/N4C3/none/default");
        let mut mismatched = case.clone();
        mismatched["loss"] = "cross".into();
        let error = Manifest::parse(
            &manifest_json("0", Value::Array(vec![mismatched])),
            Path::new("m.json"),
        )
        .unwrap_err();
        assert!(error.to_string().contains("\\u{7f}"), "{error}");
        let duplicated = manifest_json("0", Value::Array(vec![case.clone(), case]));
        let error = Manifest::parse(&duplicated, Path::new("m.json")).unwrap_err();
        assert!(error.to_string().contains("listed twice"), "{error}");
        // serde quotes an unknown key as it is.
        let error = Manifest::parse(
            br#"{"schema_version": 1, "a\u0001b": 0}"#,
            Path::new("m.json"),
        )
        .unwrap_err();
        assert!(error.to_string().contains("a\\u{1}b"), "{error}");
    }

    #[test]
    fn provenance_is_the_hash_of_the_generator_sources() {
        let scripts = tempfile::tempdir().unwrap();
        std::fs::create_dir(scripts.path().join("segloss_gen")).unwrap();
        std::fs::write(scripts.path().join("generate_fixtures.py"), "main\n").unwrap();
        std::fs::write(scripts.path().join("segloss_gen/a.py"), "a\n").unwrap();
        let current = generator_sources_sha256(scripts.path()).unwrap();
        assert_eq!(current, sha256_hex(b"main\na\n"));
        let fixtures = tempfile::tempdir().unwrap();
        let manifest = fixtures.path().join(MANIFEST_FILE);
        std::fs::write(&manifest, manifest_json(&current, Value::Array(vec![]))).unwrap();
        Fixtures::open(fixtures.path())
            .unwrap()
            .check_provenance(scripts.path())
            .unwrap();
        std::fs::write(&manifest, manifest_json("0", Value::Array(vec![]))).unwrap();
        let error = Fixtures::open(fixtures.path())
            .unwrap()
            .check_provenance(scripts.path())
            .unwrap_err();
        assert_eq!(
            error,
            Error::StaleFixtures {
                recorded: "0".into(),
                current
            }
        );
        assert!(error.to_string().contains("scripts/regen.sh"), "{error}");
        std::fs::remove_file(scripts.path().join("generate_fixtures.py")).unwrap();
        let error = generator_sources_sha256(scripts.path()).unwrap_err();
        assert_eq!(error.kind(), "missing_generator", "{error}");
        assert!(
            error.to_string().contains("generate_fixtures.py"),
            "{error}"
        );
    }
}
