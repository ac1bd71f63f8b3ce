/* Inference page: send an uploaded or sample photo through the robot; show the answer, the reference, timings, bytes. */
"use strict";

(() => {
  const form = document.getElementById("infer-form");
  const runButton = document.getElementById("run-button");
  const runStatus = document.getElementById("run-status");
  const results = document.getElementById("results");
  const preview = document.getElementById("preview");
  const previewImg = document.getElementById("preview-img");
  const splitSelect = document.getElementById("split-select");
  let previewUrl = null;
  let shownUrl = null; // the photo the shown answer is drawn on

  const MODE_WORDS = { split: "split", "all-robot": "all on the robot", "all-edge": "all on the edge" };

  function imageSource() {
    return form.querySelector('input[name="image_source"]:checked').value;
  }

  function showImageSource() {
    const source = imageSource();
    for (const node of form.querySelectorAll("[data-image-source]")) {
      const active = node.dataset.imageSource === source;
      node.hidden = !active;
      for (const control of node.querySelectorAll("input, select")) control.disabled = !active;
    }
    updatePreview();
  }

  function updatePreview() {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    if (imageSource() === "sample") {
      const name = document.getElementById("sample-select").value;
      if (name) {
        previewImg.src = `/samples/${encodeURIComponent(name)}`;
        previewImg.alt = `Sample photo ${name}`;
        preview.hidden = false;
        return;
      }
    } else {
      const file = document.getElementById("image-file").files[0];
      if (file && file.type.startsWith("image/")) {
        previewUrl = URL.createObjectURL(file);
        previewImg.src = previewUrl;
        previewImg.alt = `The uploaded image ${file.name}`;
        preview.hidden = false;
        return;
      }
    }
    preview.hidden = true;
    previewImg.removeAttribute("src");
  }

  async function imageBlob() {
    if (imageSource() === "sample") {
      const name = document.getElementById("sample-select").value;
      if (!name) throw new UI.ApiError("Choose a sample photo, or upload an image.", 0);
      let response;
      try {
        response = await fetch(`/samples/${encodeURIComponent(name)}`);
      } catch (error) {
        throw new UI.ApiError("The splitter did not answer. Check that it is running and reload the page.", 0, "network");
      }
      if (!response.ok) throw new UI.ApiError(`The sample photo ${name} is not available (${response.status}).`, 404);
      return { blob: await response.blob(), name };
    }
    const file = document.getElementById("image-file").files[0];
    if (!file) throw new UI.ApiError("Choose an image file to upload, or pick a sample photo.", 0);
    return { blob: file, name: file.name };
  }

  /* ---------------------------------------------------------------------------------------------- rendering */

  function renderMeta(result) {
    const meta = document.getElementById("result-meta");
    const providers = [];
    if (result.providers.robot) providers.push(`robot ${result.providers.robot}`);
    if (result.providers.edge) providers.push(`edge ${result.providers.edge}`);
    const item = (label, value, testid) =>
      UI.el("div", {}, UI.el("dt", {}, label), UI.el("dd", testid ? { "data-testid": testid } : {}, value));
    meta.replaceChildren(
      UI.el(
        "dl",
        { class: "facts" },
        item("Model", result.model_name),
        item("Mode", MODE_WORDS[result.mode] || result.mode, "result-mode"),
        // Only a split cuts the model: the other plans ran it whole, whatever the split it is deployed with.
        item("Split point", result.mode === "split" ? result.split_point : "none: the whole model", "result-point"),
        item("Bits", result.mode === "split" ? String(result.bits) : "—", "result-bits"),
        item("Execution providers", providers.join(" · ") || "—"),
        item("Split", UI.shortId(result.split_id))
      )
    );
  }

  const REFERENCE_KIND = {
    classification: "Top 1",
    detection: "Boxes",
    segmentation: "Mask",
    raw: "Tensors",
  };
  const AGREES = {
    classification: "Same top-1 label as the robot and edge.",
    detection: "The robot and edge found every box of the reference (same class, IoU ≥ 0.5) and no other.",
    segmentation: "At least 95 % of the pixels have the reference's class.",
    raw: "The outputs point the same way as the reference's (cosine ≥ 0.99).",
  };

  function renderReference(result) {
    const reference = result.reference_answer;
    document.getElementById("reference-kind").textContent = REFERENCE_KIND[reference.task] || reference.task;
    document.getElementById("reference-top1").textContent = AnswerView.summary(reference);
    const top = reference.task === "classification" ? reference.predictions[0] : null;
    document.getElementById("reference-prob").textContent = top ? `${(top.probability * 100).toFixed(2)} %` : "";
    const badge = document.getElementById("agreement");
    const help = document.getElementById("agreement-help");
    if (!result.weights_trained) {
      // Untrained weights answer noise: whether two noisy answers match says nothing about the split.
      badge.textContent = "noise";
      badge.className = "badge";
      help.textContent = "Untrained weights: both answers are noise, so comparing them says nothing.";
      return;
    }
    badge.textContent = result.agrees_with_reference ? "agrees" : "differs";
    badge.className = `badge ${result.agrees_with_reference ? "badge-ok" : "badge-bad"}`;
    help.textContent = result.agrees_with_reference
      ? AGREES[reference.task] || ""
      : `The robot and edge answered ${AnswerView.summary(result.answer)}.`;
  }

  function renderWaterfall(result) {
    document.getElementById("waterfall").replaceChildren(...Waterfall.rows(result.stages));
    document.getElementById("total-ms").textContent = UI.ms(result.total_ms);
  }

  /* "8.0× fewer bytes than" / "1.4× more bytes than" / "about as many bytes as" */
  function ratioText(part, whole) {
    const ratio = whole / part;
    if (ratio >= 1.05) return `${ratio.toFixed(ratio >= 10 ? 0 : 1)}× fewer bytes than`;
    if (ratio <= 0.95) return `${(1 / ratio).toFixed(1)}× more bytes than`;
    return "about as many bytes as";
  }

  function renderBytes(result) {
    const figures = [
      {
        key: "sent",
        label: "Sent on the wire",
        value: result.bytes.sent,
        note: result.mode === "all-robot" ? "everything ran on the robot" : "",
      },
      { key: "feature-fp32", label: "Features as fp32", value: result.bytes.feature_fp32, note: "" },
      { key: "image", label: "Image as uploaded", value: result.bytes.image, note: "" },
      { key: "received", label: "Answer received", value: result.bytes.received, note: "" },
    ];
    const max = Math.max(1, ...figures.slice(0, 3).map((f) => f.value));
    document.getElementById("bytes").replaceChildren(
      ...figures.map((figure) => {
        const bar = UI.el("span", { class: "bytes-track", "aria-hidden": "true" }, UI.el("span", {}));
        bar.firstChild.style.width = `${figure.value ? Math.max(0.4, (figure.value / max) * 100) : 0}%`;
        return UI.el(
          "li",
          { class: `bytes-row bytes-${figure.key}` },
          UI.el("span", { class: "bytes-label" }, figure.label),
          bar,
          UI.el(
            "span",
            { class: "bytes-value num" },
            UI.el("span", { "data-testid": `bytes-${figure.key}` }, UI.bytes(figure.value)),
            " B",
            // A note says why a figure is what it is; else the size in kB/MB, unless that repeats the bytes.
            figure.note
              ? UI.el("span", { class: "muted small bytes-note-inline" }, figure.note)
              : figure.value >= 1000
                ? UI.el("span", { class: "muted small" }, ` ${UI.humanBytes(figure.value)}`)
                : null
          )
        );
      })
    );
    const note = document.getElementById("bytes-note");
    if (result.mode === "split" && result.bytes.sent) {
      note.textContent =
        `The robot sent ${ratioText(result.bytes.sent, result.bytes.feature_fp32)} the float features would take, ` +
        `and ${ratioText(result.bytes.sent, result.bytes.image)} the image itself ` +
        `(${result.bits}-bit values plus the frame header).`;
    } else if (result.mode === "all-edge") {
      note.textContent = "The encoded image went over the link as it was, plus the frame header.";
    } else {
      note.textContent = "Nothing crossed the link.";
    }
  }

  async function render(result, imageUrl) {
    renderMeta(result);
    document.getElementById("result-untrained").hidden = result.weights_trained;
    await AnswerView.render(document.getElementById("answer-view"), result.answer, imageUrl);
    renderReference(result);
    renderWaterfall(result);
    renderBytes(result);
    results.hidden = false;
    document.getElementById("results-placeholder").hidden = true;
  }

  /* ---------------------------------------------------------------------------------------------- running */

  async function run(event) {
    event.preventDefault();
    UI.clearError();
    runStatus.textContent = "";
    let image;
    try {
      image = await imageBlob();
    } catch (error) {
      UI.showError(error);
      return;
    }
    const body = new FormData();
    body.append("image", image.blob, image.name);
    body.append("mode", form.querySelector('input[name="mode"]:checked').value);
    if (splitSelect.value) body.append("split_id", splitSelect.value);
    runStatus.textContent = "Running on the robot and the edge…";
    results.setAttribute("aria-busy", "true");
    try {
      const result = await UI.busy(runButton, "Running…", () => UI.api("/api/infer", { method: "POST", body }));
      if (shownUrl) URL.revokeObjectURL(shownUrl);
      shownUrl = URL.createObjectURL(image.blob);
      await render(result, shownUrl);
      results.classList.remove("is-stale");
      document.getElementById("stale-note").hidden = true;
      runStatus.textContent = `Done in ${UI.ms(result.total_ms)} ms.`;
    } catch (error) {
      runStatus.textContent = "";
      UI.showError(error);
    } finally {
      results.removeAttribute("aria-busy");
    }
  }

  /* A result shown beside inputs changed since it ran is marked stale until the next run. */
  function markStale() {
    if (results.hidden) return;
    results.classList.add("is-stale");
    document.getElementById("stale-note").hidden = false;
  }

  function describeSplit() {
    const option = splitSelect.selectedOptions[0];
    const detail = document.getElementById("split-detail");
    detail.textContent = option && option.value ? option.dataset.describe || option.textContent : "";
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "image_source") showImageSource();
    else if (event.target.id === "sample-select" || event.target.id === "image-file") updatePreview();
    if (event.target.id === "split-select") describeSplit();
    markStale();
  });
  const askedMode = new URLSearchParams(window.location.search).get("mode");
  const modeInput = askedMode && document.getElementById(`mode-${askedMode}`);
  if (modeInput) modeInput.checked = true;
  async function nameActiveSplit() {
    const status = await UI.serviceStatus();
    const robot = status && status.robot;
    const option = splitSelect.querySelector('option[value=""]');
    if (!robot) {
      option.textContent = "Robot's active split (robot down)";
      return;
    }
    const active = robot.deployed.find((d) => d.split_id === robot.active_split_id);
    option.textContent = active
      ? `Active on the robot: ${active.split_point} · ${active.bits} bits`
      : "Robot's active split (none yet)";
  }

  form.addEventListener("submit", run);
  document.getElementById("compare-button").addEventListener("click", () =>
    InferCompare.run({ form, imageBlob, splitSelect })
  );
  showImageSource();
  describeSplit();
  nameActiveSplit();
})();
