"""``hf:<folder>``: a transformers image or text classifier saved with ``save_pretrained``.

Image classifiers (``AutoModelForImageClassification``) take (B, C, H, W) tensors as
``pixel_values``. Text classifiers (``AutoModelForSequenceClassification``) take token ids, and
this is how a text batch reaches them:

1. the dataset holds strings; ``tokenize(folder, texts)`` runs the teacher's own tokenizer (from
   the same folder) once over all of them and returns ids (N, L), padded with its pad id to one
   length L, truncated to the model's limit;
2. those ids are the dataset's ``x`` (input shape (L,)); stored as float32 they stay exact (ids
   are far below 2**24), so they ride the tensor path unchanged, but they must never be
   normalised, augmented or mixed;
3. ``HFTextClassifier`` rounds them back to integers and builds the attention mask as
   ``ids != pad_token_id``: one tensor per batch, the same for teacher and student.

A student sees the same ids: another ``hf:`` model with the same vocabulary (e.g. a smaller
config, ``model_args.pretrained: false``) or an ``import:`` factory taking (B, L) token ids.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from kdlens.errors import CheckpointError, ConfigError, KdlensError, first_line
from kdlens.models.optional import import_optional
from kdlens.models.torchvision_models import RepeatChannels

Task = Literal["image", "text"]
DEFAULT_MAX_LENGTH = 512  # when a tokenizer claims no limit (model_max_length is a huge sentinel)


class HFImageClassifier(nn.Module):
    """(B, C, H, W) pixels -> (B, K) logits of a transformers image classifier."""

    def __init__(self, model: nn.Module, folder: str):
        super().__init__()
        self.model = model
        self.folder = folder  # where its image processor lives, for preprocessing "from_model"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


class HFTextClassifier(nn.Module):
    """(B, L) token ids (int, or float holding ints) -> (B, K) logits; padding is masked."""

    def __init__(self, model: nn.Module, folder: str, pad_token_id: int):
        super().__init__()
        self.model = model
        self.folder = folder
        self.pad_token_id = pad_token_id
        self.vocab_size = int(model.config.vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.round().long() if ids.is_floating_point() else ids.long()  # (B, L)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise KdlensError(
                f"model 'hf:{self.folder}' got token ids outside its vocabulary of "
                f"{self.vocab_size}: its inputs must come from a tokenizer with the same vocabulary"
            )
        mask = (ids != self.pad_token_id).long()  # (B, L)
        return self.model(input_ids=ids, attention_mask=mask).logits


def hf_model(
    target: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    pretrained: bool = True,
    reset_head: bool = False,
    pad_token_id: int | None = None,
) -> nn.Module:
    """The classifier saved in folder ``target``, its logits as (B, K).

    ``pretrained: false`` builds the architecture of ``config.json`` with fresh weights (a
    student); ``reset_head: true`` replaces a classifier made for another number of classes.
    """
    where = f"model 'hf:{target}'"
    transformers = import_optional("transformers", "hf", where)
    folder = _check_folder(target)
    with quiet(transformers):
        try:
            config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(
                f"{where}: cannot read {folder}/config.json ({first_line(e)})"
            ) from None
        task = model_task(config, input_shape, where)
        auto = (
            transformers.AutoModelForImageClassification
            if task == "image"
            else transformers.AutoModelForSequenceClassification
        )
        if not pretrained:
            config.num_labels = num_classes  # also resets id2label / label2id
            model = auto.from_config(config)
        elif config.num_labels != num_classes and not reset_head:
            raise CheckpointError(
                f"{where} predicts {config.num_labels} classes but the data has {num_classes} "
                "(model_args.reset_head: true replaces its classifier)"
            )
        else:
            extra = (
                {"num_labels": num_classes, "ignore_mismatched_sizes": True} if reset_head else {}
            )
            try:
                model = auto.from_pretrained(folder, local_files_only=True, **extra)
            except (OSError, ValueError, RuntimeError) as e:
                raise CheckpointError(
                    f"{where}: cannot load its weights ({first_line(e)}); "
                    "model_args.pretrained: false builds it from config.json alone"
                ) from None
    model = model.float()  # weights saved in half precision would not take float32 inputs
    if task == "image":
        return _image_classifier(model, str(folder), input_shape, where)
    pad = _pad_id(transformers, model, folder, pad_token_id, where)
    return HFTextClassifier(model, str(folder), pad)


def _check_folder(target: str) -> Path:
    folder = Path(target)
    if not folder.is_dir():
        raise CheckpointError(f"model 'hf:{target}': folder {folder} not found")
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"model 'hf:{target}': {folder} has no config.json (save the model with save_pretrained)"
        )
    return folder


def model_task(config, input_shape: tuple[int, ...], where: str) -> Task:
    """Image or text, from the saved architecture, else from the auto mappings."""
    from transformers.models.auto import modeling_auto

    architectures = " ".join(config.architectures or [])
    if "ForImageClassification" in architectures:
        tasks: list[Task] = ["image"]
    elif "ForSequenceClassification" in architectures:
        tasks = ["text"]
    else:
        tasks = []
        if config.model_type in modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
            tasks.append("image")
        if config.model_type in modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
            tasks.append("text")
    if not tasks:
        raise ConfigError(
            f"{where}: a {config.model_type!r} model is neither an image nor a text classifier"
        )
    wanted = {3: "image", 1: "text"}.get(len(input_shape))
    if wanted in tasks:
        return wanted
    needs = "images (C, H, W)" if tasks[0] == "image" else "token ids (L,) from its tokenizer"
    raise ConfigError(
        f"{where} is a {tasks[0]} classifier and needs {needs}, but the data has shape "
        f"{tuple(input_shape)}"
    )


def _image_classifier(model, folder: str, input_shape: tuple[int, ...], where: str) -> nn.Module:
    channels = getattr(model.config, "num_channels", input_shape[0])
    wrapped = HFImageClassifier(model, folder)
    if channels == input_shape[0]:
        return wrapped
    if input_shape[0] == 1:
        return RepeatChannels(wrapped, channels)
    raise ConfigError(f"{where} takes {channels}-channel images, the data has {input_shape[0]}")


def _pad_id(transformers, model, folder: Path, override: int | None, where: str) -> int:
    """The id the tokenizer pads with: model_args, config.json, else the tokenizer's own."""
    pad = override if override is not None else model.config.pad_token_id
    if pad is None and has_tokenizer(folder):
        tokenizer = load_tokenizer(folder)
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
    if pad is None:
        raise ConfigError(f"{where}: no pad token id in config.json; set model_args.pad_token_id")
    # Models that pool at the last real token (GPT-2) find it through config.pad_token_id.
    model.config.pad_token_id = int(pad)
    return int(pad)


