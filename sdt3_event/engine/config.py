"""Typed experiment config: dataclasses, YAML loading, dotted ``key=value`` overrides.

One :class:`ExperimentConfig` describes a run: the model, the data (which also defines the
:class:`~sdt3_event.events.contract.DataContract` stored in the checkpoint), the optimizer and the
training loop. Every value is checked against the dataclass field types; an unknown key or a wrong
type raises :class:`ConfigError` naming the key and the valid keys.

Example::

    cfg = load_config("configs/synthetic_demo.yaml", ["optim.lr=1e-3", "train.epochs=2"])
    save_config(cfg, run_dir / "config.yaml")
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """An invalid config: unknown key, wrong type or bad value; the message names the key."""


@dataclass
class ModelConfig:
    """Which network to build.

    Attributes:
        name: a registered model name or official alias (``sdt3_event.list_models()``), optionally
            with a pretrained tag (``sdt3_83m.in1k_1x8``) whose arguments (``D``, ...) apply.
        pretrained: what to start from (fine-tuning): a pretrained tag (``sdt3_10m.in1k``, see
            ``sdt3-event weights list``; downloaded once into the cache), a checkpoint path, an
            ``http(s)://`` URL or ``hf-hub:org/repo``. The stem and head are adapted when
            ``in_chans``/``num_classes`` differ.
        kwargs: extra ``create_model`` arguments (``D``, ``T``, ...). ``num_classes`` and
            ``in_chans`` are taken from the data when absent.
    """

    name: str = "sdt3_micro"
    pretrained: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Which data and how events become frames (the data contract).

    Attributes:
        dataset: ``synthetic``, ``dvs_gesture``, ``cifar10dvs``, ``hardvs``, ``nmnist`` or
            ``folder``.
        root: data folder (not needed for ``synthetic``).
        sensor_size: ``(W, H, P)``; ``None`` takes the dataset's own.
        input_size: ``(H, W)`` the model sees.
        n_time_bins: ``T``.
        window_us: sample duration in µs; ``None`` bins the whole recording.
        representation: ``count``, ``binary``, ``voxel`` or ``time_surface``.
        clamp: clip event counts to ``[0, clamp]``; ``None`` keeps them.
        spatial: sensor -> input mapping (``resize``, ``letterbox``, ``center_crop``, ``pad``,
            ``crop_or_pad``), or ``auto``: ``resize`` when the sensor has the aspect ratio of
            ``input_size``, else ``letterbox`` (which keeps the aspect ratio).
        filters: event filters for every sample, e.g. ``"ba:2000,refractory:100"`` (the
            ``live --filter`` grammar); stored in the data contract, so live applies them too.
        tau_us: time-surface decay (µs); ``None``: one bin's length.
        batch_size: per process (per GPU).
        eval_batch_size: ``None`` uses ``batch_size``.
        num_workers: DataLoader workers per process.
        cache: folder of an HDF5 cache of the evaluation split's frames
            (:class:`~sdt3_event.events.cache.CachedDataset`, keyed by the data set and the
            contract: built on the first run, read by later ones); ``None``: no cache. Training
            frames are not cached: their windows and augmentations are drawn anew every epoch.
        train_samples: synthetic data only: samples in the train split.
        test_samples: synthetic data only: samples in the test split.
        val_fraction: ``nmnist``: hold out this share of every class of the training recordings
            as the ``val`` split (seeded, stratified); 0 trains on all of them. ``folder`` data
            without ``root/test/``: the share of each class held out for evaluation (0: 0.2).
        split_seed: seed of that held-out split. Another seed holds out other recordings, for
            repeated validation on several splits; evaluating a checkpoint rebuilds its own.
        eval_split: what the epoch evaluations run on: ``test``, ``val`` (needs
            ``val_fraction``) or ``train`` (the training recordings without augmentation, for
            data without a test split at hand).
        translate_px: training augmentation: random shift of the whole sample by up to this
            many sensor pixels; ``None`` takes 1/16 of the sensor side.
        spatial_jitter_px: training augmentation: Gaussian noise of this std (pixels) on every
            event's x and y; 0 disables it.
        time_jitter_us: training augmentation: Gaussian noise of this std (µs) on every
            timestamp; 0 disables it.
        event_drop: training augmentation: EventDrop (drop by time, by area or at random).
        rotate_deg: training augmentation: random rotation of the whole sample about the
            sensor's centre, uniform in ``[-rotate_deg, rotate_deg]`` degrees; 0 disables it.
        scale_jitter: training augmentation: random zoom of the whole sample, uniform in
            ``[1 - scale_jitter, 1 + scale_jitter]``; 0 disables it.
        elastic_alpha: training augmentation: elastic distortion (``RandomElastic``), a smooth
            random displacement field scaled by this many pixels; 0 disables it.
        elastic_sigma: smoothness of that field: std in pixels of its Gaussian blur.
    """

    dataset: str = "synthetic"
    root: str | None = None
    sensor_size: tuple[int, int, int] | None = None
    input_size: tuple[int, int] = (64, 64)
    n_time_bins: int = 8
    window_us: int | None = None
    representation: str = "count"
    clamp: int | None = None
    spatial: str = "auto"
    filters: str = ""
    tau_us: float | None = None
    batch_size: int = 32
    eval_batch_size: int | None = None
    num_workers: int = 0
    cache: str | None = None
    train_samples: int = 2000
    test_samples: int = 500
    val_fraction: float = 0.0
    split_seed: int = 0
    eval_split: str = "test"
    translate_px: int | None = None
    spatial_jitter_px: float = 0.0
    time_jitter_us: float = 0.0
    event_drop: bool = True
    rotate_deg: float = 0.0
    scale_jitter: float = 0.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 5.0


