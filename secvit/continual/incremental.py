"""Class-incremental training without exemplars (``secvit train --tasks T``) and its two
reference points.

The classes are split into T tasks of consecutive labels (Fashion-MNIST in 5: T-shirt and
trouser, pullover and dress, coat and sandal, shirt and sneaker, bag and ankle boot); task t
trains on its own classes' images only, and after each task the model is scored on the test
images of every class seen so far, with no task ID. Methods (``--continual``):

- ``gated``: gated class-attention (:mod:`.gates`) with a task-local head in training and
  feature distillation on the backbone from the second task (:mod:`.distillation`), then
  nearest-prototype classification, the earlier prototypes carried through the cascade of
  drift projectors (:mod:`.drift`);
- ``finetune``: the same architecture and one head over all classes, trained on each task
  in turn (the forgetting baseline);
- ``joint``: the same, trained at each step on every image of the classes seen so far
  (every exemplar kept: the upper bound).

All three write an ordinary checkpoint of a class-attention ViT-Lite (the gated one with
its gates folded and the prototype head), which every command takes; its ``meta.json``
holds the accuracy on the seen classes after each task (``continual``). The normalisation
is the first task's (no later image is seen before its task).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..checkpoint import Meta
from ..data import Dataset, Normalization, load_dataset
from ..errors import UsageError
from ..models import create_model
from ..models.registry import builtin_entry
from ..train import CONTINUAL_METHODS, TrainConfig, fit, model_input, save_evaluated
from .distillation import FeatureDistillation
from .drift import Prototypes, features, fit_projector
from .gates import TaskGating

__all__ = ["CONTINUAL_METHODS", "split_classes", "train_continual"]


def split_classes(num_classes: int, tasks: int) -> list[list[int]]:
    """``num_classes`` labels in ``tasks`` consecutive groups whose sizes differ by at most one.

    Raises:
        UsageError: fewer than 2 tasks, or more tasks than classes.
    """
    if not 2 <= tasks <= num_classes:
        raise UsageError(f"--tasks {tasks}: expected 2 to {num_classes} (the data's classes)")
    return [part.tolist() for part in torch.arange(num_classes).tensor_split(tasks)]


def _subset(data: Dataset, train_classes: list[int], test_classes: list[int], local: bool) -> Dataset:
    """``data`` restricted to ``train_classes`` (training) and ``test_classes`` (testing);
    ``local`` relabels them 0..k-1 in the order of ``train_classes`` (test = train then)."""
    def pick(x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        keep = torch.isin(y, torch.tensor(classes))
        labels = y[keep]
        if local:
            labels = torch.searchsorted(torch.tensor(classes), labels)
        return x[keep], labels

    x_train, y_train = pick(data.x_train, data.y_train, train_classes)
    x_test, y_test = pick(data.x_test, data.y_test, test_classes)
    return Dataset(data.name, x_train, y_train, x_test, y_test, len(train_classes) if local else data.num_classes)


def _scores(predict: Callable[[torch.Tensor], torch.Tensor], x_test: torch.Tensor, y_test: torch.Tensor,
            tasks: list[list[int]]) -> tuple[float, list[float]]:
    """Accuracy on the test images of every class in ``tasks``, and on each task's classes."""
    keep = torch.isin(y_test, torch.tensor([c for part in tasks for c in part]))
    right = predict(x_test[keep]) == y_test[keep]
    labels = y_test[keep]
    per_task = [float(right[torch.isin(labels, torch.tensor(part))].float().mean()) for part in tasks]
    return float(right.float().mean()), per_task


def _masked_argmax(model: nn.Module, seen: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The head's prediction among the ``seen`` classes."""
    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        logits = torch.cat([model(x[i : i + 256]) for i in range(0, len(x), 256)])
        return torch.tensor(seen)[logits[:, seen].argmax(1)]
    return predict


def train_continual(cfg: TrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Train ``cfg.model`` (a built-in ViT-Lite, its last block made class attention) on
    ``cfg.tasks`` class-incremental tasks of ``cfg.data`` by ``cfg.continual``, ``cfg.epochs``
    per task, and write its checkpoint to ``out``.

    Returns:
        The written ``meta.json`` contents, ``continual`` holding the per-task scores.

    Raises:
        UsageError: no ``cfg.tasks``, ``resume`` (not supported: a run restarts from its first
            task), a model other than a built-in ViT-Lite, regression data, or a bad split.
    """
    if cfg.tasks is None:
        raise UsageError("continual training needs --tasks T")
    if resume:
        raise UsageError("--resume is for one-task training; a --tasks run restarts from its first task")
    if builtin_entry(cfg.model) is None:
        raise UsageError(f"--tasks trains a built-in ViT-Lite (secvit models), not {cfg.model}")
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    img_size, in_chans = model_input(cfg.model)
    data = load_dataset(cfg.data, img_size, in_chans)
    if data.regression:
        raise UsageError(f"--tasks splits classes; {data.name} is regression data")
    split = split_classes(data.num_classes, cfg.tasks)
    torch.manual_seed(cfg.seed)
    model_args = {"num_classes": data.num_classes, "class_attention": True}
    model = create_model(cfg.model, **model_args)
    gated = cfg.continual == "gated"
    norm = Normalization.fit(_subset(data, split[0], split[0], local=False).x_train)
    x_test = norm.apply(data.x_test)
    prototypes = Prototypes()
    if gated:
        model.task_gating = TaskGating(model.class_block, len(split))
    record: dict = {"method": cfg.continual, "tasks": split, "epochs_per_task": cfg.epochs, "seen_accuracy": [],
                    "task_accuracy": []}
    start = time.perf_counter()
    for t, classes in enumerate(split):
        seen = [c for part in split[: t + 1] for c in part]
        step = _subset(data, seen if cfg.continual == "joint" else classes, classes if gated else seen, local=gated)
        if gated:
            x_task = norm.apply(step.x_train)
            before = features(model, x_task) if t else None
            model.reset_classifier(len(classes))
            model.task_gating.begin(t)
            if t:
                model.feature_distillation = FeatureDistillation(model)
        fit(model, step, norm, replace(cfg, seed=cfg.seed + t))
        if gated:
            if t:
                model.feature_distillation.remove()
                del model.feature_distillation
            model.task_gating.end()
            after = features(model, x_task)
            if before is not None:
                prototypes.carry(fit_projector(before, after))
            prototypes.add(after, torch.tensor(classes)[step.y_train])
            seen_score, per_task = _scores(lambda x: prototypes.predict(features(model, x)), x_test, data.y_test,
                                           split[: t + 1])
        else:
            seen_score, per_task = _scores(_masked_argmax(model, seen), x_test, data.y_test, split[: t + 1])
        record["seen_accuracy"].append(round(seen_score, 4))
        record["task_accuracy"].append([round(v, 4) for v in per_task])
        print(f"task {t + 1}/{len(split)} (classes {classes}): {seen_score:.2%} on the {len(seen)} classes seen")
    if gated:
        record["gated_units_used"] = round(model.task_gating.units_used(), 4)
        model.task_gating.fold(model.class_block)
        del model.task_gating
        model.head, model.num_classes = prototypes.head(data.num_classes), data.num_classes
    meta = Meta(model=cfg.model, model_args=model_args, img_size=img_size, in_chans=in_chans,
                num_classes=data.num_classes, normalization=norm, data=cfg.data,
                extra={"continual": record, "seed": cfg.seed, "train_config": cfg.__dict__,
                       "train_seconds": round(time.perf_counter() - start, 1)})
    return save_evaluated(model, meta, data, out)
