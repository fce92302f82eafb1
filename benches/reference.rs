//! Compute-only timings of the reference: forward + vector-Jacobian product through
//! `segloss::catalog::evaluate` on in-memory calls at segmentation sizes, each case in its own
//! process so its peak resident memory (VmHWM) is its own.
//!
//!     cargo bench --bench reference                 # every case, a markdown table
//!     cargo bench --bench reference -- --json       # every case, one JSON object per line
//!     cargo bench --bench reference -- cross_entropy --runs 5   # one case, in this process, JSON
//!
//! Inputs come from a counter-based generator (splitmix64 of stream·2⁴⁰ + index) that
//! `scripts/bench_torch.py` reproduces bit for bit, so PyTorch times the same values.

use std::collections::BTreeMap;
use std::process::{Command, ExitCode};
use std::time::Instant;

use ndarray::{ArrayD, IxDyn};
use segloss::catalog::{evaluate, LossCall};
use segloss::tensor::Tensor;
use serde_json::{json, Value};

/// The stream a tensor is drawn from; the Python side numbers them the same way.
const LOGITS: u64 = 1;
const CLASSES: u64 = 2;
const IGNORED: u64 = 3;
/// The class index PyTorch's `ignore_index` skips, and the share of positions carrying it.
const IGNORE_INDEX: i64 = 255;
const IGNORED_SHARE: f64 = 0.1;
/// The tensor names of the torch.nn.functional losses and MONAI's.
const INPUT_TARGET: (&str, &str) = ("input", "target");

/// One timed call: its name, the catalog loss, the (N, C, H, W) shape and how its call is built.
struct Case {
    name: &'static str,
    shape: [usize; 4],
    call: fn([usize; 4]) -> LossCall,
}

const LARGE: [usize; 4] = [8, 21, 512, 512];
const LOVASZ: [usize; 4] = [8, 21, 256, 256];

const CASES: &[Case] = &[
    Case {
        name: "cross_entropy",
        shape: LARGE,
        call: |s| class_call("cross_entropy", INPUT_TARGET, s, Classes::Plain, &[]),
    },
    Case {
        name: "cross_entropy+ignore+smoothing",
        shape: LARGE,
        call: |s| {
            let params = [
                ("ignore_index", json!(IGNORE_INDEX)),
                ("label_smoothing", json!(0.1)),
            ];
            class_call("cross_entropy", INPUT_TARGET, s, Classes::Ignored, &params)
        },
    },
    Case {
        name: "nll_loss",
        shape: LARGE,
        call: |s| class_call("nll_loss", INPUT_TARGET, s, Classes::Plain, &[]),
    },
    Case {
        name: "binary_cross_entropy",
        shape: LARGE,
        call: |s| {
            dense_call(
                "binary_cross_entropy",
                INPUT_TARGET,
                clipped_probabilities(s),
                s,
                &[],
            )
        },
    },
    Case {
        name: "binary_cross_entropy_with_logits",
        shape: LARGE,
        call: |s| {
            dense_call(
                "binary_cross_entropy_with_logits",
                INPUT_TARGET,
                logits(s),
                s,
                &[],
            )
        },
    },
    Case {
        name: "sigmoid_focal_loss",
        shape: LARGE,
        call: |s| {
            dense_call(
                "sigmoid_focal_loss",
                ("inputs", "targets"),
                logits(s),
                s,
                &[("reduction", json!("mean"))],
            )
        },
    },
    Case {
        name: "segloss.soft_dice",
        shape: LARGE,
        call: |s| dense_call("segloss.soft_dice", INPUT_TARGET, probabilities(s), s, &[]),
    },
    Case {
        name: "smp.TverskyLoss",
        shape: LARGE,
        call: |s| {
            class_call(
                "smp.TverskyLoss",
                ("y_pred", "y_true"),
                s,
                Classes::Plain,
                &[("mode", json!("multiclass"))],
            )
        },
    },
    Case {
        name: "monai.DiceLoss",
        shape: LARGE,
        call: |s| {
            let params = [("softmax", json!(true)), ("to_onehot_y", json!(true))];
            class_call("monai.DiceLoss", INPUT_TARGET, s, Classes::Map, &params)
        },
    },
    Case {
        name: "kornia.focal_loss",
        shape: LARGE,
        call: |s| {
            let params = [
                ("alpha", json!(0.25)),
                ("gamma", json!(2.0)),
                ("reduction", json!("mean")),
            ];
            class_call(
                "kornia.focal_loss",
                ("pred", "target"),
                s,
                Classes::Plain,
                &params,
            )
        },
    },
    Case {
        name: "monai.FocalLoss",
        shape: LARGE,
        call: |s| dense_call("monai.FocalLoss", INPUT_TARGET, logits(s), s, &[]),
    },
    Case {
        name: "smp.FocalLoss",
        shape: LARGE,
        call: |s| {
            class_call(
                "smp.FocalLoss",
                ("y_pred", "y_true"),
                s,
                Classes::Plain,
                &[("mode", json!("multiclass"))],
            )
        },
    },
    Case {
        name: "smp.LovaszLoss",
        shape: LOVASZ,
        call: |s| {
            class_call(
                "smp.LovaszLoss",
                ("y_pred", "y_true"),
                s,
                Classes::Plain,
                &[("mode", json!("multiclass"))],
            )
        },
    },
];

