// What the gallery and an image's near-duplicates show of each image: a card with its
// thumbnail, id, status and category; thumbnails whose links expired are renewed.
"use strict";

const FINAL = new Set(["done", "rejected", "failed"]); // statuses that no longer change

function statusBadge(status) {
  return el("span", { class: `badge s-${status}`, text: status });
}

// A thumbnail's presigned link lives catalog.presign_expiry_s. A gallery left open, or
// scrolled to late (the thumbnails load lazily), meets expired links: a thumbnail that fails
// to load asks the catalog for a fresh one, batched by id, each at most once a minute, so a
// thumbnail that is really gone is not asked for in a loop.
const RENEW_AFTER_MS = 60000;
const MAX_IDS = 100; // what /v1/images?ids= names at once
const stale = new Map(); // image id -> the thumbnails waiting for a fresh link
let renewSoon = null;

function renewThumb(img, id) {
  const now = Date.now();
  if (now - Number(img.dataset.renewed || 0) < RENEW_AFTER_MS) return;
  img.dataset.renewed = String(now);
  stale.set(id, [...(stale.get(id) || []), img]);
  if (!renewSoon) renewSoon = setTimeout(renewThumbs, 100);
}

async function renewThumbs() {
  renewSoon = null;
  const waiting = new Map(stale);
  stale.clear();
  const ids = [...waiting.keys()];
  for (let at = 0; at < ids.length; at += MAX_IDS) {
    const chunk = ids.slice(at, at + MAX_IDS);
    let page;
    try {
      page = await api(`/v1/images?ids=${chunk.map(encodeURIComponent).join(",")}`);
    } catch (_) {
      // Ask again in a minute: the thumbnails' links did not change, so no new error
      // event would ever come to ask for them.
      for (const id of chunk) for (const img of waiting.get(id) || []) {
        setTimeout(() => { if (img.isConnected) { delete img.dataset.renewed; renewThumb(img, id); } },
          RENEW_AFTER_MS);
      }
      continue;
    }
    for (const image of page.images) {
      if (!image.thumb_url) continue;
      for (const img of waiting.get(image.image_id) || []) img.src = image.thumb_url;
    }
  }
}

function thumb(url, alt, id) {
  if (!url) return el("span", { class: "thumb", text: "no preview" });
  const img = el("img", { src: url, alt, loading: "lazy" });
  if (id) img.addEventListener("error", () => renewThumb(img, id));
  return el("span", { class: "thumb" }, img);
}

function card(image) {
  const label = `${image.image_id}, ${image.status}${image.category ? `, ${image.category}` : ""}`;
  return el("li", { class: "card" }, el("a", { href: `#/image/${encodeURIComponent(image.image_id)}`,
    "aria-label": label },
    thumb(image.thumb_url, "", image.image_id),
    el("span", { class: "meta" }, el("span", { class: "id", text: image.image_id }),
      statusBadge(image.status), " ", image.category || "", image.duplicate ? ` · ${image.duplicate} dup` : "")));
}
