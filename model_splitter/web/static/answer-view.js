/* The answer of one inference, drawn for its task: top-5 classes, boxes on the photo, a class-map overlay, raw tensors. */
"use strict";

(() => {
  // Distinct hues for class ids (golden-angle steps), so neighbouring ids never look alike.
  const colour = (id, alpha = 1) => `hsla(${(id * 137.508) % 360}, 75%, 50%, ${alpha})`;
  const UNSEEN = 255;

  /* A colour key; styled through the CSSOM, which the page's Content-Security-Policy allows (style attributes not). */
  function swatch(fill) {
    const node = UI.el("span", { class: "swatch", "aria-hidden": "true" });
    node.style.background = fill;
    return node;
  }

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("the image could not be shown"));
      img.src = url;
    });
  }

  function topFive(predictions) {
    const rows = predictions.map((prediction, rank) => {
      const bar = UI.el("span", { class: "prob-bar", "aria-hidden": "true" }, UI.el("span", {}));
      bar.firstChild.style.width = `${Math.max(0.5, prediction.probability * 100)}%`;
      return UI.el(
        "tr",
        { "data-testid": "prediction", "data-index": prediction.index },
        UI.el("td", { class: "num muted" }, String(rank + 1)),
        UI.el("td", {}, UI.el("span", { "data-testid": "prediction-label" }, prediction.label), bar),
        UI.el(
          "td",
          { class: "num" },
          UI.el("span", { "data-testid": "prediction-probability" }, (prediction.probability * 100).toFixed(2)),
          " %"
        )
      );
    });
    return UI.el(
      "table",
      { class: "table table-compact", "data-testid": "top5" },
      UI.el("caption", { class: "sr-only" }, "Top five predictions"),
      UI.el(
        "thead",
        {},
        UI.el(
          "tr",
          {},
          UI.el("th", { scope: "col", class: "num" }, "#"),
          UI.el("th", { scope: "col" }, "Label"),
          UI.el("th", { scope: "col", class: "num" }, "Probability")
        )
      ),
      UI.el("tbody", { id: "top5-body" }, ...rows)
    );
  }

  async function boxes(detections, imageUrl) {
    const img = await loadImage(imageUrl);
    img.alt = `The photo with ${detections.length} detected object${detections.length === 1 ? "" : "s"}`;
    const width = img.naturalWidth;
    const height = img.naturalHeight;
    const svg = UI.svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "overlay-layer", "aria-hidden": "true" });
    const stroke = Math.max(2, Math.round(Math.max(width, height) / 250));
    const font = Math.max(12, Math.round(Math.max(width, height) / 45));
    detections.forEach((d, i) => {
      const [x1, y1, x2, y2] = d.box;
      svg.append(
        UI.svg("rect", {
          x: x1,
          y: y1,
          width: Math.max(0, x2 - x1),
          height: Math.max(0, y2 - y1),
          fill: "none",
          stroke: colour(d.class_id),
          "stroke-width": stroke,
          "data-testid": "box",
          "data-index": i,
          "data-box": d.box.join(","),
        })
      );
      const label = UI.svg("text", {
        x: x1 + stroke,
        y: Math.max(font, y1 - stroke),
        fill: colour(d.class_id),
        "font-size": font,
        "paint-order": "stroke",
        stroke: "#fff",
        "stroke-width": Math.max(2, font / 6),
      });
      label.textContent = `${d.label} ${Math.round(d.score * 100)}%`;
      svg.append(label);
    });
    const figure = UI.el("figure", { class: "overlay", "data-testid": "detections-figure" }, img);
    figure.append(svg);
    const rows = detections.map((d, i) =>
      UI.el(
        "tr",
        { "data-testid": "detection", "data-index": i },
        UI.el("td", {}, swatch(colour(d.class_id)), d.label),
        UI.el("td", { class: "num" }, UI.percent(d.score)),
        UI.el("td", { class: "mono small" }, d.box.map((v) => Math.round(v)).join(", "))
      )
    );
    const table = UI.el(
      "table",
      { class: "table table-compact", "data-testid": "detections" },
      UI.el("caption", { class: "sr-only" }, "Detections"),
      UI.el(
        "thead",
        {},
        UI.el(
          "tr",
          {},
          UI.el("th", { scope: "col" }, "Label"),
          UI.el("th", { scope: "col", class: "num" }, "Score"),
          UI.el("th", { scope: "col" }, "Box x1, y1, x2, y2 (px)")
        )
      ),
      UI.el("tbody", {}, ...rows)
    );
    const count = UI.el(
      "p",
      { class: "muted small", "data-testid": "detection-count" },
      detections.length ? `${detections.length} detection${detections.length === 1 ? "" : "s"}` : "Nothing detected above the score threshold."
    );
    return [figure, count, table];
  }

  async function mask(segmentation, imageUrl) {
    const img = await loadImage(imageUrl);
    img.alt = "The photo under its segmentation mask";
    const pixels = await loadImage(`data:image/png;base64,${segmentation.png_base64}`);
    const canvas = UI.el("canvas", { class: "overlay-layer", "data-testid": "mask", "aria-hidden": "true" });
    canvas.width = segmentation.width;
    canvas.height = segmentation.height;
    const context = canvas.getContext("2d");
    context.drawImage(pixels, 0, 0);
    const data = context.getImageData(0, 0, canvas.width, canvas.height);
    const probe = document.createElement("canvas").getContext("2d");
    const rgba = new Map();
    for (let i = 0; i < data.data.length; i += 4) {
      const id = data.data[i];
      if (id === UNSEEN || id === 0) {
        data.data[i + 3] = 0; // background and unseen pixels let the photo through
        continue;
      }
      if (!rgba.has(id)) {
        probe.fillStyle = colour(id);
        probe.fillRect(0, 0, 1, 1);
        rgba.set(id, probe.getImageData(0, 0, 1, 1).data);
      }
      const c = rgba.get(id);
      data.data[i] = c[0];
      data.data[i + 1] = c[1];
      data.data[i + 2] = c[2];
      data.data[i + 3] = 140;
    }
    context.putImageData(data, 0, 0);
    const figure = UI.el("figure", { class: "overlay", "data-testid": "mask-figure" }, img, canvas);
    const legend = UI.el(
      "ul",
      { class: "class-legend", "data-testid": "mask-legend" },
      ...segmentation.classes.map((c) =>
        UI.el(
          "li",
          { "data-testid": "mask-class", "data-class-id": c.class_id },
          swatch(c.class_id === 0 || c.class_id === UNSEEN ? "transparent" : colour(c.class_id)),
          UI.el("span", {}, c.label),
          UI.el("span", { class: "num muted" }, UI.percent(c.share))
        )
      )
    );
    return [figure, legend];
  }

  function tensors(list) {
    const rows = list.map((t) => {
      const finite = t.data.filter((v) => typeof v === "number" && Number.isFinite(v));
      const min = finite.length ? Math.min(...finite.slice(0, 100000)) : null;
      const max = finite.length ? Math.max(...finite.slice(0, 100000)) : null;
      const shown = t.data.slice(0, 6).map((v) => (typeof v === "number" ? Number(v.toPrecision(4)) : String(v)));
      return UI.el(
        "tr",
        { "data-testid": "tensor", "data-name": t.name },
        UI.el("td", { class: "mono" }, t.name),
        UI.el("td", { class: "mono" }, `[${t.shape.join(", ")}] ${t.datatype}`),
        UI.el("td", { class: "mono small" }, shown.join(", ") + (t.data.length > 6 ? ", …" : "")),
        UI.el("td", { class: "num mono small" }, min === null ? "—" : `${min.toPrecision(4)} … ${max.toPrecision(4)}`)
      );
    });
    return UI.el(
      "table",
      { class: "table table-compact", "data-testid": "tensors" },
      UI.el("caption", { class: "sr-only" }, "Output tensors"),
      UI.el(
        "thead",
        {},
        UI.el(
          "tr",
          {},
          UI.el("th", { scope: "col" }, "Output"),
          UI.el("th", { scope: "col" }, "Shape, type"),
          UI.el("th", { scope: "col" }, "First values"),
          UI.el("th", { scope: "col", class: "num" }, "Min … max")
        )
      ),
      UI.el("tbody", {}, ...rows)
    );
  }

  const TITLES = {
    classification: "Top 5",
    detection: "Detections",
    segmentation: "Segmentation",
    raw: "Output tensors",
  };

  /* Fills ``container`` with the answer; ``imageUrl`` is the photo that was sent. */
  async function render(container, answer, imageUrl) {
    const title = UI.el("h3", { "data-testid": "answer-title" }, TITLES[answer.task] || answer.task);
    let body;
    if (answer.task === "detection") body = await boxes(answer.detections, imageUrl);
    else if (answer.task === "segmentation") body = await mask(answer.segmentation, imageUrl);
    else if (answer.task === "raw") body = [tensors(answer.tensors)];
    else body = [topFive(answer.predictions)];
    container.replaceChildren(title, ...body);
    container.dataset.task = answer.task;
  }

  /* One line saying what the reference answered, for the task; a classifier's probability comes apart. */
  function summary(answer) {
    if (answer.task === "classification") {
      const top = answer.predictions[0];
      return top ? top.label : "—";
    }
    if (answer.task === "detection") {
      const n = answer.detections.length;
      return `${n} detection${n === 1 ? "" : "s"}`;
    }
    if (answer.task === "segmentation") {
      const top = answer.segmentation.classes[0];
      return top ? `mostly ${top.label} (${UI.percent(top.share)})` : "—";
    }
    return `${answer.tensors.length} tensor${answer.tensors.length === 1 ? "" : "s"}`;
  }

  window.AnswerView = { render, summary };
})();
