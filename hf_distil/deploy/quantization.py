"""The int8 schemes the export's gate tries (`SCHEMES`, fastest first): onnxruntime's own quantizers, and our
graph rewrites in standard ONNX ops where those lose too many of fp32's answers.

Why rewrites of our own: rounding each weight to its nearest int8 step already costs answers, and one int8 scale
for a whole activation tensor costs many more, because a few channels of BERT's residual stream carry values
several times larger than the rest at a few tokens (Bondarenko et al. 2021, arXiv:2109.12948). Two remedies that
cost almost nothing at run time:

- `outlier_split`: GPTQ (Frantar et al. 2022, arXiv:2210.17323) rounds weights one input row at a time, each
  rounding error pushed onto the rows not yet rounded through the inverse Hessian of the layer's calibrated
  inputs, so that the *output* error is small rather than each weight's; and LLM.int8()'s decomposition (Dettmers
  et al. 2022, arXiv:2208.07339) multiplies the few input channels whose calibrated range is far above the others
  in fp32, the rest in int8 with a scale no longer set by them.
- `smooth_split`: the same with fewer fp32 products. SmoothQuant (Xiao et al. 2022, arXiv:2211.10438) divides each
  input channel by s = max|x|^α / max|W|^(1−α) and multiplies the weight's row by it, (x/s)(sW) = xW, so the
  outliers shrink into a range one int8 scale spans; the split stays only for the second feed-forward MatMul's
  input, where smoothing alone keeps fewer answers.

What each scheme keeps of fp32's answers, and its speed: the deployment tables of the docs' results page.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

OUTLIER_RATIO = 3.0  # a channel is an outlier when its calibrated |max| exceeds this many times the median channel's
MAX_OUTLIERS = 8  # per MatMul input: at most this many channels in fp32 (measured: 8 and 16 agree equally, 4 less)
GPTQ_BLOCK = 128  # rows rounded between two updates of the rest (GPTQ's block size)
GPTQ_DAMPING = 0.01  # added to the Hessian's diagonal, as a share of its mean (GPTQ's percdamp)
# SmoothQuant's migration strength: on the shipped teacher's student, agreement with fp32 rises from α 0.5 to a
# plateau at 0.8-0.85 and falls beyond.
SMOOTH_ALPHA = 0.8


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

    from .runtime import session

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


def smoothing_scales(absmax: np.ndarray, weight_absmax: np.ndarray, alpha: float = SMOOTH_ALPHA) -> np.ndarray:
    """SmoothQuant's divisor per input channel, s = max|x|^α / max|W_row|^(1−α): x/s and s·W meet halfway between
    the activation's range and the weight's, which one int8 scale per tensor and per column then span."""
    return np.maximum(absmax, 1e-5) ** alpha / np.maximum(weight_absmax, 1e-5) ** (1 - alpha)


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
    source: str | Path,
    target: str | Path,
    calibration: Sequence[dict[str, np.ndarray]],
    gptq: bool = True,
    smooth: float | None = None,
    split_width: int | None = None,
) -> dict[str, int]:
    """Write `target`: every weighted MatMul of `source` in int8 (weights per output channel, rounded by GPTQ
    unless `gptq` is False; activations quantised at run time with one scale per tensor, DynamicQuantizeLinear),
    except the outlier channels of its input (`outlier_channels` of the calibrated statistics), which go through
    an fp32 MatMul beside it. With `smooth` (SmoothQuant's α), inputs are instead divided per channel by
    `smoothing_scales` and the weights' rows multiplied by them, except inputs `split_width` channels wide, which
    keep the split. Returns {input tensor: outlier channels kept in fp32}.

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
    weight_absmax: dict[str, np.ndarray] = {}  # input -> max |W| per row over the MatMuls reading it (q, k, v)
    for node in weighted_matmuls(graph) if smooth is not None else ():
        rows = np.abs(numpy_helper.to_array(weights[node.input[1]])).max(1)
        weight_absmax[node.input[0]] = np.maximum(weight_absmax.get(node.input[0], rows), rows)

    def constant(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    # input -> (the int8 path's input, outlier channels, their indices, per-channel smoothing divisor)
    split: dict[str, tuple[str, str, np.ndarray, np.ndarray]] = {}
    nodes: list = []
    for node in graph.node:
        if node.name not in matmuls:
            nodes.append(node)
            continue
        x, y, p = node.input[0], node.output[0], f"{node.name}/int8"
        op = functools.partial(_emit, nodes, p)
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float64)  # (K, N)
        if x not in split and smooth is not None and len(w) != split_width:  # once per input: q, k, v share it
            divisor = smoothing_scales(stats[x].absmax, weight_absmax[x], smooth)
            inverse = constant(f"{x}/smooth/inverse", (1 / divisor).astype(np.float32))
            split[x] = (_emit(nodes, f"{x}/smooth", "Mul", [x, inverse], "x"), "", np.array([], np.int64), divisor)
        elif x not in split:
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
            split[x] = (masked, side, outliers, np.ones(len(w)))
        masked, side, outliers, divisor = split[x]
        inliers = w * divisor[:, None]
        inliers[outliers] = 0  # multiplied in fp32 beside: they must not widen the int8 weight scale either
        hessian = stats[x].hessian / np.outer(divisor, divisor)  # of the inputs the int8 product sees, x / s
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
    return {x: len(outliers) for x, (_, _, outliers, _) in split.items()}


@dataclass(frozen=True)
class Scheme:
    name: str
    description: str
    # (fp32 path, int8 path, config dict, calibration inputs) -> None; only calibrated schemes read the inputs
    quantize: Callable[[Path, Path, dict, Sequence[dict[str, np.ndarray]]], None]
    calibrated: bool = False


def _dynamic(per_channel: bool, keep_feed_forward: bool = False) -> Callable[[Path, Path, dict], None]:
    def quantize(source: Path, target: Path, config: dict, calibration: Sequence = ()) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        excluded = feed_forward_matmuls(source, config) if keep_feed_forward else None
        root = logging.getLogger()
        # quantize_dynamic logs on the root logger that shape inference could be run first (quant_pre_process);
        # ONNX Runtime optimises the graph when it loads it anyway, and the gate measures what it gives.
        root.addFilter(_no_pre_process_advice)
        try:
            quantize_dynamic(
                source, target, weight_type=QuantType.QInt8, per_channel=per_channel, nodes_to_exclude=excluded
            )
        finally:
            root.removeFilter(_no_pre_process_advice)

    return quantize


def _no_pre_process_advice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Please consider to run pre-processing")


def _blockwise(source: Path, target: Path, config: dict, calibration: Sequence = ()) -> None:
    import onnx

    quantizer = _nbits_quantizer()(onnx.load(str(source)), bits=8, block_size=32, is_symmetric=True, accuracy_level=4)
    quantizer.process()
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)


