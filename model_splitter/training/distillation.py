"""Distillation of a tail: it learns to answer, from dequantized features, what the float model answers.

No labels: the teacher is the unsplit float model's output on the same image. A classifier's tail learns the
teacher's class distribution softened by a temperature (Hinton et al.'s distillation loss, T^2-scaled); any other
output learns the teacher's values (mean squared error, each output divided by the teacher's mean square so that
outputs of different scale weigh alike). Each step draws a batch of samples and, where a split has several bit
widths trained into one tail, one width for the whole batch. A tail whose batch dimension is fixed (a fixed-batch
export) runs its batch one sample at a time and accumulates the gradients.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model_splitter.training.onnx_module import OnnxModule

TEMPERATURE = 2.0
REPORT_EVERY_S = 0.5


@dataclass(frozen=True)
class TrainingData:
    features: dict[int, list[np.ndarray]]  # per bit width: one (N, ...) array per tail input, dequantized
    teacher: list[np.ndarray]  # the float model's outputs, one (N, ...) array per tail output trained on
    classifier: bool  # the first output is class scores: distil their distribution


@dataclass(frozen=True)
class Schedule:
    steps: int
    batch_size: int
    learning_rate: float
    seed: int = 0
    # L2-SP (Li et al. 2018): the weights' squared change, relative to each tensor's mean square, added to the loss
    # with this weight, so that a few images pull the tail only as far from its trained weights as they must.
    anchor: float = 0.0


@dataclass(frozen=True)
class TrainingLog:
    first_loss: float  # mean distillation loss (without the anchor's term) over the first tenth of the steps
    last_loss: float  # the same over the last tenth
    seconds: float


def distillation_loss(
    outputs: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], classifier: bool
) -> torch.Tensor:
    if classifier:
        student = outputs[0].reshape(len(outputs[0]), -1)
        target = teacher[0].reshape(len(teacher[0]), -1)
        log_p = F.log_softmax(student / TEMPERATURE, dim=1)
        q = F.softmax(target / TEMPERATURE, dim=1)
        return F.kl_div(log_p, q, reduction="batchmean") * TEMPERATURE**2
    terms = [
        F.mse_loss(out, ref) / ref.pow(2).mean().clamp_min(1e-12) for out, ref in zip(outputs, teacher, strict=False)
    ]
    return torch.stack(terms).sum()


def anchor_penalty(weights: Sequence[torch.Tensor], start: Sequence[torch.Tensor]) -> torch.Tensor:
    terms = [(w - w0).pow(2).mean() / w0.pow(2).mean().clamp_min(1e-12) for w, w0 in zip(weights, start, strict=True)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def train(
    module: OnnxModule,
    data: TrainingData,
    schedule: Schedule,
    fixed_batch: bool,
    report: Callable[[str], None],
) -> TrainingLog:
    widths = sorted(data.features)
    count = len(data.teacher[0])
    generator = np.random.default_rng(schedule.seed)
    optimizer = torch.optim.Adam(module.weights, lr=schedule.learning_rate)
    # Cosine decay to zero: the last steps settle instead of jumping around the few images there are.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, schedule.steps) / schedule.steps))
    )
    features = {bits: [torch.from_numpy(x) for x in arrays] for bits, arrays in data.features.items()}
    teacher = [torch.from_numpy(y) for y in data.teacher]
    start = [w.detach().clone() for w in list(module.weights)]
    losses: list[float] = []
    began = time.perf_counter()
    last_report = began
    module.train()
    for step in range(schedule.steps):
        rows = torch.from_numpy(generator.choice(count, size=min(schedule.batch_size, count), replace=False))
        inputs = features[widths[int(generator.integers(len(widths)))]]
        optimizer.zero_grad(set_to_none=True)
        groups = [rows[i : i + 1] for i in range(len(rows))] if fixed_batch else [rows]
        total = 0.0
        for group in groups:
            outputs = module(*(x[group] for x in inputs))
            loss = distillation_loss(outputs, [y[group] for y in teacher], data.classifier) * (len(group) / len(rows))
            loss.backward()  # type: ignore[no-untyped-call]
            total += float(loss.detach())
        if schedule.anchor > 0.0:
            penalty = anchor_penalty(list(module.weights), start) * schedule.anchor
            penalty.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        scheduler.step()
        losses.append(total)
        now = time.perf_counter()
        if now - last_report >= REPORT_EVERY_S or step + 1 == schedule.steps:
            last_report = now
            report(f"training the tail: step {step + 1}/{schedule.steps}, loss {np.mean(losses[-10:]):.4f}")
    module.eval()
    tenth = max(1, len(losses) // 10)
    return TrainingLog(
        first_loss=float(np.mean(losses[:tenth])),
        last_loss=float(np.mean(losses[-tenth:])),
        seconds=time.perf_counter() - began,
    )
