/* imgsearch web page: plain JS, no build step, no external requests. */
(function () {
  "use strict";

  var K = 10;
  var MIN_REGION_PX = 8; // displayed pixels a drag must cover before it counts as a region

  var $ = function (id) { return document.getElementById(id); };
  var el = {
    main: $("main"), error: $("error"), status: $("status"), upload: $("upload"), drop: $("drop"),
    category: $("category"), photoPanel: $("photo-panel"), stage: $("stage"), photo: $("photo"),
    overlay: $("overlay"), draft: $("draft"), notice: $("notice"), meta: $("meta"),
    resultsPanel: $("results-panel"), resultsTitle: $("results-title"), results: $("results"),
    drawToggle: $("draw-toggle"), clearRegion: $("clear-region")
  };

  var state = {
    file: null,         // Blob of the current photo
    photoUrl: null,     // object URL shown in <img>
    region: null,       // [x1,y1,x2,y2] in original pixels, or null for the whole photo
    response: null,     // last /v1/search response
    selected: -1,       // index of the selected item
    view: "photo",      // "photo" (item results) or "similar" (more like this)
    similarOf: null,    // catalog result the "similar" view is about
    seq: 0,             // request counter: stale responses are dropped
    controller: null
  };

  // ---------- helpers ----------
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function make(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }

  function fmtScore(s) { return typeof s === "number" && isFinite(s) ? s.toFixed(3) : "–"; }
  function fmtPct(s) { return typeof s === "number" && isFinite(s) ? Math.round(s * 100) + "%" : ""; }
  function fmtPrice(v, currency) {
    if (typeof v === "number" && currency) {
      try { return new Intl.NumberFormat(undefined, { style: "currency", currency: currency }).format(v); } catch (e) { /* unknown code */ }
    }
    return String(v) + (currency ? " " + currency : "");
  }
  function fmtMs(v) { return typeof v === "number" && isFinite(v) ? (v < 10 ? v.toFixed(1) : Math.round(v)) + " ms" : "–"; }

  function showError(message) {
    el.error.textContent = message;
    el.error.hidden = false;
  }
  function clearError() { el.error.hidden = true; el.error.textContent = ""; }

  function setBusy(busy, message) {
    el.main.setAttribute("aria-busy", busy ? "true" : "false");
    document.body.classList.toggle("busy", busy);
    el.status.textContent = message || "";
  }

  function describeHttpError(status, body) {
    var detail = "";
    if (body && typeof body === "object") {
      detail = body.error || body.detail || "";
      if (typeof detail !== "string") detail = JSON.stringify(detail);
    } else if (typeof body === "string") {
      detail = body.slice(0, 300);
    }
    var what;
    if (status === 413) what = "The photo is too large.";
    else if (status === 415) what = "That file is not an image we can read.";
    else if (status === 400 || status === 422) what = "The request was not accepted.";
    else if (status === 404) what = "Not found.";
    else if (status === 503 || status === 502) what = "The search service is not available right now. Please try again shortly.";
    else if (status === 504) what = "The search service took too long to answer. Please try again.";
    else if (status >= 500) what = "The search service had a problem.";
    else what = "The request failed.";
    return what + (detail ? " (" + detail + ")" : "") + " [HTTP " + status + "]";
  }

  // Fetch JSON; throws Error with a readable message. Returns null when superseded.
  function fetchJson(url, options) {
    if (state.controller) state.controller.abort();
    var controller = typeof AbortController !== "undefined" ? new AbortController() : null;
    state.controller = controller;
    var seq = ++state.seq;
    var opts = options || {};
    if (controller) opts.signal = controller.signal;
    return fetch(url, opts).then(function (resp) {
      return resp.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
        if (seq !== state.seq) return null;
        if (!resp.ok) throw new Error(describeHttpError(resp.status, body));
        if (!body || typeof body !== "object") throw new Error("The search service sent an unexpected answer.");
        return body;
      });
    }, function (err) {
      if (seq !== state.seq || (err && err.name === "AbortError")) return null;
      throw new Error("Could not reach the search service. Check your connection and try again.");
    });
  }

  function query(params) {
    var parts = [];
    Object.keys(params).forEach(function (key) {
      var v = params[key];
      if (v !== null && v !== undefined && v !== "") parts.push(encodeURIComponent(key) + "=" + encodeURIComponent(v));
    });
    return parts.length ? "?" + parts.join("&") : "";
  }

  // ---------- loading a photo ----------
  function loadFile(blob) {
    clearError();
    if (!blob) return;
    if (blob.size === 0) { showError("That file is empty. Please choose a photo."); return; }
    state.file = blob;
    state.region = null;
    state.response = null;
    state.selected = -1;
    state.view = "photo";
    if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
    state.photoUrl = URL.createObjectURL(blob);
    clear(el.overlay);
    clear(el.results);
    el.resultsPanel.hidden = true;
    el.notice.hidden = true;
    clear(el.meta);
    el.photo.removeAttribute("src");
    el.photo.src = state.photoUrl;
    el.photoPanel.hidden = false;
    searchPhoto();
  }

  function searchPhoto() {
    if (!state.file) return;
    clearError();
    state.view = "photo";
    state.similarOf = null;
    var form = new FormData();
    form.append("image", state.file, state.file.name || "photo");
    var params = { k: K, category: el.category.value };
    if (state.region) params.box = state.region.join(",");
    setBusy(true, state.region ? "Searching the region…" : "Finding items in your photo…");
    fetchJson("v1/search" + query(params), { method: "POST", body: form }).then(function (body) {
      if (!body) return;
      setBusy(false, "");
      renderSearch(body);
    }).catch(function (err) {
      setBusy(false, "");
      showError("Search failed: " + err.message);
      if (!state.response && el.stage.classList.contains("unviewable")) el.photoPanel.hidden = true;
    });
  }

  // ---------- rendering a search ----------
  function itemsOf(body) { return Array.isArray(body.items) ? body.items : []; }

  function renderSearch(body) {
    state.response = body;
    var items = itemsOf(body);
    renderBoxes(items);
    renderMeta(body);
    var notes = [];
    var fallback = isFallback(body, null) || items.map(function (it) { return it.fallback; }).filter(Boolean)[0];
    if (fallback === "whole_image") notes.push("No separate items were detected, so the whole photo was searched as one item.");
    else if (fallback) notes.push("Fallback used: " + fallback + ".");
    if (state.region) notes.push("Searching the region you drew. Choose \u201cWhole photo\u201d to go back.");
    if (!items.length) notes.push("Nothing to show for this photo.");
    el.notice.textContent = notes.join(" ");
    el.notice.hidden = notes.length === 0;
    el.clearRegion.hidden = !state.region;
    el.status.textContent = items.length + (items.length === 1 ? " item" : " items") + " found.";
    if (items.length) selectItem(0, false);
    else { clear(el.results); el.resultsPanel.hidden = true; }
  }

  // Pixel size of the photo as the server decoded it (box coordinates refer to it).
  function imageSize() {
    var im = state.response && state.response.image;
    if (im && im.width > 0 && im.height > 0) return { w: im.width, h: im.height };
    return { w: el.photo.naturalWidth || 0, h: el.photo.naturalHeight || 0 };
  }

  function isFallback(body, item) {
    return (item && item.fallback) || (body && body.fallback) || null;
  }

  function itemLabel(item) {
    if (item.label) return item.label;
    if (item.source === "user_box") return "your region";
    if (item.fallback) return "whole photo";
    return item.category || "item";
  }

  function renderBoxes(items) {
    clear(el.overlay);
    var size = imageSize();
    if (!size.w || !size.h) {
      // Image not decoded yet (or the browser cannot show it): place boxes once it is.
      if (!el.photo.complete) el.photo.addEventListener("load", function () { renderBoxes(itemsOf(state.response || {})); markSelected(); }, { once: true });
      return;
    }
    items.forEach(function (item, i) {
      var b = Array.isArray(item.box) && item.box.length === 4 ? item.box : [0, 0, size.w, size.h];
      var x1 = Math.max(0, Math.min(size.w, b[0])), y1 = Math.max(0, Math.min(size.h, b[1]));
      var x2 = Math.max(x1, Math.min(size.w, b[2])), y2 = Math.max(y1, Math.min(size.h, b[3]));
      var btn = make("button", "box");
      btn.type = "button";
      btn.setAttribute("data-testid", "box");
      btn.setAttribute("data-index", String(i));
      btn.style.left = (100 * x1 / size.w) + "%";
      btn.style.top = (100 * y1 / size.h) + "%";
      btn.style.width = (100 * (x2 - x1) / size.w) + "%";
      btn.style.height = (100 * (y2 - y1) / size.h) + "%";
      var label = itemLabel(item);
      var scoreText = fmtPct(item.score);
      if (item.source === "user_box") btn.classList.add("region");
      if (y1 / size.h < 0.08) btn.classList.add("tag-inside");
      if (item.fallback) btn.classList.add("whole");
      btn.setAttribute("aria-label", label + (item.category && item.category !== label ? " (" + item.category + ")" : "") +
        (scoreText ? ", confidence " + scoreText : "") + ": show similar items");
      btn.setAttribute("aria-pressed", "false");
      var tag = make("span", "tag", label + (scoreText ? " " + scoreText : ""));
      tag.setAttribute("aria-hidden", "true");
      btn.appendChild(tag);
      btn.addEventListener("click", function () { selectItem(i, true); });
      el.overlay.appendChild(btn);
    });
  }

  function markSelected() {
    var boxes = el.overlay.querySelectorAll(".box");
    for (var j = 0; j < boxes.length; j++) {
      var on = state.view === "photo" && Number(boxes[j].getAttribute("data-index")) === state.selected;
      boxes[j].classList.toggle("selected", on);
      boxes[j].setAttribute("aria-pressed", on ? "true" : "false");
    }
  }

  function selectItem(i, scroll) {
    var items = itemsOf(state.response || {});
    if (!items[i]) return;
    state.selected = i;
    state.view = "photo";
    state.similarOf = null;
    markSelected();
    var item = items[i];
    var label = itemLabel(item);
    var title = "Similar to " + label + (item.category && item.category !== label ? " (" + item.category + ")" : "");
    var searched = el.category.value || item.searched_category;
    if (searched) title += " in " + searched;
    renderResults(title, Array.isArray(item.results) ? item.results : []);
    if (scroll) scrollToResults();
  }

  function scrollToResults() {
    var rect = el.resultsPanel.getBoundingClientRect();
    if (rect.top > window.innerHeight - 80 && el.resultsPanel.scrollIntoView) {
      el.resultsPanel.scrollIntoView({ behavior: "smooth", block: "start" });
    }
  }

  function renderResults(title, results) {
    el.resultsTitle.textContent = title;
    clear(el.results);
    if (!results.length) {
      var empty = make("li", "empty", "No similar items found" + (el.category.value ? " in this category." : "."));
      el.results.appendChild(empty);
    }
    results.forEach(function (r) {
      var li = make("li", "card");
      li.setAttribute("data-testid", "result");
      var fig = make("div", "thumb");
      var img = make("img");
      img.loading = "lazy";
      img.decoding = "async";
      img.width = 112;
      img.height = 112;
      img.alt = r.title || ("Item " + r.item_id);
      img.src = r.image_url || ("v1/items/" + encodeURIComponent(r.item_id) + "/image");
      img.addEventListener("error", function () { fig.classList.add("broken"); img.alt = "(image unavailable) " + img.alt; }, { once: true });
      fig.appendChild(img);
      li.appendChild(fig);
      var body = make("div", "card-body");
      body.appendChild(make("p", "card-title", r.title || ("Item " + r.item_id)));
      var info = make("p", "card-info");
      info.appendChild(make("span", "cat", r.category || ""));
      info.appendChild(make("span", "score", "score " + fmtScore(r.score)));
      body.appendChild(info);
      var attrs = r.attrs && typeof r.attrs === "object" ? r.attrs : {};
      var price = r.price !== undefined ? r.price : attrs.price;
      var currency = r.currency || attrs.currency;
      var brand = r.brand || attrs.brand;
      if (brand || (price !== undefined && price !== null)) {
        var line = make("p", "price");
        if (price !== undefined && price !== null) line.appendChild(make("span", "amount", fmtPrice(price, currency)));
        if (brand) line.appendChild(make("span", "brand", brand));
        body.appendChild(line);
      }
      var more = make("button", "more", "More like this");
      more.type = "button";
      more.setAttribute("data-testid", "more");
      more.setAttribute("aria-label", "More like " + (r.title || ("item " + r.item_id)));
      more.addEventListener("click", function () { moreLikeThis(r); });
      body.appendChild(more);
      li.appendChild(body);
      el.results.appendChild(li);
    });
    el.resultsPanel.hidden = false;
  }

  function renderMeta(body) {
    clear(el.meta);
    var t = body.timings_ms;
    if (t && typeof t === "object") {
      var dl = make("dl", "timings");
      dl.setAttribute("aria-label", "Time per stage");
      ["decode", "detect", "embed", "search", "total"].concat(Object.keys(t).filter(function (k) {
        return ["decode", "detect", "embed", "search", "total"].indexOf(k) < 0;
      })).forEach(function (stage) {
        if (!(stage in t)) return;
        var wrap = make("div", stage === "total" ? "timing total" : "timing");
        wrap.appendChild(make("dt", null, stage));
        wrap.appendChild(make("dd", null, fmtMs(t[stage])));
        dl.appendChild(wrap);
      });
      el.meta.appendChild(dl);
    }
    var facts = make("p", "facts");
    if (body.index_version !== undefined) {
      facts.appendChild(make("span", null, "Index "));
      var v = make("code", "index-version", body.index_version);
      v.setAttribute("data-testid", "index-version");
      facts.appendChild(v);
    }
    var models = body.models;
    if (models && typeof models === "object") {
      Object.keys(models).forEach(function (role) {
        var m = models[role];
        var text = m;
        if (m && typeof m === "object") {
          text = [m.name, m.version, m.sha256 ? String(m.sha256).slice(0, 12) : null].filter(Boolean).join(" ");
        }
        facts.appendChild(make("span", "model", " · " + role + " "));
        facts.appendChild(make("code", null, text));
      });
    }
    if (body.cached !== undefined) facts.appendChild(make("span", "model", body.cached ? " · cached" : ""));
    if (facts.childNodes.length) el.meta.appendChild(facts);
  }

  // ---------- more like this ----------
  function similarResults(body) {
    if (Array.isArray(body)) return body;
    if (Array.isArray(body.results)) return body.results;
    if (Array.isArray(body.items)) {
      if (body.items.length && Array.isArray(body.items[0].results)) return body.items[0].results;
      return body.items;
    }
    return [];
  }

  function moreLikeThis(r) {
    clearError();
    state.view = "similar";
    state.similarOf = r;
    markSelected();
    var name = r.title || ("item " + r.item_id);
    setBusy(true, "Finding items like " + name + "…");
    var url = "v1/items/" + encodeURIComponent(r.item_id) + "/similar" + query({ k: K, category: el.category.value });
    fetchJson(url).then(function (body) {
      if (!body) return;
      setBusy(false, "");
      var title = "More like " + name + (el.category.value ? " in " + el.category.value : "");
      renderResults(title, similarResults(body));
      if (body.timings_ms || body.index_version) renderMeta(mergeMeta(body));
      el.status.textContent = "Showing items like " + name + ".";
      el.resultsTitle.focus && el.resultsTitle.setAttribute("tabindex", "-1");
      el.resultsTitle.focus();
    }).catch(function (err) {
      setBusy(false, "");
      showError("Could not load similar items: " + err.message);
    });
  }

  function mergeMeta(body) {
    var prev = state.response || {};
    return {
      timings_ms: body.timings_ms || prev.timings_ms,
      index_version: body.index_version !== undefined ? body.index_version : prev.index_version,
      models: body.models || prev.models
    };
  }

  // ---------- drawing a region ----------
  var drag = null;
  var suppressClick = false;

  function stagePoint(ev) {
    var rect = el.photo.getBoundingClientRect();
    return {
      x: Math.max(0, Math.min(rect.width, ev.clientX - rect.left)),
      y: Math.max(0, Math.min(rect.height, ev.clientY - rect.top)),
      w: rect.width, h: rect.height
    };
  }

  function drawEnabled(ev) {
    if (!state.file || !el.photo.naturalWidth) return false;
    if (ev.pointerType === "mouse") return ev.button === 0;
    return el.drawToggle.getAttribute("aria-pressed") === "true";
  }

  el.stage.addEventListener("pointerdown", function (ev) {
    if (!drawEnabled(ev)) return;
    var p = stagePoint(ev);
    drag = { id: ev.pointerId, x0: p.x, y0: p.y, x1: p.x, y1: p.y, active: false };
    if (ev.pointerType !== "mouse") ev.preventDefault();
  });

  el.stage.addEventListener("pointermove", function (ev) {
    if (!drag || ev.pointerId !== drag.id) return;
    var p = stagePoint(ev);
    drag.x1 = p.x; drag.y1 = p.y;
    if (!drag.active && (Math.abs(drag.x1 - drag.x0) >= MIN_REGION_PX || Math.abs(drag.y1 - drag.y0) >= MIN_REGION_PX)) {
      drag.active = true;
      try { el.stage.setPointerCapture(ev.pointerId); } catch (e) { /* ignore */ }
      el.stage.classList.add("dragging");
      el.draft.hidden = false;
    }
    if (drag.active) {
      ev.preventDefault();
      el.draft.style.left = Math.min(drag.x0, drag.x1) + "px";
      el.draft.style.top = Math.min(drag.y0, drag.y1) + "px";
      el.draft.style.width = Math.abs(drag.x1 - drag.x0) + "px";
      el.draft.style.height = Math.abs(drag.y1 - drag.y0) + "px";
    }
  });

  function endDrag(ev, cancelled) {
    if (!drag || ev.pointerId !== drag.id) return;
    var d = drag;
    drag = null;
    el.stage.classList.remove("dragging");
    el.draft.hidden = true;
    if (!d.active) return;
    suppressClick = true;
    setTimeout(function () { suppressClick = false; }, 0);
    if (cancelled) return;
    var rect = el.photo.getBoundingClientRect();
    var size = imageSize();
    var sx = size.w / rect.width, sy = size.h / rect.height;
    var box = [
      Math.round(Math.min(d.x0, d.x1) * sx), Math.round(Math.min(d.y0, d.y1) * sy),
      Math.round(Math.max(d.x0, d.x1) * sx), Math.round(Math.max(d.y0, d.y1) * sy)
    ];
    box[2] = Math.min(box[2], size.w);
    box[3] = Math.min(box[3], size.h);
    if (box[2] - box[0] < 2 || box[3] - box[1] < 2) return;
    state.region = box;
    state.selected = -1;
    searchPhoto();
  }

  el.stage.addEventListener("pointerup", function (ev) { endDrag(ev, false); });
  el.stage.addEventListener("pointercancel", function (ev) { endDrag(ev, true); });
  el.stage.addEventListener("click", function (ev) {
    if (suppressClick) { ev.stopPropagation(); ev.preventDefault(); suppressClick = false; }
  }, true);
  el.photo.addEventListener("dragstart", function (ev) { ev.preventDefault(); });

  el.drawToggle.addEventListener("click", function () {
    var on = el.drawToggle.getAttribute("aria-pressed") !== "true";
    el.drawToggle.setAttribute("aria-pressed", on ? "true" : "false");
    el.stage.classList.toggle("draw-mode", on);
    el.status.textContent = on ? "Drag on the photo to draw a region." : "";
  });

  el.clearRegion.addEventListener("click", function () {
    state.region = null;
    searchPhoto();
  });

  // ---------- inputs ----------
  el.upload.addEventListener("change", function () {
    var f = el.upload.files && el.upload.files[0];
    if (f) loadFile(f);
    el.upload.value = "";
  });

  ["dragenter", "dragover"].forEach(function (type) {
    el.drop.addEventListener(type, function (ev) { ev.preventDefault(); el.drop.classList.add("over"); });
  });
  ["dragleave", "dragend"].forEach(function (type) {
    el.drop.addEventListener(type, function () { el.drop.classList.remove("over"); });
  });
  el.drop.addEventListener("drop", function (ev) {
    ev.preventDefault();
    ev.stopPropagation();
    el.drop.classList.remove("over");
    var f = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
    if (f) loadFile(f);
    else showError("Drop an image file (for example a JPEG or PNG photo).");
  });
  // A photo dropped anywhere else must not navigate away from the page.
  window.addEventListener("dragover", function (ev) { ev.preventDefault(); });
  window.addEventListener("drop", function (ev) {
    ev.preventDefault();
    var f = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
    if (f) loadFile(f);
  });

  Array.prototype.forEach.call(document.querySelectorAll(".sample"), function (btn) {
    btn.addEventListener("click", function () {
      var src = btn.getAttribute("data-src");
      clearError();
      setBusy(true, "Loading the sample photo…");
      fetch(src).then(function (resp) {
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.blob();
      }).then(function (blob) {
        setBusy(false, "");
        var name = src.split("/").pop();
        var file = typeof File === "function" ? new File([blob], name, { type: blob.type || "image/jpeg" }) : blob;
        loadFile(file);
      }).catch(function (err) {
        setBusy(false, "");
        showError("Could not load the sample photo (" + err.message + ").");
      });
    });
  });

  el.category.addEventListener("change", function () {
    if (state.view === "similar" && state.similarOf) moreLikeThis(state.similarOf);
    else if (state.file) searchPhoto();
  });

  el.photo.addEventListener("error", function () {
    if (!el.photo.getAttribute("src")) return;
    el.stage.classList.add("unviewable");
    if (!state.response && !el.error.hidden) el.photoPanel.hidden = true;
  });
  el.photo.addEventListener("load", function () { el.stage.classList.remove("unviewable"); });

  window.addEventListener("error", function (ev) {
    showError("Something went wrong on this page: " + (ev.message || "unknown error") + ". Please reload.");
  });
  window.addEventListener("unhandledrejection", function (ev) {
    var r = ev.reason;
    showError("Something went wrong on this page: " + (r && r.message ? r.message : String(r)) + ".");
  });
})();
