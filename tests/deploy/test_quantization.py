"""Calibrated int8: GPTQ rounding against plain rounding, outlier channels, the rewritten graph against fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hf_distil.deploy.export import session
from hf_distil.deploy.quantization import (
    SCHEMES,
    calibrate,
    gptq_int8,
    outlier_channels,
    quantize_outlier_split,
    smoothing_scales,
)


def rounded_to_nearest(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.abs(weight).max(0) / 127
    return np.clip(np.round(weight / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


def correlated_inputs(rng: np.random.Generator, width: int, *tokens: int) -> list[np.ndarray]:
    """Draws of inputs whose channels move together, as hidden states do: what GPTQ's error feedback exploits."""
    mixing = rng.normal(size=(width, width)) / np.sqrt(width) + np.eye(width)
    return [(rng.normal(size=(n, width)) @ mixing).astype(np.float32) for n in tokens]


def test_gptq_with_a_diagonal_hessian_is_rounding_to_nearest():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(24, 10)).astype(np.float32)
    q, scale = gptq_int8(weight, np.diag(rng.uniform(1, 3, size=24)))
    expected_q, expected_scale = rounded_to_nearest(weight)
    np.testing.assert_array_equal(q, expected_q)
    np.testing.assert_allclose(scale, expected_scale, rtol=1e-6)


def test_gptq_shrinks_the_output_error_on_the_same_int8_grid():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(64, 48)).astype(np.float32)
    calibration, fresh = correlated_inputs(rng, 64, 512, 512)
    q, scale = gptq_int8(weight, calibration.T.astype(np.float64) @ calibration)
    nearest, nearest_scale = rounded_to_nearest(weight)
    np.testing.assert_allclose(scale, nearest_scale, rtol=1e-6)  # same grid: only the rounding differs
    assert q.dtype == np.int8 and np.abs(q.astype(int)).max() <= 127
    errors = {
        name: np.linalg.norm(fresh @ weight - fresh @ (ints.astype(np.float32) * scale))
        for name, ints in (("gptq", q), ("nearest", nearest))
    }
    assert errors["gptq"] < 0.75 * errors["nearest"]  # on inputs it was not calibrated on


def test_outlier_channels_are_the_largest_beyond_the_ratio_at_most_limit():
    absmax = np.array([1.0, 9.0, 1.2, 0.8, 4.0, 30.0, 1.1, 1.05])  # median 1.15: 3x is 3.45
    assert outlier_channels(absmax).tolist() == [1, 4, 5]
    assert outlier_channels(absmax, limit=2).tolist() == [1, 5]
    assert outlier_channels(np.ones(8)).tolist() == []


def one_matmul(path: Path, weight: np.ndarray) -> Path:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_calibrate_sums_x_xt_and_keeps_the_channel_maxima(tmp_path):
    rng = np.random.default_rng(0)
    path = one_matmul(tmp_path / "fp32.onnx", rng.normal(size=(6, 4)).astype(np.float32))
    feeds = [{"x": rng.normal(size=(1, n, 6)).astype(np.float32)} for n in (3, 5)]
    stats = calibrate(path, feeds)["x"]
    rows = np.concatenate([f["x"][0] for f in feeds]).astype(np.float64)
    np.testing.assert_allclose(stats.hessian, rows.T @ rows, rtol=1e-6)
    np.testing.assert_allclose(stats.absmax, np.abs(rows).max(0))
    assert stats.tokens == 8


def test_outlier_channels_go_through_fp32_and_the_rest_keeps_its_precision(tmp_path):
    """A channel 40x larger than the rest at some tokens, as BERT's residual stream has: one scale for the whole
    tensor leaves the other channels a few steps; split off, they get the full int8 range."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(32, 16)).astype(np.float32)

    calibration, x = correlated_inputs(rng, 32, 64, 32)
    for rows in (calibration, x):
        rows[::4, 7] = 40.0  # every fourth token
    source = one_matmul(tmp_path / "fp32.onnx", weight)
    channels = quantize_outlier_split(source, tmp_path / "split.onnx", [{"x": calibration[None]}])
    assert channels == {"x": 1}
    graph = onnx.load(str(tmp_path / "split.onnx")).graph
    assert {"DynamicQuantizeLinear", "MatMulInteger", "Gather", "MatMul"} <= {n.op_type for n in graph.node}
    fp32_rows = next(t for t in graph.initializer if t.name.endswith("w_outliers"))
    np.testing.assert_array_equal(numpy_helper.to_array(fp32_rows), weight[[7]])  # the outlier's row, exact

    x = x[None]
    expected = x @ weight
    dynamic = next(s for s in SCHEMES if s.name == "dynamic_per_channel")
    dynamic.quantize(source, tmp_path / "dynamic.onnx", {})
    got = {name: session(tmp_path / f"{name}.onnx").run(None, {"x": x})[0] for name in ("split", "dynamic")}
    error = {name: np.abs(y - expected).max() / np.abs(expected).max() for name, y in got.items()}
    assert error["split"] < 0.01 and error["dynamic"] > 4 * error["split"]


def test_smoothing_meets_halfway_and_leaves_the_product_unchanged():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6))
    x[:, 2] *= 40  # an outlier channel
    weight = rng.normal(size=(6, 5))
    absmax, weight_absmax = np.abs(x).max(0), np.abs(weight).max(1)
    s = smoothing_scales(absmax, weight_absmax, alpha=0.5)
    np.testing.assert_allclose((x / s) @ (weight * s[:, None]), x @ weight, rtol=1e-12)
    np.testing.assert_allclose(np.abs(x / s).max(0), np.abs(weight * s[:, None]).max(1))  # α 0.5: equal ranges
    smoothed = np.abs(x / smoothing_scales(absmax, weight_absmax)).max(0)  # the default α 0.8
    assert smoothed.max() / np.median(smoothed) < 0.25 * absmax.max() / np.median(absmax)


def test_smoothed_inputs_need_no_fp32_product_and_split_width_keeps_the_split(tmp_path):
    """The outlier channel of the split test, smoothed instead: one Mul before the int8 product, no Gather or fp32
    MatMul, and an error as small as the split's; an input of the split width is split as before."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(32, 16)).astype(np.float32)
    calibration, x = correlated_inputs(rng, 32, 64, 32)
    for rows in (calibration, x):
        rows[::4, 7] = 40.0
    source = one_matmul(tmp_path / "fp32.onnx", weight)
    feeds = [{"x": calibration[None]}]
    assert quantize_outlier_split(source, tmp_path / "smooth.onnx", feeds, smooth=0.8, split_width=64) == {"x": 0}
    assert quantize_outlier_split(source, tmp_path / "split.onnx", feeds, smooth=0.8, split_width=32) == {"x": 1}
    ops = {
        name: [n.op_type for n in onnx.load(str(tmp_path / f"{name}.onnx")).graph.node] for name in ("smooth", "split")
    }
    assert ops["smooth"] == ["Mul", "DynamicQuantizeLinear", "MatMulInteger", "Mul", "Cast", "Mul"]
    assert "Gather" in ops["split"] and "MatMul" in ops["split"]
    expected = x[None] @ weight
    got = session(tmp_path / "smooth.onnx").run(None, {"x": x[None]})[0]
    assert np.abs(got - expected).max() / np.abs(expected).max() < 0.01
