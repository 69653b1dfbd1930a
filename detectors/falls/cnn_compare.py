"""Measure a small 1-D CNN on the raw window against the shipped gradient-boosted trees.

    eldercare train falls --fallalld PATH --mobifall PATH --umafall PATH --model cnn \\
        --compare-only [--positions wrist,waist,neck] [--json]

An experiment, not a second trainer: it cuts the very windows `training.window_table` cuts (the
same recordings at 25/50/100 Hz, the same labels, the same seeded augmentation of wrist and
neck windows), deals subjects into the same leave-subjects-out folds, chooses each model's
threshold the same way (inner folds of the training subjects, `training.choose_threshold`) and
reports, per position, the shipped trees, the CNN and their ensemble (the mean of the two
P(fall)) side by side: sensitivity / specificity at that operating point with Wilson 95 %
intervals, and the sensitivity reached at specificity 0.95 and 0.995 with a threshold picked
after the fact on the pooled out-of-fold scores (a ranking aid, optimistic). It also times one
window through the CNN (a numpy forward pass, and onnxruntime when installed).

Nothing here ships: the model card says why (docs/falls-model-card.md). It needs PyTorch, which
is not a dependency of eldercare (`pip install -e '.[cnn-compare]'`, CPU wheel: see the model
card); it is imported only here."""

from __future__ import annotations

import contextlib
import importlib
import io
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.falls import training
from detectors.falls.datasets import Recording
from detectors.falls.device_windows import DEVICE_RATE_HZ, device_windows
from detectors.falls.impact_features import MODEL_RATE_HZ, resample_window
from detectors.falls.signal import Array, magnitude
from detectors.falls.stats import wilson

# The CNN sees each window at MODEL_RATE_HZ as the device sent it (4 s before the impact to
# 5 s after), aligned on its highest magnitude. At the waist and the neck its channels do not
# depend on how the device is worn: the magnitude, and the acceleration along and across gravity
# as it was in the window's first second (the vertical before the fall); at the wrist, where
# how the arm lies is itself a clue, the device's x, y, z and the magnitude. Chosen on the
# trainer's outer folds (model card): the device axes cost the waist CNN 20 points of
# sensitivity at specificity 0.995; gravity channels cost the wrist CNN 4 at 0.95.
BEFORE = round(4.0 * MODEL_RATE_HZ)
AFTER = round(5.0 * MODEL_RATE_HZ)
LENGTH = BEFORE + AFTER + 1
DEVICE_AXES_POSITIONS = frozenset({"wrist"})
# A few strided convolutions (output channels, kernel), then the mean and the maximum over
# time (about 11,000 weights).
CONV = ((16, 7), (32, 5), (32, 5), (32, 3))
EPOCHS = 20
BATCH = 128
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-3
CNN_SEED = 18
AFTER_THE_FACT_SPECIFICITY = (0.95, 0.995)
MODELS = ("hgb", "cnn", "ensemble")


def raw_window(samples: Array, rate_hz: float, device_axes: bool = False
               ) -> npt.NDArray[np.float32]:
    """One device window as the CNN's (channels, LENGTH) input: resampled to MODEL_RATE_HZ like
    the features, the impact (highest magnitude) at index BEFORE; the magnitude, the component
    along the first second's gravity and the magnitude across it (or, with `device_axes`, x, y,
    z and the magnitude). A part of the 9 s the window does not cover repeats its first or
    last sample."""
    xyz = resample_window(samples, rate_hz)
    smv = magnitude(xyz)
    p = int(np.argmax(smv))
    idx = np.clip(np.arange(p - BEFORE, p + AFTER + 1), 0, xyz.shape[0] - 1)
    if device_axes:
        axes = np.concatenate([xyz[idx], smv[idx, None]], axis=1).T
        return np.ascontiguousarray(axes, dtype=np.float32)
    gravity = xyz[:round(MODEL_RATE_HZ)].mean(axis=0)
    norm = float(np.linalg.norm(gravity))
    down = gravity / norm if norm > 0 else np.array([0.0, 0.0, 1.0])
    vertical = xyz @ down
    across = np.sqrt(np.maximum(smv * smv - vertical * vertical, 0.0))
    out = np.stack([smv[idx], vertical[idx], across[idx]])
    return np.ascontiguousarray(out, dtype=np.float32)


