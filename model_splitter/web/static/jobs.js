/* Long work as background jobs (POST .../*-jobs, GET /api/jobs/{id}): start one, or pick up one the page did not
   start (a reload), and tell a status line its stage and elapsed time until it ends. */
"use strict";

const Jobs = (() => {
  const POLL_MS = 250;

  function sleep(milliseconds) {
    return new Promise((resolve) => setTimeout(resolve, milliseconds));
  }

  /* What a person reads for the job's stage ("measuring features.4 (3/12)" stays as the service wrote it). */
  function stageWords(job) {
    if (job.state === "queued") return "waiting for an earlier job of this kind to finish";
    if (job.stage === "starting" || job.stage === "queued") return "starting";
    return job.stage;
  }

  /* Follows ``job`` until it ends: ``onStage(words, seconds)`` when its stage changes and every second. Resolves to
     the job's result (what the waiting route answers); rejects with the ApiError that route would have given. */
  async function follow(job, onStage) {
    const started = Date.now() - (job.elapsed_s || 0) * 1000;
    let current = job;
    const tell = () => onStage(stageWords(current), Math.floor((Date.now() - started) / 1000));
    tell();
    const ticker = setInterval(tell, 1000);
    try {
      while (current.state !== "done" && current.state !== "failed") {
        await sleep(POLL_MS);
        const next = await UI.api(`/api/jobs/${encodeURIComponent(current.id)}`);
        const changed = next.stage !== current.stage || next.state !== current.state;
        current = next;
        if (changed) tell();
      }
    } finally {
      clearInterval(ticker);
    }
    if (current.state === "failed") {
      const error = current.error || { status: 500, code: "internal_error", detail: "the job failed" };
      throw new UI.ApiError(UI.sentence(error.detail), error.status, error.code);
    }
    return current.result;
  }

  /* Starts the job ``path`` answers (a POST with ``options``) and follows it. */
  async function run(path, options, onStage) {
    const job = await UI.api(path, Object.assign({ method: "POST" }, options || {}));
    return follow(job, onStage);
  }

  /* This model's jobs still queued or running (none when the splitter cannot say). */
  async function unfinished(modelId) {
    try {
      return await UI.api(`/api/jobs?model_id=${encodeURIComponent(modelId)}&active=true`);
    } catch (error) {
      return [];
    }
  }

  return { follow, run, unfinished };
})();
