/* The model page's split points: the chart (bytes on the wire and the head's share of compute, inline SVG), the
   table, and the selection with its bit width and clip range. */
"use strict";

const SplitPoints = (() => {
  const { points, rawImageBytes, sampleImageName, state, wireBytes, fp32Bytes, calibrationAt, fmt } = ModelPage;
  const chartBox = document.getElementById("chart");
  const tableBody = document.getElementById("points-body");
  const selection = document.getElementById("selection");
  const clipMode = document.getElementById("clip-mode");

  /* ---------------------------------------------------------------------------------------------- chart */

  function drawChart() {
    const n = points.length;
    const frame = Charts.area(chartBox, {
      height: 320,
      compactHeight: 250,
      margin: (compact) => ({ top: 14, right: compact ? 44 : 56, bottom: 44, left: compact ? 56 : 70 }),
    });
    const { width, height, compact, margin, plotW, plotH } = frame;

    const values = points.map((p) => Math.max(1, wireBytes(p, state.bits)));
    const all = values.concat([rawImageBytes]);
    const lo = 10 ** Math.floor(Math.log10(Math.min(...all)));
    let hi = 10 ** Math.ceil(Math.log10(Math.max(...all)));
    if (hi <= lo) hi = lo * 10;

    const x = (i) => margin.left + (n === 1 ? plotW / 2 : (i / (n - 1)) * plotW);
    const y = (bytes) => margin.top + plotH - ((Math.log10(bytes) - Math.log10(lo)) / Math.log10(hi / lo)) * plotH;
    const yShare = (share) => margin.top + plotH - share * plotH;

    const root = Charts.root(
      frame,
      "chart-svg-title",
      `Bytes on the wire at ${state.bits} bits (log scale) and share of compute in the head, for each of ${n} split points`
    );

    // grid and left axis (bytes, log)
    const grid = UI.svg("g", { class: "grid" });
    const leftAxis = UI.svg("g", { class: "axis axis-left" });
    for (const tick of Charts.logTicks(lo, hi)) {
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
      leftAxis.append(UI.svg("text", { x: margin.left - 8, y: ty, dy: "0.32em", "text-anchor": "end" }, UI.humanBytes(tick)));
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
    bottomAxis.append(Charts.bottomTitle(frame, "Position in the network (split point index)"));
    root.append(grid, leftAxis, rightAxis, bottomAxis, Charts.plotFrame(frame));

    // raw image reference line
    const rawY = y(rawImageBytes);
    root.append(
      UI.svg("line", { x1: margin.left, x2: margin.left + plotW, y1: rawY, y2: rawY, class: "raw-line" }),
      UI.svg(
        "text",
        { x: margin.left + plotW - 6, y: rawY - 5, "text-anchor": "end", class: "raw-label" },
        `all-edge: ${sampleImageName} ${UI.humanBytes(rawImageBytes)}`
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
    const pareto = paretoSet(values);
    const recommended = recommendedIndex();
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
          class: `dot-bytes${selected ? " is-selected" : ""}${pareto.has(i) ? " is-pareto" : ""}`,
          "data-testid": pareto.has(i) ? "pareto-dot" : null,
          "data-index": i,
        })
      );
      if (i === recommended) {
        const top = y(values[i]) - radius - 4;
        dots.append(
          UI.svg("path", {
            d: `M${cx - 6},${top - 10}L${cx + 6},${top - 10}L${cx},${top}Z`,
            class: "recommended-mark",
            "data-testid": "recommended-point",
            "data-index": i,
          })
        );
      }
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
    const readout = UI.svg("g", { class: "readout", "data-testid": "chart-readout", visibility: "hidden" });
    const readoutBox = UI.svg("rect", { rx: 4, class: "readout-box" });
    const readoutLines = [0, 1, 2].map((k) => UI.svg("text", { x: 8, y: 16 + k * 15, class: "readout-text" }));
    readout.append(readoutBox, ...readoutLines);
    root.append(dots, hits, readout);
    hits.addEventListener("click", (event) => {
      const target = event.target.closest("[data-index]");
      if (target) select(Number(target.dataset.index), true);
    });
    // The point's values beside it while the pointer is over its column (the native title is slow and small).
    hits.addEventListener("pointerover", (event) => {
      const target = event.target.closest("[data-index]");
      if (!target) return;
      const i = Number(target.dataset.index);
      const point = points[i];
      const lines = [
        `${point.label}${pareto.has(i) ? "  (Pareto)" : ""}${i === recommended ? "  (recommended)" : ""}`,
        `${UI.humanBytes(wireBytes(point, state.bits))} at ${state.bits} bits`,
        `${UI.percent(point.head_flops_share)} of compute in the head`,
      ];
      lines.forEach((text, k) => (readoutLines[k].textContent = text));
      const boxWidth = Math.max(...lines.map((text) => text.length)) * 6.6 + 16;
      readoutBox.setAttribute("width", String(boxWidth));
      readoutBox.setAttribute("height", "54");
      const left = Math.min(Math.max(margin.left, x(i) + 10), margin.left + plotW - boxWidth);
      const top = Math.min(Math.max(margin.top, y(values[i]) - 60), margin.top + plotH - 54);
      readout.setAttribute("transform", `translate(${left.toFixed(1)},${top.toFixed(1)})`);
      readout.setAttribute("visibility", "visible");
      readout.dataset.index = String(i);
    });
    hits.addEventListener("pointerleave", () => readout.setAttribute("visibility", "hidden"));
    chartBox.replaceChildren(root);
  }

  /* The points no other point beats on both bytes on the wire and the head's share of compute: the good
     trade-offs (a point with more bytes and more robot compute than another is never the better cut). */
  function paretoSet(bytes) {
    const set = new Set();
    points.forEach((p, i) => {
      const dominated = points.some(
        (q, j) =>
          j !== i &&
          bytes[j] <= bytes[i] &&
          q.head_flops_share <= p.head_flops_share &&
          (bytes[j] < bytes[i] || q.head_flops_share < p.head_flops_share)
      );
      if (!dominated) set.add(i);
    });
    return set;
  }

  /* The split point the planner recommends, when its last answer picked a split of this model. */
  function recommendedIndex() {
    const pick = state.plan && state.plan.answer && state.plan.answer.pick;
    if (!pick || pick.mode !== "split") return -1;
    return points.findIndex((p) => p.label === pick.split_point);
  }

  /* ---------------------------------------------------------------------------------------------- table */

  function buildTable() {
    wireColumns();
    const rows = points.map((point, i) => {
      const id = `point-${i}`;
      const radio = UI.el("input", { type: "radio", name: "split_point", id, value: point.label });
      // Cells carry their column's key and conditions (data-cal-col, data-plan-col, data-optional), as the heads do.
      const cell = (col, className, content, flags = {}) =>
        UI.el("td", Object.assign({ class: className, "data-col": col, hidden: col !== "label" }, flags), ...content);
      return UI.el(
        "tr",
        { "data-index": i, "data-label": point.label },
        cell("label", "mono sticky-col", [radio, " ", UI.el("label", { for: id }, point.label)]),
        cell("index", "num muted", [String(point.index)], { "data-optional": true }),
        cell("shape", "mono small hide-narrow", [point.shape.join("×")], { "data-optional": true }),
        cell("bytes", "num strong", [""]),
        cell("predicted", "num", [""], { "data-plan-col": true }),
        cell("top1", "num", [""], { "data-cal-col": true }),
        cell("cosine", "num", [""], { "data-cal-col": true, "data-optional": true }),
        cell("sqnr", "num hide-narrow", [""], { "data-cal-col": true, "data-optional": true }),
        cell("fp32", "num muted hide-narrow", [UI.bytes(fp32Bytes(point))], { "data-optional": true }),
        cell("compute", "num", [UI.percent(point.head_flops_share)]),
        cell("params", "num muted hide-narrow", [UI.percent(point.head_params_share)], { "data-optional": true })
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
      // A detector's or segmenter's answers compared (boxes, masks); a classifier's top-1.
      const agreement = measured && (measured.task ? measured.task.agreement : measured.top1_agreement);
      row.querySelector('[data-col="top1"]').textContent = fmt.top1(agreement);
      row.querySelector('[data-col="cosine"]').textContent = fmt.cosine(measured && measured.cosine);
      row.querySelector('[data-col="sqnr"]').textContent = fmt.sqnr(measured && measured.sqnr_db);
      const predicted = plannedAt(point, state.bits);
      const cell = row.querySelector('[data-col="predicted"]');
      cell.textContent = predicted ? UI.ms(predicted.total_ms) : "—";
      cell.classList.toggle("muted", Boolean(predicted) && !predicted.eligible);
      cell.title = predicted && !predicted.eligible ? `below the fidelity floor: ${predicted.reason || ""}` : "";
      const selected = Number(row.dataset.index) === state.selected;
      row.classList.toggle("is-selected", selected);
      row.querySelector("input").checked = selected;
    }
    for (const node of document.querySelectorAll(".js-bits")) node.textContent = String(state.bits);
    showColumns();
  }

  /* ------------------------------------------------------------------------------------------ columns */

  // The label and the deciding columns (bytes, predicted latency, agreement, head compute) are always there; the
  // rest only when chosen, so that the table fits its card at 1280 px. The choice is kept in this browser.
  const COLUMNS_KEY = "splitbot.point-columns";
  const chooser = document.querySelectorAll('input[name="point-column"]');

  function chosenColumns() {
    try {
      const stored = JSON.parse(localStorage.getItem(COLUMNS_KEY) || "[]");
      return new Set(Array.isArray(stored) ? stored : []);
    } catch (error) {
      return new Set();
    }
  }

  function showColumns() {
    const chosen = new Set([...chooser].filter((box) => box.checked).map((box) => box.value));
    for (const node of document.querySelectorAll("#points-table [data-col]")) {
      const shown =
        (!node.hasAttribute("data-optional") || chosen.has(node.dataset.col)) &&
        (!node.hasAttribute("data-cal-col") || Boolean(state.calibration)) &&
        (!node.hasAttribute("data-plan-col") || Boolean(state.plan));
      node.hidden = !shown;
    }
  }

  function wireColumns() {
    const chosen = chosenColumns();
    for (const box of chooser) box.checked = chosen.has(box.value);
    for (const box of chooser) {
      box.addEventListener("change", () => {
        const values = [...chooser].filter((b) => b.checked).map((b) => b.value);
        try {
          localStorage.setItem(COLUMNS_KEY, JSON.stringify(values));
        } catch (error) {
          /* storage may be disabled: the choice then lasts until the page is left */
        }
        showColumns();
      });
    }
  }

  /* The planner's estimate for ``point`` at ``bits`` from its last answer, or null. */
  function plannedAt(point, bits) {
    const plans = state.plan && state.plan.answer && state.plan.answer.plans;
    return (plans && plans.find((plan) => plan.key === `${point.label}@${bits}b`)) || null;
  }

  /* ---------------------------------------------------------------------------------------------- selection */

  function clipRequest() {
    if (state.bits >= 16) return null;
    const mode = clipMode.value;
    if (mode === "calibrated" || mode === "graph") return mode;
    if (mode === "custom") {
      const lo = Number(document.getElementById("clip-lo").value);
      const hi = Number(document.getElementById("clip-hi").value);
      if (!Number.isFinite(lo) || !Number.isFinite(hi) || !(lo < hi)) {
        const error = new UI.ApiError("The custom clip range needs two numbers with low < high.", 0);
        error.fields = ["clip-lo", "clip-hi"];
        throw error;
      }
      return [lo, hi];
    }
    return null;
  }

  /* "rate-distortion" when a width per channel is chosen (at 1..8 bits), else null (every value at the bits). */
  function allocationRequest() {
    return state.bits < 16 && clipMode.value === "per-channel" ? "rate-distortion" : null;
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
    Splits.startNew();
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
      option.textContent = `Calibrated [${fmt.clip(measured.lo)}, ${fmt.clip(measured.hi)}]`;
    } else option.textContent = `Calibrated (${state.calibration.method})`;
    if (option.disabled && clipMode.value === "calibrated") clipMode.value = "default";
    // Calibrated ranges keep the answer better than the default ones: once there are some, they are the choice,
    // unless the person picked a clip range themselves.
    if (!option.disabled && clipMode.value === "default" && !state.clipChosen) {
      clipMode.value = "calibrated";
      showClipFields();
    }
  }

  function showClipFields() {
    const custom = clipMode.value === "custom";
    for (const node of document.querySelectorAll("[data-clip-custom]")) node.hidden = !custom;
    const quantized = state.bits < 16;
    clipMode.disabled = !quantized;
    for (const node of document.querySelectorAll("[data-clip-custom] input")) node.disabled = !quantized;
  }

  /* The bit width changed (the segmented control): everything that shows bytes or fidelity follows. */
  function setBits(bits) {
    state.bits = bits;
    showClipFields();
    updateCalibratedOption();
    updateTable();
    drawChart();
    describeSelection();
  }

  return {
    chartBox,
    clipMode,
    allocationRequest,
    drawChart,
    buildTable,
    updateTable,
    clipRequest,
    showClipFields,
    updateCalibratedOption,
    setBits,
  };
})();
