"""A whole training run from an :class:`~sdt3_event.engine.config.ExperimentConfig`.

:func:`fit` builds the data, model, optimizer, schedule, AMP scaler and EMA from the config, trains
and evaluates epoch by epoch, keeps ``checkpoints/last.pt`` and ``checkpoints/best.pt`` and appends to
``metrics.jsonl``. Under torchrun every process runs :func:`fit`; only rank 0 writes.

Run folder layout::

    <output_dir>/<name>/
        config.yaml            the resolved config
        metrics.jsonl          start / step / eval / end lines
        checkpoints/last.pt    after every epoch (resume point)
        checkpoints/best.pt    best top-1 so far (model or EMA, whichever scored)
        tb/                    TensorBoard logs (when tensorboard is installed)
"""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sdt3_event.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from sdt3_event.device import resolve_device
from sdt3_event.engine.config import (
    ConfigError,
    ExperimentConfig,
    config_from_dict,
    save_config,
)
from sdt3_event.engine.data import build_datasets, build_loaders
from sdt3_event.engine.distributed import DistInfo, cleanup_distributed, init_distributed
from sdt3_event.engine.ema import ModelEma
from sdt3_event.engine.mixing import FrameMixer
from sdt3_event.engine.optim import WarmupCosine, build_optimizer
from sdt3_event.engine.train import Progress, evaluate, resolve_amp, train_one_epoch, unwrap
from sdt3_event.events.contract import DataContract
from sdt3_event.events.loader import rng_owner
from sdt3_event.runlog import MetricsLog

logger = logging.getLogger(__name__)


def _canonical(name: str) -> str:
    from sdt3_event.registry import resolve_name

    try:
        return resolve_name(name)
    except KeyError:
        return name


