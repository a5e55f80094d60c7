/* Boxes over the photo: one button per detected item, and a region the user drags out
   (with the mouse at any time, by touch or pen once "Draw a region" is on). */

import { clear, el, make } from "./dom.js";
import { fmtPct, itemLabel, setStatus } from "./render.js";

/** Displayed pixels a drag must cover before it counts as a region (a shorter one is a click). */
const MIN_REGION_PX = 8;

/** @typedef {{w: number, h: number}} Size pixel size of the photo as the server decoded it */
/** @typedef {import("./api.js").Item} Item */

/**
 * @param {number} v
 * @param {number} lo
 * @param {number} hi
 */
const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));

/**
 * @param {Item} item
 * @param {number} i its index in the answer
 * @param {Size} size
 */
function boxButton(item, i, size) {
  const b = Array.isArray(item.box) && item.box.length === 4 ? item.box : [0, 0, size.w, size.h];
  const x1 = clamp(b[0], 0, size.w);
  const y1 = clamp(b[1], 0, size.h);
  const x2 = clamp(b[2], x1, size.w);
  const y2 = clamp(b[3], y1, size.h);
  const btn = /** @type {HTMLButtonElement} */ (make("button", "box"));
  btn.type = "button";
  btn.dataset.testid = "box";
  btn.dataset.index = String(i);
  // Percentages keep the boxes on the photo whatever size it is displayed at.
  btn.style.left = `${(100 * x1) / size.w}%`;
  btn.style.top = `${(100 * y1) / size.h}%`;
  btn.style.width = `${(100 * (x2 - x1)) / size.w}%`;
  btn.style.height = `${(100 * (y2 - y1)) / size.h}%`;
  if (item.source === "user_box") btn.classList.add("region");
  if (y1 / size.h < 0.08) btn.classList.add("tag-inside"); // no room above the box for its tag
  if (item.fallback) btn.classList.add("whole");
  const label = itemLabel(item);
  const score = fmtPct(item.score);
  const category = item.category && item.category !== label ? ` (${item.category})` : "";
  btn.setAttribute("aria-label", `${label}${category}${score ? `, confidence ${score}` : ""}: show similar items`);
  btn.setAttribute("aria-pressed", "false");
  const tag = make("span", "tag", label + (score ? ` ${score}` : ""));
  tag.setAttribute("aria-hidden", "true");
  btn.appendChild(tag);
  return btn;
}

/**
 * One button per item over the photo; clicking one calls onPick with its index.
 * Returns false (and draws nothing) while the photo's size is not known yet.
 * @param {Item[]} items
 * @param {Size} size
 * @param {(i: number) => void} onPick
 */
export function drawBoxes(items, size, onPick) {
  clear(el.overlay);
  if (!size.w || !size.h) return false;
  items.forEach((item, i) => {
    const btn = boxButton(item, i, size);
    btn.addEventListener("click", () => onPick(i));
    el.overlay.appendChild(btn);
  });
  return true;
}

/** @param {number} selected the index of the selected box, -1 for none */
export function markSelected(selected) {
  for (const box of el.overlay.querySelectorAll(".box")) {
    const on = Number(box.getAttribute("data-index")) === selected;
    box.classList.toggle("selected", on);
    box.setAttribute("aria-pressed", on ? "true" : "false");
  }
}

/**
 * Where a pointer is on the displayed photo, clamped to it.
 * @param {PointerEvent} ev
 */
function photoPoint(ev) {
  const rect = el.photo.getBoundingClientRect();
  return { x: clamp(ev.clientX - rect.left, 0, rect.width), y: clamp(ev.clientY - rect.top, 0, rect.height) };
}

/** @typedef {{id: number, x0: number, y0: number, x1: number, y1: number, active: boolean}} Drag */

/**
 * A drag in displayed pixels as [x1, y1, x2, y2] in the photo's own pixels, or null when too small.
 * @param {Drag} d
 * @param {Size} size
 */
function dragToBox(d, size) {
  const rect = el.photo.getBoundingClientRect();
  const sx = size.w / rect.width;
  const sy = size.h / rect.height;
  const box = [
    Math.round(Math.min(d.x0, d.x1) * sx),
    Math.round(Math.min(d.y0, d.y1) * sy),
    Math.min(Math.round(Math.max(d.x0, d.x1) * sx), size.w),
    Math.min(Math.round(Math.max(d.y0, d.y1) * sy), size.h),
  ];
  return box[2] - box[0] < 2 || box[3] - box[1] < 2 ? null : box;
}

