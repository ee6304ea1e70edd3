"""Calibrated int8: GPTQ weight rounding and outlier channels kept in fp32, as an ONNX graph rewrite.

Measured on the shipped teacher's 3-layer student (top-1 agreement with fp32 at [MASK], 1,658 masks; README,
"Deploy the student"): rounding each weight to its nearest int8 step already costs 3.7 points with the
activations left in fp32, and one int8 scale for a whole activation tensor costs another 10, because a few
channels of BERT's residual stream (channel 99 here: 28 against a median of 1.8) carry values 5-15x larger
than the rest at a few tokens (Bondarenko et al. 2021, arXiv:2109.12948). Two remedies that cost almost nothing
at run time:

- GPTQ (Frantar et al. 2022, arXiv:2210.17323): weights are rounded one input row at a time, each rounding
  error pushed onto the rows not yet rounded through the inverse Hessian of the layer's calibrated inputs, so
  the *output* error is small rather than each weight's (3.7 -> 2.4 points weights-only).
- LLM.int8()'s decomposition (Dettmers et al. 2022, arXiv:2208.07339): the few input channels whose calibrated
  range is far above the others are multiplied in fp32, the rest in int8 with a scale no longer set by them.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .export import _emit, save_rewritten

OUTLIER_RATIO = 3.0  # a channel is an outlier when its calibrated |max| exceeds this many times the median channel's
MAX_OUTLIERS = 8  # per MatMul input: at most this many channels in fp32 (measured: 8 and 16 agree equally, 4 less)
GPTQ_BLOCK = 128  # rows rounded between two updates of the rest (GPTQ's block size)
GPTQ_DAMPING = 0.01  # added to the Hessian's diagonal, as a share of its mean (GPTQ's percdamp)


@dataclass
class InputStats:
    """What calibration saw of one MatMul input: sum of x xᵀ over tokens (K, K), per-channel max |x| (K,)."""

    hessian: np.ndarray
    absmax: np.ndarray
    tokens: int = 0


def weighted_matmuls(graph) -> list:
    """MatMul nodes whose second input is a 2-D initializer: the layers int8 applies to."""
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    return [n for n in graph.node if n.op_type == "MatMul" and len(shapes.get(n.input[1], ())) == 2]


def calibrate(onnx_path: str | Path, feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, InputStats]:
    """Statistics of the input of every weighted MatMul of the fp32 model over `feeds`, keyed by tensor name."""
    import onnx
    from onnx import TensorProto, helper

    from .export import session

    model = onnx.load(str(onnx_path))
    inputs = list(dict.fromkeys(n.input[0] for n in weighted_matmuls(model.graph)))
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in inputs if name not in known
    )
    stats: dict[str, InputStats] = {}
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder, "probe.onnx")
        onnx.save(model, str(probe))
        runner = session(probe)
        for feed in feeds:
            outputs = dict(zip([o.name for o in runner.get_outputs()], runner.run(None, feed)))
            for name in inputs:
                x = outputs[name].reshape(-1, outputs[name].shape[-1]).astype(np.float64)  # (tokens, K)
                if name not in stats:
                    stats[name] = InputStats(np.zeros((x.shape[1],) * 2), np.zeros(x.shape[1]))
                stats[name].hessian += x.T @ x
                stats[name].absmax = np.maximum(stats[name].absmax, np.abs(x).max(0))
                stats[name].tokens += len(x)
    return stats


def outlier_channels(absmax: np.ndarray, ratio: float = OUTLIER_RATIO, limit: int = MAX_OUTLIERS) -> np.ndarray:
    """Sorted indices of the channels whose |max| exceeds `ratio` × the median channel's, the `limit` largest."""
    candidates = np.flatnonzero(absmax > ratio * np.median(absmax))
    return np.sort(candidates[np.argsort(absmax[candidates])[::-1][:limit]])