def seed_everything(seed: int, data: Any = None) -> None:
    """Seed Python, NumPy, torch and the random transforms of ``data`` (the generator of its
    :func:`~sdt3_event.events.loader.rng_owner`) in this process."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    owner = rng_owner(data)
    if owner is not None:
        owner.rng = np.random.default_rng(seed)


def _capture_rng(data: Any) -> dict[str, Any]:
    """The process's RNG states and, as ``transforms``, the state of ``data``'s generator."""
    state = capture_rng_state()
    owner = rng_owner(data)
    if owner is not None:
        state["transforms"] = owner.rng.bit_generator.state
    return state


def _restore_rng(state: dict[str, Any], data: Any) -> None:
    """Inverse of :func:`_capture_rng`."""
    restore_rng_state(state)
    owner = rng_owner(data)
    if state.get("transforms") is not None and owner is not None:
        owner.rng.bit_generator.state = state["transforms"]


def run_dir_of(cfg: ExperimentConfig) -> Path:
    return Path(cfg.output_dir) / cfg.name


def build_experiment_model(
    cfg: ExperimentConfig, num_classes: int, in_chans: int, load_pretrained: bool = True
) -> tuple[str, nn.Module, dict]:
    """``create_model`` with ``num_classes``/``in_chans`` from the data unless set in ``kwargs``.

    Returns:
        The canonical model name, the model and the ``create_model`` kwargs to store in checkpoints (the model's own
        ``model_config`` when it has one).
    """
    from sdt3_event.models.zoo import is_pretrained_source
    from sdt3_event.registry import create_model, resolve_name, split_name

    kwargs = dict(cfg.model.kwargs)
    pretrained = cfg.model.pretrained if load_pretrained else None
    arch, tag = split_name(cfg.model.name)
    name = resolve_name(arch)
    if pretrained is not None and not is_pretrained_source(name, pretrained):
        raise FileNotFoundError(
            f"model.pretrained {cfg.model.pretrained!r} is neither a file nor a pretrained tag "
            f"(`sdt3-event weights list`); pass --set model.pretrained=<tag or "
            f"/path/to/checkpoint.pth> (null trains from scratch)"
        )
    kwargs.setdefault("num_classes", num_classes)
    kwargs.setdefault("in_chans", in_chans)
    try:
        model = create_model(f"{name}.{tag}" if tag else name, pretrained=pretrained, **kwargs)
    except ValueError as exc:  # CheckpointMismatchError, an unreadable file
        if pretrained is None and not tag:
            raise
        raise ConfigError(
            f"model.pretrained does not fit model.name={cfg.model.name!r}: {exc}"
        ) from exc
    model_config = dict(getattr(model, "model_config", None) or kwargs)
    return name, model, model_config


def _check_pretrained_representation(path: str, contract: DataContract) -> None:
    """An sdt3-event checkpoint fine-tunes only on its own representation (official weights,
    which carry no data contract, may start any)."""
    from sdt3_event.events.contract import require_representation
    from sdt3_event.models.pretrained import read_checkpoint

    if not Path(path).is_file():
        return  # build_experiment_model says so
    payload = read_checkpoint(path)
    if isinstance(payload, dict) and isinstance(payload.get("data_contract"), dict):
        trained = DataContract.from_dict(dict(payload["data_contract"]))
        require_representation(trained, contract.representation, f"model.pretrained {path}")


@dataclass
class FitResult:
    """What :func:`fit` returns: the run folder, best/last metrics and the step count."""

    run_dir: Path
    best_acc1: float
    last_metrics: dict[str, Any]
    epochs_done: int
    steps_done: int


def fit(
    cfg: ExperimentConfig,
    *,
    resume: bool | str | Path = False,
    progress: Progress | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    datasets: tuple[Any, Any, DataContract] | None = None,
    overwrite: bool = False,
) -> FitResult:
    """Train and evaluate as ``cfg`` says.

    Args:
        cfg: the validated experiment config.
        resume: ``True`` continues ``<run_dir>/checkpoints/last.pt``; a path continues that file.
            The config stored in the checkpoint is used (so the data order, schedule and RNG
            continue exactly); a resumed run produces the same loss sequence as an uninterrupted one.
        progress: wraps loaders for progress bars (apps pass tqdm).
        on_event: called with every ``metrics.jsonl`` record (rank 0 only), e.g. for console output.
        datasets: ``(train, test, contract)`` to use instead of building them from ``cfg.data``
            (programmatic use and tests); each yields ``(frames, label)``.
        overwrite: start afresh in a run folder that already holds checkpoints (its
            ``metrics.jsonl`` is restarted); without it such a folder raises.

    Returns:
        A :class:`FitResult`.

    Raises:
        FileNotFoundError: missing data or resume checkpoint.
        FileExistsError: a fresh run into a folder with checkpoints (pass ``resume`` or
            ``overwrite``, or choose another name).
        CheckpointError: the resume checkpoint holds another model.
        NonFiniteLossError: the loss became NaN/inf.
    """
    resume_payload = None
    if resume:
        ckpt_path = run_dir_of(cfg) / "checkpoints" / "last.pt" if resume is True else Path(resume)
        if not ckpt_path.is_file():
            raise FileNotFoundError(
                f"cannot resume: {ckpt_path} does not exist (no epoch of this run finished yet?); "
                f"start without --resume"
            )
        resume_payload = load_checkpoint(ckpt_path)
        stored = config_from_dict(resume_payload["config"])
        if _canonical(stored.model.name) != _canonical(cfg.model.name):
            raise CheckpointError(
                f"{ckpt_path} is a run of model {stored.model.name!r}, not {cfg.model.name!r}"
            )
        # Continue with the stored config, allowing only more epochs or a new output location.
        stored.train.epochs = max(cfg.train.epochs, stored.train.epochs)
        stored.output_dir, stored.name = cfg.output_dir, cfg.name
        stored.train.stop_after_epochs = cfg.train.stop_after_epochs
        cfg = stored
    else:
        existing = run_dir_of(cfg) / "checkpoints" / "last.pt"
        if existing.is_file() and not overwrite:
            raise FileExistsError(
                f"{run_dir_of(cfg)} already holds a run ({existing}); continue it with --resume, "
                f"start over with --overwrite, or pick another --name"
            )
        if overwrite and int(os.environ.get("RANK", "0")) == 0:
            (run_dir_of(cfg) / "metrics.jsonl").unlink(missing_ok=True)

    probe_device = (
        "cuda"
        if cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    dist = init_distributed(probe_device)
    try:
        result = _fit(cfg, dist, resume_payload, progress, on_event, datasets)
    except BaseException:
        if dist.enabled:
            cleanup_distributed(synchronize=False)
        raise
    if dist.enabled:
        cleanup_distributed()
    return result


@dataclass
class _Run:
    """Everything :func:`_fit` builds before the first epoch (see :func:`_setup`)."""

    cfg: ExperimentConfig
    dist: DistInfo
    device: torch.device
    run_dir: Path
    contract: DataContract
    num_classes: int
    model_name: str
    model: nn.Module
    model_config: dict
    lr: float
    optimizer: torch.optim.Optimizer
    train_loader: Any
    test_loader: Any
    train_sampler: Any
    steps_per_epoch: int
    scheduler: WarmupCosine
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    ema: ModelEma | None
    mixer: FrameMixer


@dataclass
class _Position:
    """Where a run stands: the epoch under way, optimizer steps done, best score, last metrics."""

    epoch: int = 0
    step: int = 0
    best_acc1: float = float("-inf")
    last_metrics: dict[str, Any] = field(default_factory=dict)


def _fit(
    cfg: ExperimentConfig,
    dist: DistInfo,
    resume_payload: dict | None,
    progress: Progress | None,
    on_event: Callable[[dict[str, Any]], None] | None,
    datasets: tuple[Any, Any, DataContract] | None,
) -> FitResult:
    """One process's run: :func:`_setup`, :func:`_resume`, then :func:`_train_epochs` between a
    ``start`` line and an ``end`` (or ``failed``) line of ``metrics.jsonl``."""
    run = _setup(cfg, dist, resume_payload, datasets)
    pos = _resume(run, resume_payload) if resume_payload is not None else _Position()
    start_epoch = pos.epoch
    train_model = _train_module(run)

    log = MetricsLog(run.run_dir, enabled=dist.is_main)

    def emit(event: str, **fields: Any) -> None:
        record = log.write(event, **fields)
        if dist.is_main and on_event is not None:
            on_event(record)

    if dist.is_main:
        save_config(cfg, run.run_dir / "config.yaml")
    emit(
        "start",
        model=cfg.model.name,
        total_epochs=cfg.train.epochs,
        steps_per_epoch=run.steps_per_epoch,
        world_size=dist.world_size,
        resumed=resume_payload is not None,
        start_epoch=start_epoch,
        lr=run.lr,
        device=str(run.device),
    )
    stop = cfg.train.epochs
    if cfg.train.stop_after_epochs is not None:
        stop = min(stop, cfg.train.stop_after_epochs)
    failed = True
    try:
        _train_epochs(run, train_model, pos, stop, emit, progress)
        emit(
            "end",
            best_acc1=pos.best_acc1,
            status="finished" if stop == cfg.train.epochs else "stopped",
            epoch=stop,
            step=pos.step,
        )
        failed = False
    except KeyboardInterrupt:
        emit("failed", reason="interrupted (resume with --resume)", epoch=pos.epoch, step=pos.step)
        failed = False
        raise
    finally:
        if failed:  # any error: the run's last line says why, so nothing looks like a live run
            reason = _reason(sys.exc_info()[1])
            emit("failed", reason=reason, epoch=pos.epoch, step=pos.step)
        log.close()
    return FitResult(run.run_dir, pos.best_acc1, pos.last_metrics, max(stop, start_epoch), pos.step)


def _setup(
    cfg: ExperimentConfig,
    dist: DistInfo,
    resume_payload: dict | None,
    datasets: tuple[Any, Any, DataContract] | None,
) -> _Run:
    """Device, determinism and seeds, data, model, optimizer, loaders, schedule, AMP, EMA, mixing.

    The order is part of the behaviour: each step draws from the seeded RNGs in turn.

    Raises:
        ConfigError: data that cannot train, or pretrained weights that do not fit.
        ValueError: fewer training samples than one batch over all processes.
    """
    device = resolve_device(cfg.device, dist.local_rank)
    if cfg.train.deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
    seed_everything(cfg.seed)

    if datasets is None:
        datasets = build_datasets(cfg.data, seed=cfg.seed)
    train_ds, test_ds, contract = datasets
    num_classes = len(contract.class_names)
    if cfg.model.pretrained is not None and resume_payload is None:
        _check_pretrained_representation(cfg.model.pretrained, contract)
    check_splits(train_ds, test_ds, contract, cfg)
    # a resumed run takes its weights from the checkpoint, not from model.pretrained
    model_name, model, model_config = build_experiment_model(
        cfg, num_classes, contract.in_chans, load_pretrained=resume_payload is None
    )
    model.to(device)
    # per-rank augmentation streams; DDP syncs the weights
    seed_everything(cfg.seed + dist.rank, train_ds)

    world = dist.world_size
    total_batch = cfg.data.batch_size * world
    lr = cfg.optim.lr if cfg.optim.lr is not None else cfg.optim.blr * total_batch / 256
    optimizer = build_optimizer(
        model, cfg.optim.name, lr, cfg.optim.weight_decay, cfg.optim.betas, cfg.optim.eps
    )
    train_loader, test_loader, train_sampler = build_loaders(
        train_ds, test_ds, cfg.data, seed=cfg.seed, rank=dist.rank, world_size=world
    )
    steps_per_epoch = len(train_loader)
    if cfg.train.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training set has {len(train_ds)} samples, fewer than one batch of "
            f"{cfg.data.batch_size} x {world} processes; lower data.batch_size"
        )
    scheduler = WarmupCosine(
        optimizer,
        total_steps=cfg.train.epochs * steps_per_epoch,
        warmup_steps=round(cfg.train.warmup_epochs * steps_per_epoch),
        min_lr=cfg.train.min_lr,
        warmup_lr=min(cfg.train.warmup_lr, lr),
    )
    amp_dtype = resolve_amp(cfg.train.amp, device)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    ema = ModelEma(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    mixer = FrameMixer(
        num_classes,
        cfg.train.mixup_alpha,
        cfg.train.cutmix_alpha,
        cfg.train.mix_prob,
        cfg.train.label_smoothing,
    )
    return _Run(
        cfg=cfg,
        dist=dist,
        device=device,
        run_dir=run_dir_of(cfg),
        contract=contract,
        num_classes=num_classes,
        model_name=model_name,
        model=model,
        model_config=model_config,
        lr=lr,
        optimizer=optimizer,
        train_loader=train_loader,
        test_loader=test_loader,
        train_sampler=train_sampler,
        steps_per_epoch=steps_per_epoch,
        scheduler=scheduler,
        amp_dtype=amp_dtype,
        scaler=scaler,
        ema=ema,
        mixer=mixer,
    )


def _resume(run: _Run, payload: dict) -> _Position:
    """Load a checkpoint's weights, optimizer, schedule, scaler, EMA and RNG states into ``run``.

    Returns:
        The position to continue from: the next epoch, the steps done and the best score so far.
    """
    cfg = run.cfg
    run.model.load_state_dict(payload["model"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.scheduler.load_state_dict(payload["scheduler"])
    # More epochs than the original run: stretch the cosine to the new end.
    run.scheduler.total_steps = cfg.train.epochs * run.steps_per_epoch
    if run.scaler is not None and payload.get("scaler"):
        run.scaler.load_state_dict(payload["scaler"])
    if run.ema is not None and payload.get("model_ema") is not None:
        run.ema.load_state_dict(payload["model_ema"])
    pos = _Position(
        epoch=int(payload["epoch"]),
        step=int(payload["step"]),
        best_acc1=float(payload.get("metrics", {}).get("best_acc1", float("-inf"))),
    )
    if payload.get("rng") is not None and run.dist.world_size == 1:
        _restore_rng(payload["rng"], run.train_loader.dataset)
    else:
        seed_everything(cfg.seed + run.dist.rank + 1000 * pos.epoch, run.train_loader.dataset)
    logger.info("resumed at epoch %d, step %d", pos.epoch, pos.step)
    return pos


def _train_module(run: _Run) -> nn.Module:
    """The module the optimizer steps through: the model, wrapped in DDP and/or compiled."""
    train_model: nn.Module = run.model
    if run.dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        device = run.device
        train_model = DistributedDataParallel(
            run.model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if run.cfg.train.compile:
        train_model = torch.compile(train_model)
    return train_model


def _train_epochs(
    run: _Run,
    train_model: nn.Module,
    pos: _Position,
    stop: int,
    emit: Callable[..., None],
    progress: Progress | None,
) -> None:
    """Train from ``pos.epoch`` up to epoch ``stop``: evaluate when due, save after every epoch.

    ``pos`` advances as the epochs go, so a failure knows where the run stopped.
    """
    cfg, dist = run.cfg, run.dist
    world = dist.world_size
    shown = progress if dist.is_main else None

    def on_step(rec: dict[str, Any]) -> None:
        if rec["step"] % cfg.train.log_every == 0 or rec["step"] % run.steps_per_epoch == 0:
            emit(
                "step",
                epoch=rec["epoch"],
                step=rec["step"],
                loss=rec["loss"],
                lr=rec["lr"],
                samples_per_s=rec["samples_per_s"] * world,
            )

    for epoch in range(pos.epoch, stop):
        pos.epoch = epoch
        run.train_sampler.set_epoch(epoch)
        train_stats = train_one_epoch(
            train_model,
            run.train_loader,
            run.optimizer,
            device=run.device,
            epoch=epoch,
            num_classes=run.num_classes,
            scheduler=run.scheduler,
            scaler=run.scaler,
            amp_dtype=run.amp_dtype,
            ema=run.ema,
            mixer=run.mixer if run.mixer.enabled else None,
            label_smoothing=cfg.train.label_smoothing,
            clip_grad=cfg.optim.clip_grad,
            max_steps=cfg.train.max_steps_per_epoch,
            global_step=pos.step,
            on_step=on_step,
            progress=shown,
            tet=cfg.train.tet,
        )
        pos.step = train_stats["step"]
        metrics: dict[str, Any] = {"train_loss": train_stats["loss"]}
        is_best = False
        if epoch + 1 == stop or (epoch + 1) % cfg.train.eval_every == 0:
            is_best = _evaluate_epoch(run, pos, metrics, shown)
            emit(
                "eval",
                epoch=epoch,
                step=pos.step,
                is_best=is_best,
                **{k: v for k, v in metrics.items() if k != "best_weights"},
            )
        else:
            metrics["best_acc1"] = pos.best_acc1
        pos.last_metrics = metrics
        if dist.is_main:
            _save(run, epoch + 1, pos.step, metrics, is_best)


def _evaluate_epoch(
    run: _Run, pos: _Position, metrics: dict[str, Any], progress: Progress | None
) -> bool:
    """Evaluate the model (and its EMA) into ``metrics``; the better one counts for the best score.

    Returns:
        Whether this evaluation is the best so far (``pos.best_acc1`` then holds it).
    """
    ev = evaluate(
        run.model,
        run.test_loader,
        device=run.device,
        num_classes=run.num_classes,
        amp_dtype=run.amp_dtype,
        progress=progress,
    )
    metrics.update(loss=ev["loss"], acc1=ev["acc1"], acc5=ev["acc5"])
    score, weights = ev["acc1"], "model"
    if run.ema is not None:
        ev_ema = evaluate(
            run.ema.module,
            run.test_loader,
            device=run.device,
            num_classes=run.num_classes,
            amp_dtype=run.amp_dtype,
            progress=progress,
            description="eval ema",
        )
        metrics.update(ema_acc1=ev_ema["acc1"], ema_acc5=ev_ema["acc5"])
        if ev_ema["acc1"] > score:
            score, weights = ev_ema["acc1"], "ema"
    is_best = score > pos.best_acc1
    if is_best:
        pos.best_acc1 = score
        metrics["best_weights"] = weights
    metrics["best_acc1"] = pos.best_acc1
    return is_best


def _save(run: _Run, epoch: int, step: int, metrics: dict[str, Any], is_best: bool) -> None:
    """``checkpoints/last.pt`` after ``epoch`` completed epochs, and ``best.pt`` when it is the best."""
    payload = _payload(
        run.train_loader.dataset,
        run.cfg,
        run.model_name,
        run.model,
        run.model_config,
        run.contract,
        run.optimizer,
        run.scheduler,
        run.scaler,
        run.ema,
        epoch,
        step,
        metrics,
    )
    ckpt_dir = run.run_dir / "checkpoints"
    save_checkpoint(ckpt_dir / "last.pt", payload)
    if is_best:
        best = dict(payload)
        if metrics.get("best_weights") == "model":
            best["model_ema"] = None  # load_model_from_checkpoint then uses the model
        save_checkpoint(ckpt_dir / "best.pt", best)


def _reason(exc: BaseException | None) -> str:
    """One line on why a run stopped."""
    if exc is None:
        return "unknown error"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_splits(
    train_ds: Any, test_ds: Any, contract: DataContract, cfg: ExperimentConfig
) -> None:
    """Refuse data that cannot train before the first epoch: an empty split, or a class without
    training samples.

    Raises:
        ConfigError: naming what is missing and the config keys that fix it.
    """
    where = f"data.root={cfg.data.root}" if cfg.data.root else f"data.dataset={cfg.data.dataset}"
    if len(train_ds) == 0:
        raise ConfigError(
            f"the training split of {where} is empty; add recordings (root/<class>/<files>)"
        )
    if len(test_ds) == 0:
        raise ConfigError(
            f"the evaluation split of {where} is empty ({len(train_ds)} training samples); hold "
            f"out more with --set data.val_fraction=0.5, add recordings, or give a "
            f"root/test/<class>/ folder"
        )
    targets = getattr(train_ds, "targets", None)
    if targets is not None and len(contract.class_names):
        present = {int(t) for t in targets}
        empty = [n for i, n in enumerate(contract.class_names) if i not in present]
        if empty:
            advice = {
                "folder": "add recordings, or lower --set data.val_fraction (fewer held out)",
                "synthetic": "raise --set data.train_samples",
            }.get(cfg.data.dataset, "check data.root")
            raise ConfigError(
                f"{len(empty)} class(es) of {where} have no training samples "
                f"({', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''}); {advice}"
            )


def _payload(
    train_data: Any,
    cfg: ExperimentConfig,
    model_name: str,
    model: nn.Module,
    model_config: dict,
    contract,
    optimizer,
    scheduler,
    scaler,
    ema: ModelEma | None,
    epoch: int,
    step: int,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    return {
        "model_name": model_name,
        "model_config": model_config,
        "model": unwrap(model).state_dict(),
        "model_ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "step": step,
        "rng": _capture_rng(train_data),
        "data_contract": contract.to_dict(),
        "config": cfg.to_dict(),
        "metrics": dict(metrics),
    }
