"""Typed, validated run configuration: defaults in code, YAML and ``--set`` only override fields."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from kdlens.errors import ConfigError


class _Strict(BaseModel):
    # No float field takes inf or nan: each would pass here and fail (or hang) much later.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Strict):
    """``name`` is a registered dataset or a source and its path: ``npz:``, ``imagefolder:``,
    ``csv:``, ``parquet:``, ``hf:`` (``kdlens list``; docs/your-own.md)."""

    name: str = "mnist5k"
    root: str | None = Field(None, description="folder of a torchvision dataset")
    download: bool = False
    val_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    limit: int | None = Field(
        None, gt=0, description="keep at most this many examples (smoke runs)"
    )
    # Options of the sources (data.name with a prefix); each refuses the ones it does not read.
    image_size: tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="imagefolder:/hf: resize images to [H, W]; null: the first image's size"
    )
    channels: Literal[1, 3] | None = Field(
        None, description="imagefolder:/hf: 1 grey or 3 colour; null: the first image's"
    )
    target: str | None = Field(
        None,
        description="csv:/parquet: the label column (required); hf: the label column when no "
        "ClassLabel column says it",
    )
    text: str | None = Field(
        None, description="csv:/parquet:/hf: a text column as the input (needs an hf: teacher)"
    )
    image: str | None = Field(
        None, description="hf: the image column, when not the only datasets.Image column"
    )
    impute: Literal["none", "median"] = Field(
        "none",
        description="csv:/parquet: 'median' fills missing numbers with the training split's "
        "median (a missing category encodes as all zeros); 'none' refuses missing values",
    )
    drop_columns: list[str] = Field(
        default_factory=list, description="csv:/parquet: columns that are not features (ids)"
    )
    skip_bad_files: bool = Field(
        False, description="imagefolder:/hf: skip unreadable images (counted in dataset.json)"
    )
    # Data larger than memory (docs/your-own.md, "Data larger than memory").
    max_memory_gb: float = Field(
        4.0,
        gt=0,
        description="imagefolder:/hf: images/npz: inputs that would take more than this many GB "
        "decoded stay on disk and stream, batch by batch; smaller ones are loaded",
    )
    workers: int = Field(
        2,
        ge=0,
        description="streaming data: DataLoader processes that read batches; 0 reads in the "
        "training process",
    )

    @model_validator(mode="after")
    def _fractions(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be below 1 (got {self.val_fraction} + "
                f"{self.test_fraction}), or nothing is left to train on"
            )
        return self


class AugmentConfig(_Strict):
    shift: int = Field(0, ge=0, description="random shift of up to this many pixels")
    flip: bool = False
    mixup: float = Field(0.0, ge=0, description="mixup Beta(a, a) parameter; 0 disables")


class TrainConfig(_Strict):
    epochs: int = Field(30, gt=0)
    batch_size: int = Field(64, gt=0)
    optimizer: Literal["adamw", "adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = Field(
        True,
        description="Nesterov momentum for sgd (the published CIFAR recipes use plain momentum)",
    )
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    milestones: list[int] = Field(default_factory=list, description="epochs of step decay")
    gamma: float = Field(0.1, gt=0, le=1)
    max_batches: int | None = Field(None, gt=0, description="stop each epoch early (smoke runs)")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    grad_clip: float | None = Field(
        None, gt=0, description="clip the gradient norm to this value; null disables"
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16 trains under torch.autocast (CPU or a bf16-capable GPU)"
    )
    checkpoint_every: int = Field(
        1, ge=0, description="save resumable state every N epochs (for --resume); 0 never"
    )


class MeanStd(_Strict):
    """Per-channel (images) or per-feature (tables) statistics; one value applies to all."""

    mean: list[float] = Field(min_length=1)
    std: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _same_length(self) -> MeanStd:
        if len(self.mean) != len(self.std):
            raise ValueError(f"{len(self.mean)} means but {len(self.std)} stds")
        return self


class PreprocessConfig(_Strict):
    """What a model is fed: the loaders give every model the same (augmented) example,
    standardised with the training split's statistics; this turns it into what the model expects.

    ``normalize``: ``fit`` (the training split's statistics: what a model kdlens trains wants),
    ``none`` (raw inputs: images in [0, 1], tables in their units), ``imagenet``, or
    ``{mean: [...], std: [...]}``. ``resize: [H, W]`` resizes images on the way in. ``from_model``
    (timm: and hf: image models) takes both from the model's own pretrained config or image
    processor, for what is not set here. See docs/your-own.md.
    """

    normalize: Literal["fit", "none", "imagenet"] | MeanStd = "fit"
    resize: tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="images: resize to [H, W] before the model"
    )
    from_model: bool = Field(
        False,
        description="timm:/hf: the model's own normalisation and input size, where not set here",
    )

    @field_validator("normalize", mode="before")
    @classmethod
    def _one_kind(cls, v: Any) -> Any:
        # Checked here so an error names what is wrong with the one form given, not both forms.
        if isinstance(v, dict):
            try:
                return MeanStd.model_validate(v)
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                msg = first["msg"].removeprefix("Value error, ")
                raise ValueError(f"{where}: {msg}" if where else msg) from None
        if not isinstance(v, MeanStd) and v not in ("fit", "none", "imagenet"):
            raise ValueError("expected fit, none, imagenet or {mean: [...], std: [...]}")
        return v

    @property
    def is_identity(self) -> bool:
        return self.normalize == "fit" and self.resize is None and not self.from_model


class ModelSpec(_Strict):
    model: str
    model_args: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str | None = Field(None, description="load weights instead of training")
    train: TrainConfig = Field(default_factory=TrainConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)


class TeacherSpec(ModelSpec):
    accept_weak: bool = Field(
        False,
        description="go on when a loaded teacher scores below 1.5x chance on the validation split",
    )


def _default_teacher() -> TeacherSpec:
    # Code defaults augment nothing: the tuned recipe (shifts, mixup) is configs/default.yaml.
    # The architecture is the recipe's: a wide dropout head (Hinton et al.'s 1,200 units) makes the
    # teacher 4.7x the default student's parameters at 18x its FLOPs (docs/benchmarks.md).
    return TeacherSpec(
        model="cnn",
        model_args={"channels": [32, 64], "hidden": 1200, "dropout": 0.3},
        train=TrainConfig(epochs=20),
    )


def _default_student() -> ModelSpec:
    return ModelSpec(model="mlp", model_args={"hidden": [256, 256]})


class ScheduleConfig(_Strict):
    """How a distillation weight moves from its configured value to ``end`` over training."""

    kind: Literal["constant", "linear", "cosine"] = "constant"
    end: float | None = Field(None, description="value at the last epoch (constant: unused)")


class TransferConfig(_Strict):
    """What the student learns on, when it is not the teacher's own training split."""

    dataset: str | None = Field(
        None, description="another dataset, resized to the run's input shape; labels must match"
    )
    crop: int = Field(0, ge=0, description="pixels cut from each border before resizing")
    pad: int = Field(0, ge=0, description="zero pixels around the resized image (inside the shape)")
    limit: int | None = Field(None, gt=0, description="use at most this many transfer examples")
    holdout: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="share of the training split kept from the teacher; the students learn on it",
    )
    labels: bool = Field(
        True, description="false: the distilled student never uses labels (needs alpha = 0)"
    )


