"""What a tail is fine-tuned on: the fitting images and random crops of them, as the robot would send them.

The crops (a random 70..100 % of each side at a random place, scaled back to the input size, mirrored half the
time) stay clear of the held-out set's transforms (rotations, the 45 % zoom, blur, darkening: ``quantize.images``),
so the held-out figures still judge images the tail never saw in that form. Each sample goes through the split's
head, and through the quantizer and dequantizer at every trained width with the split's own ranges and codes
(``quantize.fidelity.roundtrip``, the wire's records), so the tail learns the very features the edge will feed it.
The float model's outputs on the same samples are the teacher's.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
import torch
import torch.nn.functional as F

from common.manifest import Scheme, TensorRange
from model_splitter.quantize.calibration import cpu_session, run_batched
from model_splitter.quantize.fidelity import roundtrip
from model_splitter.training.distillation import TrainingData

F32 = npt.NDArray[np.float32]
CROP_RANGE = (0.7, 1.0)


def augmented(images: F32, crops_per_image: int, seed: int = 0) -> F32:
    """Each image (N, C, H, W) and ``crops_per_image`` random crops of it."""
    generator = np.random.default_rng(seed)
    height, width = images.shape[2], images.shape[3]
    out = [images]
    for _ in range(crops_per_image):
        batch = []
        for image in images:
            share_h, share_w = generator.uniform(*CROP_RANGE, size=2)
            h, w = max(1, round(height * share_h)), max(1, round(width * share_w))
            top, left = int(generator.integers(height - h + 1)), int(generator.integers(width - w + 1))
            crop = torch.from_numpy(np.ascontiguousarray(image[None, :, top : top + h, left : left + w]))
            resized = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)
            if generator.random() < 0.5:
                resized = resized.flip(3)
            batch.append(resized.numpy())
        out.append(np.concatenate(batch))
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def training_data(
    model: onnx.ModelProto,
    head: onnx.ModelProto,
    tail: onnx.ModelProto,
    ranges: dict[int, list[TensorRange]],
    scheme: Scheme,
    samples: F32,
    classifier: bool,
) -> TrainingData:
    """The tail's inputs at each width in ``ranges`` and the float model's outputs the tail produces, on
    ``samples`` (preprocessed images)."""
    head_session = cpu_session(head)
    feed = {value.name: samples for value in head_session.get_inputs()}
    names = [output.name for output in head_session.get_outputs()]
    cut = dict(zip(names, run_batched(head_session, feed), strict=True))
    tail_inputs = [value.name for value in cpu_session(tail).get_inputs()]
    features: dict[int, list[np.ndarray]] = {}
    for bits, width_ranges in ranges.items():
        by_name = {entry.name: entry for entry in width_ranges}
        features[bits] = [roundtrip(cut[name], bits, by_name.get(name), scheme) for name in tail_inputs]
    full = cpu_session(model)
    wanted = [output.name for output in tail.graph.output]
    full_outputs = dict(
        zip(
            [output.name for output in full.get_outputs()],
            run_batched(full, {full.get_inputs()[0].name: samples}),
            strict=True,
        )
    )
    teacher = [np.ascontiguousarray(full_outputs[name], dtype=np.float32) for name in wanted]
    return TrainingData(features=features, teacher=teacher, classifier=classifier)
