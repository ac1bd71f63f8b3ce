"""Per frame, which way to answer: the best held-out fidelity whose predicted latency meets the deadline.

Choices: every bit width of every split of the stream's model that the robot holds (``quantization.widths()``: a
split made with alternatives switches width without a redeploy), all-edge (the camera's JPEG to the whole model
on the edge), and all-robot when the robot holds the full model.
Each is judged by its held-out fidelity (the manifest's; 1.0 for all-robot, for 32 bits and, unmeasured, 16 bits;
0 for an unmeasured quantized width, so it is a last resort) and by a predicted latency:

    split:     robot compute (decode .. quantize, per split) + RTT + bytes * 8 / bandwidth + edge compute (per split)
    all-edge:  RTT + image bytes * 8 / bandwidth + the edge's compute of the whole model
    all-robot: robot compute of the full model
    each:      + the waiting seen with it: a frame's latency (arrival to answer) beyond the above, smoothed; a
               robot slower than the camera queues frames, which no stage time shows. The waiting of a plan
               not in use fades, so it is tried again once the load that caused it may have passed; each time
               all-robot is left for missing the deadline it fades more slowly (a robot that cannot keep
               up with the camera is not retried every second), and once it kept the deadline for
               ``FORGIVEN_AFTER`` frames in a row it fades at the first rate again

Compute times are smoothed from the frames themselves (an exponential average, ``COMPUTE_ALPHA``); bytes per
(split, width) are the frames' own once one was sent, before that the calibration's coded size (or the packed
size). The link (``LinkEstimate``) learns from every frame that crossed it: the time to the edge's answer minus
the edge's own compute is the transfer, the round trip comes from an empty probe request when the stream starts;
bandwidth follows ``bytes / (transfer - RTT)``, a drop with a weight of 0.8 per frame and a rise with 0.5, so a
rate that drops tenfold is followed within about three frames and a brief recovery is not trusted at once. A cost
not yet seen counts as 0: the controller tries it once and learns (a new stream starts from the best fidelity and
steps down).

A choice must also keep up with the camera: one whose frame takes longer on the wire, or on the robot's CPU,
than ``LINK_SHARE`` of the time between frames (smoothed from their arrivals) is not counted as fitting, however
quick one frame alone would be, since its frames would queue one behind another.

Hysteresis: the current choice is kept while its prediction meets the deadline (and it keeps up); a choice with
better fidelity takes over only after it has been the best for ``HOLD_FRAMES`` frames in a row, and only with
``MARGIN`` of the deadline to spare, so a link near the threshold does not flap. A step up whose first frames
(``TRIAL_FRAMES``) missed the deadline doubles the hold for that choice (up to ``HOLD_FRAMES_MAX``): the estimate
it was taken on came from smaller frames, which a shaper's burst lets through faster than its rate, and the next
try waits for more evidence. For the same reason a step up at most doubles the bytes per frame (``RAMP``): a
wrong step then costs a frame or two, not the queue of frames behind one four times larger (answering on the
robot, the step is counted from the last probe's bytes; a switch forced by a missed deadline keeps to the ramp
too, and where nothing within it fits, takes the fastest). When nothing meets
the deadline, the fastest prediction wins. While no frame uses the link (all-robot) and the link could change
that (all-robot misses the deadline, or a split is as faithful), every ``PROBE_EVERY`` th frame goes over the
link, so the estimate follows a link that recovers. A probe that missed the deadline doubles the interval (up to
``PROBE_EVERY_MAX``): on a link too thin for any split, probing every tenth frame would itself miss a tenth of
the deadlines; one that met it brings the interval back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from common.deployments import Deployment
from common.results import InferenceResult, Mode
from common.wire import frame_overhead
from robot_inference.stream.link_estimate import LinkEstimate

COMPUTE_ALPHA = 0.3
HOLD_FRAMES = 3
HOLD_FRAMES_MAX = 48
RAMP = 2.0
LINK_SHARE = 0.9
TRIAL_FRAMES = 5
MARGIN = 0.85
PROBE_EVERY = 10
PROBE_EVERY_MAX = 80  # about 5 s at 15 frames/s: the longest a recovered link goes unseen
WAITING_FADE = 0.95
WAITING_FADE_SLOWEST = 0.995  # halves in about 140 frames, 9 s at 15 frames/s
FORGIVEN_AFTER = 30
ROBOT_STAGES = frozenset({"decode", "preprocess", "head", "quantize", "encode", "model", "postprocess", "place"})


@dataclass(frozen=True)
class Choice:
    mode: Mode
    split_id: str
    bits: int | None  # split: the width; all-edge, all-robot: None
    fidelity: float  # held-out agreement with the float model, 0..1
    prior_bytes: int = 0  # split: what a frame is expected to weigh before one was sent

    @property
    def key(self) -> str:
        return f"{self.split_id[:12]}@{self.bits}b" if self.mode == "split" else f"{self.split_id[:12]}:{self.mode}"


@dataclass(frozen=True)
class Decision:
    choice: Choice
    predicted_ms: float
    reason: str


def choices_for(deployments: list[Deployment], model_id: str) -> list[Choice]:
    """Every way the robot can answer for ``model_id`` with the splits it holds."""
    out: list[Choice] = []
    for deployment in deployments:
        manifest = deployment.manifest
        if manifest.model_id != model_id:
            continue
        quantization = manifest.quantization
        overhead = frame_overhead([(spec.name, len(spec.shape)) for spec in manifest.cut])
        fidelities = {quantization.bits: manifest.verification.fidelity}
        fidelities.update({v.bits: v.fidelity for v in quantization.alternatives or []})
        for bits in quantization.widths():
            measured = fidelities.get(bits)
            if measured is not None:
                fidelity = measured.answer_agreement if bits < 32 else 1.0
            else:
                fidelity = 1.0 if bits >= 16 else 0.0
            packed = sum(math.ceil(spec.elements * bits / 8) for spec in manifest.cut)
            coded = measured.coded_bytes if measured is not None and measured.coded_bytes is not None else packed
            out.append(Choice("split", manifest.id, bits, fidelity, min(coded, packed) + overhead))
        if not any(c.mode == "all-edge" for c in out):
            out.append(Choice("all-edge", manifest.id, None, 1.0))
        if deployment.full is not None and not any(c.mode == "all-robot" for c in out):
            out.append(Choice("all-robot", manifest.id, None, 1.0))
    return out


def _compute_key(choice: Choice) -> str:
    return choice.split_id if choice.mode == "split" else choice.key


def _smooth(old: float | None, new: float) -> float:
    return new if old is None else COMPUTE_ALPHA * new + (1 - COMPUTE_ALPHA) * old


@dataclass
class _Costs:
    # Compute by _compute_key: a split's widths share their head and tail, the other plans have their own.
    robot_ms: dict[str, float] = field(default_factory=dict)
    edge_ms: dict[str, float] = field(default_factory=dict)
    bytes_sent: dict[str, float] = field(default_factory=dict)  # by Choice key
    waiting_ms: dict[str, float] = field(default_factory=dict)  # by Choice key: latency beyond compute and link
    waiting_fade: dict[str, float] = field(default_factory=dict)  # by Choice key, where slower than WAITING_FADE
    kept: dict[str, int] = field(default_factory=dict)  # by Choice key: frames in a row within the deadline


class Controller:
    def __init__(self, choices: list[Choice], deadline_ms: float, link: LinkEstimate | None = None) -> None:
        if not choices:
            raise ValueError("a controller needs at least one choice")
        self.choices = choices
        self.deadline_ms = deadline_ms
        self.link = link or LinkEstimate()
        self.costs = _Costs()
        self.current: Choice | None = None
        self._candidates: dict[str, int] = {}  # by Choice key: frames in a row as a better choice that fits
        self.frame_interval_ms: float | None = None  # between the camera's frames, smoothed
        self._last_arrival_ms: float | None = None
        self._last_link_bytes: float | None = None
        self._hold: dict[str, int] = {}  # by Choice key, where longer than HOLD_FRAMES
        self._trial: tuple[str, int] | None = None  # a step up being tried: its key, frames answered so far
        self._since_link = 0
        self._probe_every = PROBE_EVERY
        self._probes_out: dict[str, int] = {}  # by Choice key: probes sent and not yet observed

    def frame_arrived(self, at_ms: float) -> None:
        """A camera frame arrived at ``at_ms`` (a monotonic clock): the pace the link must keep up with."""
        if self._last_arrival_ms is not None and at_ms > self._last_arrival_ms:
            self.frame_interval_ms = _smooth(self.frame_interval_ms, at_ms - self._last_arrival_ms)
        self._last_arrival_ms = at_ms

    def keeps_up(self, choice: Choice) -> bool:
        """Its frames leave the robot's CPU and the link as fast as the camera makes them (unknown pace, compute or
        bandwidth: assumed so)."""
        interval = self.frame_interval_ms
        if interval is None:
            return True
        robot_ms = self.costs.robot_ms.get(_compute_key(choice), 0.0)
        if choice.mode == "all-robot" or not self.link.bandwidth_mbps:
            return robot_ms <= LINK_SHARE * interval
        wire_ms = self.expected_bytes(choice) * 8 / (self.link.bandwidth_mbps * 1e3)
        return max(robot_ms, wire_ms) <= LINK_SHARE * interval

    def expected_bytes(self, choice: Choice) -> float:
        return self.costs.bytes_sent.get(choice.key, float(choice.prior_bytes))

    def predict(self, choice: Choice) -> float:
        return self._compute_and_link(choice) + self.costs.waiting_ms.get(choice.key, 0.0)

    def _compute_and_link(self, choice: Choice) -> float:
        costs, key = self.costs, _compute_key(choice)
        if choice.mode == "all-robot":
            return costs.robot_ms.get(key, 0.0)
        sent = self.expected_bytes(choice)
        return costs.robot_ms.get(key, 0.0) + self.link.transfer_ms(round(sent)) + costs.edge_ms.get(key, 0.0)

    def choose(self) -> Decision:
        self._forget_waiting()
        predicted = {choice: self.predict(choice) for choice in self.choices}
        probe = self._probe(predicted)
        if probe is not None:
            return probe
        fitting = [c for c in self.choices if predicted[c] <= self.deadline_ms * MARGIN and self.keeps_up(c)]
        if not fitting:
            fastest = min(self.choices, key=lambda c: (predicted[c], -c.fidelity))
            self._switch(fastest)
            reason = f"nothing is predicted to meet the {self.deadline_ms:g} ms deadline: the fastest"
            return Decision(fastest, predicted[fastest], reason)
        current = self.current
        ramp = [c for c in fitting if self._within_ramp(c, current)]
        if (
            current is None
            or current not in predicted
            or predicted[current] > self.deadline_ms
            or not self.keeps_up(current)
        ):
            if not ramp:  # what fits lies beyond the ramp: on an estimate the link has not shown, so the fastest
                fastest = min(self.choices, key=lambda c: (predicted[c], -c.fidelity))
                self._switch(fastest)
                reason = f"nothing within twice the bytes the link carried meets the {self.deadline_ms:g} ms deadline"
                return Decision(fastest, predicted[fastest], f"{reason}: the fastest")
            best = max(ramp, key=lambda c: (c.fidelity, -predicted[c]))
            if current is not None and current in predicted and current != best:
                self._left_for_missing(current)
            self._switch(best)
            return Decision(best, predicted[best], self._why(best, predicted[best]))
        # Each better choice counts its own frames in a row as a candidate: one waiting out a long hold (it failed
        # before) does not keep the others, which have not, from taking over.
        better = {c.key: c for c in ramp if c.fidelity > current.fidelity}
        self._candidates = {key: self._candidates.get(key, 0) + 1 for key in better}
        ready = [c for c in better.values() if self._candidates[c.key] >= self._hold.get(c.key, HOLD_FRAMES)]
        if ready:
            step = max(ready, key=lambda c: (c.fidelity, -predicted[c]))
            hold = self._hold.get(step.key, HOLD_FRAMES)
            self._switch(step)
            self._trial = (step.key, 0)
            return Decision(step, predicted[step], self._why(step, predicted[step], f"after {hold} frames"))
        return Decision(current, predicted[current], self._why(current, predicted[current], "kept"))

    def _within_ramp(self, choice: Choice, current: Choice | None) -> bool:
        """At most twice the bytes per frame of the current choice or, answering on the robot, of the last frame
        the link carried (a probe), or the next larger choice; off the link, or before the link carried anything,
        anything goes."""
        if choice.mode == "all-robot":
            return True
        if current is not None and current.mode != "all-robot":
            reference: float | None = self.expected_bytes(current)
        else:
            reference = self._last_link_bytes
        if reference is None or self.expected_bytes(choice) <= RAMP * max(reference, 1.0):
            return True
        # The next rung is always within reach: coded sizes grow by more than twice from one width to the next on
        # some images, and a ramp that excluded them all would hold the stream at its narrowest width for good.
        larger = [self.expected_bytes(c) for c in self.choices if c.mode != "all-robot"]
        return self.expected_bytes(choice) <= min((b for b in larger if b > reference), default=0.0)

    def _forget_waiting(self) -> None:
        """Waiting seen with a plan that is not in use fades (it halves in about 14 frames): it was the load of its
        time, and a plan judged on it alone would never get another try."""
        waiting, fade = self.costs.waiting_ms, self.costs.waiting_fade
        for key in list(waiting):
            if self.current is None or key != self.current.key:
                waiting[key] *= fade.get(key, WAITING_FADE)

    def _left_for_missing(self, choice: Choice) -> None:
        """Left because it was predicted to miss: the robot's waiting is forgotten half as fast as before. (A plan
        over the link waited in the link, which the bandwidth estimate follows: its waiting fades at one rate.)"""
        if choice.mode != "all-robot":
            return
        fade = self.costs.waiting_fade.get(choice.key, WAITING_FADE)
        self.costs.waiting_fade[choice.key] = min(1 - (1 - fade) / 2, WAITING_FADE_SLOWEST)
        self.costs.kept[choice.key] = 0

    def _probe(self, predicted: dict[Choice, float]) -> Decision | None:
        """Every PROBE_EVERY frames answered off the link, one over it, when the link could change the choice: a
        split as faithful as the current choice (it might be quicker), or any split while the current one is
        predicted to miss the deadline (the fewest bytes: a recovering link shows in them too)."""
        current = self.current
        uses_link = [c for c in self.choices if c.mode != "all-robot"]
        if current is None or current.mode != "all-robot" or not uses_link:
            return None
        as_good = [c for c in uses_link if c.fidelity >= current.fidelity]
        if not as_good and predicted[current] <= self.deadline_ms:
            return None
        self._since_link += 1
        if self._since_link < self._probe_every:
            return None
        self._since_link = 0
        # A probe is for the estimate: one as faithful as the robot only where it is expected to be in time.
        as_good = [c for c in as_good if predicted[c] <= self.deadline_ms]
        if as_good:
            probe = max(as_good, key=lambda c: (c.fidelity, -self.expected_bytes(c)))
            reason = "probing the link with a split as faithful as the robot"
        else:
            probe = min(uses_link, key=lambda c: (self.expected_bytes(c), -c.fidelity))
            reason = "probing the link with the split that sends the fewest bytes"
        self._probes_out[probe.key] = self._probes_out.get(probe.key, 0) + 1
        return Decision(probe, predicted[probe], f"{reason} (every {self._probe_every} frames)")

    def _probe_answered(self, choice: Choice, latency_ms: float) -> None:
        """A probe that missed the deadline spaces the next ones out; one that met it restores the interval."""
        out = self._probes_out.get(choice.key, 0)
        if out == 0:
            return
        self._probes_out[choice.key] = out - 1
        if latency_ms > self.deadline_ms:
            self._probe_every = min(self._probe_every * 2, PROBE_EVERY_MAX)
        else:
            self._probe_every = PROBE_EVERY

    def observe(
        self,
        choice: Choice,
        result: InferenceResult,
        latency_ms: float | None = None,
        answered_at_ms: float | None = None,
    ) -> None:
        """Learn from one answered frame: compute on each side, bytes, the link (``answered_at_ms``: when the answer
        came, on a monotonic clock, places the frame's transfer beside the others in flight), and (``latency_ms``:
        from the frame's arrival to its answer) the waiting the stages do not show: a robot that cannot keep up
        with the camera queues frames, whatever its compute per frame says."""
        self._learn(choice, result, answered_at_ms)
        if latency_ms is not None:
            waited = max(latency_ms - self._compute_and_link(choice), 0.0)
            self.costs.waiting_ms[choice.key] = _smooth(self.costs.waiting_ms.get(choice.key), waited)
        latency = latency_ms if latency_ms is not None else result.total_ms
        self._count_kept(choice, latency <= self.deadline_ms)
        self._probe_answered(choice, latency)

    def _count_kept(self, choice: Choice, met: bool) -> None:
        if self._trial is not None and self._trial[0] == choice.key:
            if not met:
                self._hold[choice.key] = min(self._hold.get(choice.key, HOLD_FRAMES) * 2, HOLD_FRAMES_MAX)
            answered = self._trial[1] + 1
            self._trial = None if not met or answered >= TRIAL_FRAMES else (choice.key, answered)
        kept = self.costs.kept
        kept[choice.key] = kept.get(choice.key, 0) + 1 if met else 0
        if kept[choice.key] >= FORGIVEN_AFTER:
            self.costs.waiting_fade.pop(choice.key, None)
            self._hold.pop(choice.key, None)

    def _learn(self, choice: Choice, result: InferenceResult, answered_at_ms: float | None) -> None:
        robot = sum(s.ms for s in result.stages if s.where == "robot" and s.name in ROBOT_STAGES)
        edge = sum(s.ms for s in result.stages if s.where == "edge")
        costs, key = self.costs, _compute_key(choice)
        costs.robot_ms[key] = _smooth(costs.robot_ms.get(key), robot)
        if choice.mode == "all-robot":
            return
        costs.edge_ms[key] = _smooth(costs.edge_ms.get(key), edge)
        costs.bytes_sent[choice.key] = float(result.bytes.sent)
        self._last_link_bytes = float(result.bytes.sent)
        network = sum(s.ms for s in result.stages if s.name == "network")
        # The request's bytes were through before the edge computed (the answer's few bytes come back after).
        ended = None if answered_at_ms is None else answered_at_ms - edge
        self.link.observe(result.bytes.sent + result.bytes.received, network, ended)

    def _switch(self, choice: Choice) -> None:
        if choice != self.current:
            self._candidates = {}
        self.current = choice
        if choice.mode != "all-robot":
            self._since_link = 0

    def _why(self, choice: Choice, predicted_ms: float, how: str = "") -> str:
        prefix = f"{how}: " if how else ""
        return (
            f"{prefix}best held-out fidelity ({choice.fidelity:.1%}) predicted within the deadline: "
            f"{predicted_ms:.1f} ms of {self.deadline_ms:g} ms"
        )
