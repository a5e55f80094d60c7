/* What the page shows in text: status and error messages, the result cards, the timings and versions. */

import { itemImageUrl } from "./api.js";
import { clear, el, make } from "./dom.js";
import { learnBrands, listingParams } from "./filters.js";
import { productNotes } from "./products.js";

/** @typedef {import("./api.js").Result} Result */
/** @typedef {import("./api.js").Item} Item */
/** @typedef {import("./api.js").SearchResponse} SearchResponse */

const STAGES = ["decode", "detect", "embed", "search", "total"];

/** @param {unknown} v */
const isNumber = (v) => typeof v === "number" && Number.isFinite(v);

/** @param {unknown} s */
const fmtScore = (s) => (isNumber(s) ? /** @type {number} */ (s).toFixed(3) : "–");

/** @param {unknown} s a 0..1 confidence */
export const fmtPct = (s) => (isNumber(s) ? `${Math.round(/** @type {number} */ (s) * 100)}%` : "");

/** @param {unknown} v */
function fmtMs(v) {
  if (!isNumber(v)) return "–";
  const ms = /** @type {number} */ (v);
  return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

/**
 * @param {unknown} value
 * @param {string | undefined} currency an ISO 4217 code, or anything else a catalog holds
 */
function fmtPrice(value, currency) {
  if (typeof value === "number" && currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(value);
    } catch {
      // not a currency code Intl knows: shown as given below
    }
  }
  return String(value) + (currency ? ` ${currency}` : "");
}

/** @param {Item} item */
export function itemLabel(item) {
  if (item.label) return item.label;
  if (item.source === "user_box") return "your region";
  if (item.fallback) return "whole photo";
  return item.category || "item";
}

/** @param {unknown} err */
export const messageOf = (err) => (err instanceof Error ? err.message : String(err));

/** @param {string} message */
export function showError(message) {
  el.error.textContent = message;
  el.error.hidden = false;
}

export function clearError() {
  el.error.hidden = true;
  el.error.textContent = "";
}

/** @param {string} message */
export function setStatus(message) {
  el.status.textContent = message;
}

/**
 * @param {boolean} busy
 * @param {string} [message]
 */
export function setBusy(busy, message) {
  el.main.setAttribute("aria-busy", busy ? "true" : "false");
  document.body.classList.toggle("busy", busy);
  setStatus(message || "");
}

/** @param {string[]} notes */
export function showNotice(notes) {
  el.notice.textContent = notes.join(" ");
  el.notice.hidden = notes.length === 0;
}

/** @param {Result} r */
const resultName = (r) => r.title || `Item ${r.item_id}`;

/** @param {Result} r */
function thumbnail(r) {
  const fig = make("div", "thumb");
  const img = /** @type {HTMLImageElement} */ (make("img"));
  img.loading = "lazy";
  img.decoding = "async";
  img.width = 112;
  img.height = 112;
  img.alt = resultName(r);
  img.src = r.image_url || itemImageUrl(r.item_id);
  img.addEventListener("error", () => {
    fig.classList.add("broken");
    img.alt = `(image unavailable) ${img.alt}`;
  }, { once: true });
  fig.appendChild(img);
  return fig;
}

/**
 * The price and brand line, or null when the catalog gives neither.
 * @param {Result} r
 */
function priceLine(r) {
  const attrs = r.attrs && typeof r.attrs === "object" ? r.attrs : {};
  const price = r.price !== undefined ? r.price : attrs.price;
  const brand = r.brand || attrs.brand;
  const hasPrice = price !== undefined && price !== null;
  if (!brand && !hasPrice) return null;
  const line = make("p", "price");
  if (hasPrice) line.appendChild(make("span", "amount", fmtPrice(price, r.currency || attrs.currency)));
  if (brand) line.appendChild(make("span", "brand", brand));
  return line;
}

/**
 * @param {Result} r
 * @param {(r: Result) => void} onMore
 */
function resultCard(r, onMore) {
  const li = make("li", "card");
  li.setAttribute("data-testid", "result");
  li.appendChild(thumbnail(r));
  const body = make("div", "card-body");
  body.appendChild(make("p", "card-title", resultName(r)));
  const info = make("p", "card-info");
  info.appendChild(make("span", "cat", r.category || ""));
  info.appendChild(productNotes(r));
  info.appendChild(make("span", "score", `score ${fmtScore(r.score)}`));
  body.appendChild(info);
  const price = priceLine(r);
  if (price) body.appendChild(price);
  const more = /** @type {HTMLButtonElement} */ (make("button", "more", "More like this"));
  more.type = "button";
  more.setAttribute("data-testid", "more");
  more.setAttribute("aria-label", `More like ${r.title || `item ${r.item_id}`}`);
  more.addEventListener("click", () => onMore(r));
  body.appendChild(more);
  li.appendChild(body);
  return li;
}

/**
 * The grid of result cards under a title; each card's "More like this" calls onMore.
 * @param {string} title
 * @param {Result[]} results
 * @param {(r: Result) => void} onMore
 */
export function renderResults(title, results, onMore) {
  el.resultsTitle.textContent = title;
  clear(el.results);
  if (!results.length) {
    const { category, filter } = listingParams();
    const where = category || filter ? " with these filters." : ".";
    el.results.appendChild(make("li", "empty", `No similar items found${where}`));
  }
  learnBrands(results);
  for (const r of results) el.results.appendChild(resultCard(r, onMore));
  el.resultsPanel.hidden = false;
}

export function hideResults() {
  clear(el.results);
  el.resultsPanel.hidden = true;
}

/** @param {Record<string, number>} timings the known stages in pipeline order, then any others */
function timingList(timings) {
  const dl = make("dl", "timings");
  dl.setAttribute("aria-label", "Time per stage");
  const others = Object.keys(timings).filter((k) => !STAGES.includes(k));
  for (const stage of [...STAGES, ...others]) {
    if (!(stage in timings)) continue;
    const wrap = make("div", stage === "total" ? "timing total" : "timing");
    wrap.appendChild(make("dt", null, stage));
    wrap.appendChild(make("dd", null, fmtMs(timings[stage])));
    dl.appendChild(wrap);
  }
  return dl;
}

/** @param {unknown} model a name, or a card with name, version and sha256 */
function modelText(model) {
  if (!model || typeof model !== "object") return model;
  const m = /** @type {{name?: string, version?: string, sha256?: string}} */ (model);
  return [m.name, m.version, m.sha256 ? String(m.sha256).slice(0, 12) : null].filter(Boolean).join(" ");
}

/** @param {SearchResponse} body */
function factsLine(body) {
  const facts = make("p", "facts");
  if (body.index_version !== undefined) {
    facts.appendChild(make("span", null, "Index "));
    const version = make("code", "index-version", body.index_version);
    version.setAttribute("data-testid", "index-version");
    facts.appendChild(version);
  }
  if (body.models && typeof body.models === "object") {
    for (const [role, model] of Object.entries(body.models)) {
      facts.appendChild(make("span", "model", ` · ${role} `));
      facts.appendChild(make("code", null, modelText(model)));
    }
  }
  if (body.cached !== undefined) facts.appendChild(make("span", "model", body.cached ? " · cached" : ""));
  return facts;
}

/**
 * Time per stage, the index version and the models that answered.
 * @param {SearchResponse} body
 */
export function renderMeta(body) {
  clear(el.meta);
  if (body.timings_ms && typeof body.timings_ms === "object") el.meta.appendChild(timingList(body.timings_ms));
  const facts = factsLine(body);
  if (facts.childNodes.length) el.meta.appendChild(facts);
}
