"""Turning a classifier's output into labelled top-k predictions."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from common.manifest import Postprocessing


class Prediction(BaseModel):
    index: int
    label: str
    probability: float


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / np.sum(exp, axis=-1, keepdims=True)
    return result


def top_k(output: np.ndarray, post: Postprocessing) -> list[list[Prediction]]:
    """Top-k per batch item of a (batch, classes) output; other ranks are flattened per item."""
    scores = output.reshape(output.shape[0], -1).astype(np.float32, copy=False)
    probabilities = softmax(scores) if post.softmax else scores
    k = min(post.top_k, probabilities.shape[1])
    results: list[list[Prediction]] = []
    for row in probabilities:
        best = np.argsort(-row, kind="stable")[:k]
        results.append([Prediction(index=int(i), label=_label(post, int(i)), probability=float(row[i])) for i in best])
    return results


def _label(post: Postprocessing, index: int) -> str:
    if post.labels is not None and 0 <= index < len(post.labels):
        return post.labels[index]
    return f"class {index}"
