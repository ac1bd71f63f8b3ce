/* Shared helpers of the splitter's pages: JSON API calls, error messages, number formatting, service status. */
"use strict";

const UI = (() => {
  class ApiError extends Error {
    constructor(message, status, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function pageData() {
    const node = document.getElementById("page-data");
    return node ? JSON.parse(node.textContent) : {};
  }

  function sentence(text) {
    const trimmed = String(text || "").trim();
    if (!trimmed) return trimmed;
    const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
    return /[.!?]$/.test(capital) ? capital : capital + ".";
  }

  /* Calls the JSON API; resolves to the parsed body, or rejects with an ApiError whose message a person can act on. */
  async function api(path, options) {
    let response;
    try {
      response = await fetch(path, Object.assign({ headers: { accept: "application/json" } }, options || {}));
    } catch (error) {
      throw new ApiError(
        "The splitter did not answer. Check that it is running and reload the page.", 0, "network"
      );
    }
    let body = null;
    const text = await response.text();
    if (text) {
      try {
        body = JSON.parse(text);
      } catch (error) {
        body = null;
      }
    }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : null;
      const status = response.status;
      let message = detail ? sentence(detail) : `The splitter answered ${status} ${response.statusText}.`;
      if (status === 413 && !detail) message = "The file is too large for the splitter.";
      throw new ApiError(message, status, body && body.error ? body.error : "http_" + status);
    }
    return body;
  }

  /* Shows ``error`` in the alert ``regionId`` (the page's by default: use the one beside the control that failed)
     and marks ``error.fields`` (element ids) invalid until the region is cleared. */
  function showError(error, regionId) {
    const region = document.getElementById(regionId || "page-error");
    if (!region) return;
    region.textContent = "";
    for (const id of (region.dataset.fields || "").split(" ").filter(Boolean)) {
      const field = document.getElementById(id);
      if (field) field.removeAttribute("aria-invalid");
    }
    delete region.dataset.fields;
    if (!error) return;
    const fields = (error && error.fields) || [];
    for (const id of fields) {
      const field = document.getElementById(id);
      if (field) field.setAttribute("aria-invalid", "true");
    }
    if (fields.length) region.dataset.fields = fields.join(" ");
    const message = error instanceof Error ? error.message : String(error);
    const title = document.createElement("strong");
    title.textContent = titleFor(error);
    region.append(title, " ", message);
    if (!isVisible(region)) region.scrollIntoView({ block: "nearest", behavior: "smooth" });
    if (fields.length) document.getElementById(fields[0])?.focus();
  }

  function clearError(regionId) {
    showError(null, regionId);
  }

  function titleFor(error) {
    const status = error instanceof ApiError ? error.status : -1;
    if (status === -1) return "Something went wrong.";
    if (error.code === "network") return "No answer.";
    if (status === 0) return "Check the form.";
    if (status === 404) return "Not found.";
    if (status === 409) return "Not possible right now.";
    if (status === 413) return "Too large.";
    if (status >= 500) return "A service is unavailable.";
    return "Refused.";
  }

  function isVisible(node) {
    const rect = node.getBoundingClientRect();
    return rect.top >= 0 && rect.bottom <= window.innerHeight;
  }

  const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  function bytes(n) {
    return integer.format(n);
  }

  /* Sizes in SI units (1 kB = 1000 B), as link rates are counted and as the charts' decade ticks read. */
  function humanBytes(n) {
    const units = ["B", "kB", "MB", "GB", "TB"];
    let value = n;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    const text = Number.isInteger(value) ? String(value) : value >= 100 ? value.toFixed(0) : value.toFixed(1);
    return `${text} ${units[unit]}`;
  }

  function ms(value) {
    return Number(value).toFixed(2);
  }

  function percent(share, digits) {
    return `${(share * 100).toFixed(digits === undefined ? 1 : digits)}%`;
  }

  /* el("td", {class: "num", "data-testid": "x"}, "text", child) */
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  /* The SVG namespace, read off the logo that every page has inline (no URL needs to be spelled out here). */
  function svgNamespace() {
    const logo = document.querySelector("svg");
    return logo ? logo.namespaceURI : null;
  }

  function svg(tag, attributes, ...children) {
    const node = document.createElementNS(svgNamespace(), tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined) continue;
      node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  /* Disables a button while a promise runs, with a busy label. */
  async function busy(button, label, work) {
    const original = button.textContent;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.textContent = label;
    try {
      return await work();
    } finally {
      button.textContent = original;
      button.removeAttribute("aria-busy");
      button.disabled = false;
    }
  }

  function shortId(id) {
    return String(id || "").slice(0, 12);
  }

  /* The splitter's /health, which includes the robot's and the edge's. */
  async function health() {
    return api("/health");
  }

  function renderServiceStatus(status) {
    const box = document.getElementById("service-status");
    if (!box) return;
    for (const side of ["robot", "edge"]) {
      const node = box.querySelector(`[data-side="${side}"]`);
      const state = node.querySelector(".svc-state");
      const info = status ? status[side] : undefined;
      node.classList.remove("is-up", "is-down", "is-idle");
      if (status === null) {
        node.classList.add("is-down");
        state.textContent = "unknown";
      } else if (!info) {
        node.classList.add("is-down");
        state.textContent = "down";
      } else if (!info.active_split_id) {
        node.classList.add("is-idle");
        state.textContent = "no split";
      } else {
        node.classList.add("is-up");
        state.textContent = "up";
      }
    }
  }

  async function refreshServiceStatus() {
    try {
      const status = await health();
      renderServiceStatus(status);
      return status;
    } catch (error) {
      renderServiceStatus(null);
      return null;
    }
  }

  /* The status fetched once when the page loaded (a promise shared by the page's own script). */
  let loadedStatus = null;
  function serviceStatus() {
    if (!loadedStatus) loadedStatus = refreshServiceStatus();
    return loadedStatus;
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const node of document.querySelectorAll(".js-human-bytes[data-bytes]")) {
      const n = Number(node.dataset.bytes);
      node.textContent = humanBytes(n);
      node.title = `${bytes(n)} bytes`;
    }
    if (document.body.dataset.page !== "model") serviceStatus();
  });

  return {
    ApiError,
    api,
    busy,
    bytes,
    clearError,
    el,
    health,
    humanBytes,
    ms,
    pageData,
    percent,
    refreshServiceStatus,
    renderServiceStatus,
    sentence,
    serviceStatus,
    shortId,
    showError,
    svg,
  };
})();
