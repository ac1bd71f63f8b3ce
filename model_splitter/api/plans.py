"""The auto-split API: every plan ranked by predicted latency, its deployment, latency against bandwidth.

Routes translate HTTP into calls of ``model_splitter.services.plans`` and nothing more; ``docs/planner.md`` has the
latency model and curl examples.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from model_splitter.context import SplitterContext
from model_splitter.services.plans import (
    PlanCurveResponse,
    PlanDeployment,
    PlanParams,
    PlanResponse,
    PlanService,
    parse_bandwidths,
)

# Bounds that keep every predicted time a finite number of milliseconds (5e-324 Mbit/s would make it infinite).
MIN_BANDWIDTH_MBPS = 1e-3
MAX_BANDWIDTH_MBPS = 1e6
MAX_RTT_MS = 600_000.0
MAX_IMAGE_BYTES = 10**12  # what-if sizes up to a terabyte: the predictions stay finite
MIN_SCALE = 1e-6
MAX_SCALE = 1e6


def plan_params(
    bandwidth_mbps: float | None = Query(
        None,
        ge=MIN_BANDWIDTH_MBPS,
        le=MAX_BANDWIDTH_MBPS,
        description="link throughput robot -> edge, Mbit/s of payload; measured by the robot if absent",
    ),
    rtt_ms: float | None = Query(
        None, ge=0, le=MAX_RTT_MS, description="round trip of an empty request; measured if absent"
    ),
    min_top1: float | None = Query(
        None,
        ge=0,
        le=100,
        description="fidelity floor: share of calibration images whose answer agrees (a classifier's top-1; a "
        "detector's boxes, a segmenter's mask), 0.99 or 99; default 0.99, detection and segmentation 0.95",
    ),
    min_cosine: float | None = Query(
        None,
        ge=-1,
        le=1,
        description="fidelity floor: output cosine; default 0.99, off (-1) for detection and segmentation",
    ),
    image_bytes: int | None = Query(
        None,
        gt=0,
        le=MAX_IMAGE_BYTES,
        description="encoded camera image size for all-edge (default: the bundled sample photo)",
    ),
    robot_scale: float = Query(
        1.0, ge=MIN_SCALE, le=MAX_SCALE, description="what-if: the robot's compute times this factor"
    ),
    edge_scale: float = Query(
        1.0, ge=MIN_SCALE, le=MAX_SCALE, description="what-if: the edge's compute times this factor"
    ),
) -> PlanParams:
    return PlanParams(
        bandwidth_mbps=bandwidth_mbps,
        rtt_ms=rtt_ms,
        min_top1=min_top1,
        min_cosine=min_cosine,
        image_bytes=image_bytes,
        robot_scale=robot_scale,
        edge_scale=edge_scale,
    )


def plan_router(context: SplitterContext) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["planner"], dependencies=[Depends(context.read_guard)])
    service = PlanService(context.registry, context.peers)

    @router.get(
        "/models/{model_id}/plan",
        summary="Every plan (all-robot, all-edge, each split point x bits) ranked by predicted latency, and the pick",
    )
    async def get_plan(model_id: str, params: PlanParams = Depends(plan_params)) -> PlanResponse:
        return await run_in_threadpool(service.plan, model_id, params)

    @router.post(
        "/models/{model_id}/plan",
        summary="Plan as GET does, then create and deploy the pick; answers the mode to run it in",
        dependencies=[Depends(context.write_guard)],
    )
    async def deploy_plan(model_id: str, params: PlanParams = Depends(plan_params)) -> PlanDeployment:
        return await run_in_threadpool(service.deploy, model_id, params)

    @router.get(
        "/models/{model_id}/plan/curve",
        summary="Predicted latency against bandwidth for the best few plans (where the winner changes)",
    )
    async def plan_curve(
        model_id: str,
        params: PlanParams = Depends(plan_params),
        bandwidths: str | None = Query(None, description="Mbit/s, comma list (default 1,2,5,10,20,50,100,200)"),
        top: int = Query(5, ge=1, le=20, description="plans in the chart besides every winner"),
    ) -> PlanCurveResponse:
        values = parse_bandwidths(bandwidths)
        return await run_in_threadpool(service.curve, model_id, params, values, top)

    return router