# Keys of ``distill.options`` that apply to every method rather than naming one.
GLOBAL_DISTILL_OPTIONS = ("logit_standardization",)


class DistillConfig(_Strict):
    method: str = "kd"
    temperature: float = Field(
        4.0, gt=0, le=1000, description="above ~1000 every soft target is uniform in float32"
    )
    alpha: float = Field(0.0, ge=0, le=1, description="weight of hard-label CE; 1-alpha on soft KL")
    cache_teacher_logits: bool = Field(
        True, description="compute teacher logits once when the student's input is not augmented"
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="method -> its own options, e.g. {fitnets: {teacher_layer: ..., weight: 100}}; "
        "and options of every method: logit_standardization (true: z-score teacher and student "
        "logits before the soft term, Sun et al. 2024)",
    )
    alpha_schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    temperature_schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    example_weighting: Literal["none", "confidence"] = Field(
        "none",
        description="'confidence': per example, lean on the teacher as much as it is confident "
        "and right (its probability of the true class); otherwise on the hard label",
    )
    exclude_classes: list[int] = Field(
        default_factory=list,
        description="classes removed from the students' transfer set (Hinton et al. 2015, §3)",
    )
    transfer: TransferConfig = Field(default_factory=TransferConfig)

    @field_validator("options")
    @classmethod
    def _options_shape(cls, options: dict[str, Any]) -> dict[str, Any]:
        for key, value in options.items():
            if key in GLOBAL_DISTILL_OPTIONS:
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false (got {value!r})")
            elif not isinstance(value, dict):
                raise ValueError(
                    f"{key} must map {key}'s option names to values (got {value!r}); global "
                    f"options: {', '.join(GLOBAL_DISTILL_OPTIONS)}"
                )
        return options

    @property
    def logit_standardization(self) -> bool:
        return bool(self.options.get("logit_standardization", False))

    def options_of(self, method: str) -> dict[str, Any]:
        """The options given for ``method`` (``distill.options.<method>``)."""
        return self.options.get(method, {}) if method not in GLOBAL_DISTILL_OPTIONS else {}

    @model_validator(mode="after")
    def _labels_optional_only_without_ce(self) -> DistillConfig:
        if not self.transfer.labels:
            uses = []
            if self.alpha != 0 or (self.alpha_schedule.end or 0) != 0:
                uses.append("alpha (and alpha_schedule.end) must be 0")
            if self.example_weighting != "none":
                uses.append("example_weighting must be 'none'")
            if uses:
                raise ValueError("transfer.labels is false, so " + " and ".join(uses))
        if self.transfer.dataset and self.transfer.holdout:
            raise ValueError("choose one of transfer.dataset and transfer.holdout")
        return self


