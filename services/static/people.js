/* A photo's garments grouped by the person wearing them (#29): "Person 1: top · bottom · footwear", each
   garment a button that shows its similar items. Self-contained: it adds its own list below the notice. */
import { el, make } from "./dom.js";

/** @typedef {{label?: string, person?: number}} Worn */

const ORDER = ["top", "bottom", "footwear"];
const rank = (/** @type {string | undefined} */ label) => {
  const at = ORDER.indexOf(label || "");
  return at < 0 ? ORDER.length : at;
};

function list() {
  let node = document.getElementById("people");
  if (!node) {
    node = make("ul", "people");
    node.id = "people";
    node.setAttribute("data-testid", "people");
    node.setAttribute("aria-label", "Garments by person");
    el.notice.after(node);
  }
  return node;
}

/**
 * Lists each numbered person's garments (the answer's `person` on each item); hidden when there is none.
 * @param {Worn[]} items the search's items, indexed as the page selects them
 * @param {(i: number) => void} onSelect
 */
export function showPeople(items, onSelect) {
  /** @type {Map<number, number[]>} */
  const byPerson = new Map();
  items.forEach((item, i) => {
    if (typeof item.person !== "number") return;
    const worn = byPerson.get(item.person) || [];
    worn.push(i);
    byPerson.set(item.person, worn);
  });
  const node = list();
  node.replaceChildren();
  for (const person of [...byPerson.keys()].sort((a, b) => a - b)) {
    const row = make("li", "person");
    row.setAttribute("data-testid", "person");
    row.appendChild(make("span", "person-name", `Person ${person}: `));
    const worn = (byPerson.get(person) || []).sort((a, b) => rank(items[a].label) - rank(items[b].label));
    worn.forEach((i, n) => {
      if (n) row.appendChild(document.createTextNode(" · "));
      const button = make("button", "tool", items[i].label || "item");
      button.setAttribute("type", "button");
      button.addEventListener("click", () => onSelect(i));
      row.appendChild(button);
    });
    node.appendChild(row);
  }
  node.hidden = byPerson.size === 0;
}
