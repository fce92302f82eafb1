//! Hostile and careless files: header bombs, truncated, trailing, garbage and malformed `.npy`
//! files, unsupported dtypes, FIFOs, devices, directories, and fixture corpora whose manifest
//! reaches outside the fixtures directory or is far too large. Through the `segloss` binary each
//! gives a one-line `segloss:` error and a normal non-zero exit, quickly (the binary runs under a
//! memory limit and is killed, failing the test, if it outlives a deadline); through the library
//! each gives a typed error. Fortran-order and big-endian arrays give exactly what their
//! little-endian C-order twins give.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use segloss::files::sha256_hex as sha256;
use segloss::fixtures::Fixtures;
use segloss::npy::{read_npy_file, shape_literal, DEFAULT_MAX_FILE_BYTES};
use segloss::Error;
use serde_json::json;

/// How long one `segloss` run may take before it counts as hung. Each run here takes milliseconds.
const DEADLINE: Duration = Duration::from_secs(20);

/// The address-space limit of the `segloss` child: far below any header bomb's claim, far above
/// what evaluating a small loss needs.
const CHILD_MEMORY_BYTES: u64 = 1 << 30;

/// What a `segloss` run left.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `segloss` with `args` under [`CHILD_MEMORY_BYTES`], killing it after [`DEADLINE`].
fn segloss<S: AsRef<OsStr>>(args: &[S]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_segloss"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe, and the closure touches nothing else.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: CHILD_MEMORY_BYTES,
                rlim_max: CHILD_MEMORY_BYTES,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command.spawn().expect("segloss starts");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).map(|_| text)
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "segloss {:?} still ran after {DEADLINE:?}: it hangs",
                args.iter().map(AsRef::as_ref).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        status,
        stdout: stdout.join().unwrap().unwrap(),
        stderr: stderr.join().unwrap().unwrap(),
    }
}

/// Asserts a clean refusal: a normal non-zero exit (no signal, so no abort), no panic, and one
/// stderr line `segloss: …` containing `expected`.
fn assert_refused(run: &Run, expected: &str) {
    assert!(
        run.status.signal().is_none(),
        "killed by signal {:?} (an abort?): {}",
        run.status.signal(),
        run.stderr
    );
    assert_ne!(run.status.code(), Some(0), "accepted: {}", run.stdout);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {}", run.stderr);
    assert!(lines[0].starts_with("segloss: "), "{}", run.stderr);
    assert!(
        lines[0].contains(expected),
        "{:?} lacks {expected:?}",
        lines[0]
    );
}

/// A version 1.0 `.npy` file with the given header dict and data bytes.
fn npy(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&u16::try_from(dict.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn header(descr: &str, fortran_order: bool, shape: &str) -> String {
    let order = if fortran_order { "True" } else { "False" };
    format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}\n")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A valid int64 target of shape (2,) for a (2, C) cross_entropy input.
fn target(dir: &Path) -> PathBuf {
    let data: Vec<u8> = [1i64, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
    write(
        dir,
        "target.npy",
        &npy(&header("<i8", false, "(2,)"), &data),
    )
}

/// `segloss eval cross_entropy` with `input` and a valid target; asserts nothing was written.
fn eval_input(dir: &Path, input: &Path) -> Run {
    let target = target(dir);
    let out = dir.join("out");
    let run = segloss(&[
        OsStr::new("eval"),
        OsStr::new("cross_entropy"),
        OsStr::new("--input"),
        input.as_os_str(),
        OsStr::new("--target"),
        target.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ]);
    if !run.status.success() {
        assert!(!out.exists(), "a refused run wrote {}", out.display());
    }
    run
}

/// Asserts that `eval` and the library both refuse the file at `path` with `expected`.
fn assert_file_refused(dir: &Path, path: &Path, expected: &str, kind: &str) {
    assert_refused(&eval_input(dir, path), expected);
    let error = read_npy_file(path, DEFAULT_MAX_FILE_BYTES).unwrap_err();
    assert_eq!(error.kind(), kind, "{error}");
    assert!(error.to_string().contains(expected), "{error}");
}

#[test]
fn a_header_claiming_two_to_the_forty_elements_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = npy(&header("<f8", false, "(1099511627776,)"), &[]);
    assert!(bomb.len() < 100, "{} bytes", bomb.len());
    let path = write(dir.path(), "bomb.npy", &bomb);
    assert_file_refused(
        dir.path(),
        &path,
        "truncated: the header claims 1099511627776 float64 elements",
        "npy",
    );
    // A claim the child's memory limit could not hold, had it been allocated, and a 2-d one.
    for shape in ["(268435456,)", "(65536, 65536)"] {
        let path = write(
            dir.path(),
            "bomb.npy",
            &npy(&header("<f4", false, shape), &[0; 8]),
        );
        assert_file_refused(dir.path(), &path, "truncated: the header claims", "npy");
    }
}

#[test]
fn a_shape_whose_product_overflows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for shape in [
        "(4294967296, 4294967296, 4294967296)",
        "(18446744073709551615, 2)",
        "(0, 18446744073709551615, 18446744073709551615)",
    ] {
        let path = write(
            dir.path(),
            "overflow.npy",
            &npy(&header("<f8", false, shape), &[]),
        );
        assert_file_refused(
            dir.path(),
            &path,
            "describes more bytes than a machine can address",
            "npy",
        );
    }
}

#[test]
fn truncated_and_trailing_data_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let dict = header("<f4", false, "(2, 4)");
    let truncated = write(dir.path(), "short.npy", &npy(&dict, &[0; 31]));
    assert_file_refused(
        dir.path(),
        &truncated,
        "truncated: the header claims 8 float32 elements of shape [2, 4] (32 bytes), the file holds 31 data bytes",
        "npy",
    );
    let trailing = write(dir.path(), "long.npy", &npy(&dict, &[0; 40]));
    assert_file_refused(
        dir.path(),
        &trailing,
        "8 trailing bytes: the header claims 8 float32 elements",
        "npy",
    );
    let header_cut = write(dir.path(), "cut.npy", &npy(&dict, &[])[..30]);
    assert_file_refused(
        dir.path(),
        &header_cut,
        "truncated: the header claims",
        "npy",
    );
}

