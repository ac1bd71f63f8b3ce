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
})();