def _per_token(source: Path, target: Path, config: dict, calibration: Sequence = ()) -> None:
    """Every MatMul with a constant weight becomes int8 × int8 in standard ONNX ops: the activations get one scale
    and zero point per token (row), computed at run time, the weights one scale per output channel.

    quantize_dynamic's DynamicQuantizeLinear has one scale for the whole input tensor, so the few tokens with very
    large activations ([CLS], [SEP]) set the step for every other token; a scale per token is ZeroQuant's remedy
    (Yao et al. 2022, arXiv:2206.01861, "token-wise" activations). onnxruntime's MatMulInteger refuses a zero point
    per row of A, so it is applied after the product: (q − z)·W = q·W − z·Σ_k W_k.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}

    def constant(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    zero = constant("per_token/zero", np.float32(0))
    tiny = constant("per_token/tiny", np.float32(1e-12))
    steps = constant("per_token/steps", np.float32(255))
    nodes = []
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            nodes.append(node)
            continue
        x, y, p = node.input[0], node.output[0], f"{node.name}/per_token"
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)  # (K, N)
        w_scale = np.maximum(np.abs(w).max(0), 1e-12) / 127  # (N,) one per output channel
        w_int8 = np.clip(np.round(w / w_scale), -127, 127).astype(np.int8)
        w_q, w_s = constant(f"{p}/w_int8", w_int8), constant(f"{p}/w_scale", w_scale.astype(np.float32))
        w_sum = constant(f"{p}/w_sum", w_int8.astype(np.float32).sum(0))
        op = functools.partial(_emit, nodes, p)

        # Range per token, widened to include 0 so that 0 is exact (padding, ReLU/GELU zeros).
        high = op("Max", [op("ReduceMax", [x], "max", axes=[-1], keepdims=1), zero], "high")  # (..., L, 1)
        low = op("Min", [op("ReduceMin", [x], "min", axes=[-1], keepdims=1), zero], "low")
        scale = op("Div", [op("Max", [op("Sub", [high, low], "range"), tiny], "range_"), steps], "scale")
        minus_z = op("Round", [op("Div", [low, scale], "low_steps")], "minus_z")  # −zero point, in [−255, 0]
        rounded = op("Round", [op("Sub", [op("Div", [x, scale], "steps_"), minus_z], "shifted")], "rounded")
        # Clip: where low/scale sits exactly halfway between integers the top value rounds to 256, which Cast wraps.
        q = op("Cast", [op("Clip", [rounded, zero, steps], "clipped")], "q", to=TensorProto.UINT8)
        product = op("Cast", [op("MatMulInteger", [q, w_q], "product_int")], "product", to=TensorProto.FLOAT)
        exact = op("Add", [product, op("Mul", [minus_z, w_sum], "zero_point_term")], "exact")
        nodes.append(helper.make_node("Mul", [op("Mul", [exact, scale], "per_token"), w_s], [y], name=f"{p}/out"))
    save_rewritten(model, nodes, target)


def save_rewritten(model, nodes: list, target: str | Path) -> None:
    """Save `model` with `nodes` as its graph, without the initializers no node reads any more (the fp32 weights
    that a rewrite replaced)."""
    import onnx

    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for n in model.graph.node for name in n.input}
    for tensor in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(tensor)
    onnx.save(model, str(target))


def _emit(nodes: list, prefix: str, kind: str, inputs: list[str], name: str, **attributes: Any) -> str:
    """Append a `kind` node named `prefix/name` whose one output has the same name; returns that name."""
    from onnx import helper

    output = f"{prefix}/{name}"
    nodes.append(helper.make_node(kind, inputs, [output], name=output, **attributes))
    return output


def _nbits_quantizer() -> type:
    """onnxruntime's MatMulNBitsQuantizer, without the `logging.basicConfig(level=INFO)` its module runs on import
    (onnxruntime/quantization/matmul_nbits_quantizer.py), which would print every later INFO line of every library."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    root.handlers[:] = handlers
    root.setLevel(level)
    return MatMulNBitsQuantizer


