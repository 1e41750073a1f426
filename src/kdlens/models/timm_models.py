"""``timm:<name>``: any timm model, built for the data's channels and classes.

``model_args.pretrained: true`` reads weights from the local cache only: timm would download
them (from the Hugging Face Hub, or a URL into torch's hub folder), so kdlens looks for the file
itself where timm would have put it and hands timm that file. Offline without it, one line names
the cache folder. ``model_args.pretrained_cfg_overlay: {file: PATH}`` (timm's own way) names a
local weights file instead, e.g. one downloaded elsewhere. Other ``model_args`` go to ``timm.create_model`` (e.g. ``img_size``,
``patch_size``, ``drop_rate``); ``cache_dir`` moves the cache as it does in timm.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
from pathlib import Path
from urllib.parse import urlparse

from torch import nn

from kdlens.errors import CheckpointError, ConfigError, first_line
from kdlens.models.checks import require_image
from kdlens.models.optional import import_optional

# timm's own names (timm.models._hub): the Hub file it asks for, and the safe one it tries first.
HF_WEIGHTS = "pytorch_model.bin"
HF_SAFE_WEIGHTS = "model.safetensors"


def timm_model(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    pretrained: bool = False,
    cache_dir: str | None = None,
    **kwargs,
) -> nn.Module:
    """``timm.create_model(name, num_classes=K, in_chans=C, pretrained=...)``, offline."""
    where = f"model 'timm:{name}'"
    timm = import_optional("timm", "timm", where)
    require_image(f"timm:{name}", input_shape)
    arch, _ = timm.models.split_model_name_tag(name)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"{where}: timm has no model {arch!r}{hint}")
    if pretrained:
        # timm loads this file instead of fetching: "file" outranks the Hub and URLs.
        overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
        if overlay.get("file"):
            if not Path(overlay["file"]).is_file():
                raise CheckpointError(
                    f"{where}: pretrained weights file {overlay['file']} not found "
                    "(model_args.pretrained_cfg_overlay.file)"
                )
        else:
            overlay["file"] = str(cached_weights(timm, name, cache_dir))
        kwargs["pretrained_cfg_overlay"] = {**overlay, "source": None}
    try:
        with quiet_logger("timm"):
            return timm.create_model(
                name,
                pretrained=bool(pretrained),
                num_classes=num_classes,
                in_chans=input_shape[0],
                **kwargs,
            )
    except TypeError as e:  # a model_args key the model does not take
        raise ConfigError(f"{where}: {first_line(e)}") from None
    except (RuntimeError, OSError, ValueError, AssertionError, KeyError) as e:
        error = CheckpointError if pretrained else ConfigError
        raise error(f"{where}: {first_line(e)}") from None


@contextlib.contextmanager
def quiet_logger(name: str):
    """timm logs each weight file it loads at INFO; the run's own log line says what loaded."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def cached_weights(timm, name: str, cache_dir: str | None = None) -> Path:
    """The local file timm would load ``name``'s pretrained weights from, or one line naming
    the cache folder it is missing from."""
    where = f"model 'timm:{name}'"
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as e:  # an unknown tag
        arch = name.split(".")[0]
        tags = ", ".join(timm.list_pretrained(f"{arch}.*")[:8]) or "none"
        raise ConfigError(f"{where}: {first_line(e)} (pretrained: {tags})") from None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ConfigError(f"{where}: timm has no pretrained weights for {name!r}")
    if cfg.file and Path(cfg.file).is_file():
        return Path(cfg.file)
    if cfg.hf_hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        repo, _, revision = cfg.hf_hub_id.partition("@")
        for filename in _hub_filenames(cfg.hf_hub_filename):
            found = try_to_load_from_cache(
                repo, filename, cache_dir=cache_dir, revision=revision or None
            )
            if isinstance(found, str):
                return Path(found)
        what = f"{cfg.hf_hub_id} are not in the Hugging Face cache {cache_dir or constants.HF_HUB_CACHE}"
    if cfg.url:
        import torch.hub

        folder = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir()) / "checkpoints"
        file = folder / os.path.basename(urlparse(cfg.url).path)
        if file.is_file():
            return file
        if not cfg.hf_hub_id:
            what = f"{file.name} are not in torch's hub cache {folder}"
    if not (cfg.hf_hub_id or cfg.url):
        what = f"{cfg.file} do not exist"
    raise CheckpointError(
        f"{where}: pretrained weights {what} (kdlens does not download; run "
        f"timm.create_model({name!r}, pretrained=True) once online, or set teacher.checkpoint)"
    )


def _hub_filenames(filename: str | None) -> list[str]:
    """The files timm would fetch from the Hub: the safetensors alternative first."""
    filename = filename or HF_WEIGHTS
    if filename == HF_WEIGHTS:
        return [HF_SAFE_WEIGHTS, HF_WEIGHTS]
    if filename.endswith(".bin"):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]
