"""The link to the edge as a stream sees it: round trip and throughput, learnt from the frames that crossed it.

The round trip comes from probes (an empty request when a stream starts); the bandwidth from each frame:
``bytes / (transfer - round trip)``, following a drop with a weight of 0.8 per frame and a rise with 0.5, so a
rate that drops tenfold is followed within about three frames and a brief recovery is not trusted at once.
"""

from __future__ import annotations

LINK_ALPHA_UP = 0.5  # a faster link is believed over two frames or so
LINK_ALPHA_DOWN = 0.8  # a slower one at once: a missed deadline costs more than a frame sent at fewer bits
MIN_TRANSFER_MS = 0.05


class LinkEstimate:
    """Round trip and throughput to the edge, learnt from the frames that crossed the link."""

    def __init__(self, rtt_ms: float | None = None, bandwidth_mbps: float | None = None) -> None:
        self.rtt_ms = rtt_ms
        self.bandwidth_mbps = bandwidth_mbps
        self.samples = 0
        self._last_end_ms: float | None = None

    def observe(self, sent_bytes: int, transfer_ms: float, ended_at_ms: float | None = None) -> None:
        """One frame's bytes took ``transfer_ms`` on the link, ending at ``ended_at_ms`` (a monotonic clock; None:
        unknown). Frames in flight together share the link: a frame sent while the one before was still on it
        waited behind those bytes, so only the time after they were through is its own."""
        transfer_ms = max(transfer_ms, MIN_TRANSFER_MS)
        queued_ms = 0.0
        if ended_at_ms is not None:
            if self._last_end_ms is not None:
                queued_ms = min(max(self._last_end_ms - (ended_at_ms - transfer_ms), 0.0), transfer_ms)
            self._last_end_ms = max(self._last_end_ms or ended_at_ms, ended_at_ms)
        if queued_ms > 0:
            # Back to back behind the previous frame: its round trip overlapped that frame's, only bytes remain.
            self._sample(sent_bytes, max(transfer_ms - queued_ms, MIN_TRANSFER_MS))
            return
        # The round trip comes from probes (an empty request: ``EdgeClient.probe``); frames of one size cannot tell
        # it from the time on the wire. A transfer quicker than the probe says the probe was slow.
        if self.rtt_ms is None or transfer_ms < self.rtt_ms:
            self.rtt_ms = min(transfer_ms, self.rtt_ms or transfer_ms) if self.rtt_ms is not None else 0.0
        self._sample(sent_bytes, max(transfer_ms - self.rtt_ms, MIN_TRANSFER_MS))

    def _sample(self, sent_bytes: int, wire_ms: float) -> None:
        sample = sent_bytes * 8 / (wire_ms * 1e3)
        if self.bandwidth_mbps is None:
            self.bandwidth_mbps = sample
        else:
            alpha = LINK_ALPHA_DOWN if sample < self.bandwidth_mbps else LINK_ALPHA_UP
            self.bandwidth_mbps = alpha * sample + (1 - alpha) * self.bandwidth_mbps
        self.samples += 1

    def transfer_ms(self, nbytes: int) -> float:
        rtt = self.rtt_ms or 0.0
        if not self.bandwidth_mbps:
            return rtt
        return rtt + nbytes * 8 / (self.bandwidth_mbps * 1e3)