@dataclass(frozen=True)
class RawTable:
    """The CNN's inputs for the rows of a `training.WindowTable`, in the same order."""

    x: npt.NDArray[np.float32]  # (windows, channels, LENGTH)
    x_augmented: npt.NDArray[np.float32] | None


def raw_table(recordings: Iterable[Recording], seed: int = training.SEED,
              augment: bool = False, device_axes: bool = False) -> RawTable:
    """The raw windows `training.window_table` measures features of, row for row, with the
    same seeded augmentation (the same draws in the same order)."""
    cut: list[tuple[Array, float]] = []
    for rec in recordings:
        cut += [(w, rec.rate_hz) for _, w in device_windows(rec.samples, rec.rate_hz)]
    rng = np.random.default_rng(seed)
    turns = rng.normal(0.0, training.AUGMENT_TURN_RAD, (len(cut), 3))
    scales = rng.uniform(*training.AUGMENT_SCALE, len(cut))
    stretches = rng.uniform(*training.AUGMENT_STRETCH, len(cut))
    empty = np.empty((0, 4 if device_axes else 3, LENGTH), dtype=np.float32)
    x = np.stack([raw_window(w, rate, device_axes) for w, rate in cut]) if cut else empty
    x_aug = None
    if augment:
        x_aug = np.stack([
            raw_window(training.worn_differently(w, rate, turn, scale), rate * stretch,
                       device_axes)
            for (w, rate), turn, scale, stretch in zip(cut, turns, scales, stretches, strict=True)
        ]) if cut else empty
    return RawTable(x, x_aug)


def _torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise RuntimeError("the CNN comparison needs PyTorch (pip install torch, the CPU "
                           "wheel); eldercare itself does not") from exc