#[test]
fn garbage_is_not_an_npy_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    for (name, bytes) in [("garbage.npy", &garbage[..]), ("empty.npy", &[][..])] {
        let path = write(dir.path(), name, bytes);
        assert_file_refused(dir.path(), &path, "not a supported .npy file", "npy");
    }
}

#[test]
fn malformed_header_dicts_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "{'descr': '<f4', 'shape': (2, 4), }",
            "no 'fortran_order' entry",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), 'extra': 1}",
            "is not one of 'descr', 'fortran_order', 'shape'",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (8)}",
            "a one-element shape is written (n,)",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -4)}",
            "expected a non-negative integer",
        ),
        (
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 4)}",
            "expected a string, True, False or a tuple",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4)",
            "expected '}'",
        ),
        (
            "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": [2, 4]}",
            "expected a string, True, False or a tuple",
        ),
        (
            "descr = '<f4'; fortran_order = False; shape = (2, 4)",
            "expected '{'",
        ),
    ];
    for (dict, expected) in cases {
        let path = write(dir.path(), "malformed.npy", &npy(dict, &[0; 32]));
        assert_file_refused(dir.path(), &path, expected, "npy");
    }
}

#[test]
fn unsupported_dtypes_are_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    for descr in ["<f2", "<c8", "|i1", "<u2", "<U1", "|O"] {
        let path = write(
            dir.path(),
            "dtype.npy",
            &npy(&header(descr, false, "(2,)"), &[0; 8]),
        );
        assert_file_refused(
            dir.path(),
            &path,
            "is not supported (segloss reads float64, float32, int64, int32, int16, uint8 and bool); convert the array with .astype()",
            "npy",
        );
    }
}

#[test]
fn special_files_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.npy");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    assert_file_refused(
        dir.path(),
        &fifo,
        "is a FIFO, not a regular file",
        "not_regular_file",
    );
    let zero = dir.path().join("zero.npy");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    assert_file_refused(
        dir.path(),
        &zero,
        "is a character device, not a regular file",
        "not_regular_file",
    );
    let directory = dir.path().join("directory.npy");
    std::fs::create_dir(&directory).unwrap();
    assert_file_refused(
        dir.path(),
        &directory,
        "is a directory, not a regular file",
        "not_regular_file",
    );
}

#[test]
fn a_file_over_the_size_limit_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.npy");
    let file = std::fs::File::create(&path).unwrap();
    // Sparse: the size is claimed, no block is written or read.
    file.set_len(DEFAULT_MAX_FILE_BYTES + 1).unwrap();
    assert_file_refused(
        dir.path(),
        &path,
        &format!("over the limit of {DEFAULT_MAX_FILE_BYTES} bytes"),
        "file_too_large",
    );
}