def _outlier_split(source: Path, target: Path, config: dict, calibration: Sequence = ()) -> None:
    quantize_outlier_split(source, target, calibration)


def _smooth_split(source: Path, target: Path, config: dict, calibration: Sequence = ()) -> None:
    quantize_outlier_split(source, target, calibration, smooth=SMOOTH_ALPHA, split_width=intermediate_size(config))


def quantize_embedding_rows(source: str | Path, target: str | Path) -> None:
    """The model at `source` with every embedding table read by a Gather (a 2-D fp32 initializer indexed by ids)
    stored in int8, one scale per row: Gather(W) becomes Gather(W_int8) · Gather(scale). Per row, because rows differ
    in norm (frequent and rare tokens): one scale per table, onnxruntime's dynamic Gather quantisation, rounds the
    small rows coarsely."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    weights = {t.name: t for t in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        table = weights.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or len(table.dims) != 2 or table.data_type != onnx.TensorProto.FLOAT:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(table)
        scale = np.maximum(np.abs(w).max(axis=1, keepdims=True), 1e-12) / 127.0
        prefix = f"{node.name or table.name}/int8"
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(np.round(w / scale).astype(np.int8), f"{prefix}/table"),
                numpy_helper.from_array(scale.astype(np.float32), f"{prefix}/scale"),
            ]
        )
        rows = _emit(nodes, prefix, "Gather", [f"{prefix}/table", node.input[1]], "rows", axis=0)
        scales = _emit(nodes, prefix, "Gather", [f"{prefix}/scale", node.input[1]], "scales", axis=0)
        widened = _emit(nodes, prefix, "Cast", [rows], "float", to=onnx.TensorProto.FLOAT)
        nodes.append(helper.make_node("Mul", [widened, scales], list(node.output), name=f"{prefix}/out"))
    save_rewritten(model, nodes, target)


def _smooth_split_int8_embeddings(source: Path, target: Path, config: dict, calibration: Sequence = ()) -> None:
    """smooth_split, then the embedding tables in int8 as well (`quantize_embedding_rows`): the rewrite leaves them
    fp32, which is most of the file for a small student."""
    with tempfile.TemporaryDirectory() as scratch:
        split = Path(scratch) / "smooth_split.onnx"
        _smooth_split(source, split, config, calibration)
        quantize_embedding_rows(split, target)


def intermediate_size(config: dict) -> int | None:
    """The feed-forward block's inner width, under DistilBERT's name or BERT's."""
    return config.get("hidden_dim") or config.get("intermediate_size")


