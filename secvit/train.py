"""Plaintext training of a model on a dataset, reproducible from a seed.

AdamW with linear warm-up and cosine decay, label smoothing, and random translation by
up to ``shift`` pixels (zero padding) as the only augmentation. Same seed, same machine,
same thread count: same weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .checkpoint import Meta, load_model, save_checkpoint
from .data import Dataset, Normalization, load_dataset
from .distill.losses import METHODS, kd_loss, nkd_loss
from .models import create_model

__all__ = ["TrainConfig", "evaluate", "fit", "random_shift", "save_evaluated", "train"]


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train` (defaults train the shipped digits model).

    ``init`` starts from a checkpoint (its data and normalisation are kept); ``policy``
    rewrites the model first (fine-tuning the MPC-friendly model with its reference kernels).
    ``teacher`` and ``distill`` (``kd`` or ``nkd``, :mod:`secvit.distill.losses`) add a
    distillation term from the teacher checkpoint's logits to the cross-entropy; ``kd``
    runs at ``temperature``. ``gqa`` groups the (rewritten) model's K/V heads into that many
    per layer before fine-tuning (:mod:`secvit.compress.gqa`).
    """

    model: str = "vit_lite_7_4_32"
    data: str = "digits"
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    label_smoothing: float = 0.1
    shift: int = 3
    seed: int = 0
    threads: int = 2
    init: str | None = None
    policy: str | None = None
    teacher: str | None = None
    distill: str | None = None
    temperature: float = 4.0
    gqa: int | None = None

    def __post_init__(self) -> None:
        if (self.teacher is None) != (self.distill is None):
            raise ValueError("--teacher and --distill go together")
        if self.distill is not None and self.distill not in METHODS:
            raise ValueError(f"unknown distillation {self.distill!r}; known: {', '.join(METHODS)}")


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by a random integer offset in [-max_shift, max_shift] (zero fill)."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on normalised images ``x``."""
    model.eval()
    correct = sum(
        int((model(x[i : i + batch_size]).argmax(-1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _teacher(cfg: TrainConfig, data: Dataset) -> tuple[nn.Module, Normalization] | None:
    if cfg.teacher is None:
        return None
    teacher, meta = load_model(cfg.teacher)
    if meta.num_classes != data.num_classes or meta.data != cfg.data:
        raise ValueError(f"teacher {cfg.teacher} was trained on {meta.data} ({meta.num_classes} classes); "
                         f"the student trains on {cfg.data} ({data.num_classes} classes)")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval(), meta.normalization


def _loss(model: nn.Module, raw: torch.Tensor, y: torch.Tensor, norm: Normalization, cfg: TrainConfig,
          teacher: tuple[nn.Module, Normalization] | None) -> torch.Tensor:
    logits = model(norm.apply(raw))
    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
    terms = [m.regularization() for m in model.modules() if hasattr(m, "regularization")]  # e.g. the search's cost
    loss = loss + sum(terms) if terms else loss
    if teacher is None:
        return loss
    with torch.no_grad():
        target = teacher[0](teacher[1].apply(raw))
    if cfg.distill == "kd":
        return loss + kd_loss(logits, target, cfg.temperature)
    return loss + nkd_loss(logits, target, y)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Matrices decay, vectors and tokens do not; a parameter with an ``lr_scale``
    attribute (e.g. the search's alphas) trains at that multiple of the learning rate."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        decays = p.ndim >= 2 and "pos_embed" not in name and "cls_token" not in name
        groups.setdefault((weight_decay if decays else 0.0, getattr(p, "lr_scale", 1.0)), []).append(p)
    return [{"params": ps, "weight_decay": wd, "lr_scale": scale} for (wd, scale), ps in groups.items()]


def fit(model: nn.Module, data: Dataset, norm: Normalization, cfg: TrainConfig) -> None:
    """Train ``model`` in place by ``cfg`` (optimiser, schedule, augmentation, loss); a
    module's ``regularization()``, where it has one, is added to the loss, and its
    ``schedule(progress)`` is called before every step with the share of training done."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    steps_per_epoch = math.ceil(len(data.x_train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    x_test = norm.apply(data.x_test)
    teacher = _teacher(cfg, data)
    scheduled = [m for m in model.modules() if hasattr(m, "schedule")]
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        task = progress.add_task(f"train {cfg.model}", total=total, status="")
        step = 0
        for epoch in range(cfg.epochs):
            model.train()
            order = torch.randperm(len(data.x_train), generator=gen)
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                for m in scheduled:
                    m.schedule(step / total)
                raw = random_shift(data.x_train[idx], cfg.shift, gen)
                loss = _loss(model, raw, data.y_train[idx], norm, cfg, teacher)
                for group in opt.param_groups:
                    group["lr"] = _lr_at(step, total, cfg.warmup_epochs * steps_per_epoch, cfg.lr) * group["lr_scale"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                progress.update(task, advance=1, status=f"epoch {epoch + 1}/{cfg.epochs} loss {loss.item():.3f}")
            acc = evaluate(model, x_test, data.y_test)
            progress.update(task, status=f"epoch {epoch + 1}/{cfg.epochs} test acc {acc:.4f}")
            if not progress.console.is_terminal:
                progress.console.print(f"epoch {epoch + 1}/{cfg.epochs}: loss {loss.item():.4f}, test accuracy {acc:.4f}")


def train(cfg: TrainConfig, out: str | Path) -> dict:
    """Train ``cfg.model`` on ``cfg.data`` and write a checkpoint to ``out``.

    Returns:
        The written ``meta.json`` contents (:func:`save_evaluated`).
    """
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    if cfg.init is not None:
        model, base = load_model(cfg.init)
        cfg.model, cfg.data, model_args, norm = base.model, base.data, base.model_args, base.normalization
        img_size, in_chans = base.img_size, base.in_chans
        data = load_dataset(cfg.data, img_size, in_chans)
    else:
        probe = create_model(cfg.model)
        img_size, in_chans = probe.patch_embed.img_size[0], probe.patch_embed.proj.in_channels
        data = load_dataset(cfg.data, img_size, in_chans)
        torch.manual_seed(cfg.seed)
        model_args = {"num_classes": data.num_classes}
        model = create_model(cfg.model, **model_args)
        norm = Normalization.fit(data.x_train)
    extra: dict = {}
    if cfg.init is not None:  # the loaded model is already rewritten / grouped
        extra |= {k: base.extra[k] for k in ("policy", "gqa") if k in base.extra}
    if cfg.policy is not None:
        from .rewrite import load_policy, rewrite

        policy = load_policy(cfg.policy)
        model = rewrite(model, policy)[0]
        extra["policy"] = policy.to_dict()
    if cfg.gqa is not None:
        from .compress.gqa import to_gqa

        model = to_gqa(model, cfg.gqa)
        extra["gqa"] = cfg.gqa
    start = time.perf_counter()
    fit(model, data, norm, cfg)
    meta = Meta(model=cfg.model, model_args=model_args, img_size=img_size, in_chans=in_chans,
                num_classes=data.num_classes, normalization=norm, data=cfg.data,
                extra={**extra, "seed": cfg.seed, "train_config": cfg.__dict__,
                       "train_seconds": round(time.perf_counter() - start, 1)})
    return save_evaluated(model, meta, data, out)


def save_evaluated(model: nn.Module, meta: Meta, data: Dataset, out: str | Path) -> dict:
    """Save a checkpoint with ``test_accuracy`` measured on the saved (float16) weights,
    i.e. on exactly what is shipped; returns its ``meta.json`` contents."""
    save_checkpoint(model, meta, out)
    shipped, _ = load_model(out)
    meta.extra["test_accuracy"] = evaluate(shipped, meta.normalization.apply(data.x_test), data.y_test)
    meta.extra["test_images"] = len(data.x_test)
    save_checkpoint(model, meta, out)
    return meta.to_dict()