/// splitmix64 of `stream·2⁴⁰ + index` as a uniform double in [0, 1) (its top 53 bits).
fn uniform(stream: u64, index: usize) -> f64 {
    let mut z = ((stream << 40) + index as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn generate<T>(shape: &[usize], value: impl Fn(usize) -> T) -> ArrayD<T> {
    let len = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape), (0..len).map(value).collect()).expect("length matches")
}

/// Logits uniform in [−4, 4), rounded to float32.
fn logits(shape: [usize; 4]) -> Tensor {
    Tensor::Float32(generate(&shape, |i| {
        (8.0 * uniform(LOGITS, i) - 4.0) as f32
    }))
}

/// Values uniform in [0, 1), rounded to float32.
fn probabilities(shape: [usize; 4]) -> Tensor {
    Tensor::Float32(generate(&shape, |i| uniform(LOGITS, i) as f32))
}

/// Values uniform in [0.02, 0.98), rounded to float32: probabilities whose logs stay far from
/// `binary_cross_entropy`'s clamp at −100.
fn clipped_probabilities(shape: [usize; 4]) -> Tensor {
    Tensor::Float32(generate(&shape, |i| {
        (0.02 + 0.96 * uniform(LOGITS, i)) as f32
    }))
}

/// How a call's class-index target is laid out.
#[derive(Clone, Copy, PartialEq)]
enum Classes {
    /// (N, H, W) indices uniform over the classes.
    Plain,
    /// As `Plain`, with a share `IGNORED_SHARE` of the positions set to `IGNORE_INDEX`.
    Ignored,
    /// As `Plain`, shaped (N, 1, H, W): the label map MONAI's `to_onehot_y` takes.
    Map,
}

/// The class index at each of the N·H·W positions, optionally with a share set to `IGNORE_INDEX`.
fn class_index(shape: [usize; 4], ignore: bool, position: usize) -> i64 {
    if ignore && uniform(IGNORED, position) < IGNORED_SHARE {
        return IGNORE_INDEX;
    }
    let classes = shape[1];
    ((uniform(CLASSES, position) * classes as f64) as usize).min(classes - 1) as i64
}

/// A call on float32 logits with class-index targets; `names` are its (prediction, target) names.
fn class_call(
    loss: &str,
    names: (&str, &str),
    shape: [usize; 4],
    classes: Classes,
    params: &[(&str, Value)],
) -> LossCall {
    let [n, _, h, w] = shape;
    let target_shape = if classes == Classes::Map {
        vec![n, 1, h, w]
    } else {
        vec![n, h, w]
    };
    let ignore = classes == Classes::Ignored;
    let target = generate(&target_shape, |p| class_index(shape, ignore, p));
    call(
        loss,
        [(names.0, logits(shape)), (names.1, Tensor::Int64(target))],
        params,
    )
}

