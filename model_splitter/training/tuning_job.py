"""One fine-tuning, from the split's parts to the trained tail, as the worker process runs it.

Before training, torch's reading of the tail must answer as ONNX Runtime does on real features (else the tail
would be trained as some other network); after it, the graph with the trained weights written back must answer
as the trained module does. Both checks allow ``1e-4 + 1e-4 * max |output|``: torch and ONNX Runtime sum in other
orders. The number of crops shrinks when the features of all samples at all widths would not fit in
``MAX_FEATURE_BYTES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
import torch

from common.errors import UnprocessableModel
from common.manifest import Scheme, TensorRange
from model_splitter.quantize.calibration import cpu_session, run_batched
from model_splitter.training.distillation import Schedule, TrainingData, TrainingLog, train
from model_splitter.training.onnx_module import OnnxModule, run_numpy
from model_splitter.training.samples import augmented, training_data

F32 = npt.NDArray[np.float32]
MAX_FEATURE_BYTES = 1 << 30
CHECK_SAMPLES = 4


@dataclass(frozen=True)
class TuningJob:
    model_path: str
    head: bytes
    tail: bytes
    ranges: dict[int, list[TensorRange]]  # the widths trained for, with the split's ranges at each
    scheme: Scheme
    images: F32  # the fitting images, preprocessed
    sample_bytes: int  # float32 bytes of one sample's cut tensors
    classifier: bool
    schedule: Schedule
    crops_per_image: int
    threads: int


@dataclass(frozen=True)
class TuningOutcome:
    tail: bytes
    log: TrainingLog
    samples: int
    parameters: int
    reading_max_abs_diff: float  # torch's reading of the original tail vs ONNX Runtime
    written_max_abs_diff: float  # the written-back graph vs the trained module


def _max_diff(reference: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[float, float]:
    diff = max(float(np.max(np.abs(r - o))) if r.size else 0.0 for r, o in zip(reference, outputs, strict=True))
    scale = max(float(np.max(np.abs(r))) if r.size else 0.0 for r in reference)
    return diff, 1e-4 + 1e-4 * scale


def _ort_outputs(tail: onnx.ModelProto, inputs: list[np.ndarray]) -> list[np.ndarray]:
    session = cpu_session(tail)
    return run_batched(session, {value.name: x for value, x in zip(session.get_inputs(), inputs, strict=True)})


def _crops(job: TuningJob) -> int:
    per_image = max(1, job.sample_bytes * len(job.ranges))
    affordable = MAX_FEATURE_BYTES // (per_image * max(1, len(job.images))) - 1
    return max(0, min(job.crops_per_image, affordable))


def run_tuning(job: TuningJob, report: Callable[[str], None]) -> TuningOutcome:
    torch.set_num_threads(job.threads)
    torch.manual_seed(job.schedule.seed)
    model = onnx.load(job.model_path)
    head, tail = onnx.load_from_string(job.head), onnx.load_from_string(job.tail)
    module = OnnxModule(tail)
    if not module.trainable:
        raise UnprocessableModel("this tail has no weights to train (no Conv, Gemm, MatMul or normalisation)")
    samples = augmented(job.images, _crops(job), job.schedule.seed)
    report(f"running the head and the float model on {len(samples)} training samples")
    data: TrainingData = training_data(model, head, tail, job.ranges, job.scheme, samples, job.classifier)
    probe = [x[:CHECK_SAMPLES] for x in data.features[min(data.features)]]
    reading, allowed = _max_diff(_ort_outputs(tail, probe), run_numpy(module, probe))
    if not reading <= allowed:
        raise UnprocessableModel(
            f"torch's reading of this tail differs from ONNX Runtime's by {reading:.3g} (allowed {allowed:.3g}); "
            "fine-tuning it would train another network"
        )
    fixed = any(isinstance(value.shape[0], int) for value in cpu_session(tail).get_inputs() if value.shape)
    log = train(module, data, job.schedule, fixed, report)
    report("writing the trained weights into the tail")
    tuned = module.with_weights(tail)
    written, allowed = _max_diff(run_numpy(module, probe), _ort_outputs(tuned, probe))
    if not written <= allowed:
        raise UnprocessableModel(
            f"the trained tail as ONNX differs from the trained module by {written:.3g} (allowed {allowed:.3g})"
        )
    return TuningOutcome(
        tail=tuned.SerializeToString(),
        log=log,
        samples=len(samples),
        parameters=module.parameter_count(),
        reading_max_abs_diff=reading,
        written_max_abs_diff=written,
    )
