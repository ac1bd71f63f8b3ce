/* The model page's calibration: measure clip ranges and fidelity at every split point (a job: POST
   .../calibration-jobs, its stage shown as it goes), show the stored result, and make the "Calibrated" clip range
   available. */
"use strict";

const Calibration = (() => {
  const { model, state } = ModelPage;
  const calibrateForm = document.getElementById("calibrate-form");
  const calibrateButton = document.getElementById("calibrate-button");
  const calibrateStatus = document.getElementById("calibrate-status");

  function renderCalibration() {
    const summary = document.getElementById("calibration-summary");
    const cal = state.calibration;
    if (cal) {
      // Ranges are fitted on one set and judged on another: both counts, so that 97% on 32 images reads as one miss.
      const fitted = cal.fit_images == null ? "" : `fitted on ${cal.fit_images}, `;
      summary.textContent =
        `Calibrated with ${cal.method}${cal.allocation === "rate-distortion" ? ", bits per channel" : cal.per_channel ? " per channel" : ""} (${cal.scheme} codes) on ` +
        `${cal.image_source} images: ranges ${fitted}fidelity measured on ${cal.images} held-out ` +
        `image${cal.images === 1 ? "" : "s"}, where one image is ${(100 / cal.images).toFixed(1)}%, at ` +
        `${cal.bits.join(", ")} bits (${Number(cal.seconds).toFixed(1)} s, ` +
        `${cal.created_at.slice(0, 19).replace("T", " ")} UTC). ` +
        "The split-point table shows the fidelity at the chosen bit width.";
    }
    SplitPoints.updateTable();
    SplitPoints.updateCalibratedOption();
  }

  async function loadCalibration() {
    // The page says whether there is one: asking for a calibration that does not exist would be a 404 in the console.
    if (!UI.pageData().calibrated && !state.calibration) {
      renderCalibration();
      return;
    }
    try {
      state.calibration = await UI.api(`/api/models/${model.id}/calibration`);
    } catch (error) {
      state.calibration = null;
      if (!(error instanceof UI.ApiError && error.status === 404)) UI.showError(error, "calibrate-error");
    }
    renderCalibration();
  }

  /* Shows a calibration job until it ends, then its result or error; ``following(onStage)`` follows the job. */
  async function showCalibrating(following) {
    const label = calibrateButton.textContent;
    calibrateButton.disabled = true;
    calibrateButton.setAttribute("aria-busy", "true");
    try {
      state.calibration = await following((words, seconds) => {
        calibrateButton.textContent = `Calibrating… ${seconds}s`;
        calibrateStatus.textContent = `Calibrating… ${seconds}s: ${words}.`;
        calibrateStatus.dataset.stage = words;
      });
      calibrateStatus.textContent = "";
      calibrateStatus.append(
        UI.el("strong", { "data-testid": "calibrated" }, "Calibrated"),
        ` in ${Number(state.calibration.seconds).toFixed(1)} s. The “Calibrated” clip range is now available.`
      );
      renderCalibration();
    } catch (error) {
      calibrateStatus.textContent = "";
      UI.showError(error, "calibrate-error");
    } finally {
      delete calibrateStatus.dataset.stage;
      calibrateButton.textContent = label;
      calibrateButton.removeAttribute("aria-busy");
      calibrateButton.disabled = false;
    }
  }

  async function calibrate(event) {
    event.preventDefault();
    UI.clearError("calibrate-error");
    const form = new FormData();
    form.append("method", document.getElementById("calibrate-method").value);
    form.append("per_channel", document.getElementById("calibrate-per-channel").checked ? "true" : "false");
    if (document.getElementById("calibrate-allocation").checked) form.append("allocation", "rate-distortion");
    for (const file of document.getElementById("calibrate-images").files) form.append("images", file);
    await showCalibrating((onStage) => Jobs.run(`/api/models/${model.id}/calibration-jobs`, { body: form }, onStage));
  }

  /* A calibration of this model that was running when the page loaded (started before a reload, or elsewhere). */
  function resume(job) {
    return showCalibrating((onStage) => Jobs.follow(job, onStage));
  }

  function wire() {
    calibrateForm.addEventListener("submit", calibrate);
  }

  return { load: loadCalibration, resume, wire };
})();
