/* The page's elements and two small DOM helpers. Module scripts run after the document is parsed,
   so every element exists when this module is first imported. */

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
const byId = (id) => /** @type {T} */ (document.getElementById(id));

export const el = {
  main: byId("main"),
  error: byId("error"),
  status: byId("status"),
  /** @type {HTMLInputElement} */ upload: byId("upload"),
  drop: byId("drop"),
  filtersForm: byId("filters"),
  chips: byId("chips"),
  /** @type {HTMLInputElement} */ brand: byId("brand"),
  brands: byId("brands"),
  /** @type {HTMLInputElement} */ maxPrice: byId("max-price"),
  /** @type {HTMLInputElement} */ inStock: byId("in-stock"),
  photoPanel: byId("photo-panel"),
  stage: byId("stage"),
  /** @type {HTMLImageElement} */ photo: byId("photo"),
  overlay: byId("overlay"),
  draft: byId("draft"),
  notice: byId("notice"),
  meta: byId("meta"),
  resultsPanel: byId("results-panel"),
  resultsTitle: byId("results-title"),
  results: byId("results"),
  drawToggle: byId("draw-toggle"),
  clearRegion: byId("clear-region"),
};

/**
 * A new element with an optional class and text.
 * @param {string} tag
 * @param {string | null} [cls]
 * @param {unknown} [text]
 * @returns {HTMLElement}
 */
export function make(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

/** @param {Element} node */
export function clear(node) {
  node.replaceChildren();
}
