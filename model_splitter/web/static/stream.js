/* The stream page: open WS /api/stream/sample with the form's options, chart each frame's answer as it comes. */
"use strict";

(() => {
  const form = document.getElementById("stream-form");
  const button = document.getElementById("stream-start");
  const chart = document.getElementById("stream-chart");
  const W = 640;
  const H = 260;
  const PAD = { left: 44, right: 36, top: 12, bottom: 24 };
  let frames = [];
  let socket = null;

  const svg = (tag, attributes) => UI.svg(tag, attributes);

  function text(id, value) {
    document.getElementById(id).textContent = value;
  }

  function median(values) {
    if (!values.length) return null;
    const sorted = values.slice().sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  }

  function draw(total, deadline) {
    chart.replaceChildren();
    const answered = frames.filter((f) => f.status === "ok");
    const top = Math.max(deadline * 1.5, ...answered.map((f) => f.latency_ms));
    const x = (n) => PAD.left + (n / Math.max(total - 1, 1)) * (W - PAD.left - PAD.right);
    const y = (ms) => H - PAD.bottom - (Math.min(ms, top) / top) * (H - PAD.top - PAD.bottom);
    const yBits = (bits) => H - PAD.bottom - (bits / 32) * (H - PAD.top - PAD.bottom);
    chart.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom, class: "axis" }));
    for (const ms of [0, deadline, top]) {
      const label = svg("text", { x: PAD.left - 4, y: y(ms) + 4, "text-anchor": "end", class: "tick" });
      label.textContent = `${Math.round(ms)}`;
      chart.append(label);
    }
    chart.append(
      svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(deadline), y2: y(deadline), class: "deadline", stroke: "#c62828" }),
    );
    let path = "";
    for (const f of answered) {
      const bits = f.choice && f.choice.mode === "split" ? f.choice.bits : 0;
      path += `${path ? "L" : "M"}${x(f.frame).toFixed(1)},${yBits(bits).toFixed(1)}`;
    }
    if (path) chart.append(svg("path", { d: path, fill: "none", stroke: "#2e7d32", "stroke-width": 1.5, class: "bits" }));
    for (const f of answered) {
      const dot = svg("circle", {
        cx: x(f.frame).toFixed(1),
        cy: y(f.latency_ms).toFixed(1),
        r: 2.5,
        class: f.deadline_met ? "frame met" : "frame missed",
        fill: f.deadline_met ? "#2950c6" : "#c62828",
        "data-frame": f.frame,
      });
      const title = svg("title", {});
      title.textContent = `frame ${f.frame}: ${f.latency_ms.toFixed(1)} ms, ${describe(f.choice)}`;
      dot.append(title);
      chart.append(dot);
    }
  }

  function describe(choice) {
    if (!choice) return "–";
    return choice.mode === "split" ? `split at ${choice.bits} bits` : choice.mode;
  }

  function update(total, deadline) {
    const answered = frames.filter((f) => f.status === "ok");
    text("stream-count", `${frames.length} / ${total}`);
    text("stream-answered", String(answered.length));
    text("stream-dropped", String(frames.filter((f) => f.status === "dropped").length));
    text("stream-missed", String(frames.filter((f) => f.status !== "ok" || !f.deadline_met).length));
    const p50 = median(answered.map((f) => f.latency_ms));
    text("stream-p50", p50 === null ? "–" : `${p50.toFixed(1)} ms`);
    const last = answered[answered.length - 1];
    if (last) {
      const mbps = last.link && last.link.bandwidth_mbps;
      text("stream-link", mbps ? `${mbps.toFixed(2)} Mbit/s, RTT ${(last.link.rtt_ms || 0).toFixed(1)} ms` : "not measured yet");
      text("stream-plan", describe(last.choice));
      text("stream-reason", `Frame ${last.frame} (${last.top || "answer"}): ${last.choice.reason}.`);
    }
    draw(total, deadline);
  }

  function start(event) {
    event.preventDefault();
    UI.showError(null, "stream-error");
    if (socket) socket.close();
    const data = new FormData(form);
    const total = Number(data.get("frames"));
    const deadline = Number(data.get("deadline_ms"));
    const query = new URLSearchParams();
    for (const [name, value] of data.entries()) query.set(name, String(value));
    frames = [];
    update(total, deadline);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/api/stream/sample?${query}`);
    button.disabled = true;
    let finished = false;
    socket.onmessage = (message) => {
      const answer = JSON.parse(message.data);
      if (answer.status === "done") {
        finished = true;
        return;
      }
      if (answer.status === "error" && answer.frame === undefined) {
        finished = true;
        UI.showError(new UI.ApiError(answer.detail, answer.http_status), "stream-error");
        return;
      }
      frames.push(answer);
      update(total, deadline);
    };
    socket.onclose = () => {
      button.disabled = false;
      if (!finished && frames.length < total) {
        UI.showError(
          new UI.ApiError("The stream closed early: check that a split is deployed (Models page) and the robot is up.", 0),
          "stream-error",
        );
      }
    };
  }

  form.addEventListener("submit", start);
})();
