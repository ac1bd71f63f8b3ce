/* Model page: the split-point chart (inline SVG) and table, calibration, creating and deploying a split, robot and
   edge state, and the planner (ranked plans, deploying the pick, predicted latency against bandwidth). */
"use strict";

(() => {
  const data = UI.pageData();
  const model = data.model;
  const points = model.split_points;
  const splits = data.splits.slice();
  const rawImageBytes = model.input_shape.slice(1).reduce((a, b) => a * b, 1);

  const state = {
    bits: data.default_bits,
    selected: null, // index into points
    split: null, // the split created or picked on this page
    health: undefined,
    calibration: null, // GET /api/models/{id}/calibration, null when the model has none
    plan: null, // the last GET /api/models/{id}/plan answer
  };

  const chartBox = document.getElementById("chart");
  const tableBody = document.getElementById("points-body");
  const selection = document.getElementById("selection");
  const createButton = document.getElementById("create-split");
  const deployButton = document.getElementById("deploy-split");
  const splitStatus = document.getElementById("split-status");
  const clipMode = document.getElementById("clip-mode");

  const wireBytes = (point, bits) => point.wire_bytes[String(bits)];
  const fp32Bytes = (point) => point.wire_bytes["32"];
  /* The calibration of a split point at a bit width ({lo, hi, top1_agreement, cosine, sqnr_db, ...}), or null. */
  const calibrationAt = (point, bits) => {
    if (!state.calibration || !point) return null;
    const entry = state.calibration.points[point.label];
    return (entry && entry.bits[String(bits)]) || null;
  };
  const fmtTop1 = (value) => (value === null || value === undefined ? "—" : UI.percent(value, 1));
  const fmtCosine = (value) => (value === null || value === undefined ? "—" : Number(value).toFixed(4));
  const fmtSqnr = (value) => (value === null || value === undefined ? "—" : Number(value).toFixed(1));
  const fmtClip = (value) => (value === null || value === undefined ? "?" : Number(value.toPrecision(3)).toString());

  /* ---------------------------------------------------------------------------------------------- chart */

  function siBytes(value) {
    const units = ["B", "kB", "MB", "GB", "TB"];
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
  }

  function logTicks(lo, hi) {
    const ticks = [];
    const decades = Math.log10(hi / lo);
    const steps = decades <= 2 ? [1, 2, 5] : [1];
    for (let power = Math.log10(lo); power <= Math.log10(hi) + 1e-9; power += 1) {
      for (const step of steps) {
        const value = step * 10 ** power;
        if (value >= lo * 0.999 && value <= hi * 1.001) ticks.push(value);
      }
    }
    return ticks;
  }

  function drawChart() {
    const n = points.length;
    const width = Math.max(300, Math.floor(chartBox.clientWidth));
    const compact = width < 560;
    const height = compact ? 250 : 320;
    const margin = { top: 14, right: compact ? 44 : 56, bottom: 44, left: compact ? 56 : 70 };
    const plotW = width - margin.left - margin.right;
    const plotH = height - margin.top - margin.bottom;

    const values = points.map((p) => Math.max(1, wireBytes(p, state.bits)));
    const all = values.concat([rawImageBytes]);
    const lo = 10 ** Math.floor(Math.log10(Math.min(...all)));
    let hi = 10 ** Math.ceil(Math.log10(Math.max(...all)));
    if (hi <= lo) hi = lo * 10;

    const x = (i) => margin.left + (n === 1 ? plotW / 2 : (i / (n - 1)) * plotW);
    const y = (bytes) => margin.top + plotH - ((Math.log10(bytes) - Math.log10(lo)) / Math.log10(hi / lo)) * plotH;
    const yShare = (share) => margin.top + plotH - share * plotH;

    const root = UI.svg("svg", {
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": "chart-svg-title",
      class: "chart-svg",
    });
    root.append(
      UI.svg(
        "title",
        { id: "chart-svg-title" },
        `Bytes on the wire at ${state.bits} bits (log scale) and share of compute in the head, for each of ${n} split points`
      )
    );

    // grid and left axis (bytes, log)
    const grid = UI.svg("g", { class: "grid" });
    const leftAxis = UI.svg("g", { class: "axis axis-left" });
    for (const tick of logTicks(lo, hi)) {
      const ty = y(tick);
      const major = Math.abs(Math.log10(tick) - Math.round(Math.log10(tick))) < 1e-9;
      grid.append(
        UI.svg("line", {
          x1: margin.left,
          x2: margin.left + plotW,
          y1: ty,
          y2: ty,
          class: major ? "grid-major" : "grid-minor",
        })
      );
      leftAxis.append(UI.svg("text", { x: margin.left - 8, y: ty, dy: "0.32em", "text-anchor": "end" }, siBytes(tick)));
    }
    // right axis (head compute share, linear)
    const rightAxis = UI.svg("g", { class: "axis axis-right" });
    for (const share of [0, 0.25, 0.5, 0.75, 1]) {
      rightAxis.append(
        UI.svg(
          "text",
          { x: margin.left + plotW + 8, y: yShare(share), dy: "0.32em", "text-anchor": "start" },
          `${Math.round(share * 100)}%`
        )
      );
    }
    // bottom axis (position)
    const bottomAxis = UI.svg("g", { class: "axis axis-bottom" });
    const every = Math.max(1, Math.ceil(n / (compact ? 6 : 12)));
    for (let i = 0; i < n; i += every) {
      bottomAxis.append(UI.svg("text", { x: x(i), y: margin.top + plotH + 16, "text-anchor": "middle" }, String(i)));
    }
    bottomAxis.append(
      UI.svg(
        "text",
        { x: margin.left + plotW / 2, y: height - 6, "text-anchor": "middle", class: "axis-title" },
        "Position in the network (split point index)"
      )
    );
    root.append(grid, leftAxis, rightAxis, bottomAxis);
    root.append(
      UI.svg("rect", { x: margin.left, y: margin.top, width: plotW, height: plotH, class: "plot-frame" })
    );

    // raw image reference line
    const rawY = y(rawImageBytes);
    root.append(
      UI.svg("line", { x1: margin.left, x2: margin.left + plotW, y1: rawY, y2: rawY, class: "raw-line" }),
      UI.svg(
        "text",
        { x: margin.left + plotW - 6, y: rawY - 5, "text-anchor": "end", class: "raw-label" },
        `raw image ${siBytes(rawImageBytes)}`
      )
    );

    // selected split point marker
    if (state.selected !== null) {
      const sx = x(state.selected);
      root.append(
        UI.svg("line", { x1: sx, x2: sx, y1: margin.top, y2: margin.top + plotH, class: "selected-line" })
      );
    }

    // head compute share series
    const sharePath = points.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${yShare(p.head_flops_share).toFixed(1)}`);
    root.append(UI.svg("path", { d: sharePath.join(""), class: "series-share" }));
    // bytes series
    const bytesPath = values.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    root.append(UI.svg("path", { d: bytesPath.join(""), class: "series-bytes" }));

    const radius = n > 80 ? 2 : n > 40 ? 3 : 4;
    const dots = UI.svg("g", { class: "dots" });
    const hits = UI.svg("g", { class: "hits" });
    const column = n === 1 ? plotW : plotW / (n - 1);
    points.forEach((point, i) => {
      const cx = x(i);
      const selected = i === state.selected;
      dots.append(
        UI.svg("rect", {
          x: cx - radius,
          y: yShare(point.head_flops_share) - radius,
          width: radius * 2,
          height: radius * 2,
          class: "dot-share",
        }),
        UI.svg("circle", {
          cx,
          cy: y(values[i]),
          r: selected ? radius + 3 : radius,
          class: selected ? "dot-bytes is-selected" : "dot-bytes",
        })
      );
      const hit = UI.svg("rect", {
        x: cx - column / 2,
        y: margin.top,
        width: column,
        height: plotH,
        class: "hit",
        "data-index": i,
      });
      hit.append(
        UI.svg(
          "title",
          {},
          `${point.label} (#${point.index}): ${UI.bytes(wireBytes(point, state.bits))} bytes at ${state.bits} bits, ` +
            `${UI.percent(point.head_flops_share)} of compute in the head`
        )
      );
      hits.append(hit);
    });
    root.append(dots, hits);
    hits.addEventListener("click", (event) => {
      const target = event.target.closest("[data-index]");
      if (target) select(Number(target.dataset.index), true);
    });
    chartBox.replaceChildren(root);
  }

  /* ---------------------------------------------------------------------------------------------- table */

  function buildTable() {
    const rows = points.map((point, i) => {
      const id = `point-${i}`;
      const radio = UI.el("input", { type: "radio", name: "split_point", id, value: point.label });
      return UI.el(
        "tr",
        { "data-index": i, "data-label": point.label },
        UI.el("td", { class: "pick" }, radio),
        UI.el("td", { class: "num muted" }, String(point.index)),
        UI.el("td", { class: "mono" }, UI.el("label", { for: id }, point.label)),
        UI.el("td", { class: "mono small hide-narrow" }, point.shape.join("×")),
        UI.el("td", { class: "num strong", "data-col": "bytes" }, ""),
        UI.el("td", { class: "num", "data-col": "top1", "data-cal-col": true, hidden: true }, ""),
        UI.el("td", { class: "num", "data-col": "cosine", "data-cal-col": true, hidden: true }, ""),
        UI.el("td", { class: "num hide-narrow", "data-col": "sqnr", "data-cal-col": true, hidden: true }, ""),
        UI.el("td", { class: "num muted hide-narrow" }, UI.bytes(fp32Bytes(point))),
        UI.el("td", { class: "num", "data-col": "compute" }, UI.percent(point.head_flops_share)),
        UI.el("td", { class: "num muted hide-narrow" }, UI.percent(point.head_params_share))
      );
    });
    tableBody.replaceChildren(...rows);
    tableBody.addEventListener("change", (event) => {
      if (event.target.name === "split_point") select(Number(event.target.closest("tr").dataset.index), false);
    });
    tableBody.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-index]");
      if (row && !event.target.closest("input, label")) select(Number(row.dataset.index), false);
    });
  }

  function updateTable() {
    for (const row of tableBody.rows) {
      const point = points[Number(row.dataset.index)];
      row.querySelector('[data-col="bytes"]').textContent = UI.bytes(wireBytes(point, state.bits));
      const measured = calibrationAt(point, state.bits);
      row.querySelector('[data-col="top1"]').textContent = fmtTop1(measured && measured.top1_agreement);
      row.querySelector('[data-col="cosine"]').textContent = fmtCosine(measured && measured.cosine);
      row.querySelector('[data-col="sqnr"]').textContent = fmtSqnr(measured && measured.sqnr_db);
      const selected = Number(row.dataset.index) === state.selected;
      row.classList.toggle("is-selected", selected);
      row.querySelector("input").checked = selected;
    }
    for (const node of document.querySelectorAll(".js-bits")) node.textContent = String(state.bits);
    for (const node of document.querySelectorAll("[data-cal-col]")) node.hidden = !state.calibration;
  }

  /* ---------------------------------------------------------------------------------------------- selection */

  function clipRequest() {
    if (state.bits >= 16) return null;
    const mode = clipMode.value;
    if (mode === "calibrated") return "calibrated";
    if (mode === "custom") {
      const lo = Number(document.getElementById("clip-lo").value);
      const hi = Number(document.getElementById("clip-hi").value);
      if (!Number.isFinite(lo) || !Number.isFinite(hi) || !(lo < hi)) {
        throw new UI.ApiError("The custom clip range needs two numbers with low < high.", 0);
      }
      return [lo, hi];
    }
    return null;
  }

  function describeSelection() {
    if (state.selected === null) return;
    const point = points[state.selected];
    const at = wireBytes(point, state.bits);
    const ratio = fp32Bytes(point) / at;
    selection.textContent = "";
    selection.append(
      "Cut after ",
      UI.el("strong", { class: "mono", "data-testid": "selected-point" }, point.label),
      ` (${point.shape.join("×")}): `,
      UI.el("strong", {}, `${UI.bytes(at)} bytes`),
      ` on the wire at ${state.bits} bits` + (ratio > 1.001 ? `, ${ratio.toFixed(ratio >= 10 ? 0 : 1)}× less than fp32` : ""),
      `; the robot does ${UI.percent(point.head_flops_share)} of the compute.`
    );
  }

  function select(index, fromChart) {
    state.selected = index;
    state.split = null;
    deployButton.disabled = true;
    createButton.disabled = false;
    splitStatus.textContent = "";
    updateCalibratedOption();
    updateTable();
    drawChart();
    describeSelection();
    const row = tableBody.rows[index];
    if (fromChart && row) {
      row.scrollIntoView({ block: "nearest" });
      row.querySelector("input").focus({ preventScroll: true });
    }
  }

  function updateCalibratedOption() {
    const option = document.getElementById("clip-calibrated");
    const calibrated = state.calibration !== null && state.calibration.bits.includes(state.bits);
    const measured = state.selected === null ? null : calibrationAt(points[state.selected], state.bits);
    option.disabled = !calibrated;
    if (!state.calibration) option.textContent = "Calibrated (none yet)";
    else if (!calibrated) option.textContent = `Calibrated (not at ${state.bits} bits)`;
    else if (measured && measured.lo !== null && measured.hi !== null) {
      option.textContent = `Calibrated [${fmtClip(measured.lo)}, ${fmtClip(measured.hi)}]`;
    } else option.textContent = `Calibrated (${state.calibration.method})`;
    if (option.disabled && clipMode.value === "calibrated") clipMode.value = "default";
  }

  function showClipFields() {
    const custom = clipMode.value === "custom";
    for (const node of document.querySelectorAll("[data-clip-custom]")) node.hidden = !custom;
    const quantized = state.bits < 16;
    clipMode.disabled = !quantized;
    for (const node of document.querySelectorAll("[data-clip-custom] input")) node.disabled = !quantized;
  }

  /* ---------------------------------------------------------------------------------------------- splits */

  function splitText(split) {
    const clip =
      split.clip_method === "calibrated"
        ? " · calibrated clip"
        : split.clip && split.clip.length
          ? ` · clip [${split.clip[0].join(", ")}]`
          : "";
    return `${split.split_point} · ${split.bits} bits${split.bits < 16 ? clip : ""}`;
  }

  function deployedOn(splitId) {
    const sides = [];
    for (const side of ["edge", "robot"]) {
      const info = state.health && state.health[side];
      if (info && info.active_split_id === splitId) sides.push(side);
    }
    return sides;
  }

  function renderSplits() {
    const list = document.getElementById("split-list");
    document.getElementById("splits-empty").hidden = splits.length > 0;
    list.replaceChildren(
      ...splits.map((split) => {
        const where = deployedOn(split.id);
        const deploy = UI.el(
          "button",
          { type: "button", class: "btn btn-small", "data-deploy": split.id, "aria-label": `Deploy ${splitText(split)}` },
          "Deploy"
        );
        const run = UI.el(
          "a",
          { class: "btn btn-small btn-ghost", href: `/infer?split=${split.id}`, "aria-label": `Run inference on ${splitText(split)}` },
          "Run inference"
        );
        return UI.el(
          "li",
          { "data-split-id": split.id },
          UI.el(
            "div",
            { class: "split-main" },
            UI.el("span", { class: "mono" }, splitText(split)),
            where.length ? UI.el("span", { class: "badge badge-ok" }, `active on ${where.join(" and ")}`) : null,
            UI.el("div", { class: "muted mono small" }, UI.shortId(split.id))
          ),
          UI.el("div", { class: "split-actions" }, deploy, run)
        );
      })
    );
  }

  function splitOf(manifest) {
    return {
      id: manifest.id,
      model_id: manifest.model_id,
      model_name: manifest.model_name,
      split_point: manifest.split_point,
      bits: manifest.quantization.bits,
      clip: manifest.quantization.ranges.map((r) => [r.lo, r.hi]),
      clip_method: manifest.quantization.method,
      weights_trained: manifest.weights_trained,
      head_tail_max_abs_diff: manifest.verification.head_tail_max_abs_diff,
    };
  }

  async function createSplit() {
    UI.clearError();
    if (state.selected === null) return;
    let clip;
    try {
      clip = clipRequest();
    } catch (error) {
      UI.showError(error);
      return;
    }
    const point = points[state.selected];
    const body = { split_point: point.label, bits: state.bits };
    if (clip) body.clip = clip;
    splitStatus.textContent = `Cutting at ${point.label} and checking that head then tail equals the whole model…`;
    try {
      const manifest = await UI.busy(createButton, "Creating…", () =>
        UI.api(`/api/models/${model.id}/splits`, {
          method: "POST",
          headers: { "content-type": "application/json", accept: "application/json" },
          body: JSON.stringify(body),
        })
      );
      const split = splitOf(manifest);
      if (!splits.some((s) => s.id === split.id)) splits.push(split);
      state.split = split;
      deployButton.disabled = false;
      splitStatus.textContent = "";
      splitStatus.append(
        UI.el("strong", {}, "Split created: "),
        UI.el("span", { class: "mono", "data-testid": "split-id" }, UI.shortId(split.id)),
        ` · ${splitText(split)} · head→tail max difference ${split.head_tail_max_abs_diff.toExponential(1)} (verified). `,
        "Deploy it to run it."
      );
      renderSplits();
    } catch (error) {
      splitStatus.textContent = "";
      UI.showError(error);
    }
  }

  async function deploy(splitId, button) {
    UI.clearError();
    const split = splits.find((s) => s.id === splitId);
    splitStatus.textContent = `Deploying ${split ? splitText(split) : UI.shortId(splitId)}: the edge pulls the tail, then the robot pulls the head…`;
    try {
      await UI.busy(button, "Deploying…", () =>
        UI.api(`/api/splits/${splitId}/deploy`, { method: "POST" })
      );
      splitStatus.textContent = "";
      splitStatus.append(
        UI.el("strong", { "data-testid": "deployed" }, "Deployed"),
        ` ${split ? splitText(split) : UI.shortId(splitId)} to the edge and the robot. `,
        UI.el("a", { href: `/infer?split=${splitId}`, "data-testid": "run-inference-link" }, "Run inference →")
      );
    } catch (error) {
      splitStatus.textContent = "";
      UI.showError(error);
    }
    await refreshSides();
  }

  /* ---------------------------------------------------------------------------------------------- robot / edge */

  function describeDeployment(info) {
    const active = info.deployed.find((d) => d.split_id === info.active_split_id);
    if (!active) return { split: ["nothing deployed"], provider: "—" };
    const owner = active.model_id === model.id ? "this model" : active.model_name;
    return {
      split: [
        `${active.split_point} · ${active.bits} bits (${owner})`,
        UI.el("span", { class: "muted mono small block" }, UI.shortId(active.split_id)),
      ],
      provider: active.provider,
    };
  }

  function renderSides() {
    for (const side of ["robot", "edge"]) {
      const box = document.querySelector(`.side[data-side="${side}"]`);
      const field = (name) => box.querySelector(`[data-field="${name}"]`);
      const info = state.health ? state.health[side] : null;
      box.classList.remove("is-up", "is-down");
      if (state.health === null) {
        field("health").textContent = "unknown: the splitter did not answer";
        field("split").textContent = "—";
        field("provider").textContent = "—";
        box.classList.add("is-down");
      } else if (!info) {
        field("health").textContent = `down: not reachable from the splitter`;
        field("split").textContent = "—";
        field("provider").textContent = "—";
        box.classList.add("is-down");
      } else {
        const deployment = describeDeployment(info);
        field("health").textContent = "up";
        field("split").replaceChildren(...deployment.split);
        field("provider").textContent = deployment.provider;
        box.classList.add("is-up");
      }
    }
  }

  async function refreshSides() {
    const button = document.getElementById("refresh-health");
    button.disabled = true;
    try {
      state.health = await UI.refreshServiceStatus();
    } finally {
      button.disabled = false;
    }
    renderSides();
    renderSplits();
  }

  /* ---------------------------------------------------------------------------------------------- calibration */

  const calibrateForm = document.getElementById("calibrate-form");
  const calibrateButton = document.getElementById("calibrate-button");
  const calibrateStatus = document.getElementById("calibrate-status");

  function renderCalibration() {
    const summary = document.getElementById("calibration-summary");
    const cal = state.calibration;
    if (cal) {
      summary.textContent =
        `Calibrated with ${cal.method}${cal.per_channel ? " per channel" : ""} on ${cal.images} ` +
        `${cal.image_source} image${cal.images === 1 ? "" : "s"} at ${cal.bits.join(", ")} bits ` +
        `(${Number(cal.seconds).toFixed(1)} s, ${cal.created_at.slice(0, 19).replace("T", " ")} UTC). ` +
        "The split-point table shows the fidelity at the chosen bit width.";
    }
    updateTable();
    updateCalibratedOption();
  }

  async function loadCalibration() {
    try {
      state.calibration = await UI.api(`/api/models/${model.id}/calibration`);
    } catch (error) {
      state.calibration = null;
      if (!(error instanceof UI.ApiError && error.status === 404)) UI.showError(error);
    }
    renderCalibration();
  }

  async function calibrate(event) {
    event.preventDefault();
    UI.clearError();
    const form = new FormData();
    form.append("method", document.getElementById("calibrate-method").value);
    form.append("per_channel", document.getElementById("calibrate-per-channel").checked ? "true" : "false");
    for (const file of document.getElementById("calibrate-images").files) form.append("images", file);
    const started = Date.now();
    const label = calibrateButton.textContent;
    const tick = () => {
      const seconds = Math.floor((Date.now() - started) / 1000);
      calibrateButton.textContent = `Calibrating… ${seconds}s`;
      calibrateStatus.textContent =
        `Calibrating… ${seconds}s: measuring clip ranges and fidelity at every split point (usually 10–60 s).`;
    };
    calibrateButton.disabled = true;
    calibrateButton.setAttribute("aria-busy", "true");
    tick();
    const timer = setInterval(tick, 1000);
    try {
      state.calibration = await UI.api(`/api/models/${model.id}/calibrate`, { method: "POST", body: form });
      calibrateStatus.textContent = "";
      calibrateStatus.append(
        UI.el("strong", { "data-testid": "calibrated" }, "Calibrated"),
        ` in ${((Date.now() - started) / 1000).toFixed(1)} s. The “Calibrated” clip range is now available.`
      );
      renderCalibration();
    } catch (error) {
      calibrateStatus.textContent = "";
      UI.showError(error);
    } finally {
      clearInterval(timer);
      calibrateButton.textContent = label;
      calibrateButton.removeAttribute("aria-busy");
      calibrateButton.disabled = false;
    }
  }

  /* ---------------------------------------------------------------------------------------------- planner */

  const planForm = document.getElementById("plan-form");
  const planButton = document.getElementById("plan-button");
  const planDeployButton = document.getElementById("plan-deploy");
  const planStatus = document.getElementById("plan-status");
  const planResult = document.getElementById("plan-result");
  const curveBox = document.getElementById("plan-curve");
  const CURVE_COLORS = ["#2f6fe4", "#e08a0b", "#139c74", "#b3261e", "#7b3fc4", "#5d6778", "#c2409a", "#0b7c8c"];
  const CURVE_BANDWIDTHS = [1, 2, 5, 10, 20, 50, 100, 200];
  let curveData = null;

  const planName = (plan) => (plan.mode === "split" ? `${plan.split_point} @ ${plan.bits}b` : plan.mode);

  function planQuery() {
    const params = new URLSearchParams();
    for (const [id, name] of [
      ["plan-bandwidth", "bandwidth_mbps"],
      ["plan-rtt", "rtt_ms"],
      ["plan-min-top1", "min_top1"],
      ["plan-min-cosine", "min_cosine"],
    ]) {
      const input = document.getElementById(id);
      const text = input.value.trim();
      if (!text) continue;
      const value = Number(text);
      if (!Number.isFinite(value) || !input.checkValidity()) {
        throw new UI.ApiError(`${input.labels[0].textContent} must be a number in range, got “${text}”.`, 0);
      }
      params.set(name, String(value));
    }
    return params;
  }

  function renderPlan(answer) {
    const link = answer.link;
    const pick = answer.pick;
    const summary = document.getElementById("plan-summary");
    summary.textContent = "";
    summary.append(
      "Recommended: ",
      UI.el("strong", { class: "mono", "data-testid": "plan-pick" }, planName(pick)),
      ` at ${UI.ms(pick.total_ms)} ms predicted, on a ${Number(link.bandwidth_mbps.toPrecision(4))} Mbit/s ` +
        `(${link.bandwidth_source}) link with ${UI.ms(link.rtt_ms)} ms RTT (${link.rtt_source}); floor top-1 ` +
        `${UI.percent(answer.floor.min_top1, 1)}, cosine ${answer.floor.min_cosine}.` +
        (answer.calibrated ? "" : " Not calibrated: quantized splits below 16 bits cannot pass the floor.")
    );
    for (const note of answer.notes) summary.append(UI.el("span", { class: "muted small block" }, note));
    const rows = answer.plans.map((plan) =>
      UI.el(
        "tr",
        {
          "data-testid": "plan-row",
          "data-key": plan.key,
          class: [plan.key === pick.key ? "is-pick" : "", plan.eligible ? "" : "is-ineligible"].join(" ").trim(),
        },
        UI.el("td", { class: "num muted", "data-col": "rank" }, plan.rank === null ? "—" : String(plan.rank)),
        UI.el(
          "td",
          { class: "mono", "data-col": "name" },
          planName(plan),
          plan.key === pick.key ? UI.el("span", { class: "badge badge-ok" }, "pick") : null
        ),
        UI.el("td", { class: "num strong", "data-col": "total" }, UI.ms(plan.total_ms)),
        UI.el("td", { class: "num", "data-col": "robot" }, UI.ms(plan.robot_ms)),
        UI.el("td", { class: "num", "data-col": "transfer" }, UI.ms(plan.transfer_ms)),
        UI.el("td", { class: "num", "data-col": "rtt" }, UI.ms(plan.rtt_ms)),
        UI.el("td", { class: "num", "data-col": "edge" }, UI.ms(plan.edge_ms)),
        UI.el("td", { class: "num", "data-col": "bytes" }, UI.bytes(plan.bytes)),
        UI.el("td", { class: "num", "data-col": "top1" }, fmtTop1(plan.fidelity.top1_agreement)),
        UI.el("td", { class: "num", "data-col": "cosine" }, fmtCosine(plan.fidelity.cosine)),
        UI.el(
          "td",
          { class: "small plan-reason", "data-col": "eligible" },
          UI.el("span", { class: plan.eligible ? "badge badge-ok" : "badge badge-bad" }, plan.eligible ? "eligible" : "no"),
          " ",
          plan.reason
        )
      )
    );
    document.getElementById("plan-body").replaceChildren(...rows);
    planResult.hidden = false;
  }

  function drawCurve() {
    if (!curveData || planResult.hidden) return;
    const bws = curveData.bandwidths_mbps;
    const series = curveData.series;
    const width = Math.max(300, Math.floor(curveBox.clientWidth));
    const compact = width < 560;
    const height = compact ? 240 : 300;
    const margin = { top: 14, right: 16, bottom: 44, left: compact ? 48 : 60 };
    const plotW = width - margin.left - margin.right;
    const plotH = height - margin.top - margin.bottom;
    const lo = Math.min(...bws);
    const hi = Math.max(...bws) > lo ? Math.max(...bws) : lo * 10;
    const maxMs = Math.max(1e-6, ...series.flatMap((s) => s.total_ms)) * 1.05;
    const x = (bw) => margin.left + ((Math.log10(bw) - Math.log10(lo)) / Math.log10(hi / lo)) * plotW;
    const y = (ms) => margin.top + plotH - (ms / maxMs) * plotH;

    const root = UI.svg("svg", {
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": "curve-svg-title",
      class: "chart-svg",
    });
    root.append(
      UI.svg(
        "title",
        { id: "curve-svg-title" },
        `Predicted latency against bandwidth (log scale) at ${UI.ms(curveData.rtt_ms)} ms RTT for ${series.length} plans`
      )
    );
    const grid = UI.svg("g", { class: "grid" });
    const leftAxis = UI.svg("g", { class: "axis axis-left" });
    const step = 10 ** Math.floor(Math.log10(maxMs / 4));
    const tickStep = [1, 2, 5, 10].map((m) => m * step).find((s) => maxMs / s <= 6) || step * 10;
    for (let ms = 0; ms <= maxMs; ms += tickStep) {
      grid.append(UI.svg("line", { x1: margin.left, x2: margin.left + plotW, y1: y(ms), y2: y(ms), class: "grid-minor" }));
      leftAxis.append(
        UI.svg("text", { x: margin.left - 8, y: y(ms), dy: "0.32em", "text-anchor": "end" }, String(Number(ms.toPrecision(4))))
      );
    }
    const bottomAxis = UI.svg("g", { class: "axis axis-bottom" });
    const every = compact && bws.length > 6 ? 2 : 1;
    bws.forEach((bw, i) => {
      grid.append(UI.svg("line", { x1: x(bw), x2: x(bw), y1: margin.top, y2: margin.top + plotH, class: "grid-minor" }));
      if (i % every === 0) {
        bottomAxis.append(UI.svg("text", { x: x(bw), y: margin.top + plotH + 16, "text-anchor": "middle" }, String(bw)));
      }
    });
    bottomAxis.append(
      UI.svg(
        "text",
        { x: margin.left + plotW / 2, y: height - 6, "text-anchor": "middle", class: "axis-title" },
        "Bandwidth, Mbit/s (log scale)"
      )
    );
    leftAxis.append(
      UI.svg(
        "text",
        { x: 12, y: margin.top + plotH / 2, "text-anchor": "middle", class: "axis-title", transform: `rotate(-90 12 ${margin.top + plotH / 2})` },
        "ms"
      )
    );
    root.append(grid, leftAxis, bottomAxis);
    root.append(UI.svg("rect", { x: margin.left, y: margin.top, width: plotW, height: plotH, class: "plot-frame" }));

    const lines = UI.svg("g", { class: "curve-lines" });
    const winners = UI.svg("g", { class: "curve-winners" });
    series.forEach((s, i) => {
      const color = CURVE_COLORS[i % CURVE_COLORS.length];
      const line = UI.svg("polyline", {
        points: s.total_ms.map((ms, j) => `${x(bws[j]).toFixed(1)},${y(ms).toFixed(1)}`).join(" "),
        class: "curve-line",
        stroke: color,
        "data-key": s.key,
      });
      line.append(UI.svg("title", {}, `${planName(s)}: ${s.total_ms.map((ms, j) => `${bws[j]} Mbit/s ${UI.ms(ms)} ms`).join(", ")}`));
      lines.append(line);
      s.total_ms.forEach((ms, j) => {
        if (curveData.winners[j] === s.key) {
          winners.append(UI.svg("circle", { cx: x(bws[j]), cy: y(ms), r: 4, fill: color, class: "curve-winner" }));
        }
      });
    });
    root.append(lines, winners);
    curveBox.replaceChildren(root);
  }

  function renderCurveLegend() {
    const legend = document.getElementById("plan-curve-legend");
    const bws = curveData.bandwidths_mbps;
    legend.replaceChildren(
      ...curveData.series.map((s, i) => {
        const won = bws.filter((_, j) => curveData.winners[j] === s.key);
        const swatch = UI.svg("svg", { width: 18, height: 10, "aria-hidden": "true", class: "curve-swatch" });
        swatch.append(UI.svg("line", { x1: 0, x2: 18, y1: 5, y2: 5, stroke: CURVE_COLORS[i % CURVE_COLORS.length], "stroke-width": 3 }));
        return UI.el(
          "span",
          { class: "curve-key", "data-testid": "curve-key", "data-key": s.key },
          swatch,
          UI.el("span", { class: "mono" }, planName(s)),
          won.length ? UI.el("span", { class: "muted" }, ` fastest at ${won.join(", ")} Mbit/s`) : null
        );
      }),
      UI.el("span", { class: "muted" }, "Dots: the fastest plan at that bandwidth.")
    );
  }

  async function recommend(event) {
    event.preventDefault();
    UI.clearError();
    let params;
    try {
      params = planQuery();
    } catch (error) {
      UI.showError(error);
      return;
    }
    planStatus.textContent = params.has("bandwidth_mbps") && params.has("rtt_ms")
      ? "Profiling the model on the robot and the edge…"
      : "Profiling the model on the robot and the edge, and measuring the link…";
    try {
      const query = params.toString();
      const answer = await UI.busy(planButton, "Planning…", async () => {
        const planned = await UI.api(`/api/models/${model.id}/plan?${query}`);
        const curveParams = new URLSearchParams(params);
        curveParams.delete("bandwidth_mbps");
        const bandwidths = new Set(CURVE_BANDWIDTHS);
        if (params.has("bandwidth_mbps")) bandwidths.add(Number(params.get("bandwidth_mbps")));
        curveParams.set("bandwidths", [...bandwidths].sort((a, b) => a - b).join(","));
        if (!curveParams.has("rtt_ms")) curveParams.set("rtt_ms", String(planned.link.rtt_ms));
        curveData = await UI.api(`/api/models/${model.id}/plan/curve?${curveParams.toString()}`);
        return planned;
      });
      state.plan = { query, answer };
      planStatus.textContent = "";
      renderPlan(answer);
      renderCurveLegend();
      drawCurve();
      planDeployButton.disabled = false;
    } catch (error) {
      planStatus.textContent = "";
      UI.showError(error);
    }
  }

  async function deployPlan() {
    if (!state.plan) return;
    UI.clearError();
    planStatus.textContent = "Planning again, then creating and deploying the pick to the edge and the robot…";
    try {
      const done = await UI.busy(planDeployButton, "Deploying…", () =>
        UI.api(`/api/models/${model.id}/plan?${state.plan.query}`, { method: "POST" })
      );
      if (!splits.some((s) => s.id === done.split_id)) {
        try {
          splits.push(splitOf(await UI.api(`/api/splits/${done.split_id}`)));
        } catch (error) {
          /* the list stays as it was; the deployment itself succeeded */
        }
      }
      planStatus.textContent = "";
      planStatus.append(
        UI.el("strong", { "data-testid": "plan-deployed" }, "Deployed"),
        " ",
        UI.el("span", { class: "mono", "data-testid": "plan-deployed-name" }, planName(done.pick)),
        ` (${UI.ms(done.pick.total_ms)} ms predicted): split `,
        UI.el("span", { class: "mono" }, UI.shortId(done.split_id)),
        done.created_split ? " (created now)" : " (already there)",
        ". The robot should run it in mode ",
        UI.el("strong", { class: "mono", "data-testid": "plan-mode" }, done.mode),
        ". ",
        UI.el("a", { href: `/infer?split=${done.split_id}` }, "Run inference →")
      );
      renderPlan(done);
    } catch (error) {
      planStatus.textContent = "";
      UI.showError(error);
    }
    await refreshSides();
  }

  /* ---------------------------------------------------------------------------------------------- wiring */

  document.getElementById("controls").addEventListener("change", (event) => {
    if (event.target.name === "bits") {
      state.bits = Number(event.target.value);
      showClipFields();
      updateCalibratedOption();
      updateTable();
      drawChart();
      describeSelection();
    } else if (event.target === clipMode) {
      showClipFields();
    }
  });
  document.getElementById("controls").addEventListener("submit", (event) => event.preventDefault());
  createButton.addEventListener("click", createSplit);
  deployButton.addEventListener("click", () => state.split && deploy(state.split.id, deployButton));
  document.getElementById("split-list").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-deploy]");
    if (button) deploy(button.dataset.deploy, button);
  });
  document.getElementById("refresh-health").addEventListener("click", refreshSides);
  calibrateForm.addEventListener("submit", calibrate);
  planForm.addEventListener("submit", recommend);
  planDeployButton.addEventListener("click", deployPlan);

  let resizeTimer = null;
  const resizer = new ResizeObserver(() => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      drawChart();
      drawCurve();
    }, 60);
  });
  resizer.observe(chartBox);
  resizer.observe(curveBox);

  buildTable();
  updateTable();
  showClipFields();
  drawChart();
  renderSplits();
  refreshSides();
  loadCalibration();
})();
