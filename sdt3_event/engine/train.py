"""One training epoch and one evaluation pass: take objects, return metric dicts.

No argv, no paths, no progress bars here: the caller passes ``progress`` (e.g. a tqdm wrapper) and
``on_step`` (e.g. a metrics logger) when it wants them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdt3_event.engine.distributed import all_reduce_sum
from sdt3_event.engine.ema import ModelEma
from sdt3_event.engine.mixing import FrameMixer, soft_cross_entropy
from sdt3_event.layers.snn import reset_net

logger = logging.getLogger(__name__)

Progress = Callable[[Iterable, int, str], Iterable]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message says where and what to try."""


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``; ``None`` means full precision.

    ``auto``: bf16 on GPUs that support it, else fp16; off on CPU. ``bf16``/``fp16`` on CPU are
    turned off with a warning (CPU autocast of these models is slower, not faster).

    Raises:
        ValueError: unknown ``amp``.
    """
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {amp!r}")
    if amp == "off":
        return None
    if device.type != "cuda":
        if amp != "auto":
            logger.warning("amp=%s requested on %s: running in float32 instead", amp, device)
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` or a no-op context."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP / ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    parameters: Iterable[torch.Tensor],
    *,
    scaler: torch.amp.GradScaler | None = None,
    clip: float | None = None,
) -> torch.Tensor | None:
    """One update from ``loss``: zero the gradients, backward, clip their norm to ``clip``, step.

    With a ``scaler`` (fp16 autocast) the loss is scaled for the backward pass and the gradients
    are unscaled before clipping, so ``clip`` is in the model's units either way.

    Returns:
        the total gradient norm before clipping (a 0-d tensor, not synced), or ``None`` when
        ``clip`` is ``None``.
    """
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    norm = None
    if clip is not None:
        norm = torch.nn.utils.clip_grad_norm_(parameters, clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return norm


class PerStepLogits:
    """The per-time-bin logits ``(T, B, K)`` of a model's ``head``, caught by a forward hook
    while the model runs as usual (so DDP and ``torch.compile`` see their normal forward).

    Every SDT model (V1, V2, V3) applies ``head`` to each time bin and then takes the mean over
    T. Use it as a context manager: the hook is removed on exit.

    Raises:
        ValueError: the model has no ``head`` module.
    """

    def __init__(self, model: nn.Module) -> None:
        head = getattr(unwrap(model), "head", None)
        if not isinstance(head, nn.Module):
            raise ValueError(
                f"train.tet needs a model with a `head` module applied per time bin; "
                f"{type(unwrap(model)).__name__} has none (set train.tet=false)"
            )
        self._out: torch.Tensor | None = None
        self._handle = head.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self._out = output

    def logits(self, batch: int) -> torch.Tensor:
        """The last forward's head output as float ``(T, B, K)``.

        Raises:
            ValueError: the head did not run, or its output is not ``(T, batch, K)``.
        """
        out, self._out = self._out, None
        if out is None or out.dim() != 3 or out.shape[1] != batch:
            shape = None if out is None else tuple(out.shape)
            raise ValueError(
                f"train.tet needs the head's per-time-bin logits (T, {batch}, K), got {shape}; "
                f"this model averages over time before its head (set train.tet=false)"
            )
        return out.float()

    def __enter__(self) -> PerStepLogits:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


def tet_loss(
    per_step: torch.Tensor,
    target: torch.Tensor,
    soft: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """TET loss (Deng et al., "Temporal Efficient Training of Spiking Neural Network via Gradient
    Re-weighting", ICLR 2022) without its MSE term: the cross entropy of every time bin's logits,
    averaged over bins and samples.

    Shape:
        per_step ``(T, B, K)``; target ``(B,)``; soft ``(B, K)`` (mixup targets) or None.
    """
    n_bins = per_step.shape[0]
    logits = per_step.flatten(0, 1)  # bin-major: row t*B + b
    if soft is not None:
        return soft_cross_entropy(logits, soft.repeat(n_bins, 1))
    return F.cross_entropy(logits, target.repeat(n_bins), label_smoothing=label_smoothing)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    epoch: int,
    num_classes: int,
    scheduler: Any | None = None,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    ema: ModelEma | None = None,
    mixer: FrameMixer | None = None,
    label_smoothing: float = 0.0,
    clip_grad: float | None = None,
    max_steps: int | None = None,
    global_step: int = 0,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    progress: Progress | None = None,
    tet: bool = False,
) -> dict[str, Any]:
    """Train ``model`` for one pass over ``loader``.

    Args:
        model: the network (possibly DDP-wrapped); set to train mode here.
        loader: yields ``(frames, target)`` batches.
        optimizer: the optimizer.
        device: where the batches go.
        epoch: the epoch index (for messages and ``on_step``).
        num_classes: ``K``.
        scheduler: stepped after every optimizer step (per-iteration schedule).
        scaler: fp16 grad scaler; ``None`` for fp32/bf16.
        amp_dtype: autocast dtype or ``None``.
        ema: updated after every optimizer step.
        mixer: mixup/cutmix; when enabled the loss uses its soft targets.
        label_smoothing: for the plain cross entropy.
        clip_grad: max gradient norm; ``None`` disables clipping.
        max_steps: stop after this many steps.
        global_step: optimizer steps done before this epoch.
        on_step: called after every step with ``{epoch, step, loss, lr, samples_per_s, grad_norm}``.
        progress: wraps the loader (``progress(loader, total, description)``).
        tet: TET loss (Deng et al., ICLR 2022, without its MSE term): the mean over time bins
            of the loss of each bin's logits, the output of the model's ``head`` before its
            mean over T, instead of the loss of the mean. Inference is unchanged.

    Returns:
        ``{"loss": mean loss, "steps": n, "samples": n, "samples_per_s", "step": global step,
        "time_s"}``; the sample counts are this process's.

    Shape:
        frames ``(B, T, P, H, W)`` or ``(B, C, H, W)``; target ``(B,)``.

    Raises:
        NonFiniteLossError: the loss is NaN or infinite.
    """
    model.train()
    total = len(loader) if hasattr(loader, "__len__") else None
    if max_steps is not None and total is not None:
        total = min(total, max_steps)
    it = progress(loader, total, f"train {epoch}") if progress is not None else loader
    loss_sum, n_steps, n_samples = 0.0, 0, 0
    t_start = time.perf_counter()
    with PerStepLogits(model) if tet else contextlib.nullcontext() as per_step:
        for frames, target in it:
            if max_steps is not None and n_steps >= max_steps:
                break
            t0 = time.perf_counter()
            frames = frames.to(device, non_blocking=True).float()
            target = target.to(device, non_blocking=True).long()
            soft = None
            if mixer is not None and mixer.enabled:
                frames, soft = mixer(frames, target)
            with autocast(device, amp_dtype):
                logits = model(frames)
            if per_step is not None:  # the head's bins, not the mean over them
                loss = tet_loss(per_step.logits(target.shape[0]), target, soft, label_smoothing)
            elif soft is not None:
                loss = soft_cross_entropy(logits.float(), soft)
            else:
                loss = F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                lr = optimizer.param_groups[0]["lr"]
                raise NonFiniteLossError(
                    f"loss is {loss_value} at epoch {epoch}, step {global_step} (lr {lr:.3g}). Lower "
                    f"the learning rate (--set optim.lr=...), keep gradient clipping on "
                    f"(optim.clip_grad), try train.amp=bf16 or off instead of fp16, and check the "
                    f"input frames for NaN/inf."
                )
            norm = optimizer_step(
                loss, optimizer, model.parameters(), scaler=scaler, clip=clip_grad
            )
            grad_norm = None if norm is None else float(norm)
            reset_net(unwrap(model))
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update(unwrap(model))
            global_step += 1
            n_steps += 1
            n_samples += target.shape[0]
            loss_sum += loss_value
            if on_step is not None:
                dt = max(time.perf_counter() - t0, 1e-9)
                on_step(
                    {
                        "epoch": epoch,
                        "step": global_step,
                        "loss": loss_value,
                        "lr": lr,
                        "samples_per_s": target.shape[0] / dt,
                        "grad_norm": grad_norm,
                    }
                )
            if progress is not None and hasattr(it, "set_postfix"):
                it.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", refresh=False)
    elapsed = time.perf_counter() - t_start
    return {
        "loss": loss_sum / max(n_steps, 1),
        "steps": n_steps,
        "samples": n_samples,
        "samples_per_s": n_samples / max(elapsed, 1e-9),
        "step": global_step,
        "time_s": elapsed,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    device: torch.device,
    num_classes: int,
    amp_dtype: torch.dtype | None = None,
    progress: Progress | None = None,
    description: str = "eval",
) -> dict[str, Any]:
    """Top-1/top-5 accuracy, mean loss and the confusion matrix over ``loader``.

    Under DDP each process evaluates its shard (:class:`~sdt3_event.events.loader.ShardSampler`)
    and the counts are all-reduced, so every process returns the metrics of the whole set.

    Returns:
        ``{"loss", "acc1", "acc5" (percent), "n": samples, "confusion": (K, K) int64 tensor
        (rows: true class, columns: predicted), "per_class_acc": list of K percentages
        (NaN for classes absent from the set)}``.
    """
    model.eval()
    k5 = min(5, num_classes)
    total = len(loader) if hasattr(loader, "__len__") else None
    it = progress(loader, total, description) if progress is not None else loader
    loss_sum = correct1 = correct5 = n = 0.0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    for frames, target in it:
        frames = frames.to(device, non_blocking=True).float()
        target = target.to(device, non_blocking=True).long()
        with autocast(device, amp_dtype):
            logits = model(frames)
        logits = logits.float()
        reset_net(unwrap(model))
        loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
        top = logits.topk(k5, dim=1).indices  # (B, k5)
        hit = top == target[:, None]
        correct1 += float(hit[:, 0].sum())
        correct5 += float(hit.any(dim=1).sum())
        n += target.shape[0]
        idx = (target * num_classes + top[:, 0]).cpu()
        confusion += torch.bincount(idx, minlength=num_classes * num_classes).view(
            num_classes, num_classes
        )  # (K, K)
    loss_sum, correct1, correct5, n = all_reduce_sum([loss_sum, correct1, correct5, n], device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        c = confusion.to(device)
        torch.distributed.all_reduce(c)
        confusion = c.cpu()
    confusion = confusion.round().to(torch.int64)
    if n == 0:
        raise ValueError("the evaluation set is empty; check the data path and split")
    row = confusion.sum(1)
    per_class = [
        float(confusion[i, i] / row[i] * 100.0) if row[i] > 0 else float("nan")
        for i in range(num_classes)
    ]
    return {
        "loss": loss_sum / n,
        "acc1": correct1 / n * 100.0,
        "acc5": correct5 / n * 100.0,
        "n": int(n),
        "confusion": confusion,
        "per_class_acc": per_class,
    }
