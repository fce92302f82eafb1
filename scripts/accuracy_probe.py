"""Grade `segloss eval` in ulps against the literal formulas evaluated at 60 digits (mpmath).

For the binary cross-entropy and sigmoid focal families, every float64 fixture case with values
and a set of generated hard inputs (logits 1e2–1e4, near-ties, probabilities near 0 and 1, weights
from 1e-30 to 1e30, γ ∈ {0, 0.5, 2, 5}) is run through the segloss binary; the loss and the
gradient are compared with the exact values normwise:

    err = max_j |y_j − exact_j| / ulp(max_j |exact_j|)

The exact loss is the formula as its anchor states it, evaluated in mpmath on the float64 inputs
(where 60 digits cannot hold a difference, such as 1 − exp(−BCE) at BCE = e^−1000 or
log(1 + e^−149), in an algebraically identical form: −expm1(−BCE), log1p);
the exact gradient is PyTorch's stated backward for binary_cross_entropy (its clamp and ε are
semantics) and mpmath's numerical derivative of the element loss for the others, so no gradient
formula is shared with the reference.

    scripts/.venv/bin/python scripts/accuracy_probe.py --binary target/debug/segloss
"""

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import mpmath as mp
import numpy as np

mp.mp.dps = 60
EPS_F32 = mp.mpf(float(np.float32(1e-12)))


def sigmoid(x):
    return 1 / (1 + mp.exp(-x))


def log_sigmoid(x):
    return -mp.log1p(mp.exp(-x)) if x >= 0 else x - mp.log1p(mp.exp(x))


# Each family: element loss l(x, t, extras) and element derivative ∂l/∂x, in mpmath.
def bce_element(p, t, w):
    log_p = max(mp.log(p), -100) if p > 0 else mp.mpf(-100)
    log_q = max(mp.log1p(-p), -100) if p < 1 else mp.mpf(-100)
    return -w * (t * log_p + (1 - t) * log_q)


def bce_slope(p, t, w):
    return w * (p - t) / max(p * (1 - p), EPS_F32)


def bce_logits_element(x, t, w, pw):
    return w * (-pw * t * log_sigmoid(x) - (1 - t) * log_sigmoid(-x))


def focal_element(x, t, alpha, gamma):
    """torchvision: α_t·BCE·(1 − p_t)^γ, 1 − p_t = t·σ(−x) + (1 − t)·σ(x) exactly."""
    bce = -t * log_sigmoid(x) - (1 - t) * log_sigmoid(-x)
    one_minus_pt = t * sigmoid(-x) + (1 - t) * sigmoid(x)
    modulation = one_minus_pt**gamma if gamma != 0 else mp.mpf(1)
    alpha_t = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else 1
    return alpha_t * bce * modulation


def kornia_element(x, t, alpha, gamma, pw):
    """kornia: α·pw·t·(1 − p)^γ·(−log p) + (1 − α)·(1 − t)·p^γ·(−log(1 − p)), p = σ(x)."""
    positive, negative = (alpha, 1 - alpha) if alpha is not None else (1, 1)
    q, p = sigmoid(-x), sigmoid(x)
    power = lambda base: base**gamma if gamma != 0 else mp.mpf(1)
    return -positive * pw * t * power(q) * log_sigmoid(x) - negative * (1 - t) * power(p) * log_sigmoid(-x)


def smp_element(x, t, alpha, gamma, threshold):
    """smp: α_t·m·BCE with p_t = exp(−BCE), m = (1 − p_t)^γ or ((1 − p_t)/r)^γ (1 below r)."""
    bce = -t * log_sigmoid(x) - (1 - t) * log_sigmoid(-x)
    pt, one_minus_pt = mp.exp(-bce), -mp.expm1(-bce)  # 60 digits cannot hold 1 − exp(−e^−1000)
    if threshold is None:
        modulation = one_minus_pt**gamma if gamma != 0 else mp.mpf(1)
    else:
        modulation = (one_minus_pt / threshold) ** gamma if pt >= threshold else mp.mpf(1)
    alpha_t = alpha * t + (1 - alpha) * (1 - t) if alpha is not None else 1
    return alpha_t * modulation * bce