def fit_cnn(x: npt.NDArray[np.float32], y: npt.NDArray[np.int8], seed: int = CNN_SEED,
            epochs: int = EPOCHS) -> dict[str, Array]:
    """Train the CNN on labelled windows (one thread, seeded); its weights as numpy arrays."""
    torch = _torch()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    nn = torch.nn
    layers: list[Any] = []
    c_in = x.shape[1]
    for c_out, k in CONV:
        layers += [nn.Conv1d(c_in, c_out, k, stride=2, padding=k // 2), nn.ReLU()]
        c_in = c_out
    body = nn.Sequential(*layers)
    head = nn.Linear(2 * CONV[-1][0], 1)
    params = list(body.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    steps = epochs * max(1, -(-len(y) // BATCH))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LEARNING_RATE, total_steps=steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), BATCH):
            b = order[i:i + BATCH]
            h = body(xt[b])
            logit = head(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)).squeeze(1)
            loss = loss_fn(logit, yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    weights: dict[str, Array] = {}
    convs = [m for m in body if isinstance(m, nn.Conv1d)]
    for i, conv in enumerate(convs):
        weights[f"conv{i}.w"] = conv.weight.detach().numpy().astype(np.float64)
        weights[f"conv{i}.b"] = conv.bias.detach().numpy().astype(np.float64)
    weights["head.w"] = head.weight.detach().numpy()[0].astype(np.float64)
    weights["head.b"] = head.bias.detach().numpy().astype(np.float64)
    return weights


def cnn_forward(weights: dict[str, Array], x: npt.NDArray[np.float32]) -> Array:
    """P(fall) per window, a plain numpy forward pass of the CNN (what a runtime would do)."""
    h = x.astype(np.float32)
    for i, (_, k) in enumerate(CONV):
        w = weights[f"conv{i}.w"].astype(np.float32)
        b = weights[f"conv{i}.b"].astype(np.float32)
        pad = k // 2
        hp = np.pad(h, ((0, 0), (0, 0), (pad, pad)))
        n_out = (h.shape[2] + 2 * pad - k) // 2 + 1
        # (windows, c_in, n_out, k) strided view, contracted with (c_out, c_in, k).
        cols = np.lib.stride_tricks.sliding_window_view(hp, k, axis=2)[:, :, ::2][:, :, :n_out]
        h = np.maximum(np.einsum("bcnk,ock->bon", cols, w, optimize=True) + b[None, :, None],
                       0.0)
    pooled = np.concatenate([h.mean(axis=2), h.max(axis=2)], axis=1)
    logit = pooled @ weights["head.w"].astype(np.float32) + float(weights["head.b"][0])
    out: Array = 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))
    return out


def compare(sources: dict[str, Path], positions: Iterable[str] = tuple(training.MODEL_POSITIONS),
            *, seed: int = training.SEED, folds: int = training.FOLDS,
            epochs: int = EPOCHS, log: Any = None) -> dict[str, Any]:
    """Trees, CNN and ensemble on the trainer's leave-subjects-out folds, per position."""
    _torch()  # before minutes of loading: say at once what is missing
    skipped: list[str] = []
    loaded = training.load_sources(sources, rate_hz=training.LOAD_RATE_HZ, skipped=skipped)
    recs = [training.at_rate(r, rate) for r in loaded for rate in training.TRAINING_RATES_HZ]
    report: dict[str, Any] = {"epochs": epochs, "conv": [list(c) for c in CONV],
                              "skipped_files": skipped, "positions": {}}
    for position in positions:
        pooled = training.MODEL_POSITIONS[position]
        mine = [r for r in recs if r.position in pooled
                and (r.dataset, r.position) not in training.NOT_TRAINED_ON]
        augment = position in training.AUGMENTED_POSITIONS
        table = training.window_table(mine, seed, augment=augment)
        raw = raw_table(mine, seed, augment=augment,
                        device_axes=position in DEVICE_AXES_POSITIONS)
        if raw.x.shape[0] != table.x.shape[0]:
            raise AssertionError("raw and feature windows differ")
        started = time.monotonic()
        scores, thresholds, last = _cross_validate(table, raw, position, seed, folds, epochs)
        report["positions"][position] = _summary(table, scores, thresholds, position)
        report["positions"][position]["seconds"] = round(time.monotonic() - started)
        report["positions"][position]["cnn_input"] = (
            "x, y, z, magnitude" if position in DEVICE_AXES_POSITIONS
            else "magnitude, along and across gravity")
        report["positions"][position]["inference_ms"] = time_inference(last, raw.x[:256])
        if log is not None:
            log(position, report["positions"][position])
    return report


def _cross_validate(table: training.WindowTable, raw: RawTable, position: str, seed: int,
                    folds: int, epochs: int
                    ) -> tuple[dict[str, Array], dict[str, Array], dict[str, Array]]:
    """Out-of-fold recording scores and thresholds per model, as `training.cross_validate`
    computes them for the trees; and the last fold's CNN weights (for timing)."""
    subjects = table.subjects()
    fold_of = training._subject_folds(sorted(set(subjects.tolist())), folds, seed)
    rec_subject = np.array([f"{r.dataset}/{r.subject}" for r in table.recordings])
    is_fall = np.array([r.is_fall for r in table.recordings])
    n = len(table.recordings)
    score = {m: np.zeros(n) for m in MODELS}
    threshold = {m: np.full(n, np.nan) for m in MODELS}
    groups: list[list[str]] = [[] for _ in range(folds)]
    for s, k in fold_of.items():
        groups[k].append(s)
    weights: dict[str, Array] = {}
    for k in range(folds):
        test = np.isin(subjects, groups[k])
        if not test.any() or not (~test & (table.train_label >= 0)).any():
            continue
        probs, weights = _fit_predict(table, raw, ~test, test, seed, epochs)
        rec_test = np.isin(rec_subject, groups[k])
        train_subjects = sorted(s for g in groups if g is not groups[k] for s in g)
        inner = _inner_scores(table, raw, subjects, train_subjects, seed, epochs)
        train_recs = ~rec_test & ~np.isnan(inner["hgb"])
        for m in MODELS:
            score[m][rec_test] = training.recording_scores(table, probs[m])[rec_test]
            threshold[m][rec_test] = training.choose_threshold(
                is_fall[train_recs], inner[m][train_recs], position)
    return score, threshold, weights


def _inner_scores(table: training.WindowTable, raw: RawTable, subjects: npt.NDArray[np.str_],
                  names: list[str], seed: int, epochs: int) -> dict[str, Array]:
    """Out-of-fold recording scores over the training subjects alone (NaN elsewhere), as
    `training._inner_scores` computes them."""
    fold_of = training._subject_folds(names, min(training.INNER_FOLDS, len(names)), seed + 1)
    out = {m: np.full(len(table.recordings), np.nan) for m in MODELS}
    rec_subject = np.array([f"{r.dataset}/{r.subject}" for r in table.recordings])
    for k in set(fold_of.values()):
        held = [s for s, f in fold_of.items() if f == k]
        test = np.isin(subjects, held)
        train = np.isin(subjects, names) & ~test
        if not test.any() or len(set(table.train_label[train & (table.train_label >= 0)]
                                     .tolist())) < 2:
            continue
        probs, _ = _fit_predict(table, raw, train, test, seed, epochs)
        rec = np.isin(rec_subject, held)
        for m in MODELS:
            out[m][rec] = training.recording_scores(table, probs[m])[rec]
    return out


def _fit_predict(table: training.WindowTable, raw: RawTable, train: npt.NDArray[np.bool_],
                 test: npt.NDArray[np.bool_], seed: int, epochs: int
                 ) -> tuple[dict[str, Array], dict[str, Array]]:
    """Window P(fall) of the `test` rows (0 elsewhere) per model, fitted on `train` rows."""
    model = training.fit(*table.training_rows(train), seed)
    keep = train & (table.train_label >= 0)
    y = table.train_label[keep]
    x = raw.x[keep] if raw.x_augmented is None else np.concatenate(
        [raw.x[keep], raw.x_augmented[keep]])
    weights = fit_cnn(x, y if raw.x_augmented is None else np.concatenate([y, y]), seed,
                      epochs)
    probs = {m: np.zeros(len(table.train_label)) for m in MODELS}
    probs["hgb"][test] = training.predict(model, table.x[test])
    probs["cnn"][test] = cnn_forward(weights, raw.x[test])
    probs["ensemble"][test] = (probs["hgb"][test] + probs["cnn"][test]) / 2.0
    return probs, weights


def _summary(table: training.WindowTable, score: dict[str, Array],
             threshold: dict[str, Array], position: str) -> dict[str, Any]:
    """Per model: the operating point's rates at the device rate (50 Hz) and the sensitivity
    at fixed specificities (pooled, after the fact)."""
    at_rate = np.array([r.rate_hz == DEVICE_RATE_HZ for r in table.recordings])
    judged = at_rate & ~np.isnan(threshold["hgb"])
    recs = [r for r, ok in zip(table.recordings, judged, strict=True) if ok]
    is_fall = np.array([r.is_fall for r in recs])
    out: dict[str, Any] = {"recordings": len(recs), "falls": int(is_fall.sum())}
    for m in MODELS:
        s, t = score[m][judged], threshold[m][judged]
        alarm = s >= t
        tp, tn = int((alarm & is_fall).sum()), int((~alarm & ~is_fall).sum())
        falls, adls = int(is_fall.sum()), int((~is_fall).sum())
        row: dict[str, Any] = {
            "sensitivity": round(tp / falls, 4), "sensitivity_ci95": wilson(tp, falls),
            "specificity": round(tn / adls, 4), "specificity_ci95": wilson(tn, adls),
            "thresholds": sorted({float(v) for v in t}),
        }
        for spec in AFTER_THE_FACT_SPECIFICITY:
            k = sensitivity_at(is_fall, s, spec)
            row[f"sensitivity_at_specificity_{spec:g}"] = round(k / falls, 4)
            row[f"sensitivity_at_specificity_{spec:g}_ci95"] = wilson(k, falls)
        out[m] = row
    return out


def sensitivity_at(is_fall: npt.NDArray[np.bool_], score: Array, specificity: float) -> int:
    """Falls caught by the lowest threshold whose specificity reaches `specificity`."""
    adl = np.sort(score[~is_fall])
    allowed = int(np.floor((1.0 - specificity) * adl.size + 1e-9))  # false alarms allowed
    if allowed >= adl.size:
        return int(is_fall.sum())
    # A recording alarms when its score >= t: t just above the (allowed+1)-th highest ADL score.
    cut = adl[adl.size - allowed - 1]
    return int((score[is_fall] > cut).sum())


def time_inference(weights: dict[str, Array], windows: npt.NDArray[np.float32],
                   repeats: int = 3) -> dict[str, Any]:
    """Median CPU ms per window through the CNN alone, one window at a time: numpy, and
    onnxruntime (one thread) when it and PyTorch's ONNX export are at hand."""
    out: dict[str, Any] = {"numpy": _median_ms(lambda w: cnn_forward(weights, w), windows,
                                               repeats)}
    try:
        session, size = _onnx_session(weights)
    except Exception as exc:  # timing only: say why instead of failing the comparison
        out["onnxruntime"] = f"not timed: {exc}"
        return out
    out["onnxruntime"] = _median_ms(
        lambda w: session.run(None, {"window": w})[0], windows, repeats)
    out["onnx_bytes"] = size
    out["onnxruntime_matches_numpy"] = bool(np.allclose(
        np.asarray(session.run(None, {"window": windows[:8]})[0]).ravel(),
        cnn_forward(weights, windows[:8]), atol=1e-4))
    return out


def _median_ms(run: Any, windows: npt.NDArray[np.float32], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        for i in range(windows.shape[0]):
            w = windows[i:i + 1]
            t0 = time.thread_time()
            run(w)
            times.append(time.thread_time() - t0)
    return round(float(np.median(times)) * 1000.0, 4)


def _onnx_session(weights: dict[str, Array]) -> tuple[Any, int]:
    """The CNN exported to ONNX by PyTorch, loaded in onnxruntime (one thread); its size."""
    torch = _torch()
    ort = importlib.import_module("onnxruntime")
    nn = torch.nn

    def forward(self: Any, x: Any) -> Any:
        for conv in self.convs:
            x = torch.relu(conv(x))
        return torch.sigmoid(self.head(torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)))

    net = type("FallCnn", (nn.Module,), {"forward": forward})()
    ins = [weights["conv0.w"].shape[1]] + [c for c, _ in CONV[:-1]]
    net.convs = nn.ModuleList(nn.Conv1d(a, b, k, stride=2, padding=k // 2)
                              for a, (b, k) in zip(ins, CONV, strict=True))
    net.head = nn.Linear(2 * CONV[-1][0], 1)
    with torch.no_grad():
        for i, conv in enumerate(net.convs):
            conv.weight.copy_(torch.from_numpy(weights[f"conv{i}.w"].astype(np.float32)))
            conv.bias.copy_(torch.from_numpy(weights[f"conv{i}.b"].astype(np.float32)))
        net.head.weight.copy_(torch.from_numpy(weights["head.w"][None].astype(np.float32)))
        net.head.bias.copy_(torch.from_numpy(weights["head.b"].astype(np.float32)))
    with tempfile.TemporaryDirectory(prefix="eldercare-falls-cnn-") as tmp:
        path = Path(tmp) / "falls-cnn.onnx"
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            torch.onnx.export(net, torch.zeros(1, ins[0], LENGTH), str(path),
                              input_names=["window"], output_names=["p_fall"],
                              dynamic_axes={"window": {0: "n"}})
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        # The exporter may keep the weights in a file beside the graph: count both.
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
    return session, size


def format_comparison(report: dict[str, Any]) -> str:
    """The comparison as a Markdown table."""
    lines = ["| position | model | sensitivity (95 % CI) | specificity (95 % CI) | "
             "sens @ spec 0.95 | sens @ spec 0.995 |", "|---|---|---|---|---:|---:|"]
    for pos, r in report["positions"].items():
        for m in MODELS:
            row = r[m]
            lines.append(
                f"| {pos} | {m} | {_ci(row, 'sensitivity')} | {_ci(row, 'specificity')} | "
                f"{row['sensitivity_at_specificity_0.95']:.3f} | "
                f"{row['sensitivity_at_specificity_0.995']:.3f} |")
    return "\n".join(lines)


def _ci(row: dict[str, Any], key: str) -> str:
    lo, hi = row[f"{key}_ci95"]
    return f"{row[key]:.3f} ({lo:.3f}-{hi:.3f})"
