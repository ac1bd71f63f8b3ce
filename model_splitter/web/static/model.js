/* Model page: wires the parts (model-page.js and the model-*.js beside it) to the page and draws it once. */
"use strict";

(() => {
  const { clipMode, chartBox } = SplitPoints;

  document.getElementById("controls").addEventListener("change", (event) => {
    if (event.target.name === "bits") SplitPoints.setBits(Number(event.target.value));
    else if (event.target === clipMode) {
      ModelPage.state.clipChosen = true;
      SplitPoints.showClipFields();
    }
  });
  document.getElementById("controls").addEventListener("submit", (event) => event.preventDefault());
  Splits.wire();
  Calibration.wire();
  /* A fixed-batch model: register it again with a dynamic batch axis (the splitter verifies it), and open that. */
  const makeDynamic = document.getElementById("make-dynamic");
  if (makeDynamic) {
    makeDynamic.addEventListener("click", async () => {
      UI.showError(null);
      try {
        const record = await UI.busy(makeDynamic, "Checking…", () =>
          UI.api(`/api/models/${ModelPage.model.id}/dynamic-batch`, { method: "POST" })
        );
        window.location.assign(`/models/${record.id}`);
      } catch (error) {
        UI.showError(error);
      }
    });
  }
  Planner.wire();
  Charts.onResize([chartBox, Planner.curveBox], () => {
    SplitPoints.drawChart();
    Planner.drawCurve();
  });

  SplitPoints.buildTable();
  SplitPoints.updateTable();
  SplitPoints.showClipFields();
  SplitPoints.drawChart();
  Splits.renderSplits();
  Splits.refreshSides();
  Calibration.load();
  // Work started before a reload (or in another tab) goes on on the splitter: show it where it was started.
  Jobs.unfinished(ModelPage.model.id).then((jobs) => {
    const resumers = {
      calibration: Calibration.resume,
      split: Splits.resume,
      deployment: Splits.resume,
      "fine-tuning": Splits.resume,
      plan: Planner.resume,
      "plan-deployment": Planner.resume,
    };
    const seen = new Set();
    for (const job of jobs) {
      // One job per control: the newest (the list comes newest first).
      const resume = resumers[job.kind];
      if (resume && !seen.has(resume)) {
        seen.add(resume);
        resume(job);
      }
    }
  });
})();
