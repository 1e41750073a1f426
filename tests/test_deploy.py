"""Pruning, int8 quantization, FLOP counting and the run loader, on small known models."""

import pytest
import torch
from torch import nn

from kdlens.deploy.prune import (
    channel_sparsity,
    conv_layers,
    make_permanent,
    prunable_layers,
    prune_model,
    weight_sparsity,
)
from kdlens.deploy.quantize import (
    ORT_STATIC,
    TORCH_DYNAMIC,
    load_dynamic_int8,
    quantization_method,
    quantize_dynamic_int8,
    save_dynamic_int8,
)
from kdlens.evaluate.compression import batch_of, flops_per_example, measure_speed, ratios
from kdlens.models import create_model


def _mlp():
    return create_model("mlp", (1, 8, 8), 10, hidden=[48, 24])


def _cnn():
    return create_model("cnn", (1, 8, 8), 10, channels=[6, 10], hidden=16)


@pytest.mark.parametrize("amount", [0.3, 0.5, 0.8, 0.95])
@pytest.mark.parametrize("factory", [_mlp, _cnn])
def test_unstructured_pruning_is_exact_through_finetune_and_permanent(factory, amount):
    model = factory()
    n = sum(m.weight.numel() for m in prunable_layers(model))
    prune_model(model, amount, "unstructured")
    assert weight_sparsity(model)["zero_weights"] == round(amount * n)
    # A few optimizer steps: the masks stay fixed, so pruned weights stay zero.
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        loss = model(torch.randn(16, 1, 8, 8)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert weight_sparsity(model)["zero_weights"] == round(amount * n)
    make_permanent(model)
    assert not any(name.endswith(("_orig", "_mask")) for name, _ in model.named_parameters())
    assert not any(name.endswith("_mask") for name, _ in model.named_buffers())
    assert weight_sparsity(model)["zero_weights"] == round(amount * n)
    assert set(model.state_dict()) == set(factory().state_dict())


@pytest.mark.parametrize("amount", [0.5, 0.8])
def test_channel_pruning_zeroes_whole_filters_per_layer(amount):
    model = make_permanent(prune_model(_cnn(), amount, "channels"))
    for conv in conv_layers(model):
        norms = conv.weight.detach().flatten(1).abs().sum(1)
        assert int((norms == 0).sum()) == round(amount * conv.out_channels)
    expected = sum(round(amount * c.out_channels) for c in conv_layers(model))
    assert channel_sparsity(model)["zero_channels"] == expected
    # Linear layers are left alone by channel pruning.
    assert all((m.weight != 0).all() for m in model.modules() if isinstance(m, nn.Linear))


def test_channel_pruning_needs_convolutions():
    with pytest.raises(ValueError, match="convolutions"):
        prune_model(_mlp(), 0.5, "channels")


def test_flops_are_counted_not_hand_written():
    mlp = _mlp()  # 64 -> 48 -> 24 -> 10: a multiply-add is 2 FLOPs
    assert flops_per_example(mlp, torch.randn(5, 1, 8, 8)) == 2 * (64 * 48 + 48 * 24 + 24 * 10)
    conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
    assert flops_per_example(conv, torch.randn(3, 1, 8, 8)) == 2 * 4 * 9 * 64


def test_dynamic_int8_runs_is_smaller_and_reloads(tmp_path):
    from kdlens.weights import save_weights

    model = create_model("mlp", (1, 16, 16), 10, hidden=[256, 256]).eval()
    assert quantization_method(model) == TORCH_DYNAMIC
    q = quantize_dynamic_int8(model)
    x = torch.randn(64, 1, 16, 16)
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    save_weights(model, tmp_path / "fp32.safetensors")
    save_dynamic_int8(q, tmp_path / "int8.pt")
    fp32_bytes = (tmp_path / "fp32.safetensors").stat().st_size
    assert (tmp_path / "int8.pt").stat().st_size * 3 < fp32_bytes
    again = load_dynamic_int8(
        create_model("mlp", (1, 16, 16), 10, hidden=[256, 256]), tmp_path / "int8.pt"
    )
    with torch.no_grad():
        assert torch.equal(again(x), out)


def test_onnxruntime_static_int8_for_a_conv_student(tmp_path):
    pytest.importorskip("onnxscript")
    from kdlens.deploy.onnx_export import OrtModel, export_onnx
    from kdlens.deploy.quantize import quantize_onnx_static

    torch.manual_seed(0)
    model = create_model("cnn", (1, 8, 8), 10, channels=[16, 32], hidden=64).eval()
    assert quantization_method(model) == ORT_STATIC
    x = torch.randn(128, 1, 8, 8)
    fp32 = export_onnx(model, x, tmp_path / "fp32.onnx", "cnn")
    quantize_onnx_static(fp32, tmp_path / "int8.onnx", x)
    out = OrtModel(tmp_path / "int8.onnx")(x[:7])
    with torch.no_grad():
        ref = model(x[:7])
    assert out.shape == (7, 10)
    corr = torch.corrcoef(torch.stack([out.flatten(), ref.flatten()]))[0, 1]
    assert corr > 0.9
    assert (tmp_path / "int8.onnx").stat().st_size * 2 < fp32.stat().st_size


def test_cpu_clock_needs_one_timing_thread():
    from kdlens.config import load_config
    from kdlens.errors import ConfigError

    assert load_config(None, ["deploy.timing_threads=2", "deploy.timing_clock=wall"])
    with pytest.raises(ConfigError, match="timing_threads"):
        load_config(None, ["deploy.timing_threads=2"])
    with pytest.raises(ConfigError, match="deploy.prune"):
        load_config(None, ["deploy.prune=[0.5, 1.0]"])


def test_measure_speed_and_ratios():
    model = _mlp().eval()
    for clock in ("cpu", "wall"):
        speed = measure_speed(model, torch.randn(10, 1, 8, 8), 1, 0.01, threads=1, clock=clock)
        assert speed["latency_ms_b1"] > 0 and speed["throughput_b256"] > 0
        assert speed["threads"] == 1 and speed["clock"] == clock
    with pytest.raises(ValueError, match="threads=1"):
        measure_speed(model, torch.randn(2, 1, 8, 8), 0, 0.01, threads=2, clock="cpu")
    assert batch_of(torch.arange(3), 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    r = ratios(
        {
            "params": 100,
            "size_bytes": 400,
            "flops": 10,
            "latency_ms_b1": 2.0,
            "throughput_b256": 50,
            "accuracy": 0.9,
        },
        {
            "params": 10,
            "size_bytes": 100,
            "flops": 5,
            "latency_ms_b1": 0.5,
            "throughput_b256": 200,
            "accuracy": 0.8,
        },
    )
    assert r["params"] == 10 and r["size_bytes"] == 4 and r["flops"] == 2
    assert r["latency_b1"] == 4 and r["throughput_b256"] == 4
    assert r["accuracy_delta"] == pytest.approx(-0.1)
