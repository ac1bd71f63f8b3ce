"""Human-readable class names for classifier outputs.

The ImageNet names come from torchvision's weight metadata, a constant in torchvision's source: reading
``Weights.meta`` downloads nothing (only ``Weights.get_state_dict`` does).
"""

from __future__ import annotations

import functools


@functools.cache
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in output-index order."""
    from torchvision.models import ResNet18_Weights

    categories: list[str] = list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    return categories


def labels_for(num_classes: int | None) -> list[str] | None:
    """ImageNet names for a 1000-way classifier, ``class_0 .. class_{n-1}`` otherwise, None when unknown."""
    if num_classes is None or num_classes < 1:
        return None
    if num_classes == 1000:
        return list(imagenet_labels())  # a copy: callers must not be able to edit the cached list
    return [f"class_{i}" for i in range(num_classes)]
