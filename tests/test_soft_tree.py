import math

import pytest
import torch

from kdlens.data.loader import Batch
from kdlens.distill import Distiller, create_distiller
from kdlens.errors import ConfigError
from kdlens.models import create_model
from kdlens.models.soft_tree import balance_penalty, path_log_probs


def _depth1_tree():
    """x in R^2; the root goes right with sigmoid(2 * (x0 - x1 + 0.5)); two hand-set leaves."""
    tree = create_model("soft_tree", (2,), 3, depth=1)
    with torch.no_grad():
        tree.inner.weight.copy_(torch.tensor([[1.0, -1.0]]))
        tree.inner.bias.fill_(0.5)
        tree.log_beta.fill_(math.log(2.0))
        tree.leaf_logits.copy_(torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]]))
    return tree


def test_hand_set_depth1_tree_gives_the_analytic_probabilities():
    tree = _depth1_tree().eval()
    x = torch.tensor([[0.3, 0.1], [-2.0, 1.0]])
    p_right = torch.sigmoid(2.0 * (x[:, 0] - x[:, 1] + 0.5))  # (B,)
    left = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), -1)
    right = torch.softmax(torch.tensor([3.0, 0.0, 0.0]), -1)
    expected = (1 - p_right)[:, None] * left + p_right[:, None] * right
    assert torch.allclose(tree(x).exp(), expected, atol=1e-6)
    # Most probable path: x[0] goes right (p > 0.5), x[1] left.
    assert tree.most_probable_leaf(x).tolist() == [1, 0]
    assert torch.allclose(tree.path_predict(x).exp(), torch.stack([right, left]), atol=1e-6)


def test_path_probabilities_of_a_depth2_tree_multiply_along_the_path():
    a = torch.tensor([[0.0, 1.0, -2.0]])  # root, left child, right child
    inner, leaves = path_log_probs(a, 2)
    s = torch.sigmoid
    p0, p1, p2 = s(a[0, 0]), s(a[0, 1]), s(a[0, 2])
    expected = torch.stack([(1 - p0) * (1 - p1), (1 - p0) * p1, p0 * (1 - p2), p0 * p2])
    assert torch.allclose(leaves.exp()[0], expected, atol=1e-6)
    assert torch.allclose(inner.exp()[0], torch.stack([torch.tensor(1.0), 1 - p0, p0]))
    assert create_model("soft_tree", (4,), 2, depth=3).path_nodes(5, 3) == [
        (0, True),
        (2, False),
        (5, True),
    ]


def test_penalty_is_zero_for_a_perfectly_balanced_split_and_positive_otherwise():
    lambdas = torch.tensor([1.0])
    balanced = torch.tensor([[3.0], [-3.0]])  # half the batch right, half left, in expectation
    reach = torch.zeros(2, 1)  # log 1: both examples reach the root
    assert float(balance_penalty(balanced, reach, lambdas)) == pytest.approx(0.0, abs=1e-7)
    skewed = torch.tensor([[3.0], [3.0]])
    assert float(balance_penalty(skewed, reach, lambdas)) > 0.5
    tree = create_model("soft_tree", (4,), 2, depth=3, penalty=0.8)
    assert tree.lambdas.tolist() == pytest.approx([0.8, 0.4, 0.4, 0.2, 0.2, 0.2, 0.2])


def test_distillers_use_the_trees_own_loss_with_temperature_on_the_leaves():
    torch.manual_seed(0)
    tree = create_model("soft_tree", (4,), 3, depth=2)
    teacher = torch.nn.Linear(4, 3)
    batch = Batch(torch.randn(8, 4), torch.randint(0, 3, (8,)), torch.arange(8))
    out = Distiller(tree)(batch)
    assert set(out) == {"loss", "ce", "penalty", "logits"}
    assert torch.allclose(out["loss"], out["ce"] + out["penalty"])
    kd = create_distiller("kd", tree, teacher, temperature=4.0, alpha=0.25)
    out = kd(batch)
    assert torch.allclose(out["loss"], out["ce"] + out["kd"] + out["penalty"])
    # The kd term is (1 - alpha) T^2 sum_l P_l KL(p_teacher^T || softmax(phi_l / T)).
    _, _, leaves = tree.routing(batch.x)
    p_t = torch.softmax(teacher(batch.x) / 4.0, -1)
    log_q = torch.log_softmax(tree.leaf_logits / 4.0, -1)
    kl = (p_t[:, None] * (p_t[:, None].log() - log_q[None])).sum(-1)  # (B, L)
    expected = 0.75 * 16 * (leaves.exp() * kl).sum(-1).mean()
    assert torch.allclose(out["kd"], expected, atol=1e-5)
    out["loss"].backward()
    assert tree.log_beta.grad is not None and tree.inner.weight.grad.abs().sum() > 0


def test_soft_tree_arguments_are_checked():
    with pytest.raises(ConfigError, match="depth"):
        create_model("soft_tree", (4,), 2, depth=0)
    with pytest.raises(ConfigError, match="penalty"):
        create_model("soft_tree", (4,), 2, penalty=-1)


@pytest.mark.parametrize("shape, kind", [((1, 8, 8), "image"), ((5,), "tabular")])
def test_soft_tree_figures_draw_from_its_json_description(shape, kind):
    import json

    import matplotlib.pyplot as plt

    from kdlens.readable import dataset_header, describe_soft_tree
    from kdlens.readable.figures import (
        soft_tree_leaves_figure,
        soft_tree_nodes_figure,
        soft_tree_path_figure,
    )

    tree = create_model("soft_tree", shape, 3, depth=3).eval()
    x = torch.randn(1, *shape)
    entry = {
        "name": "soft_tree_kd",
        "trained_with": "teacher",
        "soft_tree": describe_soft_tree(tree, x, x[0].numpy(), 2, kind),
    }
    entry = json.loads(json.dumps(entry))  # what the figures get is what readable.json holds
    leaf = int(tree.most_probable_leaf(x)[0])
    assert entry["soft_tree"]["path"]["leaf"] == leaf
    assert [s["node"] for s in entry["soft_tree"]["path"]["steps"]] == [
        node for node, _ in tree.path_nodes(leaf, 3)
    ]
    ds = dataset_header(kind, shape, ["a", "b", "c"], [f"f{i}" for i in range(5)])
    path = soft_tree_path_figure(entry, ds)
    titles = [ax.get_title() for ax in path.axes]
    assert f"leaf {leaf}" in titles and sum(t.startswith("node ") for t in titles) == 3
    assert "soft_tree_kd (distilled from the teacher)" in path._suptitle.get_text()
    for fig in (path, soft_tree_nodes_figure(entry, ds), soft_tree_leaves_figure(entry, ds)):
        assert fig.axes
        plt.close(fig)
