"""The split's head and tail with the quantizer inside, made and checked when the split is made.

Checked on the seeded input of the head/tail check: the in-graph codes equal ``common/codes.py``'s numpy codes of
the same features byte for byte (the joined head also gives its features, so float rounding in the head cannot hide
a quantizer that differs), and ``tail_q(codes)`` equals ``tail(dequantize(codes))`` within float32 rounding. Graphs
that fail the check are not emitted (logged as the bug they are); the split is made without them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx

from common.codes import codes_to_features, features_to_codes, has_codes
from common.errors import InvalidArgument
from common.manifest import CodeGraphs, SplitManifest, sha256_hex
from model_splitter.graph.verification import head_tail_tolerance, outputs_by_name, seeded_outputs
from model_splitter.quantize.code_graphs import MIN_OPSET, head_with_codes, model_opset, tail_with_codes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodeGraphFiles:
    head: bytes
    tail: bytes
    record: CodeGraphs


def code_graphs_for(
    head: onnx.ModelProto, tail: onnx.ModelProto, manifest: SplitManifest, input_shape: tuple[int, ...]
) -> CodeGraphFiles | None:
    """The checked graphs; None where the split has no codes (16/32 bits) or the model is older than opset 13."""
    if not has_codes(manifest):
        return None
    if min(model_opset(head), model_opset(tail)) < MIN_OPSET:
        logger.info("split at %s: opset below %d, no in-graph codes", manifest.split_point, MIN_OPSET)
        return None
    try:
        head_q = head_with_codes(head, manifest, keep_features=True)
        tail_q = tail_with_codes(tail, manifest)
    except InvalidArgument as exc:  # widths per channel whose blocks are not whole bytes: numpy codes them alone
        logger.info("split at %s: no in-graph codes: %s", manifest.split_point, exc)
        return None
    given = seeded_outputs(head_q, input_shape, "head with the quantizer")
    expected_codes = features_to_codes(manifest, [given[spec.name] for spec in manifest.cut])
    for name, codes in expected_codes.items():
        if given[name].shape != codes.shape or not np.array_equal(given[name], codes):
            # A bug to report, not a reason to refuse the split: it is made without the code graphs.
            logger.error(
                "split at %s: the in-graph codes of %s differ from numpy's; no code graphs", manifest.split_point, name
            )
            return None
    answers = outputs_by_name(tail_q, expected_codes, "tail with the dequantizer")
    reference = outputs_by_name(tail, codes_to_features(manifest, expected_codes), "tail")
    difference = max(
        float(np.max(np.abs(answers[name].astype(np.float64) - value.astype(np.float64)), initial=0.0))
        for name, value in reference.items()
    )
    tolerance = head_tail_tolerance(list(reference.values()))
    if not difference <= tolerance:
        logger.error(
            "split at %s: the tail with the dequantizer answers %.3g from the tail (allowed %.3g); no code graphs",
            manifest.split_point,
            difference,
            tolerance,
        )
        return None
    head_bytes = head_with_codes(head, manifest).SerializeToString()
    tail_bytes = tail_q.SerializeToString()
    record = CodeGraphs(
        head_sha256=sha256_hex(head_bytes),
        tail_sha256=sha256_hex(tail_bytes),
        samples=int(next(iter(expected_codes.values())).shape[0]),
        tail_max_abs_diff=difference,
        tail_tolerance=tolerance,
    )
    return CodeGraphFiles(head_bytes, tail_bytes, record)