def feed_forward_matmuls(onnx_path: Path, config: dict) -> list[str]:
    """Names of the MatMul nodes of the feed-forward blocks: those whose weight has the intermediate size.

    Quantised one node at a time, the feed-forward MatMuls cost several times more agreement than the attention
    ones, as Bondarenko et al. 2021 (arXiv:2109.12948) found for BERT: the inputs of the feed-forward block carry
    the outlier dimensions that one per-tensor int8 scale cannot span.
    """
    import onnx

    width = intermediate_size(config)
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and width in shapes.get(n.input[1], ())]


SCHEMES = [  # in order of speed on the shipped teacher's student
    Scheme(
        "dynamic",
        "quantize_dynamic QInt8, onnxruntime defaults (per-tensor weights, embeddings too)",
        _dynamic(per_channel=False),
    ),
    Scheme(
        "dynamic_per_channel",
        "quantize_dynamic QInt8, one weight scale per output channel",
        _dynamic(per_channel=True),
    ),
    Scheme(
        "smooth_split_int8_embeddings",
        "as smooth_split, the embedding tables in int8 too (one scale per row): a far smaller file for a small "
        "student",
        _smooth_split_int8_embeddings,
        calibrated=True,
    ),
    Scheme(
        "smooth_split",
        "as outlier_split, but every input except the feed-forward activation's is smoothed per channel "
        f"(SmoothQuant, α {SMOOTH_ALPHA}) rather than split: fewer fp32 products",
        _smooth_split,
        calibrated=True,
    ),
    Scheme(
        "outlier_split",
        "int8 MatMuls (weights per channel rounded by GPTQ, activations per tensor at run time); the few input "
        "channels with outlier ranges multiplied in fp32 beside them; calibrated on held-out text",
        _outlier_split,
        calibrated=True,
    ),
    Scheme(
        "dynamic_per_channel_fp32_ffn",
        "as dynamic_per_channel, feed-forward MatMuls left in fp32",
        _dynamic(per_channel=True, keep_feed_forward=True),
    ),
    Scheme(
        "per_token", "int8 MatMulInteger, activations scaled per token at run time, weights per channel", _per_token
    ),
    Scheme(
        "blockwise",
        "MatMulNBits: int8 weights and activations, one scale per block of 32 (accuracy_level 4)",
        _blockwise,
    ),
]
SCHEME_NAMES = [s.name for s in SCHEMES]
