/* Calls to the gateway. URLs are relative, so the page also works behind a path prefix.
   Only the newest search counts: each one aborts the one before, and an answer that arrives
   after a newer request has started resolves to null. */

/** @typedef {Record<string, string | number | null | undefined>} Params */

/**
 * A catalog item in a list of results.
 * @typedef {{item_id: string | number, score?: number, title?: string, category?: string,
 *   image_url?: string, price?: number, currency?: string, brand?: string,
 *   attrs?: Record<string, any>, product_id?: string, images?: number}} Result
 */
/**
 * An item found in the photo, with the catalog items like it.
 * @typedef {{box?: number[], score?: number, label?: string, category?: string, source?: string,
 *   fallback?: string, searched_category?: string|string[], results?: Result[]}} Item
 */
/**
 * The parts of a /v1/search or /similar answer that the page reads.
 * @typedef {{items?: Item[], image?: {width: number, height: number}, fallback?: string,
 *   timings_ms?: Record<string, number>, index_version?: string, models?: Record<string, any>,
 *   cached?: boolean}} SearchResponse
 */

/** @type {AbortController | null} */
let latest = null;

/**
 * A query string from the parameters that have a value ("" when none has).
 * @param {Params} params
 */
export function query(params) {
  const parts = Object.entries(params)
    .filter(([, value]) => value !== null && value !== undefined && value !== "")
    .map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`);
  return parts.length ? `?${parts.join("&")}` : "";
}

/** @param {number} status */
function whatFailed(status) {
  if (status === 413) return "The photo is too large.";
  if (status === 415) return "That file is not an image we can read.";
  if (status === 400 || status === 422) return "The request was not accepted.";
  if (status === 404) return "Not found.";
  if (status === 502 || status === 503) {
    return "The search service is not available right now. Please try again shortly.";
  }
  if (status === 504) return "The search service took too long to answer. Please try again.";
  if (status >= 500) return "The search service had a problem.";
  return "The request failed.";
}

/**
 * A sentence for the user: what failed, the server's own detail, the status code.
 * @param {number} status
 * @param {unknown} body parsed JSON, the raw text, or null
 */
export function describeHttpError(status, body) {
  let detail = "";
  if (body && typeof body === "object") {
    const given = /** @type {{error?: unknown, detail?: unknown}} */ (body);
    const raw = given.error || given.detail || "";
    detail = typeof raw === "string" ? raw : JSON.stringify(raw);
  } else if (typeof body === "string") {
    detail = body.slice(0, 300);
  }
  return `${whatFailed(status)}${detail ? ` (${detail})` : ""} [HTTP ${status}]`;
}

/** @param {string} text */
function parseBody(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return text;
  }
}

/**
 * A JSON object from the gateway, or null when a newer request superseded this one.
 * Throws an Error whose message can be shown to the user.
 * @param {string} url
 * @param {RequestInit} [options]
 * @returns {Promise<Record<string, any> | null>}
 */
async function fetchJson(url, options = {}) {
  latest?.abort();
  const controller = new AbortController();
  latest = controller;
  let resp;
  let text;
  try {
    resp = await fetch(url, { ...options, signal: controller.signal });
    text = await resp.text();
  } catch (err) {
    if (controller !== latest || (err instanceof Error && err.name === "AbortError")) return null;
    throw new Error("Could not reach the search service. Check your connection and try again.");
  }
  if (controller !== latest) return null;
  const body = parseBody(text);
  if (!resp.ok) throw new Error(describeHttpError(resp.status, body));
  if (!body || typeof body !== "object") throw new Error("The search service sent an unexpected answer.");
  return body;
}

/**
 * POST /v1/search: the items in a photo (or in one region of it) and the catalog items like each.
 * @param {Blob & {name?: string}} file
 * @param {Params} params k, category, box, filter
 */
export function searchPhoto(file, params) {
  const form = new FormData();
  form.append("image", file, file.name || "photo");
  return fetchJson(`v1/search${query(params)}`, { method: "POST", body: form });
}

/**
 * GET /v1/items/{id}/similar: catalog items like a catalog item.
 * @param {string | number} itemId
 * @param {Params} params k, category, filter
 */
export function similarItems(itemId, params) {
  return fetchJson(`v1/items/${encodeURIComponent(itemId)}/similar${query(params)}`);
}

/**
 * The result list of a /similar answer, whichever of the shapes the gateway has used.
 * @param {any} body
 * @returns {Result[]}
 */
export function similarResults(body) {
  if (Array.isArray(body)) return body;
  if (Array.isArray(body.results)) return body.results;
  if (!Array.isArray(body.items)) return [];
  if (body.items.length && Array.isArray(body.items[0].results)) return body.items[0].results;
  return body.items;
}

/** @param {string | number} itemId */
export function itemImageUrl(itemId) {
  return `v1/items/${encodeURIComponent(itemId)}/image`;
}

/**
 * One of the page's sample photos, as a File the search can upload.
 * @param {string} src
 */
export async function fetchSample(src) {
  const resp = await fetch(src);
  if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
  const blob = await resp.blob();
  const name = src.split("/").pop() || "sample.jpg";
  return new File([blob], name, { type: blob.type || "image/jpeg" });
}