def gptq_int8(weight: np.ndarray, hessian: np.ndarray, damping: float = GPTQ_DAMPING) -> tuple[np.ndarray, np.ndarray]:
    """Round `weight` (K, N) of y = x W to int8 on a per-column symmetric grid (scale = max |W[:, n]| / 127),
    choosing each row's rounding so that the error on x W stays small for inputs whose x xᵀ sums to `hessian`.

    Returns (int8 (K, N), scale (N,) float32). With a diagonal Hessian nothing is pushed between rows and the
    result is plain rounding to nearest; rows of a channel that never fires (zero Hessian row) are rounded too.
    """
    w = torch.tensor(weight, dtype=torch.float32)
    scale = w.abs().amax(0).clamp_min(1e-12) / 127  # (N,)
    h = torch.tensor(hessian, dtype=torch.float64)
    h = h + damping * max(float(h.diagonal().mean()), 1e-12) * torch.eye(len(h), dtype=h.dtype)
    # Upper Cholesky factor of H⁻¹: row k holds how row k's rounding error moves the rows after it.
    inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True).float()
    q = torch.empty_like(w)
    # GPTQ's lazy batch updates: rows are rounded one by one inside a block of GPTQ_BLOCK rows, and the block's
    # errors reach the later rows in one matrix product (same result, a fraction of the memory traffic).
    for start in range(0, len(w), GPTQ_BLOCK):
        end = min(start + GPTQ_BLOCK, len(w))
        errors = torch.empty(end - start, w.shape[1])
        for k in range(start, end):
            q[k] = torch.clamp(torch.round(w[k] / scale), -127, 127)
            errors[k - start] = (w[k] - q[k] * scale) / inverse[k, k]
            w[k + 1 : end].addr_(inverse[k, k + 1 : end], errors[k - start], alpha=-1)
        w[end:] -= inverse[start:end, end:].T @ errors
    return q.to(torch.int8).numpy(), scale.to(torch.float32).numpy()


def quantize_outlier_split(
    source: str | Path, target: str | Path, calibration: Sequence[dict[str, np.ndarray]], gptq: bool = True
) -> dict[str, int]:
    """Write `target`: every weighted MatMul of `source` in int8 (weights per output channel, rounded by GPTQ
    unless `gptq` is False; activations quantised at run time with one scale per tensor, DynamicQuantizeLinear),
    except the outlier channels of its input (`outlier_channels` of the calibrated statistics), which go through
    an fp32 MatMul beside it. Returns {input tensor: outlier channels kept in fp32}.

    Standard ONNX ops only (DynamicQuantizeLinear, MatMulInteger, Gather, MatMul): ONNX Runtime fuses the int8 part
    into DynamicQuantizeMatMul when it loads the file, and transformers.js runs it as it is.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    stats = calibrate(source, calibration)
    model = onnx.load(str(source))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    matmuls = {n.name for n in weighted_matmuls(graph)}

    def constant(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    split: dict[str, tuple[str, str, np.ndarray]] = {}  # input -> (masked input, outlier channels, their indices)
    nodes: list = []
    for node in graph.node:
        if node.name not in matmuls:
            nodes.append(node)
            continue
        x, y, p = node.input[0], node.output[0], f"{node.name}/int8"
        op = functools.partial(_emit, nodes, p)
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float64)  # (K, N)
        if x not in split:  # once per input: q, k and v share theirs
            outliers = outlier_channels(stats[x].absmax)
            keep = np.ones(len(w), np.float32)
            keep[outliers] = 0
            shared = functools.partial(_emit, nodes, f"{x}/outliers")
            masked = shared("Mul", [x, constant(f"{x}/outliers/keep", keep)], "inliers") if len(outliers) else x
            side = (
                shared("Gather", [x, constant(f"{x}/outliers/index", outliers.astype(np.int64))], "outliers", axis=-1)
                if len(outliers)
                else ""
            )
            split[x] = (masked, side, outliers)
        masked, side, outliers = split[x]
        inliers = w.copy()
        inliers[outliers] = 0  # multiplied in fp32 beside: they must not widen the int8 weight scale either
        hessian = stats[x].hessian.copy()
        hessian[outliers, :] = hessian[:, outliers] = 0
        q, w_scale = gptq_int8(inliers, hessian if gptq else np.eye(len(w)))
        xq, x_scale, x_zero = (f"{p}/x_q", f"{p}/x_scale", f"{p}/x_zero")
        nodes.append(helper.make_node("DynamicQuantizeLinear", [masked], [xq, x_scale, x_zero], name=f"{p}/quantize"))
        product = op("MatMulInteger", [xq, constant(f"{p}/w_int8", q), x_zero], "product")
        scales = op("Mul", [x_scale, constant(f"{p}/w_scale", w_scale)], "scales")
        product = op("Cast", [product], "product_float", to=TensorProto.FLOAT)
        main = f"{p}/main" if len(outliers) else y
        nodes.append(helper.make_node("Mul", [product, scales], [main], name=f"{p}/main"))
        if len(outliers):
            fp32 = op("MatMul", [side, constant(f"{p}/w_outliers", w[outliers].astype(np.float32))], "outliers")
            nodes.append(helper.make_node("Add", [main, fp32], [y], name=f"{p}/sum"))
    save_rewritten(model, nodes, target)
    return {x: len(outliers) for x, (_, _, outliers) in split.items()}