/// The elements of `values` (of `shape`, in C order) rearranged in Fortran order.
fn fortran_order<T: Copy>(values: &[T], shape: &[usize]) -> Vec<T> {
    let mut strides = vec![1; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * shape[axis + 1];
    }
    let mut out = Vec::with_capacity(values.len());
    let mut index = vec![0; shape.len()];
    for _ in 0..values.len() {
        let offset: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(values[offset]);
        for axis in 0..shape.len() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// A loss call's input and target, as values in C order.
struct Twin {
    loss: &'static str,
    params: &'static [&'static str],
    input_shape: Vec<usize>,
    input: Vec<f32>,
    target_shape: Vec<usize>,
    target: Vec<i64>,
}

/// How the twin's arrays are stored.
#[derive(Clone, Copy, Debug)]
enum Layout {
    LittleC,
    Fortran,
    BigEndian,
}

impl Twin {
    /// Evaluates the twin stored in `layout`; the loss and gradient files written.
    fn eval(&self, dir: &Path, layout: Layout) -> (Vec<u8>, Vec<u8>) {
        let shape_text = shape_literal;
        let (input, target): (Vec<u8>, Vec<u8>) = match layout {
            Layout::LittleC => (
                self.input.iter().flat_map(|v| v.to_le_bytes()).collect(),
                self.target.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            Layout::BigEndian => (
                self.input.iter().flat_map(|v| v.to_be_bytes()).collect(),
                self.target.iter().flat_map(|v| v.to_be_bytes()).collect(),
            ),
            Layout::Fortran => (
                fortran_order(&self.input, &self.input_shape)
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                fortran_order(&self.target, &self.target_shape)
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
        };
        let (order, fortran) = match layout {
            Layout::LittleC => ('<', false),
            Layout::Fortran => ('<', true),
            Layout::BigEndian => ('>', false),
        };
        let name = format!("{layout:?}");
        let input_path = write(
            dir,
            &format!("{name}-input.npy"),
            &npy(
                &header(
                    &format!("{order}f4"),
                    fortran,
                    &shape_text(&self.input_shape),
                ),
                &input,
            ),
        );
        let target_path = write(
            dir,
            &format!("{name}-target.npy"),
            &npy(
                &header(
                    &format!("{order}i8"),
                    fortran,
                    &shape_text(&self.target_shape),
                ),
                &target,
            ),
        );
        let out = dir.join(format!("{name}-out"));
        let mut args = vec![
            "eval".to_string(),
            self.loss.to_string(),
            "--input".into(),
            input_path.to_string_lossy().into_owned(),
            "--target".into(),
            target_path.to_string_lossy().into_owned(),
            "--out".into(),
            out.to_string_lossy().into_owned(),
        ];
        for param in self.params {
            args.extend(["--param".to_string(), param.to_string()]);
        }
        let run = segloss(&args);
        assert!(
            run.status.success(),
            "{} in {layout:?}: {}",
            self.loss,
            run.stderr
        );
        let read = |file: &str| std::fs::read(out.join(file)).unwrap();
        (read("loss.npy"), read("grad_input.npy"))
    }
}

#[test]
fn fortran_order_and_big_endian_arrays_give_their_c_order_twins_results() {
    let dir = tempfile::tempdir().unwrap();
    let values = |count: usize| -> Vec<f32> {
        (0..count)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 4.0)
            .collect()
    };
    let twins = [
        Twin {
            loss: "cross_entropy",
            params: &["reduction=none"],
            input_shape: vec![2, 3, 2, 2],
            input: values(24),
            target_shape: vec![2, 2, 2],
            target: vec![0, 1, 2, 1, 2, 0, 0, 2],
        },
        Twin {
            loss: "smp.DiceLoss",
            params: &["mode=\"multiclass\""],
            input_shape: vec![1, 3, 2, 3, 2],
            input: values(36),
            target_shape: vec![1, 2, 3, 2],
            target: vec![0, 1, 2, 2, 1, 0, 1, 1, 0, 2, 2, 0],
        },
    ];
    for twin in &twins {
        let reference = twin.eval(dir.path(), Layout::LittleC);
        for layout in [Layout::Fortran, Layout::BigEndian] {
            assert_eq!(
                twin.eval(dir.path(), layout),
                reference,
                "{} in {layout:?}",
                twin.loss
            );
        }
    }
}

/// A one-case corpus in `root` whose input is `input_path` (as the manifest gives it) with the
/// sha256 `input_sha256`; the target is a real file.
fn corpus(root: &Path, input_path: &str, input_sha256: &str) {
    let target_bytes = npy(
        &header("<i8", false, "(2,)"),
        &[1i64, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    );
    std::fs::create_dir_all(root.join("cases")).unwrap();
    std::fs::write(root.join("cases/target.npy"), &target_bytes).unwrap();
    let manifest = json!({
        "schema_version": 1,
        "generator": {
            "script": "scripts/generate_fixtures.py",
            "script_sha256": "0",
            "python": "3", "torch": "2", "numpy": "2", "device": "cpu"
        },
        "cases": [{
            "id": "cross_entropy/f32/N2C4/none/default",
            "loss": "cross_entropy",
            "dtype": "f32",
            "shape": "N2C4",
            "reduction": "none",
            "variant": "default",
            "seed": 1,
            "params": {"reduction": "none"},
            "tensors": {
                "input": {"path": input_path, "sha256": input_sha256, "dtype": "float32", "shape": [2, 4]},
                "target": {"path": "cases/target.npy", "sha256": sha256(&target_bytes), "dtype": "int64", "shape": [2]}
            },
            "expected": {"outcome": "error", "kind": "input_dtype", "type": "RuntimeError", "message": "x"}
        }]
    });
    std::fs::write(
        root.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

fn valid_input() -> Vec<u8> {
    npy(&header("<f4", false, "(2, 4)"), &[0; 32])
}

#[test]
fn manifest_paths_leaving_the_fixtures_directory_are_refused_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let input = valid_input();
    // A readable file with a matching sha256 just outside the corpus.
    std::fs::write(dir.path().join("outside.npy"), &input).unwrap();
    let root = dir.path().join("fixtures");
    let outside = dir.path().join("outside.npy");
    for (path, reason) in [
        ("../outside.npy", "has a '..' component"),
        ("cases/../../outside.npy", "has a '..' component"),
        (outside.to_str().unwrap(), "is absolute"),
        ("cases//input.npy", "has an empty component"),
        ("./cases/input.npy", "has a '.' component"),
        ("", "is empty"),
    ] {
        corpus(&root, path, &sha256(&input));
        let error = Fixtures::open(&root).unwrap_err();
        assert!(
            matches!(&error, Error::FixturePath { case, .. } if case == "cross_entropy/f32/N2C4/none/default"),
            "{error}"
        );
        assert!(error.to_string().contains(reason), "{error}");
        let run = segloss(&[
            OsStr::new("list"),
            OsStr::new("--fixtures"),
            root.as_os_str(),
        ]);
        assert_refused(&run, reason);
    }
}

#[test]
fn a_symlink_leaving_the_fixtures_directory_is_refused_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let input = valid_input();
    std::fs::write(dir.path().join("outside.npy"), &input).unwrap();
    let root = dir.path().join("fixtures");
    corpus(&root, "cases/input.npy", &sha256(&input));
    std::os::unix::fs::symlink("../../outside.npy", root.join("cases/input.npy")).unwrap();
    let fixtures = Fixtures::open(&root).unwrap();
    let error = fixtures.load(&fixtures.manifest.cases[0]).unwrap_err();
    assert_eq!(error.kind(), "fixture_path", "{error}");
    assert!(error.to_string().contains("outside"), "{error}");
    let run = segloss(&[
        OsStr::new("certify"),
        OsStr::new("--no-provenance-check"),
        OsStr::new("--fixtures"),
        root.as_os_str(),
    ]);
    assert!(
        run.status.code().is_some_and(|code| code != 0),
        "{}",
        run.stdout
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(run.stdout.contains("resolves to"), "{}", run.stdout);
    // A symlink inside the tree is followed.
    std::fs::remove_file(root.join("cases/input.npy")).unwrap();
    std::fs::write(root.join("cases/real.npy"), &input).unwrap();
    std::os::unix::fs::symlink("real.npy", root.join("cases/input.npy")).unwrap();
    fixtures.load(&fixtures.manifest.cases[0]).unwrap();
}

#[test]
fn a_header_bomb_with_a_matching_sha256_is_refused_when_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = npy(&header("<f4", false, "(1099511627776,)"), &[]);
    corpus(dir.path(), "cases/input.npy", &sha256(&bomb));
    std::fs::write(dir.path().join("cases/input.npy"), &bomb).unwrap();
    let fixtures = Fixtures::open(dir.path()).unwrap();
    let error = fixtures.load(&fixtures.manifest.cases[0]).unwrap_err();
    assert_eq!(error.kind(), "npy", "{error}");
    let run = segloss(&[
        OsStr::new("certify"),
        OsStr::new("--no-provenance-check"),
        OsStr::new("--fixtures"),
        dir.path().as_os_str(),
    ]);
    assert!(
        run.status.code().is_some_and(|code| code != 0),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        run.stdout.contains("truncated: the header claims"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_manifest_far_too_large_or_special_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    let file = std::fs::File::create(&manifest).unwrap();
    file.set_len(segloss::fixtures::MAX_MANIFEST_BYTES + 1)
        .unwrap();
    drop(file);
    let error = Fixtures::open(dir.path()).unwrap_err();
    assert_eq!(error.kind(), "file_too_large", "{error}");
    let run = segloss(&[
        OsStr::new("list"),
        OsStr::new("--fixtures"),
        dir.path().as_os_str(),
    ]);
    assert_refused(&run, "over the limit of 268435456 bytes");
    std::fs::remove_file(&manifest).unwrap();
    let c_path = std::ffi::CString::new(manifest.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let run = segloss(&[
        OsStr::new("list"),
        OsStr::new("--fixtures"),
        dir.path().as_os_str(),
    ]);
    assert_refused(&run, "is a FIFO, not a regular file");
}
