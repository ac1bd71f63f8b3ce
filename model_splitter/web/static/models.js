/* Models page: register (as a background job, with its stage shown live), list, delete. */
"use strict";

(() => {
  const STAGES = ["exporting", "verifying", "finding split points", "saving"];
  const POLL_MS = 400;
  const STAGE_WORDS = {
    queued: "Waiting for a free worker…",
    starting: "Starting…",
    exporting: "Exporting to ONNX…", // an ONNX upload: "Reading the ONNX file…" (stageWords)
    verifying: "Verifying the export…",
    "finding split points": "Finding split points…",
    saving: "Saving…",
    done: "Done.",
  };

  const form = document.getElementById("register-form");
  const button = document.getElementById("register-button");
  const progress = document.getElementById("register-progress");
  const progressTitle = document.getElementById("progress-title");
  const progressStatus = document.getElementById("progress-status");
  const progressElapsed = document.getElementById("progress-elapsed");
  const progressFill = document.getElementById("progress-fill");
  const done = document.getElementById("register-done");

  /* The words for a stage: an ONNX upload is read and checked, not exported. */
  function stageWords(stage) {
    const file = selectedSource() === "file" && document.getElementById("model-file").files[0];
    if (stage === "exporting" && file && file.name.toLowerCase().endsWith(".onnx")) return "Reading the ONNX file…";
    return STAGE_WORDS[stage] || `${UI.sentence(stage).replace(/\.$/, "")}…`;
  }

  function selectedSource() {
    return form.querySelector('input[name="source"]:checked').value;
  }

  function showSource() {
    const source = selectedSource();
    for (const panel of form.querySelectorAll(".source-panel")) {
      const active = panel.dataset.source === source;
      panel.hidden = !active;
      for (const control of panel.querySelectorAll("input, select")) control.disabled = !active;
    }
  }

  /* Fields that only mean something for some tasks are shown for those. */
  function showTaskFields() {
    const task = document.getElementById("task").value;
    for (const field of form.querySelectorAll("[data-for-task]")) {
      field.hidden = !field.dataset.forTask.split(" ").includes(task);
    }
  }

  function formData() {
    const data = new FormData();
    if (selectedSource() === "file") {
      const file = document.getElementById("model-file").files[0];
      if (!file) throw new UI.ApiError("Choose a model file to upload, or switch to a torchvision architecture.", 0);
      data.append("file", file, file.name);
      for (const id of ["task", "detector", "resize", "scale", "pad-value", "channel-order", "mean", "std"]) {
        const control = document.getElementById(id);
        const value = control.value.trim();
        if (value && !control.closest("[hidden]")) data.append(control.name, value);
      }
      const labels = document.getElementById("labels").files[0];
      if (labels && !document.getElementById("labels").closest("[hidden]")) data.append("labels", labels, labels.name);
    } else {
      data.append("arch", document.getElementById("arch").value);
      const weights = document.getElementById("weights").files[0];
      if (weights) data.append("weights", weights, weights.name);
    }
    const shape = document.getElementById("input-shape").value.trim();
    if (shape) data.append("input_shape", shape);
    const name = document.getElementById("model-name").value.trim();
    if (name) data.append("name", name);
    return data;
  }

  function showStage(stage, elapsedS) {
    const exporting = progress.querySelector('#progress-steps li[data-stage="exporting"]');
    exporting.textContent = stageWords("exporting").replace(/…$/, "");
    const index = STAGES.indexOf(stage);
    for (const item of progress.querySelectorAll("#progress-steps li")) {
      const position = STAGES.indexOf(item.dataset.stage);
      item.classList.toggle("is-done", stage === "done" || (index >= 0 && position < index));
      item.classList.toggle("is-current", position === index);
      if (position === index) item.setAttribute("aria-current", "step");
      else item.removeAttribute("aria-current");
    }
    const words = stageWords(stage);
    progressTitle.textContent = words;
    if (progressStatus.textContent !== words) progressStatus.textContent = words;
    progressStatus.dataset.stage = stage;
    const fraction = stage === "done" ? 1 : index >= 0 ? (index + 0.5) / STAGES.length : 0.04;
    progressFill.style.width = `${Math.round(fraction * 100)}%`;
    if (elapsedS !== undefined) progressElapsed.textContent = `${Math.floor(elapsedS)} s`;
  }

  function sleep(milliseconds) {
    return new Promise((resolve) => setTimeout(resolve, milliseconds));
  }

  async function waitFor(jobId, startedAt) {
    const ticker = setInterval(() => {
      progressElapsed.textContent = `${Math.floor((Date.now() - startedAt) / 1000)} s`;
    }, 250);
    try {
      for (;;) {
        const job = await UI.api(`/api/model-jobs/${encodeURIComponent(jobId)}`);
        showStage(job.state === "queued" ? "queued" : job.stage);
        if (job.state === "done") return job;
        if (job.state === "failed") {
          const error = job.error || { status: 500, detail: "the registration failed" };
          throw new UI.ApiError(UI.sentence(error.detail), error.status, error.code);
        }
        await sleep(POLL_MS);
      }
    } finally {
      clearInterval(ticker);
    }
  }

  const JOB_KEY = "splitbot.model-job";

  function rememberJob(jobId, startedAt) {
    try {
      if (jobId) sessionStorage.setItem(JOB_KEY, JSON.stringify({ id: jobId, startedAt }));
      else sessionStorage.removeItem(JOB_KEY);
    } catch (error) {
      /* storage may be disabled; the job then just cannot be resumed after a reload */
    }
  }

  function rememberedJob() {
    try {
      return JSON.parse(sessionStorage.getItem(JOB_KEY) || "null");
    } catch (error) {
      return null;
    }
  }

  /* Shows a job's progress until it ends: from a submission, or resumed after the page was reloaded. */
  async function follow(start, startedAt) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.textContent = "Registering…";
    progress.hidden = false;
    showStage("queued", (Date.now() - startedAt) / 1000);
    try {
      const jobId = await start();
      rememberJob(jobId, startedAt);
      const job = await waitFor(jobId, startedAt);
      showStage("done");
      const seconds = ((Date.now() - startedAt) / 1000).toFixed(1);
      done.textContent = "";
      done.append(
        `Registered ${job.model_name} in ${seconds} s. `,
        UI.el("a", { href: `/models/${job.model_id}`, "data-testid": "open-model" }, `Open ${job.model_name} →`)
      );
      done.hidden = false;
      progress.hidden = true;
      await refreshList();
    } catch (error) {
      progress.hidden = true;
      UI.showError(error);
    } finally {
      rememberJob(null);
      button.disabled = false;
      button.removeAttribute("aria-busy");
      button.textContent = "Register";
    }
  }

  async function register(event) {
    event.preventDefault();
    UI.clearError();
    done.hidden = true;
    let data;
    try {
      data = formData();
    } catch (error) {
      UI.showError(error);
      return;
    }
    await follow(async () => (await UI.api("/api/model-jobs", { method: "POST", body: data })).id, Date.now());
  }

  function resume() {
    const job = rememberedJob();
    if (job && job.id) follow(async () => job.id, Number(job.startedAt) || Date.now());
  }

  function modelRow(model) {
    const nameCell = UI.el(
      "td",
      {},
      UI.el("a", { href: `/models/${model.id}`, class: "strong" }, model.name),
      model.weights_trained
        ? null
        : UI.el(
            "span",
            { class: "badge badge-warn", title: "torchvision architecture registered without weights" },
            "untrained"
          ),
      UI.el("div", { class: "muted mono small" }, model.id)
    );
    const arch =
      model.architecture && model.architecture !== model.name
        ? UI.el("span", { class: "muted" }, ` (${model.architecture})`)
        : null;
    const remove = UI.el(
      "button",
      {
        type: "button",
        class: "btn btn-small btn-danger-ghost",
        "data-delete": model.id,
        "data-name": model.name,
        "aria-label": `Delete ${model.name}`,
      },
      "Delete"
    );
    return UI.el(
      "tr",
      { "data-model-id": model.id },
      nameCell,
      UI.el("td", { class: "hide-narrow" }, model.source_format, arch),
      UI.el("td", { class: "mono hide-narrow" }, model.input_shape.join("×")),
      UI.el("td", { class: "num" }, String(model.split_point_count)),
      UI.el("td", { class: "row-actions" }, remove)
    );
  }

  function renderList(models) {
    const body = document.getElementById("models-body");
    body.replaceChildren(...models.map(modelRow));
    document.getElementById("models-table").hidden = models.length === 0;
    document.getElementById("models-empty").hidden = models.length > 0;
    document.getElementById("model-count").textContent = String(models.length);
  }

  async function refreshList() {
    const models = await UI.api("/api/models");
    models.sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    renderList(models);
  }

  async function remove(target) {
    const id = target.dataset.delete;
    const name = target.dataset.name;
    if (!window.confirm(`Delete ${name} and every split cut from it? Robots and edges keep what is deployed.`)) return;
    UI.clearError();
    try {
      const answer = await UI.busy(target, "Deleting…", () =>
        UI.api(`/api/models/${encodeURIComponent(id)}`, { method: "DELETE" })
      );
      const splits = answer.deleted_splits.length;
      done.textContent = `Deleted ${name}${splits ? ` and its ${splits} split${splits === 1 ? "" : "s"}` : ""}.`;
      done.hidden = false;
      await refreshList();
      document.getElementById("list-title").focus?.();
    } catch (error) {
      UI.showError(error);
    }
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "source") showSource();
    if (event.target.id === "task") showTaskFields();
  });
  form.addEventListener("submit", register);
  document.getElementById("models-table").addEventListener("click", (event) => {
    const target = event.target.closest("button[data-delete]");
    if (target) remove(target);
  });
  showSource();
  resume();
})();
