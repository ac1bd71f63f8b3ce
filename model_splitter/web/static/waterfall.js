/* A waterfall of an inference's stages: one row each, its bar placed where it ran in the request's time. */
"use strict";

const Waterfall = (() => {
  /* The rows for ``stages``; ``testid`` names each row ("stage"), its parts get "-name", "-where", "-ms". */
  function rows(stages, testid = "stage") {
    const total = stages.reduce((sum, stage) => sum + stage.ms, 0) || 1;
    let start = 0;
    return stages.map((stage) => {
      const bar = UI.el("span", { class: `wf-bar where-${stage.where}` });
      bar.style.left = `${(start / total) * 100}%`;
      bar.style.width = `${(stage.ms / total) * 100}%`;
      start += stage.ms;
      return UI.el(
        "li",
        { class: "wf-row", "data-testid": testid, "data-stage": stage.name, "data-where": stage.where },
        UI.el(
          "span",
          { class: "wf-name" },
          UI.el("span", { "data-testid": `${testid}-name` }, stage.name),
          UI.el("span", { class: `tag where-${stage.where}`, "data-testid": `${testid}-where` }, stage.where)
        ),
        UI.el("span", { class: "wf-track", "aria-hidden": "true" }, bar),
        UI.el("span", { class: "wf-ms num" }, UI.el("span", { "data-testid": `${testid}-ms` }, UI.ms(stage.ms)), " ms")
      );
    });
  }

  return { rows };
})();
