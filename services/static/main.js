/* imgsearch web page: plain ES modules, no build step, no external requests.
   This module holds the page's state and wires the inputs to the searches. */

import { searchPhoto, similarItems, similarResults } from "./api.js";
import { clear, el } from "./dom.js";
import { drawBoxes, enableRegionDrawing, markSelected } from "./draw.js";
import { listingParams, selectedCategory, wireFilters } from "./filters.js";
import { showPeople } from "./people.js";
import { watchPhotoSources } from "./photos.js";
import {
  clearError, hideResults, itemLabel, messageOf, renderMeta, renderResults, setBusy, setStatus, showError,
  showNotice,
} from "./render.js";

/** @typedef {import("./api.js").Item} Item */
/** @typedef {import("./api.js").Result} Result */
/** @typedef {import("./api.js").SearchResponse} SearchResponse */

const K = 10;

const state = {
  /** @type {File | null} the current photo */
  file: null,
  /** @type {string | null} its object URL, shown in the <img> */
  photoUrl: null,
  /** @type {number[] | null} [x1, y1, x2, y2] in the photo's pixels, or null for the whole photo */
  region: null,
  /** @type {SearchResponse | null} the last /v1/search answer */
  response: null,
  /** index of the selected item */
  selected: -1,
  /** @type {"photo" | "similar"} the items found in the photo, or "more like" a catalog item */
  view: "photo",
  /** @type {Result | null} the catalog item the "similar" view is about */
  similarOf: null,
};

/** @param {SearchResponse | null} body */
const itemsOf = (body) => (body && Array.isArray(body.items) ? body.items : []);

/** Pixel size of the photo as the server decoded it (box coordinates refer to it). */
function imageSize() {
  const im = state.response?.image;
  if (im && im.width > 0 && im.height > 0) return { w: im.width, h: im.height };
  return { w: el.photo.naturalWidth || 0, h: el.photo.naturalHeight || 0 };
}

const selectedBox = () => (state.view === "photo" ? state.selected : -1);

function showBoxes() {
  const drawn = drawBoxes(itemsOf(state.response), imageSize(), (i) => selectItem(i, true));
  // The photo is not decoded yet (or the browser cannot show it): place the boxes once it is.
  if (!drawn && !el.photo.complete) {
    el.photo.addEventListener("load", () => {
      showBoxes();
      markSelected(selectedBox());
    }, { once: true });
  }
}

/** @param {File} file */
function loadFile(file) {
  clearError();
  if (file.size === 0) {
    showError("That file is empty. Please choose a photo.");
    return;
  }
  Object.assign(state, { file, region: null, response: null, selected: -1, view: "photo" });
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photoUrl = URL.createObjectURL(file);
  clear(el.overlay);
  hideResults();
  el.notice.hidden = true;
  clear(el.meta);
  el.photo.removeAttribute("src");
  el.photo.src = state.photoUrl;
  el.photoPanel.hidden = false;
  searchCurrentPhoto();
}

async function searchCurrentPhoto() {
  if (!state.file) return;
  clearError();
  state.view = "photo";
  state.similarOf = null;
  const params = { k: K, ...listingParams(), box: state.region ? state.region.join(",") : null };
  setBusy(true, state.region ? "Searching the region…" : "Finding items in your photo…");
  try {
    const body = await searchPhoto(state.file, params);
    if (!body) return;
    setBusy(false, "");
    showSearch(body);
  } catch (err) {
    setBusy(false, "");
    showError(`Search failed: ${messageOf(err)}`);
    if (!state.response && el.stage.classList.contains("unviewable")) el.photoPanel.hidden = true;
  }
}

/**
 * @param {SearchResponse} body
 * @param {Item[]} items
 */
function notesFor(body, items) {
  const notes = [];
  const fallback = body.fallback || items.map((it) => it.fallback).find(Boolean);
  if (fallback === "whole_image") {
    notes.push("No separate items were detected, so the whole photo was searched as one item.");
  } else if (fallback) {
    notes.push(`Fallback used: ${fallback}.`);
  }
  if (items.some((it) => it.source === "foreground")) {
    notes.push("The items lying apart on a plain background were searched one by one.");
  }
  if (state.region) notes.push("Searching the region you drew. Choose \u201cWhole photo\u201d to go back.");
  if (!items.length) notes.push("Nothing to show for this photo.");
  return notes;
}

