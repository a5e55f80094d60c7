/* Where a photo comes from: the file input, a drop on the drop zone (or anywhere on the page),
   or one of the sample buttons. Each hands a File to the page's loader. */

import { fetchSample } from "./api.js";
import { el } from "./dom.js";
import { clearError, messageOf, setBusy, showError } from "./render.js";

/** @typedef {(file: File) => void} Loader */

/** @param {DragEvent} ev */
const droppedFile = (ev) => ev.dataTransfer?.files?.[0];

/**
 * @param {HTMLElement} btn a sample button; its data-src is the photo
 * @param {Loader} load
 */
async function loadSample(btn, load) {
  clearError();
  setBusy(true, "Loading the sample photo…");
  let file;
  try {
    file = await fetchSample(btn.dataset.src || "");
  } catch (err) {
    setBusy(false, "");
    showError(`Could not load the sample photo (${messageOf(err)}).`);
    return;
  }
  setBusy(false, "");
  load(file);
}

/** @param {Loader} load */
function watchDrops(load) {
  for (const type of ["dragenter", "dragover"]) {
    el.drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      el.drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "dragend"]) el.drop.addEventListener(type, () => el.drop.classList.remove("over"));
  el.drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    ev.stopPropagation();
    el.drop.classList.remove("over");
    const f = droppedFile(ev);
    if (f) load(f);
    else showError("Drop an image file (for example a JPEG or PNG photo).");
  });
  // A photo dropped anywhere else must not navigate away from the page.
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const f = droppedFile(ev);
    if (f) load(f);
  });
}

/** @param {Loader} load called with every photo the user picks */
export function watchPhotoSources(load) {
  el.upload.addEventListener("change", () => {
    const f = el.upload.files?.[0];
    if (f) load(f);
    el.upload.value = ""; // picking the same file again is a new search
  });
  watchDrops(load);
  for (const btn of document.querySelectorAll(".sample")) {
    btn.addEventListener("click", () => loadSample(/** @type {HTMLElement} */ (btn), load));
  }
}