/// A call whose target is the one-hot float32 encoding of the class indices.
fn dense_call(
    loss: &str,
    names: (&str, &str),
    input: Tensor,
    shape: [usize; 4],
    params: &[(&str, Value)],
) -> LossCall {
    let [_, c, h, w] = shape;
    let one_hot = generate(&shape, |i| {
        let (image, class, pixel) = (i / (c * h * w), i / (h * w) % c, i % (h * w));
        f32::from(class_index(shape, false, image * h * w + pixel) == class as i64)
    });
    call(
        loss,
        [(names.0, input), (names.1, Tensor::Float32(one_hot))],
        params,
    )
}

fn call(loss: &str, tensors: [(&str, Tensor); 2], params: &[(&str, Value)]) -> LossCall {
    LossCall {
        loss: loss.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        tensors: tensors
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
        grad_output: None,
    }
}

/// The process's peak resident set (VmHWM) in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Times one case in this process and returns its JSON record.
fn run_case(case: &Case, runs: usize) -> Result<Value, String> {
    let call = (case.call)(case.shape);
    let input_bytes: usize = call
        .tensors
        .values()
        .map(|t| t.shape().iter().product::<usize>() * t.dtype().item_size())
        .sum();
    let gradient_bytes = case.shape.iter().product::<usize>() * 8;
    let mut seconds = Vec::new();
    let mut loss = f64::NAN;
    for _ in 0..runs {
        let start = Instant::now();
        let output = evaluate(&call).map_err(|e| format!("{}: {e}", case.name))?;
        seconds.push(start.elapsed().as_secs_f64());
        loss = output.loss.iter().sum();
        drop(output);
        // One run is enough for a case that takes more than 20 s.
        if seconds[0] > 20.0 {
            break;
        }
    }
    seconds.sort_by(f64::total_cmp);
    Ok(json!({
        "case": case.name, "loss": call.loss, "params": call.params, "shape": case.shape,
        "runs": seconds.len(),
        "median_s": seconds[seconds.len() / 2], "loss_value": loss,
        "peak_rss_bytes": peak_rss(), "input_bytes": input_bytes, "gradient_bytes": gradient_bytes,
    }))
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench` to a harness-less bench; it means nothing here.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let json = args.iter().any(|a| a == "--json");
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(3);
    let named: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with("--") && a.parse::<usize>().is_err())
        .collect();
    if let [name] = named.as_slice() {
        let Some(case) = CASES.iter().find(|c| c.name == name.as_str()) else {
            eprintln!(
                "unknown case {name}; known: {}",
                CASES.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
            );
            return ExitCode::FAILURE;
        };
        return match run_case(case, runs) {
            Ok(record) => {
                println!("{record}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        };
    }
    let exe = std::env::current_exe().expect("the bench knows its own path");
    if !json {
        println!(
            "| {:<32} | {:<17} | {:>8} | {:>7} | {:>11} |",
            "case", "shape", "median s", "peak MB", "peak/(in+g)"
        );
        println!(
            "|{:-<34}|{:-<19}|{:->9}:|{:->8}:|{:->12}:|",
            "", "", "", "", ""
        );
    }
    for case in CASES {
        let output = Command::new(&exe)
            .args([case.name, "--runs", &runs.to_string()])
            .output();
        let record: Option<Value> = output
            .ok()
            .and_then(|o| serde_json::from_slice(&o.stdout).ok());
        let Some(record) = record else {
            eprintln!("{}: the case process failed", case.name);
            return ExitCode::FAILURE;
        };
        if json {
            println!("{record}");
            continue;
        }
        let budget = record["input_bytes"].as_f64().unwrap_or(0.0)
            + record["gradient_bytes"].as_f64().unwrap_or(0.0);
        let peak = record["peak_rss_bytes"].as_f64().unwrap_or(0.0);
        let [n, c, h, w] = case.shape;
        println!(
            "| {:<32} | {:<17} | {:>8.3} | {:>7.0} | {:>11.2} |",
            case.name,
            format!("({n}, {c}, {h}, {w})"),
            record["median_s"].as_f64().unwrap_or(f64::NAN),
            peak / 1e6,
            peak / budget
        );
    }
    ExitCode::SUCCESS
}
