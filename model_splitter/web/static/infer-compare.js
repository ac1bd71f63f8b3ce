/* The inference page's "compare": split, all-robot and all-edge run N times each on one image, one request at a
   time, then p50/p90 latency, bytes sent and agreement with the reference per plan, and the median run of each. */
"use strict";

const InferCompare = (() => {
  const MODES = ["split", "all-robot", "all-edge"];

  /* The nearest-rank percentile: the smallest value with at least ``p`` of the values at or below it. */
  function percentile(values, p) {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)];
  }

  function runsWanted() {
    const input = document.getElementById("compare-runs");
    const runs = Number(input.value);
    if (!Number.isInteger(runs) || runs < 1 || runs > 100) {
      const error = new UI.ApiError("Runs each must be a whole number from 1 to 100.", 0);
      error.fields = ["compare-runs"];
      throw error;
    }
    return runs;
  }

  function summarize(mode, results) {
    const totals = results.map((r) => r.total_ms);
    const median = percentile(totals, 0.5);
    return {
      mode,
      runs: results.length,
      p50: median,
      p90: percentile(totals, 0.9),
      sent: percentile(
        results.map((r) => r.bytes.sent),
        0.5
      ),
      agrees: results.filter((r) => r.agrees_with_reference).length,
      trained: results.every((r) => r.weights_trained),
      medianRun: results.find((r) => r.total_ms === median),
    };
  }

  function render(rows) {
    document.getElementById("compare-body").replaceChildren(
      ...rows.map((row) =>
        UI.el(
          "tr",
          { "data-testid": "compare-row", "data-mode": row.mode },
          UI.el("th", { scope: "row" }, row.mode),
          UI.el("td", { class: "num" }, String(row.runs)),
          UI.el("td", { class: "num", "data-col": "p50" }, UI.ms(row.p50)),
          UI.el("td", { class: "num", "data-col": "p90" }, UI.ms(row.p90)),
          UI.el("td", { class: "num", "data-col": "sent" }, `${UI.bytes(row.sent)} B`),
          UI.el(
            "td",
            { class: "num", "data-col": "agrees" },
            row.trained ? `${row.agrees}/${row.runs}` : "noise (untrained)"
          )
        )
      )
    );
    const fastest = rows.reduce((best, row) => (row.p50 < best.p50 ? row : best));
    document.getElementById("compare-note").textContent =
      `Fastest at the median: ${fastest.mode} (${UI.ms(fastest.p50)} ms). ` +
      "p50 and p90 are nearest-rank percentiles of the total time each request reports.";
    document.getElementById("compare-waterfalls").replaceChildren(
      ...rows.map((row) =>
        UI.el(
          "div",
          { class: "compare-waterfall", "data-testid": "compare-waterfall", "data-mode": row.mode },
          UI.el("h4", {}, `${row.mode}: ${UI.ms(row.medianRun.total_ms)} ms`),
          UI.el("ol", { class: "waterfall" }, ...Waterfall.rows(row.medianRun.stages, "compare-stage"))
        )
      )
    );
    document.getElementById("compare").hidden = false;
    document.getElementById("results-placeholder").hidden = true;
  }

  async function run({ form, imageBlob, splitSelect }) {
    UI.clearError();
    const status = document.getElementById("compare-status");
    const button = document.getElementById("compare-button");
    let runs;
    let image;
    try {
      runs = runsWanted();
      image = await imageBlob();
    } catch (error) {
      UI.showError(error);
      return;
    }
    const rows = [];
    try {
      await UI.busy(button, "Comparing…", async () => {
        for (const mode of MODES) {
          const results = [];
          for (let i = 0; i < runs; i += 1) {
            status.textContent = `${mode}: run ${i + 1} of ${runs}`;
            const body = new FormData();
            body.append("image", image.blob, image.name);
            body.append("mode", mode);
            if (splitSelect.value) body.append("split_id", splitSelect.value);
            results.push(await UI.api("/api/infer", { method: "POST", body }));
          }
          rows.push(summarize(mode, results));
        }
      });
      render(rows);
      status.textContent = `Compared ${runs} run${runs === 1 ? "" : "s"} of each plan.`;
    } catch (error) {
      status.textContent = "";
      UI.showError(error);
    }
    form.dataset.compared = "true";
  }

  return { run, percentile };
})();
