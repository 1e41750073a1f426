import sys

import pytest
import torch

from kdlens.errors import ConfigError
from kdlens.models import count_parameters, create_model, list_models


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_every_registered_model_gives_logits_for_images(name, shape):
    model = create_model(name, shape, 7)
    model.eval()
    assert model(torch.rand(2, *shape)).shape == (2, 7)
    assert count_parameters(model) > 0


def test_mlp_on_tabular_and_conv_models_refuse_it():
    assert create_model("mlp", (13,), 3, hidden=[8])(torch.rand(4, 13)).shape == (4, 3)
    with pytest.raises(ConfigError, match="needs image input"):
        create_model("cnn", (13,), 3)


def test_resnet_depth_and_width():
    small = create_model("resnet", (3, 32, 32), 10, depth=8)
    big = create_model("resnet", (3, 32, 32), 10, depth=20)
    wide = create_model("resnet", (3, 32, 32), 100, depth=8, channels=[32, 64, 128, 256])
    assert count_parameters(small) < count_parameters(big) < count_parameters(wide)
    with pytest.raises(ConfigError, match="6n\\+2"):
        create_model("resnet", (3, 32, 32), 10, depth=10)


def test_torchvision_model_adapts_channels_and_classes():
    model = create_model("torchvision:resnet18", (1, 28, 28), 10).eval()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ConfigError, match="no classifier"):
        create_model("torchvision:nonexistent_net", (3, 32, 32), 10)


def test_import_factory(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "import torch.nn as nn\n"
        "def tiny(input_shape, num_classes, width=4):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1] * input_shape[-2], num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = create_model("import:my_models:tiny", (1, 8, 8), 5, width=2)
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 5)
    with pytest.raises(ConfigError, match="no argument 'depth'"):
        create_model("import:my_models:tiny", (1, 8, 8), 5, depth=2)
    with pytest.raises(ConfigError, match="cannot import"):
        create_model("import:not_a_module_xyz:f", (1, 8, 8), 5)
    sys.modules.pop("my_models", None)


def test_unknown_model_and_argument():
    with pytest.raises(ConfigError, match="did you mean 'mlp'"):
        create_model("mpl", (4,), 2)
    with pytest.raises(ConfigError, match="has no argument 'widht'"):
        create_model("mlp", (4,), 2, widht=3)


def test_cnn_convs_per_block_stacks_convs_and_keeps_one_conv_layout():
    one = create_model("cnn", (1, 8, 8), 3, channels=[4, 8], hidden=5)
    two = create_model("cnn", (1, 8, 8), 3, channels=[4, 8], hidden=5, convs_per_block=2)
    convs = [m for m in two.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 4), (4, 4), (4, 8), (8, 8)]
    # the extra convs and their batch norms: 3*3*(4*4 + 8*8) weights, 2*(4 + 8) BN parameters
    assert count_parameters(two) - count_parameters(one) == 9 * (16 + 64) + 2 * (4 + 8)
    # the default keeps the layout (conv, BN, ReLU, pool) per block, so checkpoints saved before
    # the argument existed still load
    conv_keys = [k for k, v in one.state_dict().items() if v.ndim == 4]
    assert conv_keys == ["features.0.weight", "features.4.weight"]
    assert two.eval()(torch.rand(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ConfigError, match="convs_per_block must be at least 1"):
        create_model("cnn", (1, 8, 8), 3, convs_per_block=0)
