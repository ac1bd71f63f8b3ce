"""Serve a split's in-graph tail (tail_codes.onnx) through NVIDIA Triton's core, with PyTriton.

Triton's own HTTP/gRPC front end, its dynamic batcher and its Python backend; the bound function runs the tail in
ONNX Runtime (PyTriton bundles no ONNX Runtime backend). It is a real Triton server for the robot's
``ROBOT_EDGE_PROTOCOL=oip`` and for the benchmark. Runs under its own venv (tools/triton_venv.py: Debian's
python3.11, where PyTriton's stub works), so it imports nothing from this repository.

    python tools/pytriton_tail.py --tail tail_codes.onnx --name <model> --http-port 8010 --grpc-port 8011
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

TYPES = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tail", type=Path, required=True, help="the tail with the dequantizer inside")
    parser.add_argument("--name", required=True, help="the model's name (the split's readable name)")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--delay-us", type=int, default=2000, help="the dynamic batcher's wait for a fuller batch")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shares the CPU with its clients
    session = ort.InferenceSession(str(args.tail), options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    outputs = session.get_outputs()

    @batch  # type: ignore[untyped-decorator]  # pytriton is in the Triton venv, not this one
    def infer(**feeds: np.ndarray) -> dict[str, np.ndarray]:
        answers = session.run(None, feeds)
        return {value.name: answer for value, answer in zip(outputs, answers, strict=True)}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
        allow_gpu_metrics=False,
    )
    # Statistics stay open (on loopback): they show how many executions the dynamic batcher made of the requests.
    security = TritonSecurityConfig(restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"])
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name=args.name,
            infer_func=infer,
            inputs=[Tensor(name=v.name, dtype=TYPES[v.type], shape=tuple(_dims(v.shape))) for v in inputs],
            outputs=[Tensor(name=v.name, dtype=TYPES[v.type], shape=tuple(_dims(v.shape))) for v in outputs],
            config=ModelConfig(
                max_batch_size=args.max_batch,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.delay_us),
            ),
            strict=True,
        )
        triton.serve()


def _dims(shape: list[object]) -> list[int]:
    """The dims after the batch axis (Triton's), -1 where the model leaves one open."""
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape[1:]]


if __name__ == "__main__":
    main()
