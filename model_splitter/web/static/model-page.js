/* The model page's shared state and the little formatting every part of it uses. The parts: model-points.js (the
   split-point chart, table and selection), model-splits.js (creating and deploying splits, robot and edge state),
   model-calibration.js, model-planner.js; model.js wires them to the page. */
"use strict";

const ModelPage = (() => {
  const data = UI.pageData();
  const model = data.model;

  const state = {
    bits: data.default_bits,
    selected: null, // index into points
    split: null, // the split created or picked on this page
    health: undefined,
    calibration: null, // GET /api/models/{id}/calibration, null when the model has none
    clipChosen: false, // the person picked a clip range: calibrating does not change it then
    plan: null, // the last GET /api/models/{id}/plan answer
  };

  const wireBytes = (point, bits) => point.wire_bytes[String(bits)];
  const fp32Bytes = (point) => point.wire_bytes["32"];
  /* The calibration of a split point at a bit width ({lo, hi, top1_agreement, cosine, sqnr_db, ...}), or null. */
  const calibrationAt = (point, bits) => {
    if (!state.calibration || !point) return null;
    const entry = state.calibration.points[point.label];
    return (entry && entry.bits[String(bits)]) || null;
  };
  const missing = (value) => value === null || value === undefined;
  const fmt = {
    top1: (value) => (missing(value) ? "—" : UI.percent(value, 1)),
    cosine: (value) => (missing(value) ? "—" : Number(value).toFixed(4)),
    sqnr: (value) => (missing(value) ? "—" : Number(value).toFixed(1)),
    clip: (value) => (missing(value) ? "?" : Number(value.toPrecision(3)).toString()),
  };

  /* A manifest (POST /api/models/{id}/splits, GET /api/splits/{id}) as the page lists splits. */
  /* The share of held-out images whose answer is the float model's (Fidelity.answer_agreement). */
  function agreementOf(fidelity) {
    if (!fidelity) return null;
    return fidelity.task ? fidelity.task.agreement : fidelity.top1_agreement;
  }

  /* What routes.split_view gives the page, from a manifest the API answered. */
  function splitOf(manifest) {
    const fidelity = manifest.verification.fidelity;
    const tuning = manifest.fine_tuning;
    return {
      id: manifest.id,
      model_id: manifest.model_id,
      model_name: manifest.model_name,
      split_point: manifest.split_point,
      bits: manifest.quantization.bits,
      clip: manifest.quantization.ranges.map((r) => [r.lo, r.hi]),
      clip_method: manifest.quantization.method,
      bits_per_channel: manifest.quantization.ranges.some((r) => Array.isArray(r.channel_bits)),
      weights_trained: manifest.weights_trained,
      head_tail_max_abs_diff: manifest.verification.head_tail_max_abs_diff,
      agreement: agreementOf(fidelity),
      held_out_images: fidelity ? fidelity.images : null,
      tuned_from: tuning ? tuning.base_split : null,
      base_agreement: tuning ? agreementOf(tuning.base_fidelity) : null,
      unseen_agreement: tuning ? agreementOf(tuning.unseen_fidelity) : null,
      base_unseen_agreement: tuning ? agreementOf(tuning.base_unseen_fidelity) : null,
      unseen_images: tuning && tuning.unseen_fidelity ? tuning.unseen_fidelity.images : null,
    };
  }

  function splitText(split) {
    const clip =
      split.clip_method === "calibrated"
        ? " · calibrated clip"
        : split.clip && split.clip.length
          ? ` · clip [${split.clip[0].join(", ")}]`
          : "";
    const tuned = split.tuned_from ? " · tail fine-tuned" : "";
    const widths = split.bits_per_channel ? " on average, a width per channel" : "";
    return `${split.split_point} · ${split.bits} bits${widths}${split.bits < 16 ? clip : ""}${tuned}`;
  }

  return {
    data,
    model,
    points: model.split_points,
    splits: data.splits.slice(),
    // What all-edge sends: the camera's encoded image (the bundled sample photo), not its pixels.
    rawImageBytes: data.sample_image.bytes,
    sampleImageName: data.sample_image.name,
    state,
    wireBytes,
    fp32Bytes,
    calibrationAt,
    fmt,
    splitOf,
    splitText,
  };
})();
