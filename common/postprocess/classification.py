"""Turning a classifier's output into labelled top-k predictions."""

from __future__ import annotations

import numpy as np

from common.model_io import Postprocessing
from common.postprocess.answers import Prediction


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
    return label_of(post.labels, index)


def label_of(labels: list[str] | None, index: int) -> str:
    """The class's name, or ``class <index>`` when the model has none for it."""
    if labels is not None and 0 <= index < len(labels):
        return labels[index]
    return f"class {index}"
