"""Plaintext training of a model on a dataset, reproducible from a seed.

AdamW with linear warm-up and cosine decay, label smoothing, and random translation by
up to ``shift`` pixels (zero padding) and, with ``flip``, random horizontal mirroring as
augmentation. Same seed, same machine,
same thread count: same weights, also when a stopped run is resumed (``resume``).
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
from .distill.distillers import (AffinityDistiller, Batch, Distiller, LogitDistiller, MPCFormerDistiller,
                                 SparseDistiller, USKDDistiller)
from .distill.losses import METHODS
from .distill.sparse import LogitCache
from .models import create_model
from .mpc_modules import MPCNorm
from .errors import UsageError
from .query_grouping import GQA_MODES
from .task import REGRESSION_LOSSES, RegressionTarget, regression_loss, score_text
from .train_state import TrainingState

TEACHER_METHODS = ("kd", "nkd", "mpcformer", "affinity")
CONTINUAL_METHODS = ("gated", "finetune", "joint")

__all__ = ["CONTINUAL_METHODS", "TEACHER_METHODS", "TrainConfig", "evaluate", "fit", "model_input",
           "recalibrate_batch_statistics", "save_evaluated", "train"]


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train` (defaults train the shipped digits model).

    ``init`` starts from a checkpoint (its data and normalisation are kept); ``policy``
    rewrites the model first (fine-tuning the MPC-friendly model with its reference kernels).
    ``distill`` names a method of :mod:`secvit.distill.distillers`: ``kd`` (at
    ``temperature``), ``nkd``, ``mpcformer`` (its first stage lasting ``stage1_share``
    of training) and ``affinity`` (TinyCLIP's token affinities) distil from the
    ``teacher`` checkpoint; ``uskd`` needs no teacher; ``sparse`` replays the
    ``cached_logits`` file of ``secvit cache-logits``. ``gqa`` groups the (rewritten)
    model's K/V heads into that many per layer before fine-tuning, query heads allocated
    by ``gqa_mode`` (:mod:`secvit.gqa`). ``pwca`` adds DCAL's pair-wise cross-attention
    pass to every step (:mod:`secvit.pwca`); ``glca`` adds its global-local cross-attention
    branch, kept at inference (:mod:`secvit.glca`). On regression data (``holo-sim``) the
    model has one output and trains on ``regression_loss`` (l1 or mse) of the standardised
    target (:mod:`secvit.task`). ``clip_grad`` clips the gradient's global
    norm before each step (None: no clipping). ``tasks`` trains class-incrementally in that
    many tasks, ``epochs`` each, by the ``continual`` method: such a configuration is run by
    :func:`secvit.continual.incremental.train_continual`, not :func:`train`.
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
    flip: bool = False
    seed: int = 0
    threads: int = 2
    init: str | None = None
    policy: str | None = None
    teacher: str | None = None
    distill: str | None = None
    temperature: float = 4.0
    stage1_share: float = 0.5
    cached_logits: str | None = None
    gqa: int | None = None
    gqa_mode: str = "mean"
    pwca: bool = False
    glca: bool = False
    clip_grad: float | None = None
    regression_loss: str = "l1"
    tasks: int | None = None
    continual: str = "gated"

    def __post_init__(self) -> None:
        if self.distill is not None and self.distill not in METHODS:
            raise UsageError(f"unknown distillation {self.distill!r}; known: {', '.join(METHODS)}")
        needs_teacher = self.distill in TEACHER_METHODS
        if needs_teacher != (self.teacher is not None):
            raise UsageError(f"--teacher goes with --distill {'|'.join(TEACHER_METHODS)} (and only with them)")
        if (self.distill == "sparse") != (self.cached_logits is not None):
            raise UsageError("--distill sparse and --cached-logits go together")
        if self.gqa_mode not in GQA_MODES:
            raise UsageError(f"unknown --gqa-mode {self.gqa_mode!r}; known: {', '.join(GQA_MODES)}")
        if self.gqa_mode != "mean" and self.gqa is None:
            raise UsageError(f"--gqa-mode {self.gqa_mode} goes with --gqa G")
        if self.regression_loss not in REGRESSION_LOSSES:
            raise UsageError(f"unknown --regression-loss {self.regression_loss!r}; known: "
                             f"{', '.join(REGRESSION_LOSSES)}")
        if self.continual not in CONTINUAL_METHODS:
            raise UsageError(f"unknown --continual {self.continual!r}; known: {', '.join(CONTINUAL_METHODS)}")
        if self.tasks is None and self.continual != "gated":
            raise UsageError(f"--continual {self.continual} goes with --tasks T")
        others = [name for name, on in (("--init", self.init), ("--policy", self.policy), ("--distill", self.distill),
                                        ("--gqa", self.gqa), ("--pwca", self.pwca), ("--glca", self.glca)) if on]
        if self.tasks is not None and others:
            raise UsageError(f"--tasks trains a class-attention ViT-Lite from scratch; not with {', '.join(others)}")
        if self.distill == "sparse" and self.flip:
            raise UsageError("--flip does not go with --distill sparse: the logit cache replays translations only")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256,
             target: RegressionTarget | None = None) -> float:
    """Top-1 accuracy of ``model`` on normalised images ``x``; with a regression
    ``target``, the mean absolute error in its unit."""
    model.eval()
    if target is not None:
        errors = [(target.decode(model(x[i : i + batch_size])) - y[i : i + batch_size]).abs().sum()
                  for i in range(0, len(x), batch_size)]
        return float(sum(errors)) / len(x)
    correct = sum(
        int((model(x[i : i + batch_size]).argmax(-1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)


def _score(value: float, target: RegressionTarget | None) -> str:
    return score_text(value, target.unit if target is not None else None)


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _distiller(cfg: TrainConfig, model: nn.Module, data: Dataset) -> Distiller:
    """The batch loss of ``cfg.distill`` (the cross-entropy alone when None).

    Raises:
        ValueError: a teacher trained on other data, or a cache made for other data.
    """
    if cfg.distill == "uskd":
        return USKDDistiller(model, data.num_classes)
    if cfg.distill == "sparse":
        cache = LogitCache.load(cfg.cached_logits)
        return SparseDistiller(cache, cfg.data, data.num_classes, len(data.x_train), cfg.shift)
    if cfg.teacher is None:
        return Distiller()
    teacher, meta = load_model(cfg.teacher)
    if meta.num_classes != data.num_classes or meta.data != cfg.data:
        raise UsageError(f"teacher {cfg.teacher} was trained on {meta.data} ({meta.num_classes} classes); "
                         f"the student trains on {cfg.data} ({data.num_classes} classes)")
    if cfg.distill == "mpcformer":
        return MPCFormerDistiller(teacher, meta.normalization, model, cfg.stage1_share)
    if cfg.distill == "affinity":
        return AffinityDistiller(teacher, meta.normalization, model)
    return LogitDistiller(cfg.distill, teacher, meta.normalization, cfg.temperature)


def _loss(model: nn.Module, batch: Batch, norm: Normalization, cfg: TrainConfig, distiller: Distiller,
          target: RegressionTarget | None = None) -> torch.Tensor:
    x = norm.apply(batch.raw)
    logits = model(x)
    if target is not None:
        loss = regression_loss(cfg.regression_loss, logits, batch.y, target)
    else:
        loss = distiller.loss(logits, F.cross_entropy(logits, batch.y, label_smoothing=cfg.label_smoothing), batch)
    if cfg.pwca and len(x) > 1:  # each image's partner: another image of the batch
        from .pwca import pwca_logits

        partner = (torch.arange(len(x)) + int(torch.randint(1, len(x), ()))) % len(x)
        loss = loss + F.cross_entropy(pwca_logits(model, x, partner), batch.y, label_smoothing=cfg.label_smoothing)
    terms = [m.regularization() for m in model.modules() if hasattr(m, "regularization")]  # e.g. the search's cost
    return loss + sum(terms) if terms else loss


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Matrices decay, vectors and tokens do not; a parameter with an ``lr_scale``
    attribute (e.g. the search's alphas) trains at that multiple of the learning rate."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        decays = p.ndim >= 2 and "pos_embed" not in name and "cls_token" not in name
        groups.setdefault((weight_decay if decays else 0.0, getattr(p, "lr_scale", 1.0)), []).append(p)
    return [{"params": ps, "weight_decay": wd, "lr_scale": scale} for (wd, scale), ps in groups.items()]


def fit(model: nn.Module, data: Dataset, norm: Normalization, cfg: TrainConfig, state: TrainingState | None = None,
        resume: bool = False, target: RegressionTarget | None = None) -> None:
    """Train ``model`` in place by ``cfg`` (optimiser, schedule, augmentation, loss); a
    module's ``regularization()``, where it has one, is added to the loss, and its
    ``schedule(progress)`` is called before every step with the share of training done.
    ``state`` records each completed epoch; ``resume`` continues from the last one.
    ``target``: the regression target of regression data (None: classes)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    distiller = _distiller(cfg, model, data)
    extra = [{"params": distiller.parameters(), "weight_decay": 0.0, "lr_scale": 1.0}] if distiller.parameters() else []
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay) + extra, lr=cfg.lr)
    done = state.restore(model, opt, distiller.parameters(), gen) if resume and state is not None else 0
    steps_per_epoch = math.ceil(len(data.x_train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    x_test = norm.apply(data.x_test)
    scheduled = [m for m in model.modules() if hasattr(m, "schedule")]
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        step = done * steps_per_epoch
        task = progress.add_task(f"train {cfg.model}", total=total, completed=step,
                                 status=f"resumed after epoch {done}" if done else "")
        for epoch in range(done, cfg.epochs):
            model.train()
            order = torch.randperm(len(data.x_train), generator=gen)
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                for m in scheduled:
                    m.schedule(step / total)
                raw = distiller.augment(data.x_train, idx, epoch, cfg.shift, cfg.flip, gen)
                loss = _loss(model, Batch(raw, data.y_train[idx], idx, epoch, step / total), norm, cfg, distiller,
                             target)
                for group in opt.param_groups:
                    group["lr"] = _lr_at(step, total, cfg.warmup_epochs * steps_per_epoch, cfg.lr) * group["lr_scale"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                opt.step()
                step += 1
                progress.update(task, advance=1, status=f"epoch {epoch + 1}/{cfg.epochs} loss {loss.item():.3f}")
            score = _score(evaluate(model, x_test, data.y_test, target=target), target)
            progress.update(task, status=f"epoch {epoch + 1}/{cfg.epochs} {score}")
            if not progress.console.is_terminal:
                progress.console.print(f"epoch {epoch + 1}/{cfg.epochs}: loss {loss.item():.4f}, {score}")
            if state is not None:
                state.save(epoch + 1, model, opt, distiller.parameters(), gen)
    if recalibrate_batch_statistics(model, norm.apply(data.x_train), cfg.batch_size):
        score = _score(evaluate(model, x_test, data.y_test, target=target), target)
        print(f"batch statistics recalibrated on the training images: {score}")


@torch.no_grad()
def recalibrate_batch_statistics(model: nn.Module, x: torch.Tensor, batch_size: int) -> bool:
    """Replace the running statistics of ``model``'s ``norm.batch`` norms by their average
    over ``x`` (batches in order, no augmentation, the weights fixed): each norm sees the
    batch statistics it trained with, and its estimate is the mean over every batch instead
    of an exponential average that lags the last steps' weights (PreciseBN: Wu and
    Johnson, "Rethinking 'Batch' in BatchNorm", 2021). Returns whether there were any."""
    norms = [m for m in model.modules() if isinstance(m, MPCNorm) and m.running_mean is not None]
    if not norms:
        return False
    model.train()
    for k, start in enumerate(range(0, len(x), batch_size)):
        for m in norms:
            m.momentum = 1.0 / (k + 1)  # the running statistics become the mean over batches 0..k
        model(x[start : start + batch_size])
    for m in norms:
        m.momentum = 0.1
    model.eval()
    return True


def model_input(model: str) -> tuple[int, int]:
    """The input size and channel count of the named model (built once to read them)."""
    probe = create_model(model)
    return probe.patch_embed.img_size[0], probe.patch_embed.proj.in_channels


def train(cfg: TrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Train ``cfg.model`` on ``cfg.data`` and write a checkpoint to ``out``; the state
    after each epoch is kept in ``out`` until the checkpoint is written, and ``resume``
    continues a stopped run from it (:mod:`secvit.train_state`).

    Returns:
        The written ``meta.json`` contents (:func:`save_evaluated`).
    """
    if cfg.tasks is not None:
        raise UsageError("a configuration with tasks trains by secvit.continual.incremental.train_continual")
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    if cfg.init is not None:
        model, base = load_model(cfg.init)
        cfg.model, cfg.data, model_args, norm = base.model, base.data, base.model_args, base.normalization
        img_size, in_chans = base.img_size, base.in_chans
        data = load_dataset(cfg.data, img_size, in_chans)
    else:
        img_size, in_chans = model_input(cfg.model)
        data = load_dataset(cfg.data, img_size, in_chans)
        torch.manual_seed(cfg.seed)
        model_args = {"num_classes": data.num_classes}
        model = create_model(cfg.model, **model_args)
        norm = Normalization.fit(data.x_train)
    if cfg.glca:  # before any rewrite, which then applies to the branch too
        from .glca import add_glca
        from .models.registry import builtin_entry

        if builtin_entry(cfg.model) is None:
            raise UsageError(f"--glca is for the built-in ViT-Lite models (their model_args rebuild the branch), "
                             f"not {cfg.model}")
        model, model_args = add_glca(model), {**model_args, "glca": True}
    extra: dict = {}
    if cfg.init is not None:  # the loaded model is already rewritten / grouped
        extra |= {k: base.extra[k] for k in ("policy",) if k in base.extra}
    if cfg.policy is not None:
        from .rewrite import load_policy, rewrite

        policy = load_policy(cfg.policy)
        model = rewrite(model, policy)[0]
        extra["policy"] = policy.to_dict()
    if cfg.gqa is not None:
        from .gqa import to_gqa

        model = to_gqa(model, cfg.gqa, cfg.gqa_mode)
    target = _regression_target(cfg, data, base.extra if cfg.init is not None else {})
    if target is not None:
        extra["target"] = target.to_dict()
    start = time.perf_counter()
    state = TrainingState(out, dict(cfg.__dict__), defaults=dict(TrainConfig().__dict__))
    fit(model, data, norm, cfg, state, resume, target)
    from .gqa import gqa_record

    if (grouping := gqa_record(model)) is not None:  # after training: dgqa's allocation is the trained one
        extra["gqa"] = grouping
    meta = Meta(model=cfg.model, model_args=model_args, img_size=img_size, in_chans=in_chans,
                num_classes=data.num_classes, normalization=norm, data=cfg.data,
                extra={**extra, "seed": cfg.seed, "train_config": cfg.__dict__,
                       "train_seconds": round(time.perf_counter() - start, 1)})
    written = save_evaluated(model, meta, data, out)
    state.clear()
    return written


def _regression_target(cfg: TrainConfig, data: Dataset, base: dict) -> RegressionTarget | None:
    """The target standardisation of regression data (the initial checkpoint's, when it has
    one); None for classes.

    Raises:
        UsageError: a classification-only option on regression data.
    """
    if not data.regression:
        return None
    if cfg.distill is not None or cfg.pwca:
        raise UsageError(f"{data.name} is regression data: --distill and --pwca are for classification")
    return RegressionTarget.from_dict(base["target"]) if "target" in base else RegressionTarget.fit(data.y_train,
                                                                                                    data.unit)


def save_evaluated(model: nn.Module, meta: Meta, data: Dataset, out: str | Path,
                   dtype: torch.dtype = torch.float16) -> dict:
    """Save a checkpoint with ``test_accuracy`` (regression: ``test_mae``, in the target's
    unit) measured on the saved parameters (``dtype``, float16 by default) and float32
    buffers, i.e. on exactly what is shipped; returns its ``meta.json`` contents."""
    save_checkpoint(model, meta, out, dtype)
    shipped, _ = load_model(out)
    x_test = meta.normalization.apply(data.x_test)
    if "target" in meta.extra:
        meta.extra["test_mae"] = evaluate(shipped, x_test, data.y_test,
                                          target=RegressionTarget.from_dict(meta.extra["target"]))
    else:
        meta.extra["test_accuracy"] = evaluate(shipped, x_test, data.y_test)
    meta.extra["test_images"] = len(data.x_test)
    save_checkpoint(model, meta, out, dtype)
    return meta.to_dict()