@dataclass
class OptimConfig:
    """Optimizer.

    Attributes:
        name: ``adamw`` or ``lamb``.
        lr: absolute learning rate; when ``None``, ``blr × total_batch / 256``.
        blr: base learning rate per 256 samples (used when ``lr`` is ``None``).
        weight_decay: applied to parameters with >= 2 dims only (not BN, biases, layer-scales).
        betas: Adam betas.
        eps: Adam epsilon.
        clip_grad: gradient-norm clip; ``None`` disables it.
    """

    name: str = "adamw"
    lr: float | None = None
    blr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_grad: float | None = 1.0


@dataclass
class TrainConfig:
    """The training loop.

    Attributes:
        epochs: total epochs.
        warmup_epochs: per-iteration linear warm-up, then half-cosine to ``min_lr``.
        min_lr: final learning rate.
        warmup_lr: learning rate at step 0.
        amp: ``auto`` (bf16 where supported, else fp16, on GPU; off on CPU), ``bf16``, ``fp16``
            or ``off``.
        label_smoothing: cross-entropy label smoothing.
        tet: TET loss (Deng et al. 2022): the mean of every time bin's cross entropy instead of
            the cross entropy of the mean logits; inference is unchanged.
        mixup_alpha: Beta(α, α) mixup on frames; 0 disables it.
        cutmix_alpha: Beta(α, α) cutmix on frames (same box for every time bin); 0 disables it.
        mix_prob: probability that a batch is mixed at all.
        ema_decay: model EMA decay per step; 0 disables the EMA.
        eval_every: evaluate every N epochs (and always after the last).
        log_every: write a ``step`` line to ``metrics.jsonl`` every N steps.
        max_steps_per_epoch: cap the steps per epoch (smoke runs); ``None`` runs full epochs.
        stop_after_epochs: end this invocation once this many epochs of the ``epochs``-long
            schedule are done (a time-boxed job; ``--resume`` continues it); ``None`` runs to the
            end.
        compile: wrap the model in ``torch.compile``.
        deterministic: ``torch.use_deterministic_algorithms`` (warn-only) and no cuDNN benchmark.
    """

    epochs: int = 100
    warmup_epochs: float = 10.0
    min_lr: float = 1e-6
    warmup_lr: float = 1e-6
    amp: str = "auto"
    label_smoothing: float = 0.1
    tet: bool = False
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    ema_decay: float = 0.0
    eval_every: int = 1
    log_every: int = 10
    max_steps_per_epoch: int | None = None
    stop_after_epochs: int | None = None
    compile: bool = False
    deterministic: bool = True


