"""What streams put in the robot's /metrics: frames by outcome, per-frame latency, the link estimate, the widths."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from common.observability import LATENCY_BUCKETS, Metrics
from common.results import InferenceResult
from robot_inference.stream.link_estimate import LinkEstimate


class StreamMetrics:
    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self.frames = Counter(
            "splitbot_stream_frames",
            "Stream frames by outcome (answered, deadline_missed, dropped, error)",
            ["outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "splitbot_stream_frame_seconds",
            "From a frame's arrival to its answer",
            ["mode"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.bandwidth = Gauge(
            "splitbot_stream_bandwidth_mbps", "The link's throughput as the stream estimates it", registry=registry
        )
        self.rtt = Gauge(
            "splitbot_stream_rtt_ms", "The link's round trip as the stream estimates it", registry=registry
        )
        self.bits = Gauge(
            "splitbot_stream_bits",
            "The width the last frame travelled at (0: it did not cross the link)",
            registry=registry,
        )
        self.chosen = Counter(
            "splitbot_stream_choices", "Frames answered per plan", ["mode", "bits"], registry=registry
        )

    def answered(self, result: InferenceResult, latency_ms: float, met: bool, link: LinkEstimate) -> None:
        self.frames.labels("answered").inc()
        if not met:
            self.frames.labels("deadline_missed").inc()
        self.latency.labels(result.mode).observe(latency_ms / 1e3)
        bits = result.bits if result.mode == "split" else 0
        self.bits.set(bits)
        self.chosen.labels(result.mode, str(bits)).inc()
        if link.bandwidth_mbps is not None:
            self.bandwidth.set(link.bandwidth_mbps)
        if link.rtt_ms is not None:
            self.rtt.set(link.rtt_ms)