/** @param {SearchResponse} body */
function showSearch(body) {
  state.response = body;
  const items = itemsOf(body);
  showBoxes();
  renderMeta(body);
  showNotice(notesFor(body, items));
  showPeople(items, (i) => selectItem(i, true));
  el.clearRegion.hidden = !state.region;
  setStatus(`${items.length} ${items.length === 1 ? "item" : "items"} found.`);
  if (items.length) selectItem(0, false);
  else hideResults();
}

/**
 * Shows the catalog items like one item of the photo.
 * @param {number} i
 * @param {boolean} scroll bring the results into view (they may be below the photo on a phone)
 */
function selectItem(i, scroll) {
  const item = itemsOf(state.response)[i];
  if (!item) return;
  state.selected = i;
  state.view = "photo";
  state.similarOf = null;
  markSelected(selectedBox());
  const label = itemLabel(item);
  let title = `Similar to ${label}${item.category && item.category !== label ? ` (${item.category})` : ""}`;
  const searched = selectedCategory() || item.searched_category;
  // A garment is searched among its kind's categories (#15): a list, shown as one.
  if (searched) title += ` in ${Array.isArray(searched) ? searched.join(", ") : searched}`;
  renderResults(title, Array.isArray(item.results) ? item.results : [], moreLikeThis);
  if (scroll) scrollToResults();
}

function scrollToResults() {
  const rect = el.resultsPanel.getBoundingClientRect();
  if (rect.top > window.innerHeight - 80) el.resultsPanel.scrollIntoView({ behavior: "smooth", block: "start" });
}

/**
 * The /similar answer's timings and versions, with the photo search's where it has none.
 * @param {SearchResponse} body
 */
function mergeMeta(body) {
  const prev = state.response || {};
  return {
    timings_ms: body.timings_ms || prev.timings_ms,
    index_version: body.index_version !== undefined ? body.index_version : prev.index_version,
    models: body.models || prev.models,
  };
}

/** @param {Result} r */
async function moreLikeThis(r) {
  clearError();
  state.view = "similar";
  state.similarOf = r;
  markSelected(selectedBox());
  const name = r.title || `item ${r.item_id}`;
  const { category, filter } = listingParams();
  setBusy(true, `Finding items like ${name}…`);
  try {
    const body = await similarItems(r.item_id, { k: K, category, filter });
    if (!body) return;
    setBusy(false, "");
    renderResults(`More like ${name}${category ? ` in ${category}` : ""}`, similarResults(body), moreLikeThis);
    if (body.timings_ms || body.index_version) renderMeta(mergeMeta(body));
    setStatus(`Showing items like ${name}.`);
    el.resultsTitle.setAttribute("tabindex", "-1");
    el.resultsTitle.focus();
  } catch (err) {
    setBusy(false, "");
    showError(`Could not load similar items: ${messageOf(err)}`);
  }
}

function wireSearchControls() {
  enableRegionDrawing({
    canDraw: () => state.file !== null,
    imageSize,
    onRegion: (box) => {
      state.region = box;
      state.selected = -1;
      searchCurrentPhoto();
    },
  });
  el.clearRegion.addEventListener("click", () => {
    state.region = null;
    searchCurrentPhoto();
  });
  wireFilters(() => {
    if (state.view === "similar" && state.similarOf) moreLikeThis(state.similarOf);
    else if (state.file) searchCurrentPhoto();
  });
}

function wirePhotoState() {
  el.photo.addEventListener("error", () => {
    if (!el.photo.getAttribute("src")) return;
    el.stage.classList.add("unviewable");
    if (!state.response && !el.error.hidden) el.photoPanel.hidden = true;
  });
  el.photo.addEventListener("load", () => el.stage.classList.remove("unviewable"));
  window.addEventListener("error", (ev) => {
    showError(`Something went wrong on this page: ${ev.message || "unknown error"}. Please reload.`);
  });
  window.addEventListener("unhandledrejection", (ev) => {
    showError(`Something went wrong on this page: ${messageOf(ev.reason)}.`);
  });
}

watchPhotoSources(loadFile);
wireSearchControls();
wirePhotoState();
