/* A result is a product (issue 28): its best-matching image stands for all of the product's images. */

import { make } from "./dom.js";

/** @typedef {import("./api.js").Result} Result */

/** @param {Result} r */
export const imageCount = (r) => (typeof r.images === "number" && r.images > 0 ? r.images : 1);

/**
 * "1 image" / "3 images": how many catalog images the product of this result has.
 * @param {Result} r
 */
export function imagesBadge(r) {
  const n = imageCount(r);
  const badge = make("span", n > 1 ? "images many" : "images", `${n} ${n === 1 ? "image" : "images"}`);
  badge.setAttribute("data-testid", "images");
  badge.title = n > 1 ? `This product has ${n} catalog images; the best match is shown` : "One catalog image";
  return badge;
}

/**
 * What the card says about its product: how many images it has and, when the catalog says so, that it is sold out.
 * @param {Result} r
 */
export function productNotes(r) {
  const notes = document.createDocumentFragment();
  notes.appendChild(imagesBadge(r));
  if (r.attrs && r.attrs.in_stock === false) {
    const out = make("span", "sold-out", "Sold out");
    out.setAttribute("data-testid", "sold-out");
    notes.appendChild(out);
  }
  return notes;
}
