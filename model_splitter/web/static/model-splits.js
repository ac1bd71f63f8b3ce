/* The model page's splits: creating one at the selected point, the list of this model's splits, deploying one or
   fine-tuning its tail (background jobs, their stage shown as they go), and what the robot and the edge run now. */
"use strict";

const Splits = (() => {
  const { model, points, splits, state, splitOf, splitText } = ModelPage;
  const createButton = document.getElementById("create-split");
  const deployButton = document.getElementById("deploy-split");
  const splitStatus = document.getElementById("split-status");

  /* A new point or bit width was picked: nothing is created for it yet. */
  function startNew() {
    state.split = null;
    deployButton.disabled = true;
    createButton.disabled = false;
    splitStatus.textContent = "";
  }

  function deployedOn(splitId) {
    const sides = [];
    for (const side of ["edge", "robot"]) {
      const info = state.health && state.health[side];
      if (info && info.active_split_id === splitId) sides.push(side);
    }
    return sides;
  }

  function renderSplits() {
    const list = document.getElementById("split-list");
    document.getElementById("splits-empty").hidden = splits.length > 0;
    list.replaceChildren(
      ...splits.map((split) => {
        const where = deployedOn(split.id);
        const deploy = UI.el(
          "button",
          { type: "button", class: "btn btn-small", "data-deploy": split.id, "aria-label": `Deploy ${splitText(split)}` },
          "Deploy"
        );
        const tune =
          split.bits < 16
            ? UI.el(
                "button",
                {
                  type: "button",
                  class: "btn btn-small btn-ghost",
                  "data-tune": split.id,
                  "aria-label": `Fine-tune the tail of ${splitText(split)}`,
                  title: "Train the tail for this bit width on unlabelled photos (distillation from the float model)",
                },
                "Fine-tune tail"
              )
            : null;
        const run = UI.el(
          "a",
          { class: "btn btn-small btn-ghost", href: `/infer?split=${split.id}`, "aria-label": `Run inference on ${splitText(split)}` },
          "Run inference"
        );
        return UI.el(
          "li",
          { "data-split-id": split.id },
          UI.el(
            "div",
            { class: "split-main" },
            UI.el("span", { class: "mono" }, splitText(split)),
            where.length ? UI.el("span", { class: "badge badge-ok" }, `active on ${where.join(" and ")}`) : null,
            agreementBadge(split),
            UI.el("div", { class: "muted mono small" }, UI.shortId(split.id))
          ),
          UI.el("div", { class: "split-actions" }, deploy, tune, run)
        );
      })
    );
  }

  async function createSplit() {
    UI.clearError("split-error");
    if (state.selected === null) return;
    let clip;
    try {
      clip = SplitPoints.clipRequest();
    } catch (error) {
      UI.showError(error, "split-error");
      return;
    }
    const point = points[state.selected];
    const body = { split_point: point.label, bits: state.bits };
    if (clip) body.clip = clip;
    const allocation = SplitPoints.allocationRequest();
    if (allocation) body.allocation = allocation;
    const following = (onStage) =>
      Jobs.run(
        `/api/models/${model.id}/split-jobs`,
        { headers: { "content-type": "application/json", accept: "application/json" }, body: JSON.stringify(body) },
        onStage
      );
    await showCreating(following, point.label);
  }

  /* Follows a job that makes a split (``following(onStage)``) until it ends, then shows the new split or the error:
     ``job`` names the button, its busy label, the stage line's lead, the heading and the words about the split. */
  async function showNewSplit(job, following) {
    try {
      const manifest = await UI.busy(job.button, job.busy, () =>
        following((words, seconds) => {
          splitStatus.textContent = `${job.stage}… ${seconds}s: ${words}.`;
        })
      );
      const split = splitOf(manifest);
      if (!splits.some((s) => s.id === split.id)) splits.push(split);
      state.split = split;
      deployButton.disabled = false;
      splitStatus.textContent = "";
      splitStatus.append(
        UI.el("strong", { "data-testid": job.headingId }, job.heading),
        UI.el("span", { class: "mono", "data-testid": "split-id" }, UI.shortId(split.id)),
        ` · ${job.describe(split)} `,
        "Deploy it to run it."
      );
      renderSplits();
    } catch (error) {
      splitStatus.textContent = "";
      UI.showError(error, "split-error");
    }
  }

  function showCreating(following, label) {
    const describe = (split) =>
      `${splitText(split)} · head→tail max difference ${split.head_tail_max_abs_diff.toExponential(1)} (verified).`;
    const job = { button: createButton, busy: "Creating…", stage: `Creating the split at ${label}` };
    return showNewSplit({ ...job, heading: "Split created: ", headingId: "created", describe }, following);
  }

  function percent(share) {
    return `${Math.round(share * 1000) / 10} %`;
  }

  /* A fine-tuned tail on photos of other scenes, beside its base split's tail ("" when not measured). */
  function unseenText(split) {
    if (split.unseen_agreement === null || split.unseen_agreement === undefined) return "";
    return `on ${split.unseen_images} inputs from photos of other scenes ${percent(split.base_unseen_agreement)} → ${percent(split.unseen_agreement)}`;
  }

  /* The held-out agreement with the float model, and for a fine-tuned tail what its base split's tail reached. */
  function agreementBadge(split) {
    if (split.agreement === null || split.agreement === undefined) return null;
    const base = split.tuned_from ? ` (base tail ${percent(split.base_agreement)})` : "";
    const unseen = unseenText(split);
    return UI.el(
      "div",
      { class: "muted small", "data-testid": "split-agreement" },
      `agrees with the float model on ${percent(split.agreement)} of ${split.held_out_images} held-out images${base}` +
        (unseen ? `; ${unseen}` : "")
    );
  }

  async function fineTune(splitId, button) {
    UI.clearError("split-error");
    const form = new FormData();
    await showTuning(splitId, button, (onStage) => Jobs.run(`/api/splits/${splitId}/fine-tune-jobs`, { body: form }, onStage));
  }

  /* Shows a fine-tuning job until it ends, then the new split beside its base, with both tails' held-out figures. */
  function showTuning(splitId, button, following) {
    const base = splits.find((s) => s.id === splitId);
    const name = base ? splitText(base) : UI.shortId(splitId);
    const describe = (split) => {
      const unseen = unseenText(split);
      const figures = `held-out agreement ${percent(split.base_agreement)} → ${percent(split.agreement)} on ${split.held_out_images} images${unseen ? `; ${unseen}` : ""}.`;
      // Few images teach a tail their own photos: a worse figure on either set is a reason to keep the base split.
      const worse =
        split.agreement < split.base_agreement ||
        (split.unseen_agreement !== null && split.unseen_agreement < split.base_unseen_agreement);
      return worse ? `${figures} It agrees less than its base: keep the base split.` : figures;
    };
    const job = { button, busy: "Training…", stage: `Fine-tuning the tail of ${name}` };
    return showNewSplit({ ...job, heading: "Tail fine-tuned: ", headingId: "tuned", describe }, following);
  }

  async function deploy(splitId, button) {
    UI.clearError("split-error");
    await showDeploying(splitId, button, (onStage) => Jobs.run(`/api/splits/${splitId}/deploy-jobs`, {}, onStage));
  }

  /* Shows a deployment job until it ends (``following(onStage)`` follows it): the edge pulls the tail (a TensorRT
     engine build can take minutes), then the robot pulls the head. */
  async function showDeploying(splitId, button, following) {
    const split = splits.find((s) => s.id === splitId);
    const name = split ? splitText(split) : UI.shortId(splitId);
    try {
      const result = await UI.busy(button, "Deploying…", () =>
        following((words, seconds) => {
          splitStatus.textContent = `Deploying ${name}… ${seconds}s: ${words}.`;
        })
      );
      splitStatus.textContent = "";
      splitStatus.append(
        UI.el("strong", { "data-testid": "deployed" }, "Deployed"),
        ` ${name} to ${fleetText(result && result.members)}. `,
        UI.el("a", { href: `/infer?split=${splitId}`, "data-testid": "run-inference-link" }, "Run inference →")
      );
      for (const failed of ((result && result.members) || []).filter((m) => m.error)) {
        splitStatus.append(
          UI.el("span", { class: "block", "data-testid": "deploy-failed" }, `${failed.side} ${failed.url} did not take it: ${failed.error}`)
        );
      }
    } catch (error) {
      splitStatus.textContent = "";
      UI.showError(error, "split-error");
    }
    // A job picked up after a reload ran on this button with no split selected: it must not stay clickable.
    deployButton.disabled = !state.split;
    await refreshSides();
  }

  /* A job of this model's splits that was running when the page loaded (started before a reload, or elsewhere). */
  function resume(job) {
    if (job.kind === "split") return showCreating((onStage) => Jobs.follow(job, onStage), job.split_point);
    if (job.kind === "fine-tuning") return showTuning(job.split_id, deployButton, (onStage) => Jobs.follow(job, onStage));
    return showDeploying(job.split_id, deployButton, (onStage) => Jobs.follow(job, onStage));
  }

  /* "the edge and the robot", or for a fleet how many of each took the split. */
  function fleetText(members) {
    if (!members || members.length <= 2) return "the edge and the robot";
    const count = (side) => {
      const all = members.filter((m) => m.side === side);
      const took = all.filter((m) => !m.error).length;
      return `${took === all.length ? took : `${took} of ${all.length}`} ${side}${all.length > 1 ? "s" : ""}`;
    };
    return `${count("edge")} and ${count("robot")}`;
  }

  /* Every member of a fleet (SPLITTER_ROBOT_URL / SPLITTER_EDGE_URL lists): up or down, and what it runs. */
  function renderMembers(box, members) {
    const wrap = box.querySelector('[data-field="members-wrap"]');
    const list = box.querySelector('[data-field="members"]');
    wrap.hidden = !members || members.length < 2;
    if (wrap.hidden) return;
    list.replaceChildren(
      ...members.map((member) => {
        const info = member.health;
        const state = !info ? "down" : info.active_split_id ? `up · ${UI.shortId(info.active_split_id)}` : "up · no split";
        return UI.el(
          "li",
          { class: info ? "is-up" : "is-down", "data-member": member.url },
          UI.el("span", { class: "mono small" }, member.url),
          " ",
          UI.el("span", { class: "muted small" }, state)
        );
      })
    );
  }

  /* ---------------------------------------------------------------------------------------------- robot / edge */

  function describeDeployment(info) {
    const active = info.deployed.find((d) => d.split_id === info.active_split_id);
    if (!active) return { split: ["nothing deployed"], provider: "—" };
    const owner = active.model_id === model.id ? "this model" : active.model_name;
    return {
      split: [
        `${active.split_point} · ${active.bits} bits (${owner})`,
        UI.el("span", { class: "muted mono small block" }, UI.shortId(active.split_id)),
      ],
      provider: active.provider,
    };
  }

  function renderSides() {
    for (const side of ["robot", "edge"]) {
      const box = document.querySelector(`.side[data-side="${side}"]`);
      const field = (name) => box.querySelector(`[data-field="${name}"]`);
      const info = state.health ? state.health[side] : null;
      renderMembers(box, state.health ? state.health[`${side}s`] : null);
      box.classList.remove("is-up", "is-down");
      if (state.health === null) {
        field("health").textContent = "unknown: the splitter did not answer";
        field("split").textContent = "—";
        field("provider").textContent = "—";
        box.classList.add("is-down");
      } else if (!info) {
        field("health").textContent = `down: not reachable from the splitter`;
        field("split").textContent = "—";
        field("provider").textContent = "—";
        box.classList.add("is-down");
      } else {
        const deployment = describeDeployment(info);
        field("health").textContent = "up";
        field("split").replaceChildren(...deployment.split);
        field("provider").textContent = deployment.provider;
        box.classList.add("is-up");
      }
    }
  }

  async function refreshSides() {
    const button = document.getElementById("refresh-health");
    button.disabled = true;
    try {
      state.health = await UI.refreshServiceStatus();
    } finally {
      button.disabled = false;
    }
    renderSides();
    renderSplits();
  }

  function wire() {
    createButton.addEventListener("click", createSplit);
    deployButton.addEventListener("click", () => state.split && deploy(state.split.id, deployButton));
    document.getElementById("split-list").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-deploy]");
      if (button) deploy(button.dataset.deploy, button);
      const tune = event.target.closest("button[data-tune]");
      if (tune) fineTune(tune.dataset.tune, tune);
    });
    document.getElementById("refresh-health").addEventListener("click", refreshSides);
  }

  return { startNew, renderSplits, refreshSides, resume, wire };
})();