def has_tokenizer(folder: str | Path) -> bool:
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "vocab.json")
    return any((Path(folder) / n).is_file() for n in names)


def load_tokenizer(folder: str | Path):
    """The tokenizer saved beside the model (``tokenizer.save_pretrained(folder)``)."""
    transformers = import_optional("transformers", "hf", f"the tokenizer in {folder}")
    if not has_tokenizer(folder):
        raise CheckpointError(
            f"{folder} has no tokenizer files (save the teacher's tokenizer there with "
            "tokenizer.save_pretrained)"
        )
    with quiet(transformers):
        try:
            return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(
                f"cannot read the tokenizer in {folder} ({first_line(e)})"
            ) from None


def tokenize(
    folder: str | Path, texts: Sequence[str], max_length: int | None = None
) -> torch.Tensor:
    """(N,) strings -> (N, L) token ids of the tokenizer in ``folder``, padded to the longest
    text (at most ``max_length``, else the tokenizer's limit). Done once per dataset."""
    tokenizer = load_tokenizer(folder)
    limit = tokenizer.model_max_length
    if max_length is None:
        max_length = limit if limit and limit < 100_000 else DEFAULT_MAX_LENGTH
    if tokenizer.pad_token is None:  # GPT-2 style: pad with end-of-text, masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    encoded = tokenizer(
        [str(t) for t in texts],
        padding="longest",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    return encoded["input_ids"].long()


@contextlib.contextmanager
def quiet(transformers):
    """No progress bars or info logs from transformers: library code never prints."""
    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
