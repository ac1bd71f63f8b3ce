"""schemathesis against each running service's own OpenAPI schema, with every one of its checks.

Every operation of every schema gets a bounded number of generated requests, valid ones (positive mode) and ones
that break the schema (negative mode), against real processes that hold a deployed split, so that requests reach
the deep code paths and not only the "nothing deployed" answers. Each answer must be no 5xx, a documented status
with a documented content type and body (``ErrorBody`` for errors), invalid data refused, and so on.

One check is left out where it cannot hold: ``positive_data_acceptance`` (a schema-valid request must not get a
400) for the operations whose body is content no JSON schema can describe: an image, a frame, a bundle zip, a
base64 image (and two orderings a schema cannot state: the planner curve's comma list of bandwidths, a clip
range's lo < hi). Random bytes that match "binary" are not a JPEG;
refusing them with 400 is the right answer.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Ok

from tests.reliability.harness import OpenStack
from tools.local_stack import ServiceProcess

EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 10}
OPAQUE_CONTENT = {
    "POST /api/infer",  # an image (robot, splitter) or a frame (edge)
    "POST /api/bundles",  # a zip
    "POST /api/profile",  # image_base64
    "POST /api/probe",  # any bytes, counted: accepted as they are
    "POST /api/models",  # a model file
    "POST /api/model-jobs",
    "POST /api/models/{model_id}/calibrate",  # images
    "POST /api/models/{model_id}/calibration-jobs",
    "POST /api/splits/{split_id}/fine-tune",  # images
    "POST /api/splits/{split_id}/fine-tune-jobs",
    # not content, but a comma list in one string: the schema cannot state each value's range (0.001..1e6)
    "GET /api/models/{model_id}/plan/curve",
    # a clip range needs lo < hi, which a JSON schema cannot state either
    "POST /api/models/{model_id}/splits",
    "POST /api/models/{model_id}/split-jobs",
    # the Open Inference Protocol's JSON (+ binary) tensors, for a model whose inputs the schema cannot know
    "POST /v2/models/{name}/infer",
    "POST /v2/models/{name}/versions/{version}/infer",
}
REQUEST_TIMEOUT_S = 120.0


def fuzz_operation(operation: Any, mode: GenerationMode, base_url: str, session: requests.Session) -> int:
    """Up to EXAMPLES[mode] generated requests to one operation; returns how many were sent."""
    sent = 0

    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a failure here is reproducible
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        response = case.call(base_url=base_url, session=session, timeout=REQUEST_TIMEOUT_S)
        excluded = [positive_data_acceptance] if operation.label in OPAQUE_CONTENT else []
        case.validate_response(response, excluded_checks=excluded)

    try:
        run()
    except Unsatisfiable:  # negative mode: nothing about this operation can break the schema (no body, free strings)
        assert mode == GenerationMode.NEGATIVE
    return sent


def fuzz(service: ServiceProcess) -> dict[str, int]:
    """Every operation of ``service``'s schema; returns how many requests each operation got."""
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json", timeout=REQUEST_TIMEOUT_S)
    counts: dict[str, int] = {}
    seconds: dict[str, float] = {}
    failures: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            if not isinstance(result, Ok):
                failures.append(f"the schema has an invalid operation: {result.err()}")
                continue
            operation = result.ok()
            counts[operation.label] = 0
            start = time.monotonic()
            for mode in EXAMPLES:
                try:
                    counts[operation.label] += fuzz_operation(operation, mode, service.url, session)
                except BaseException as exc:  # schemathesis raises exception groups: collect, report together
                    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                        raise
                    failures.append(f"{operation.label} ({mode.value}): {exc}")
            seconds[operation.label] = time.monotonic() - start
    print(f"\n{service.name}: " + ", ".join(f"{op} x{n} in {seconds[op]:.1f} s" for op, n in counts.items()))
    assert failures == [], "\n\n".join(failures)
    return counts


@pytest.mark.parametrize("name", ["edge", "robot", "splitter"])
def test_no_server_errors(open_stack: OpenStack, name: str) -> None:
    counts = fuzz(open_stack.service(name))
    assert "POST /api/infer" in counts
    assert all(n > 0 for n in counts.values()), counts
