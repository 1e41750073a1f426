"""Models by name: MLP, conv net, CIFAR ResNets, torchvision classifiers and your own factory."""

from kdlens.models import resnet, simple, soft_tree  # noqa: F401  (fill the registry)
from kdlens.models.registry import MODELS, PREFIXES, count_parameters, create_model, list_models

__all__ = ["MODELS", "PREFIXES", "count_parameters", "create_model", "list_models"]