def log_softmax_exact(values):
    """log softmax as (v − max) − log1p(Σ_{others} exp(v − max)): 60 digits cannot hold 1 + e^−149,
    nor max + e^−149."""
    top = max(values)
    others = list(values)
    others.remove(top)
    tail = mp.log1p(mp.fsum(mp.exp(v - top) for v in others))
    return [(v - top) - tail for v in values]


def derivative(f, x):
    return mp.diff(f, x)


def smp_focal_exact(tensors, params):
    """smp.FocalLoss with logits: binary, multiclass (one-vs-rest sigmoid) or multilabel, each
    class a group, the groups' reduced values averaged."""
    x = tensors["input"].astype(np.float64)
    y = tensors["target"]
    alpha, gamma = params.get("alpha"), mp.mpf(params.get("gamma", 2.0))
    threshold = params.get("reduced_threshold")
    reduction = params.get("reduction", "mean")
    if params["mode"] == "binary":
        groups = [(list(np.ndindex(x.shape)), [float(v) for v in y.ravel()])]
        group_shape = (x.size,)
    else:
        group_shape = x.shape[:1] + x.shape[2:]
        groups = []
        for c in range(x.shape[1]):
            indices = [index[:1] + (c,) + index[1:] for index in np.ndindex(group_shape)]
            if params["mode"] == "multilabel":
                targets = [float(y[index]) for index in indices]
            else:
                targets = [float(y[index] == c) for index in np.ndindex(group_shape)]
            groups.append((indices, targets))
    count = int(np.prod(group_shape))
    per_group = {"mean": 1 / mp.mpf(count), "sum": mp.mpf(1),
                 "batchwise_mean": 1 / mp.mpf(count // group_shape[0]) if len(groups) > 1 else mp.mpf(1),
                 "none": 1 / mp.mpf(count) if len(groups) > 1 else mp.mpf(1)}[reduction]
    scale = per_group / len(groups)
    slopes = np.empty(x.shape, dtype=object)
    values = []
    for indices, targets in groups:
        for index, te in zip(indices, targets):
            element = lambda v, te=mp.mpf(te): smp_element(v, te, alpha, gamma, threshold)
            xe = mp.mpf(float(x[index]))
            values.append(element(xe))
            slopes[index] = derivative(element, xe) * scale
    go = tensors.get("grad_output")
    upstream = np.ones(x.size) if go is None else np.broadcast_to(go, (x.size,) if go.ndim else ()).ravel()
    if upstream.size == 1:
        upstream = np.full(x.size, float(upstream[0]))
    gradient = [mp.mpf(float(u)) * s for u, s in zip(upstream, slopes.ravel())]
    if len(groups) == 1 and reduction == "none":
        return values, gradient
    if len(groups) == 1 and reduction == "batchwise_mean":
        return [mp.fsum(values)], gradient
    return [mp.fsum(values) * scale], gradient


def ulp(value):
    value = abs(float(value))
    if value == 0.0 or not np.isfinite(value):
        return 2.0**-1074
    return float(np.spacing(np.float64(value)))


def normwise(got, exact):
    got = np.asarray(got, dtype=np.float64).ravel()
    if got.size != len(exact):
        return float("inf")
    if got.size == 0:
        return 0.0
    scale = ulp(max(abs(e) for e in exact))
    worst = 0.0
    for y, e in zip(got, exact):
        if not np.isfinite(y):
            if np.isnan(y) or mp.isfinite(e):
                return float("nan")
            continue
        worst = max(worst, float(abs(mp.mpf(float(y)) - e)) / scale)
    return worst


def exact_outputs(loss, tensors, params):
    """The exact (loss values, gradient values) as flat lists of mpf."""
    if loss == "smp.FocalLoss":
        return smp_focal_exact(tensors, params)
    if loss == "cross_entropy":
        return cross_entropy_exact(tensors, params)
    if loss == "kornia.focal_loss":
        return kornia_focal_exact(tensors, params)
    default = "none" if loss in ("sigmoid_focal_loss", "kornia.binary_focal_loss_with_logits") else "mean"
    reduction = params.get("reduction", default)
    x = tensors["input"].astype(np.float64)
    shape = x.shape
    t = tensors["target"].astype(np.float64)
    ones = np.ones(shape)
    per_class = (1, shape[1]) + (1,) * (len(shape) - 2) if len(shape) > 1 else shape
    align = (lambda name: tensors[name].reshape(per_class)) if loss.startswith("kornia") else tensors.get
    w = np.broadcast_to(align("weight").astype(np.float64), shape) if "weight" in tensors else ones
    pw = np.broadcast_to(align("pos_weight").astype(np.float64), shape) if "pos_weight" in tensors else ones
    kept = np.ones(shape)
    if loss == "kornia.binary_focal_loss_with_logits" and params.get("ignore_index", -100) is not None:
        kept = (t != params.get("ignore_index", -100)).astype(np.float64)
    if loss == "smp.SoftBCEWithLogitsLoss":
        ignore = params.get("ignore_index", -100)
        if ignore is not None:
            kept = (t != ignore).astype(np.float64)
        smooth = params.get("smooth_factor")
    values, slopes = [], []
    for index in np.ndindex(shape):
        xe, te = mp.mpf(float(x[index])), mp.mpf(float(t[index]))
        we, pwe = mp.mpf(float(w[index])), mp.mpf(float(pw[index]))
        if loss == "binary_cross_entropy":
            values.append(bce_element(xe, te, we))
            slopes.append(bce_slope(xe, te, we))
            continue
        if loss == "sigmoid_focal_loss":
            alpha, gamma = params.get("alpha", 0.25), mp.mpf(params.get("gamma", 2))
            element = lambda v: focal_element(v, te, alpha, gamma)
        elif loss == "kornia.binary_focal_loss_with_logits":
            alpha, gamma = params.get("alpha", 0.25), mp.mpf(params.get("gamma", 2))
            element = lambda v: we * kornia_element(v, te, alpha, gamma, pwe)
        else:
            if loss == "smp.SoftBCEWithLogitsLoss" and smooth is not None:
                te = (1 - te) * smooth + te * (1 - mp.mpf(smooth))
            element = lambda v: bce_logits_element(v, te, we, pwe)
        if kept[index] == 0:
            values.append(mp.mpf(0))
            slopes.append(mp.mpf(0))
        else:
            values.append(element(xe))
            slopes.append(derivative(element, xe))
    go = tensors.get("grad_output")
    count = len(values)
    if reduction == "none":
        upstream = np.broadcast_to(go, shape).ravel() if go is not None else np.ones(count)
        return values, [mp.mpf(float(u)) * s for u, s in zip(upstream, slopes)]
    g = mp.mpf(float(go)) if go is not None else mp.mpf(1)
    total = mp.fsum(values)
    if reduction == "mean":
        return [total / count], [g * s / count for s in slopes]
    return [total], [g * s for s in slopes]


def cross_entropy_exact(tensors, params):
    """cross_entropy with class-index or probability targets, weight, ignore_index, label
    smoothing. The gradient is the hand-derived ∂l_n/∂x_c = Σ_k (∂l_n/∂log p_k)·([k = c] − p_c)."""
    x = tensors["input"].astype(np.float64)
    target = tensors["target"]
    axis = 0 if x.ndim == 1 else 1
    classes = x.shape[axis]
    w = [mp.mpf(float(v)) for v in tensors["weight"].ravel()] if "weight" in tensors else [mp.mpf(1)] * classes
    eps = mp.mpf(max(params.get("label_smoothing", 0.0), 0.0))
    ignore = params.get("ignore_index", -100)
    reduction = params.get("reduction", "mean")
    lanes = np.moveaxis(x, axis, -1)
    probabilities = target.shape == x.shape
    if probabilities:
        target_lanes = np.moveaxis(target.astype(np.float64), axis, -1)
    positions = list(np.ndindex(lanes.shape[:-1]))
    values, grads, denominator = [], np.empty(lanes.shape, dtype=object), mp.mpf(0)
    for position in positions:
        logits = [mp.mpf(float(v)) for v in lanes[position]]
        log_p = log_softmax_exact(logits)
        p = [mp.exp(v) for v in log_p]
        if probabilities:
            t = [mp.mpf(float(v)) for v in target_lanes[position]]
            t = [(1 - eps) * v + eps / classes for v in t] if eps > 0 else t
            slope = [-w[k] * t[k] for k in range(classes)]
            denominator += 1
        else:
            label = int(target[position])
            if label == ignore:
                values.append(mp.mpf(0))
                grads[position] = [mp.mpf(0)] * classes
                continue
            slope = [-(eps / classes) * w[k] for k in range(classes)]
            slope[label] -= (1 - eps) * w[label]
            denominator += w[label]
        values.append(mp.fsum(s_k * lp for s_k, lp in zip(slope, log_p)))
        total = mp.fsum(slope)
        grads[position] = [slope[c] - p[c] * total for c in range(classes)]
    go = tensors.get("grad_output")
    if reduction == "none":
        upstream = np.ones(len(positions)) if go is None else np.broadcast_to(go, lanes.shape[:-1]).ravel()
        scale = [mp.mpf(float(u)) for u in upstream]
        loss = values
    else:
        g = mp.mpf(1) if go is None else mp.mpf(float(go))
        scale = [g / denominator if reduction == "mean" else g] * len(positions)
        loss = [mp.fsum(values) / denominator if reduction == "mean" else mp.fsum(values)]
    out = np.empty(lanes.shape, dtype=object)
    for position, factor in zip(positions, scale):
        out[position] = [factor * v for v in grads[position]]
    return loss, list(np.moveaxis(out, -1, axis).ravel())


def kornia_focal_exact(tensors, params):
    """kornia.focal_loss: l[b, c] = −α_c·w_c·(1 − p_c)^γ·log p_c·[c = y] over the softmax, α_0 = 1 − α,
    α_c = α; mean over B·C·pixels; the gradient by mp.diff of each position's loss."""
    x = tensors["input"].astype(np.float64)
    y = tensors["target"]
    classes = x.shape[1]
    alpha, gamma = params.get("alpha"), mp.mpf(params.get("gamma", 2.0))
    ignore = params.get("ignore_index", -100)
    reduction = params.get("reduction", "none")
    w = [mp.mpf(float(v)) for v in tensors["weight"].ravel()] if "weight" in tensors else [mp.mpf(1)] * classes
    a = [mp.mpf(1)] * classes if alpha is None else [1 - mp.mpf(alpha)] + [mp.mpf(alpha)] * (classes - 1)
    lanes = np.moveaxis(x, 1, -1)
    values = np.empty(lanes.shape, dtype=object)
    slopes = np.empty(lanes.shape, dtype=object)
    for position in np.ndindex(lanes.shape[:-1]):
        label = int(y[position])
        values[position] = [mp.mpf(0)] * classes
        slopes[position] = [mp.mpf(0)] * classes
        if label == ignore:
            continue
        logits = [mp.mpf(float(v)) for v in lanes[position]]

        def position_loss(*lane):
            log_p = log_softmax_exact(lane)[label]
            one_minus = -mp.expm1(log_p)
            return -a[label] * w[label] * (one_minus**gamma if gamma != 0 else 1) * log_p

        row = [mp.mpf(0)] * classes
        row[label] = position_loss(*logits)
        values[position] = row
        slopes[position] = [mp.diff(position_loss, logits, tuple(int(k == c) for k in range(classes)))
                            for c in range(classes)]
    flat_values = list(np.moveaxis(values, -1, 1).ravel()) if values.size else []
    flat_slopes = list(np.moveaxis(slopes, -1, 1).ravel()) if slopes.size else []
    go = tensors.get("grad_output")
    count = x.size
    if reduction == "none":
        upstream = np.ones(count) if go is None else np.broadcast_to(go, x.shape).ravel()
        # Only the label's term depends on the lane; its upstream is the label class's entry.
        up = np.moveaxis(upstream.reshape(x.shape), 1, -1)
        grads = np.empty(lanes.shape, dtype=object)
        for position in np.ndindex(lanes.shape[:-1]):
            label = int(y[position])
            factor = mp.mpf(float(up[position][label])) if label != ignore else mp.mpf(0)
            grads[position] = [factor * v for v in slopes[position]]
        return flat_values, list(np.moveaxis(grads, -1, 1).ravel())
    g = mp.mpf(1) if go is None else mp.mpf(float(go))
    scale = g / count if reduction == "mean" else g
    total = mp.fsum(flat_values)
    return [total / count if reduction == "mean" else total], [scale * v for v in flat_slopes]


ARGUMENT = {"input": "--input", "inputs": "--input", "y_pred": "--input", "target": "--target",
            "targets": "--target", "y_true": "--target", "pred": "--input", "weight": "--weight",
            "pos_weight": "--pos-weight", "grad_output": "--grad-output"}
CANONICAL = {"inputs": "input", "y_pred": "input", "pred": "input", "targets": "target", "y_true": "target"}


def run_eval(binary, loss, tensors, params, workdir):
    command = [binary, "eval", loss]
    for name, array in tensors.items():
        path = Path(workdir) / f"{name}.npy"
        np.save(path, array)
        command += [ARGUMENT[name], str(path)]
    for key, value in params.items():
        command += ["--param", f"{key}={json.dumps(value)}"]
    out = Path(workdir) / "out"
    command += ["--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{loss}: {result.stderr.strip()}")
    return np.load(out / "loss.npy"), np.load(out / "grad_input.npy")


def grade(binary, loss, tensors, params):
    with tempfile.TemporaryDirectory() as workdir:
        got_loss, got_grad = run_eval(binary, loss, tensors, params, workdir)
    canonical = {CANONICAL.get(name, name): array for name, array in tensors.items()}
    exact_loss, exact_grad = exact_outputs(loss, canonical, params)
    return normwise(got_loss, exact_loss), normwise(got_grad, exact_grad)


FAMILIES = ["binary_cross_entropy", "binary_cross_entropy_with_logits", "smp.SoftBCEWithLogitsLoss",
            "sigmoid_focal_loss", "kornia.binary_focal_loss_with_logits", "smp.FocalLoss", "cross_entropy",
            "kornia.focal_loss"]
# smp.FocalLoss options the probe's formula does not model.
SMP_UNMODELLED = ("from_logits", "normalized", "class_weights", "ignore_index")


def fixture_cases(root):
    manifest = json.loads((root / "manifest.json").read_text())
    for case in manifest["cases"]:
        if case["loss"] in FAMILIES and case["dtype"] == "f64" and case["expected"]["outcome"] == "values":
            if case["loss"] == "smp.FocalLoss" and (any(key in case["params"] for key in SMP_UNMODELLED)
                                                    or case["params"].get("reduction") == "avg"):
                continue
            if not np.all(np.isfinite(np.load(root / case["expected"]["loss"]["path"]))):
                continue  # a mean over nothing or a zero weight sum: conventions, not accuracy
            tensors = {name: np.load(root / spec["path"]) for name, spec in case["tensors"].items()}
            grad_output = case["expected"].get("grad_output")
            if grad_output:
                tensors["grad_output"] = np.load(root / grad_output["path"])
            yield case["loss"], case["id"], tensors, case["params"]


def hard_cases():
    """Generated inputs where the textbook forms cancel, underflow or saturate."""
    rng = np.random.default_rng(10)
    shape = (2, 3, 4)

    def signed_magnitudes(low, high):
        return rng.choice([-1.0, 1.0], size=shape) * 10 ** rng.uniform(low, high, size=shape)

    hard_t = rng.integers(0, 2, size=shape).astype(np.float64)
    soft_t = rng.uniform(0, 1, size=shape)
    confident = np.where(hard_t == 1, 1, -1) * 10 ** rng.uniform(2, 4, size=shape)
    near = rng.uniform(0.97, 1.0, size=shape)
    cases = []
    for label, x in [("logits 1e2..1e4", signed_magnitudes(2, 4)), ("confident-correct", confident),
                     ("near-tie logits", rng.uniform(-1e-8, 1e-8, size=shape)),
                     ("moderate logits", rng.normal(0, 8, size=shape))]:
        for tlabel, t in [("hard t", hard_t), ("soft t", soft_t), ("t near 1", near)]:
            for reduction in ["none", "sum"]:
                tensors = {"input": x, "target": t}
                cases.append(("binary_cross_entropy_with_logits", f"{label}, {tlabel}, {reduction}",
                              tensors, {"reduction": reduction}))
                for gamma in [0, 0.5, 2, 5]:
                    cases.append(("sigmoid_focal_loss", f"{label}, {tlabel}, γ={gamma}, {reduction}",
                                  {"inputs": x, "targets": t},
                                  {"alpha": 0.25, "gamma": gamma, "reduction": reduction}))
                    cases.append(("kornia.binary_focal_loss_with_logits",
                                  f"{label}, {tlabel}, γ={gamma}, {reduction}", {"pred": x, "target": t},
                                  {"alpha": 0.25, "gamma": gamma, "reduction": reduction}))
                    cases.append(("smp.FocalLoss", f"{label}, {tlabel}, binary, γ={gamma}, {reduction}",
                                  {"y_pred": x, "y_true": t},
                                  {"mode": "binary", "alpha": 0.25, "gamma": gamma, "reduction": reduction}))
                cases.append(("smp.SoftBCEWithLogitsLoss", f"{label}, {tlabel}, s=0.1, {reduction}",
                              {"y_pred": x, "y_true": hard_t}, {"smooth_factor": 0.1, "reduction": reduction}))
    weights = 10 ** rng.uniform(-30, 30, size=shape)
    cases.append(("binary_cross_entropy_with_logits", "weights 1e-30..1e30, pos_weight",
                  {"input": rng.normal(0, 30, size=shape), "target": soft_t, "weight": weights,
                   "pos_weight": 10 ** rng.uniform(-30, 30, size=(4,))}, {"reduction": "none"}))
    cases.append(("binary_cross_entropy_with_logits", "x=6589.678249360908, t=0.9922477219758844",
                  {"input": np.array([6589.678249360908]), "target": np.array([0.9922477219758844])},
                  {"reduction": "none"}))
    probabilities = [("p near 0", 10 ** rng.uniform(-300, -1, size=shape)),
                     ("p near 1", 1 - 10 ** rng.uniform(-16, -1, size=shape)),
                     ("p moderate", rng.uniform(0, 1, size=shape))]
    for label, p in probabilities:
        for tlabel, t in [("hard t", hard_t), ("soft t", soft_t)]:
            for wlabel, w in [("no weight", None), ("weights 1e-30..1e30", weights)]:
                tensors = {"input": p, "target": t}
                if w is not None:
                    tensors["weight"] = w
                cases.append(("binary_cross_entropy", f"{label}, {tlabel}, {wlabel}", tensors,
                              {"reduction": "none"}))
    cases.append(("binary_cross_entropy", "p=1e-300, t=0, w=3.17e-16",
                  {"input": np.array([1e-300]), "target": np.array([0.0]), "weight": np.array([3.17e-16])},
                  {"reduction": "none"}))
    for label, logits in [("C=1000, dominant class", np.concatenate([[40.0], rng.normal(0, 1, 999)])),
                          ("C=1000, near-tie", rng.uniform(-1e-8, 1e-8, 1000)),
                          ("C=5, logits 1e2..1e4", signed_magnitudes(2, 4).ravel()[:5])]:
        x = logits.reshape(1, -1)
        y = np.array([int(np.argmax(logits))])
        one_hot = np.eye(x.shape[1])[y]
        for reduction in ["none", "sum"]:
            cases.append(("cross_entropy", f"{label}, label = arg-max, {reduction}",
                          {"input": x, "target": y}, {"reduction": reduction}))
            cases.append(("cross_entropy", f"{label}, one-hot probabilities, {reduction}",
                          {"input": x, "target": one_hot}, {"reduction": reduction}))
            cases.append(("cross_entropy", f"{label}, label = arg-max, ε = 0.1, {reduction}",
                          {"input": x, "target": y}, {"reduction": reduction, "label_smoothing": 0.1}))
    # Two independent draws of each kind (the logits of magnitude 1e2..1e4 saturate some of them).
    for _draw, gamma in itertools.product(range(2), [0, 0.5, 2, 5]):
        for label, logits in [("C=1000, dominant class", np.concatenate([[40.0], rng.normal(0, 1, 9)])),
                              ("near-tie", rng.uniform(-1e-8, 1e-8, 10)),
                              ("logits 1e2..1e4", signed_magnitudes(2, 4).ravel()[:10])]:
            x = logits.reshape(1, -1, 1)
            y = np.array([[int(np.argmax(logits))]])
            cases.append(("kornia.focal_loss", f"{label.replace('1000', '10')}, label = arg-max, γ={gamma}",
                          {"pred": x, "target": y}, {"alpha": 0.25, "gamma": gamma, "reduction": "sum"}))
    confident = np.where(np.eye(4)[rng.integers(0, 4, size=6)] == 1, 30.0, 0.0) + rng.normal(0, 1, (6, 4))
    cases.append(("cross_entropy", "confident one-hot probabilities, weights 1e-30..1e30",
                  {"input": confident, "target": (confident == confident.max(1, keepdims=True)).astype(float),
                   "weight": 10 ** rng.uniform(-30, 30, size=4)}, {"reduction": "none"}))
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--fixtures", default=str(Path(__file__).resolve().parent.parent / "fixtures"))
    parser.add_argument("--verbose", action="store_true", help="one line per case")
    args = parser.parse_args()
    worst, non_finite = {}, {}
    sources = [("fixtures", case) for case in fixture_cases(Path(args.fixtures))]
    sources += [("hard", case) for case in hard_cases()]
    for source, (loss, label, tensors, params) in sources:
        forward, gradient = grade(args.binary, loss, tensors, params)
        if args.verbose or not max(forward, gradient) <= 4:
            print(f"{source:8} {loss:37} fwd {forward:9.3g} grad {gradient:9.3g}  {label}")
        key = (source, loss)
        for slot, error in enumerate([forward, gradient]):
            if np.isnan(error):
                non_finite.setdefault(key, [[], []])[slot].append(label)
                continue
            entry = worst.setdefault(key, [(0.0, ""), (0.0, "")])
            if error >= entry[slot][0]:
                entry[slot] = (error, label)
    print("\nworst normwise error in ulps where the output is finite; NaN/inf where the exact value is finite")
    for key, ((forward, fl), (gradient, gl)) in sorted(worst.items()):
        source, loss = key
        nans = non_finite.get(key, [[], []])
        print(f"{source:8} {loss:37} forward {forward:8.3g} ({fl}) gradient {gradient:8.3g} ({gl})"
              f"  non-finite: forward {len(nans[0])}, gradient {len(nans[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
