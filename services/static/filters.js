/* The listing filters (issue 28): a row of category chips, a brand, a highest price and "in stock only".
   They live in the page's URL (?category=&brand=&max_price=&in_stock=1), so a filtered view can be shared
   and survives a reload, and become the search's `category` and `filter` parameters. */

import { el, make } from "./dom.js";

/** The demo catalog's categories (Fashion-MNIST), in its label order. */
const CATEGORIES = [
  "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
];

const state = { category: "", brand: "", maxPrice: "", inStock: false };

/** @type {Set<string>} brands seen in answers, offered as the brand input's suggestions */
const seenBrands = new Set();

/** @param {string} s a string literal of the filter language: double quotes, `\` escapes */
const quoted = (s) => `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;

/** The `filter=` expression of the brand, price and stock controls ("" when none is set). */
export function filterExpression() {
  const terms = [];
  if (state.brand) terms.push(`brand = ${quoted(state.brand)}`);
  const price = Number(state.maxPrice);
  if (state.maxPrice !== "" && Number.isFinite(price)) terms.push(`price <= ${price}`);
  if (state.inStock) terms.push("in_stock = true");
  return terms.join(" AND ");
}

/** The search parameters the filters add: category and filter. */
export function listingParams() {
  return { category: state.category, filter: filterExpression() };
}

/** The selected category ("" for all). */
export const selectedCategory = () => state.category;

function readUrl() {
  const q = new URLSearchParams(window.location.search);
  state.category = CATEGORIES.includes(q.get("category") || "") ? q.get("category") || "" : "";
  state.brand = (q.get("brand") || "").trim();
  state.maxPrice = /^\d+(\.\d+)?$/.test(q.get("max_price") || "") ? q.get("max_price") || "" : "";
  state.inStock = q.get("in_stock") === "1";
}

function writeUrl() {
  const q = new URLSearchParams(window.location.search);
  const set = (/** @type {string} */ key, /** @type {string} */ value) => (value ? q.set(key, value) : q.delete(key));
  set("category", state.category);
  set("brand", state.brand);
  set("max_price", state.maxPrice);
  set("in_stock", state.inStock ? "1" : "");
  const search = q.toString();
  window.history.replaceState(null, "", `${window.location.pathname}${search ? `?${search}` : ""}`);
}

/** @param {string} name @param {string} label */
function chip(name, label) {
  const btn = /** @type {HTMLButtonElement} */ (make("button", "chip", label));
  btn.type = "button";
  btn.dataset.category = name;
  btn.setAttribute("data-testid", "chip");
  return btn;
}

function markChips() {
  for (const btn of el.chips.querySelectorAll("button")) {
    btn.setAttribute("aria-pressed", String(/** @type {HTMLElement} */ (btn).dataset.category === state.category));
  }
}

function showControls() {
  el.brand.value = state.brand;
  el.maxPrice.value = state.maxPrice;
  el.inStock.checked = state.inStock;
  markChips();
}

/**
 * Remembers the brands of these results as suggestions for the brand input.
 * @param {{attrs?: Record<string, any>}[]} results
 */
export function learnBrands(results) {
  for (const r of results) {
    const brand = r.attrs && typeof r.attrs.brand === "string" ? r.attrs.brand : "";
    if (brand && !seenBrands.has(brand)) {
      seenBrands.add(brand);
      el.brands.appendChild(make("option", null, brand)).setAttribute("value", brand);
    }
  }
}

/**
 * Builds the chips, fills the controls from the URL and calls onChange after every change.
 * @param {() => void} onChange
 */
export function wireFilters(onChange) {
  el.chips.appendChild(chip("", "All"));
  for (const name of CATEGORIES) el.chips.appendChild(chip(name, name));
  readUrl();
  showControls();
  const changed = () => {
    writeUrl();
    markChips();
    onChange();
  };
  el.chips.addEventListener("click", (ev) => {
    const btn = /** @type {HTMLElement} */ (ev.target).closest("button");
    if (!btn || btn.dataset.category === undefined || btn.dataset.category === state.category) return;
    state.category = btn.dataset.category;
    changed();
  });
  el.filtersForm.addEventListener("submit", (ev) => ev.preventDefault());
  el.brand.addEventListener("change", () => {
    state.brand = el.brand.value.trim();
    changed();
  });
  el.maxPrice.addEventListener("change", () => {
    state.maxPrice = el.maxPrice.validity.valid ? el.maxPrice.value : "";
    changed();
  });
  el.inStock.addEventListener("change", () => {
    state.inStock = el.inStock.checked;
    changed();
  });
}