/** @param {Drag} d */
function showDraft(d) {
  el.draft.style.left = `${Math.min(d.x0, d.x1)}px`;
  el.draft.style.top = `${Math.min(d.y0, d.y1)}px`;
  el.draft.style.width = `${Math.abs(d.x1 - d.x0)}px`;
  el.draft.style.height = `${Math.abs(d.y1 - d.y0)}px`;
}

function toggleDrawMode() {
  const on = el.drawToggle.getAttribute("aria-pressed") !== "true";
  el.drawToggle.setAttribute("aria-pressed", on ? "true" : "false");
  el.stage.classList.toggle("draw-mode", on);
  setStatus(on ? "Drag on the photo to draw a region." : "");
}

/** @typedef {{canDraw: () => boolean, imageSize: () => Size, onRegion: (box: number[]) => void}} Hooks */

/** @type {Hooks} */
let hooks = { canDraw: () => false, imageSize: () => ({ w: 0, h: 0 }), onRegion: () => {} };
/** @type {Drag | null} */
let drag = null;
// The click that ends a drag must not also press the box under the pointer.
let suppressClick = false;

/** @param {PointerEvent} ev */
function startsDrawing(ev) {
  if (!hooks.canDraw() || !el.photo.naturalWidth) return false;
  if (ev.pointerType === "mouse") return ev.button === 0;
  return el.drawToggle.getAttribute("aria-pressed") === "true";
}

/** @param {PointerEvent} ev */
function onPointerDown(ev) {
  if (!startsDrawing(ev)) return;
  const p = photoPoint(ev);
  drag = { id: ev.pointerId, x0: p.x, y0: p.y, x1: p.x, y1: p.y, active: false };
  if (ev.pointerType !== "mouse") ev.preventDefault(); // no scrolling while a finger draws
}

/** @param {PointerEvent} ev */
function onPointerMove(ev) {
  if (!drag || ev.pointerId !== drag.id) return;
  const p = photoPoint(ev);
  drag.x1 = p.x;
  drag.y1 = p.y;
  const far = Math.abs(drag.x1 - drag.x0) >= MIN_REGION_PX || Math.abs(drag.y1 - drag.y0) >= MIN_REGION_PX;
  if (!drag.active && far) {
    drag.active = true;
    try {
      el.stage.setPointerCapture(ev.pointerId);
    } catch {
      // the pointer is already gone: the drag ends with its pointerup or pointercancel
    }
    el.stage.classList.add("dragging");
    el.draft.hidden = false;
  }
  if (drag.active) {
    ev.preventDefault();
    showDraft(drag);
  }
}

/**
 * @param {PointerEvent} ev
 * @param {boolean} cancelled
 */
function endDrag(ev, cancelled) {
  if (!drag || ev.pointerId !== drag.id) return;
  const d = drag;
  drag = null;
  el.stage.classList.remove("dragging");
  el.draft.hidden = true;
  if (!d.active) return;
  suppressClick = true;
  setTimeout(() => { suppressClick = false; }, 0);
  if (cancelled) return;
  const box = dragToBox(d, hooks.imageSize());
  if (box) hooks.onRegion(box);
}

/** @param {MouseEvent} ev */
function swallowClickAfterDrag(ev) {
  if (!suppressClick) return;
  ev.stopPropagation();
  ev.preventDefault();
  suppressClick = false;
}

/**
 * Lets the user drag out a region on the photo; onRegion gets it in the photo's own pixels.
 * @param {Hooks} given
 */
export function enableRegionDrawing(given) {
  hooks = given;
  el.stage.addEventListener("pointerdown", onPointerDown);
  el.stage.addEventListener("pointermove", onPointerMove);
  el.stage.addEventListener("pointerup", (ev) => endDrag(ev, false));
  el.stage.addEventListener("pointercancel", (ev) => endDrag(ev, true));
  el.stage.addEventListener("click", swallowClickAfterDrag, true);
  el.photo.addEventListener("dragstart", (ev) => ev.preventDefault());
  el.drawToggle.addEventListener("click", toggleDrawMode);
}
