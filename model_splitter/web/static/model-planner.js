/* The model page's planner: the ranked plans for a link and deploying the pick (jobs: POST .../plan-jobs), and the
   predicted latency against bandwidth (GET .../plan/curve) as an inline SVG chart. */
"use strict";

const Planner = (() => {
  const { model, splits, state, splitOf, fmt } = ModelPage;
  const planForm = document.getElementById("plan-form");
  const planButton = document.getElementById("plan-button");
  const planDeployButton = document.getElementById("plan-deploy");
  const planStatus = document.getElementById("plan-status");
  const planResult = document.getElementById("plan-result");
  const curveBox = document.getElementById("plan-curve");
  // Colours are CSS classes (.curve-0 .. .curve-7 in app.css), one per plan in rank order.
  const CURVE_CLASSES = 8;
  const curveClass = (i) => `curve-${i % CURVE_CLASSES}`;
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
        const error = new UI.ApiError(`${input.labels[0].textContent} must be a number in range, got “${text}”.`, 0);
        error.fields = [id];
        throw error;
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
        UI.el("td", { class: "num", "data-col": "top1" }, fmt.top1(plan.fidelity.top1_agreement)),
        UI.el("td", { class: "num", "data-col": "cosine" }, fmt.cosine(plan.fidelity.cosine)),
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
    const frame = Charts.area(curveBox, {
      height: 300,
      compactHeight: 240,
      margin: (compact) => ({ top: 14, right: 16, bottom: 44, left: compact ? 48 : 60 }),
    });
    const { compact, margin, plotW, plotH } = frame;
    const lo = Math.min(...bws);
    const hi = Math.max(...bws) > lo ? Math.max(...bws) : lo * 10;
    const maxMs = Math.max(1e-6, ...series.flatMap((s) => s.total_ms)) * 1.05;
    const x = (bw) => margin.left + ((Math.log10(bw) - Math.log10(lo)) / Math.log10(hi / lo)) * plotW;
    const y = (ms) => margin.top + plotH - (ms / maxMs) * plotH;

    const root = Charts.root(
      frame,
      "curve-svg-title",
      `Predicted latency against bandwidth (log scale) at ${UI.ms(curveData.rtt_ms)} ms RTT for ${series.length} plans`
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
    bottomAxis.append(Charts.bottomTitle(frame, "Bandwidth, Mbit/s (log scale)"));
    leftAxis.append(
      UI.svg(
        "text",
        { x: 12, y: margin.top + plotH / 2, "text-anchor": "middle", class: "axis-title", transform: `rotate(-90 12 ${margin.top + plotH / 2})` },
        "ms"
      )
    );
    root.append(grid, leftAxis, bottomAxis, Charts.plotFrame(frame));

    const lines = UI.svg("g", { class: "curve-lines" });
    const winners = UI.svg("g", { class: "curve-winners" });
    series.forEach((s, i) => {
      const line = UI.svg("polyline", {
        points: s.total_ms.map((ms, j) => `${x(bws[j]).toFixed(1)},${y(ms).toFixed(1)}`).join(" "),
        class: `curve-line ${curveClass(i)}`,
        "data-key": s.key,
      });
      line.append(UI.svg("title", {}, `${planName(s)}: ${s.total_ms.map((ms, j) => `${bws[j]} Mbit/s ${UI.ms(ms)} ms`).join(", ")}`));
      lines.append(line);
      s.total_ms.forEach((ms, j) => {
        if (curveData.winners[j] === s.key) {
          winners.append(UI.svg("circle", { cx: x(bws[j]), cy: y(ms), r: 4, class: `curve-winner ${curveClass(i)}` }));
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
        swatch.append(UI.svg("line", { x1: 0, x2: 18, y1: 5, y2: 5, class: curveClass(i), "stroke-width": 3 }));
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
    UI.clearError("plan-error");
    let params;
    try {
      params = planQuery();
    } catch (error) {
      UI.showError(error, "plan-error");
      return;
    }
    const query = params.toString();
    await showPlanning(params, (onStage) => Jobs.run(`/api/models/${model.id}/plan-jobs?${query}`, {}, onStage));
  }

  /* The query that asks again for the plan ``answer`` is (for a job the page did not start). */
  function paramsOf(answer) {
    const params = new URLSearchParams();
    if (answer.link.bandwidth_source === "given") params.set("bandwidth_mbps", String(answer.link.bandwidth_mbps));
    if (answer.link.rtt_source === "given") params.set("rtt_ms", String(answer.link.rtt_ms));
    params.set("min_top1", String(answer.floor.min_top1));
    params.set("min_cosine", String(answer.floor.min_cosine));
    return params;
  }

  /* Shows a planning job until it ends (``following(onStage)`` follows it; ``asked`` its query, or null: read it
     from the answer), then asks for the latency curve of the same link and draws both. */
  async function showPlanning(asked, following) {
    let query = "";
    try {
      const answer = await UI.busy(planButton, "Planning…", async () => {
        const planned = await following((words, seconds) => {
          planStatus.textContent = `Planning… ${seconds}s: ${words}.`;
        });
        const params = asked || paramsOf(planned);
        query = params.toString();
        planStatus.textContent = "Drawing the latency against bandwidth…";
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
      SplitPoints.drawChart(); // marks the recommended point
      SplitPoints.updateTable(); // the predicted latency of every point
      planDeployButton.disabled = false;
    } catch (error) {
      planStatus.textContent = "";
      UI.showError(inPageWords(error), "plan-error");
    }
  }

  /* The API's words name endpoints; on this page, the buttons that do the same. */
  function inPageWords(error) {
    if (!(error instanceof UI.ApiError) || error.status !== 409) return error;
    return new UI.ApiError(
      "Deploy a split of this model first (Create split, then Deploy to edge and robot, in the Split card below): " +
        "the planner measures the robot and the edge running it.",
      409
    );
  }

  async function deployPlan() {
    if (!state.plan) return;
    UI.clearError("plan-error");
    const path = `/api/models/${model.id}/plan-jobs?${state.plan.query}${state.plan.query ? "&" : ""}deploy=true`;
    await showDeploying((onStage) => Jobs.run(path, {}, onStage));
  }

  /* Shows a plan-and-deploy job until it ends (``following(onStage)`` follows it), then what it deployed. */
  async function showDeploying(following) {
    try {
      const done = await UI.busy(planDeployButton, "Deploying…", () =>
        following((words, seconds) => {
          planStatus.textContent = `Planning, then creating and deploying the pick… ${seconds}s: ${words}.`;
        })
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
        UI.el(
          "a",
          { href: `/infer?split=${done.split_id}&mode=${encodeURIComponent(done.mode)}`, "data-testid": "plan-run-link" },
          "Run inference →"
        )
      );
      renderPlan(done);
    } catch (error) {
      planStatus.textContent = "";
      UI.showError(error, "plan-error");
    }
    await Splits.refreshSides();
  }

  /* A planning job of this model that was running when the page loaded (started before a reload, or elsewhere). */
  function resume(job) {
    const following = (onStage) => Jobs.follow(job, onStage);
    return job.kind === "plan" ? showPlanning(null, following) : showDeploying(following);
  }

  function wire() {
    planForm.addEventListener("submit", recommend);
    planDeployButton.addEventListener("click", deployPlan);
  }

  return { curveBox, drawCurve, resume, wire };
})();