@dataclass
class ExperimentConfig:
    """A whole run.

    Attributes:
        name: run name; the run folder is ``<output_dir>/<name>``.
        output_dir: parent of run folders.
        seed: global seed (Python, NumPy, torch; the data order is ``seed + epoch``).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    """

    name: str = "run"
    output_dir: str = "runs"
    seed: int = 42
    device: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """Check values that types alone cannot.

        Raises:
            ConfigError: naming the key and the allowed values.
        """
        _choice("optim.name", self.optim.name, ("adamw", "lamb"))
        _choice("train.amp", self.train.amp, ("auto", "bf16", "fp16", "off"))
        _choice(
            "data.dataset",
            self.data.dataset,
            ("synthetic", "dvs_gesture", "cifar10dvs", "hardvs", "nmnist", "folder"),
        )
        from sdt3_event.events.contract import SPATIAL_MODES
        from sdt3_event.registry import resolve_name, split_name

        try:
            resolve_name(split_name(self.model.name)[0])  # the tag is checked when it is fetched
        except KeyError as exc:
            raise ConfigError(f"model.name: {exc.args[0]}") from None

        _choice("data.spatial", self.data.spatial, ("auto", *SPATIAL_MODES))
        _choice("data.eval_split", self.data.eval_split, ("test", "val", "train"))
        if not 0.0 <= self.data.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.data.val_fraction}")
        if self.data.split_seed < 0:
            raise ConfigError(f"data.split_seed must be >= 0, got {self.data.split_seed}")
        if self.data.eval_split == "val" and self.data.val_fraction == 0:
            raise ConfigError("data.eval_split=val needs data.val_fraction > 0, e.g. 0.2")
        if min(self.data.spatial_jitter_px, self.data.time_jitter_us) < 0 or (
            self.data.translate_px is not None and self.data.translate_px < 0
        ):
            raise ConfigError(
                "data.translate_px, data.spatial_jitter_px and data.time_jitter_us must be >= 0"
            )
        if self.data.rotate_deg < 0 or not 0 <= self.data.scale_jitter < 1:
            raise ConfigError(
                "data.rotate_deg must be >= 0 and data.scale_jitter in [0, 1), got "
                f"{self.data.rotate_deg} and {self.data.scale_jitter}"
            )
        if not (self.data.elastic_alpha >= 0 and self.data.elastic_sigma > 0):
            raise ConfigError(
                "data.elastic_alpha must be >= 0 and data.elastic_sigma > 0, got "
                f"{self.data.elastic_alpha} and {self.data.elastic_sigma}"
            )
        positive = {
            "train.epochs": self.train.epochs,
            "data.batch_size": self.data.batch_size,
            "data.n_time_bins": self.data.n_time_bins,
            "train.eval_every": self.train.eval_every,
            "train.log_every": self.train.log_every,
        }
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}")
        if not 0.0 <= self.train.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {self.train.ema_decay}")
        if not 0.0 <= self.train.label_smoothing < 1.0:
            raise ConfigError(
                f"train.label_smoothing must be in [0, 1), got {self.train.label_smoothing}"
            )
        if self.train.warmup_epochs < 0 or self.train.warmup_epochs > self.train.epochs:
            raise ConfigError(
                f"train.warmup_epochs must be in [0, train.epochs={self.train.epochs}], "
                f"got {self.train.warmup_epochs}"
            )
        if self.data.dataset != "synthetic" and not self.data.root:
            raise ConfigError(
                f"data.root is required for data.dataset={self.data.dataset!r}: "
                f"pass --set data.root=/path/to/{self.data.dataset}"
            )

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")


def _plain(obj: Any) -> Any:
    """Tuples -> lists recursively, so YAML/JSON/``weights_only`` all accept the dict."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert lists to tuples and ints to floats.

    Raises:
        ConfigError: the value does not fit, naming ``key`` and the expected type.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list for {_type_name(tp)}, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(
                f"{key} must have {len(args)} entries ({_type_name(tp)}), got {value!r}"
            )
        return tuple(
            _coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (arg,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if key == "train.amp" and value is False:  # YAML 1.1 reads `amp: off` as false
            return "off"
        raise ConfigError(f"{key} must be a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {_type_name(tp)}")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown config key {full!r}{hint}; valid keys: {[prefix + n for n in names]}"
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, f"{full}.")
        else:
            kwargs[key] = _coerce(value, tp, full)
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Build and validate a config from a nested dict (a parsed YAML file).

    Raises:
        ConfigError: unknown key, wrong type or invalid value.
    """
    cfg = _build(ExperimentConfig, data or {}, "")
    cfg.validate()
    return cfg


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` -> ``(["optim", "lr"], 0.001)``; the value is parsed as YAML.

    Raises:
        ConfigError: no ``=`` or an empty key.
    """
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value, e.g. optim.lr=1e-3")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {item!r} has an empty key")
    value = yaml.safe_load(raw) if raw.strip() else None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted overrides to a nested dict (copying it). Unknown keys are caught later by
    :func:`config_from_dict`, except under free-form mappings such as ``model.kwargs``."""
    data = _deepcopy(data or {})
    for item in overrides:
        parts, value = parse_override(item)
        node = data
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML config (or start from defaults when ``path`` is ``None``) and apply overrides.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: invalid YAML, unknown key, wrong type or invalid value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping at the top level")
    return config_from_dict(apply_overrides(data, overrides or []))


def save_config(cfg: ExperimentConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (readable back with :func:`load_config`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path