class ExplainConfig(_Strict):
    """What ``kdlens report`` computes: soft targets, attributions, faithfulness, disagreements."""

    enabled: bool = Field(True, description="compute explanations and report.html after a run")
    n_examples: int = Field(
        100, gt=0, description="test examples for attribution agreement and faithfulness"
    )
    n_show: int = Field(4, ge=0, description="test examples drawn with probabilities and maps")
    ig_steps: int = Field(32, gt=1, description="Integrated Gradients integration steps")
    topk: float = Field(0.1, gt=0, le=1, description="share of features in the top-k% overlap")
    deletion_steps: int = Field(20, gt=0, description="points on the deletion curve")
    infidelity_samples: int = Field(10, gt=0, description="perturbations per example")
    infidelity_noise: float = Field(
        0.1, gt=0, description="std of perturbations (normalised units)"
    )
    max_temperature: int = Field(20, ge=1, description="entropy of soft targets for T = 1..this")
    max_disagreements: int = Field(8, ge=0, description="kd-vs-teacher disagreements drawn")


class DeployConfig(_Strict):
    """After distillation: measure every model; quantize, prune and export the distilled student.

    The KD fine-tune after pruning uses ``distill.method`` with its options and schedules.
    """

    quantize: bool = Field(True, description="int8 copies of the distilled (and pruned) students")
    prune: list[float] = Field(
        default_factory=list, description="target sparsities, e.g. [0.5, 0.8]; empty: no pruning"
    )
    prune_channels: bool = Field(
        True, description="conv students: also structured channel pruning at each sparsity"
    )
    finetune_epochs: int = Field(
        3, gt=0, description="fine-tune after pruning (KD and hard labels)"
    )
    finetune_lr: float = Field(1e-4, gt=0)
    export: Literal["onnx"] | None = Field(
        None, description="export the students; checked by ONNX Runtime"
    )
    timing_threads: int = Field(
        1,
        ge=0,
        description="CPU threads for timings (0: torch's default); 1 is steady on a busy machine",
    )
    timing_clock: Literal["cpu", "wall"] = Field(
        "cpu",
        description="cpu: the timing thread's CPU time (needs timing_threads=1), steady on a busy machine",
    )
    timing_warmup: int = Field(3, ge=0)
    timing_seconds: float = Field(
        0.2, gt=0, le=60, description="per timing: median over this much time"
    )

    @field_validator("prune")
    @classmethod
    def _sparsities(cls, v: list[float]) -> list[float]:
        if any(not 0 < s < 1 for s in v):
            raise ValueError("each sparsity must be in (0, 1)")
        return sorted(set(v))

    @model_validator(mode="after")
    def _cpu_clock_single_thread(self) -> DeployConfig:
        if self.timing_clock == "cpu" and self.timing_threads != 1:
            raise ValueError("timing_clock 'cpu' counts one thread: set timing_threads to 1")
        return self


def _default_soft_tree() -> ModelSpec:
    return ModelSpec(
        model="soft_tree",
        model_args={"depth": 6, "penalty": 0.1},
        train=TrainConfig(epochs=15, lr=0.01, batch_size=64),
    )


