/* The pieces both SVG charts of the model page share: the plot area, the root element with its accessible title,
   log-scale ticks, the plot frame and axis titles. Each chart draws its own series. */
"use strict";

const Charts = (() => {
  /* Width from the container, a shorter plot on narrow screens, the margins left for the axes. */
  function area(box, { height, compactHeight, margin }) {
    const width = Math.max(300, Math.floor(box.clientWidth));
    const compact = width < 560;
    const m = typeof margin === "function" ? margin(compact) : margin;
    const h = compact ? compactHeight : height;
    return { width, height: h, compact, margin: m, plotW: width - m.left - m.right, plotH: h - m.top - m.bottom };
  }

  function root(frame, titleId, title) {
    const svg = UI.svg("svg", {
      width: frame.width,
      height: frame.height,
      viewBox: `0 0 ${frame.width} ${frame.height}`,
      role: "img",
      "aria-labelledby": titleId,
      class: "chart-svg",
    });
    svg.append(UI.svg("title", { id: titleId }, title));
    return svg;
  }

  function plotFrame(frame) {
    const { margin, plotW, plotH } = frame;
    return UI.svg("rect", { x: margin.left, y: margin.top, width: plotW, height: plotH, class: "plot-frame" });
  }

  /* The title under the bottom axis. */
  function bottomTitle(frame, text) {
    const { margin, plotW, height } = frame;
    return UI.svg(
      "text",
      { x: margin.left + plotW / 2, y: height - 6, "text-anchor": "middle", class: "axis-title" },
      text
    );
  }

  /* 1-2-5 ticks per decade over at most two decades, one per decade beyond. */
  function logTicks(lo, hi) {
    const ticks = [];
    const decades = Math.log10(hi / lo);
    const steps = decades <= 2 ? [1, 2, 5] : [1];
    for (let power = Math.log10(lo); power <= Math.log10(hi) + 1e-9; power += 1) {
      for (const step of steps) {
        const value = step * 10 ** power;
        if (value >= lo * 0.999 && value <= hi * 1.001) ticks.push(value);
      }
    }
    return ticks;
  }

  /* A redraw at most every 60 ms while the boxes are resized. */
  function onResize(boxes, redraw) {
    let timer = null;
    const observer = new ResizeObserver(() => {
      clearTimeout(timer);
      timer = setTimeout(redraw, 60);
    });
    for (const box of boxes) observer.observe(box);
  }

  return { area, root, plotFrame, bottomTitle, logTicks, onResize };
})();