class ReadableConfig(_Strict):
    """Students a person can read (issue 4): a soft decision tree and scikit-learn surrogates.

    Each runs twice, distilled from the teacher (``<name>_kd``) and on hard labels
    (``<name>_scratch``). See docs/readable.md.

    The soft tree brings its own loss, which only the ``kd`` method honours: it is distilled with
    ``kd`` (and ``distill``'s schedules and weighting) whatever ``distill.method`` says, and the run
    says so. Surrogates fit the teacher's soft targets directly; ``distill.*`` does not apply.
    """

    students: list[Literal["soft_tree", "tree", "logistic", "ebm"]] = Field(
        default_factory=lambda: ["soft_tree", "tree"]
    )
    soft_tree: ModelSpec = Field(default_factory=_default_soft_tree)
    # T = 1, not distill.temperature: on the tree's leaf logits T > 1 hurt in our benchmarks
    # (docs/benchmarks.md, "Readable students").
    temperature: float | None = Field(
        1.0, gt=0, description="soft tree's distillation temperature; null: distill.temperature"
    )
    alpha: float | None = Field(None, ge=0, le=1, description="null: distill.alpha")
    tree_depth: int = Field(8, ge=1, le=30)
    tree_max_leaves: int | None = Field(None, ge=2)
    logistic_c: float = Field(
        0.1, gt=0, description="inverse L1 strength of the logistic surrogate"
    )
    surrogate_temperature: float = Field(
        1.0, gt=0, description="surrogates fit softmax(teacher logits / T); undone when evaluated"
    )
    transfer: Literal["train", "augmented"] = Field(
        "train", description="surrogates' transfer set: the training split, or it plus copies"
    )
    transfer_copies: int = Field(4, ge=1, description="augmented copies of the training split")
    sweeps: list[Literal["tree", "soft_tree", "logistic"]] = Field(default_factory=lambda: ["tree"])
    sweep_tree_depths: list[Annotated[int, Field(ge=1, le=30)]] = Field(
        default_factory=lambda: list(range(1, 13))
    )
    sweep_soft_tree_depths: list[Annotated[int, Field(ge=1, le=12)]] = Field(
        default_factory=lambda: list(range(2, 9))
    )
    sweep_logistic_c: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [0.003, 0.01, 0.03, 0.1, 1.0]
    )
    figures: bool = True


class RunConfig(_Strict):
    seed: int = Field(0, ge=0, lt=2**32, description="numpy seeds must fit in 32 bits")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'")
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherSpec = Field(default_factory=_default_teacher)
    student: ModelSpec = Field(default_factory=_default_student)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    readable: ReadableConfig = Field(default_factory=ReadableConfig)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda", "mps") and not v.startswith("cuda:"):
            raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return v


def _field_names(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """Field names at ``path`` of a nested pydantic model, for "did you mean" hints."""
    current: Any = model
    for part in path:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return list(getattr(current, "model_fields", {}))


def format_validation_error(err: ValidationError) -> str:
    """One line naming the first bad field."""
    first = err.errors()[0]
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "config"
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _field_names(RunConfig, loc[:-1]), n=1)
        hint = f"; did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}?" if close else ""
        return f"config: unknown field {where!r}{hint}"
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    msg = first["msg"].removeprefix("Value error, ")
    return f"config: {where}: {msg}{shown}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value``; the value is read as YAML so numbers and lists keep their type."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({_yaml_problem(e)})") from None
    return key.strip().split("."), value


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{problem} at line {mark.line + 1}" if mark else str(problem)


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        loaded = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p}: invalid YAML ({_yaml_problem(e)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p}: not a text file") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"config file {p}: expected a mapping of fields, got {type(loaded).__name__}"
        )
    return loaded


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "model_args":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def default_config_path() -> Path:
    """The tuned default recipe ``kdlens run`` uses without ``--config`` (shipped in the package;
    ``configs/default.yaml`` in the repository is the same file)."""
    return Path(__file__).resolve().parent / "configs" / "default.yaml"


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults, then the YAML file, then ``key=value`` overrides; validated once at the end.

    The code defaults are neutral (no augmentation, no mixup); the tuned MNIST recipe is the file
    :func:`default_config_path`.

    A YAML file overrides only the fields it names: nested sections merge into the defaults, except
    ``model_args``, which replaces them (a different model takes different arguments).
    """
    raw = RunConfig().model_dump()
    if path is not None:
        file_raw = read_yaml(path)
        # A teacher/student that changes its model must not inherit the default model's arguments.
        for role in ("teacher", "student"):
            section = file_raw.get(role)
            if isinstance(section, dict) and "model" in section and "model_args" not in section:
                section["model_args"] = {}
        raw = _merge(raw, file_raw)
    return config_from_dict(apply_overrides(raw, overrides))


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """``key=value`` overrides applied to a config dict (in place; also returned)."""
    for text in overrides or []:
        keys, value = parse_override(text)
        set_value(raw, keys, value)
    return raw


def set_value(raw: dict[str, Any], key: str | list[str], value: Any) -> dict[str, Any]:
    """Set one dotted ``key`` of a config dict to an already-typed ``value`` (in place; also
    returned). A new ``teacher.model``/``student.model`` drops the old model's arguments."""
    keys = key.split(".") if isinstance(key, str) else key
    if len(keys) >= 2 and keys[0] in ("teacher", "student") and keys[1] == "model":
        section = raw.setdefault(keys[0], {})
        if isinstance(section, dict):
            section["model_args"] = {}
    _set_path(raw, keys, value)
    return raw


def save_config(config: RunConfig, path: str | Path) -> None:
    from kdlens.utils import write_bytes_atomic

    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    write_bytes_atomic(path, text.encode())
