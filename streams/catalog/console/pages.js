// The console's pages. Each takes the <main> element and the parsed location, fills it, and
// returns a function that stops what it started (polling), called when the page changes.
"use strict";

const FIGURES = [
  ["lag", "Lag", 0], ["throughput_per_s", "Throughput /s", 2], ["in_flight", "In flight", 0],
  ["rejected_per_s", "Rejected /s", 2], ["p50_s", "p50 s", 3], ["p95_s", "p95 s", 3],
  ["replicas", "Replicas", 0],
];
const TILES = [["images", "Images"], ["done", "Done"], ["processing", "Processing"],
  ["rejected", "Rejected"], ["failed", "Failed"], ["success_rate", "Success rate"]];

// --- Fleet ------------------------------------------------------------------------------

Console.pages.fleet = (main) => {
  const cells = {};
  const tiles = {};
  const rows = el("tbody");
  const reasons = el("tbody");
  const letters = el("div", { class: "letters-holder", "aria-live": "polite" });
  const source = el("p", { class: "note" });
  let reasonsShown = null;
  main.append(el("h1", { text: "Fleet" }),
    el("div", { class: "tiles" }, TILES.map(([name, label]) => el("div", { class: "tile" },
      tiles[name] = el("span", { class: "value", "data-figure": name, text: "—" }),
      el("span", { class: "name", text: label })))),
    el("h2", { text: "Stages" }),
    el("div", { class: "table-wrap" }, el("table", {},
      el("caption", { class: "visually-hidden", text: "Figures per stage" }),
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Stage" }),
        FIGURES.map(([, label]) => el("th", { scope: "col", class: "num", text: label })))),
      rows)), source,
    el("h2", { text: "Dead-letter reasons" }),
    el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {},
      el("th", { scope: "col", text: "Stage" }), el("th", { scope: "col", text: "Reason" }),
      el("th", { scope: "col", class: "num", text: "Images" }),
      el("th", { scope: "col", text: "Dead letters" }))), reasons)), letters);
  return poll(async () => {
    const [fleet, stats] = await Promise.all([api("/v1/fleet"), api("/v1/stats")]);
    for (const stage of fleet.stages) {
      if (!cells[stage.stage]) {
        // Rows are made once; later rounds change only the text of fixed-width cells.
        cells[stage.stage] = {};
        rows.append(el("tr", { "data-stage": stage.stage }, el("th", { scope: "row", text: stage.stage }),
          FIGURES.map(([name]) => cells[stage.stage][name] = el("td", { class: "num" }))));
      }
      for (const [name, , digits] of FIGURES) cells[stage.stage][name].textContent = fmt(stage[name], digits);
    }
    const counts = Object.assign({ images: stats.images }, stats.by_status);
    for (const [name] of TILES) {
      tiles[name].textContent = name === "success_rate"
        ? (stats.success_rate === null ? "—" : `${fmt(stats.success_rate * 100, 1)} %`)
        : fmt(counts[name] || 0);
    }
    source.textContent = fleet.metrics_source
      ? "Lag from the consumer groups; rates, latency and replicas from Prometheus (last minute)."
      : "Lag from the consumer groups. Rates, latency and replicas need "
        + "PIXELFLEET_CATALOG_PROMETHEUS_URL.";
    // Rebuilt only when the counts change, so a focused button is not swept away.
    const signature = JSON.stringify(fleet.dead_letters);
    if (signature === reasonsShown) return;
    reasonsShown = signature;
    reasons.replaceChildren(...(fleet.dead_letters.length ? fleet.dead_letters.map((r) =>
      el("tr", {}, el("td", { text: r.stage }), el("td", { text: r.reason }),
        el("td", { class: "num", text: fmt(r.images) }),
        el("td", {}, el("button", { type: "button", class: "show-letters", "data-stage": r.stage,
          "aria-label": `Show the dead letters of ${r.stage}, ${r.reason}`, text: "Show",
          onclick: () => showLetters(letters, r.stage, r.reason).catch((e) =>
            letters.replaceChildren(el("p", { class: "error", text: e.message }))) }))))
      : [el("tr", {}, el("td", { colspan: 4, class: "note", text: "No dead letters." }))]));
  }, 2000);
};

// --- Images -----------------------------------------------------------------------------

const FILTER_FIELDS = [
  ["status", "Status"], ["category", "Category"], ["route", "Route"],
  ["restore", "Restore outcome"], ["duplicate", "Duplicates"],
];

Console.pages.images = (main, where) => {
  const params = where.params;
  const gallery = el("ul", { class: "gallery", "aria-label": "Images" });
  const more = el("button", { type: "button", hidden: true, text: "Load more" });
  const count = el("p", { class: "note", role: "status" });
  const controls = {};
  let cursor = null;
  let shown = 0;
  const form = el("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); apply(); } },
    el("div", {}, el("label", { for: "f-q", text: "Search id, title, keyword or sha256" }),
      controls.q = el("input", { id: "f-q", type: "search", value: params.get("q") || "" })),
    FILTER_FIELDS.map(([name, label]) => el("div", {}, el("label", { for: `f-${name}`, text: label }),
      controls[name] = el("select", { id: `f-${name}`, onchange: () => apply() },
        el("option", { value: "", text: "any" })))),
    el("div", {}, el("label", { for: "f-since", text: "Changed from" }),
      controls.since = el("input", { id: "f-since", type: "date", value: params.get("since") || "", onchange: () => apply() })),
    el("div", {}, el("label", { for: "f-until", text: "Changed before" }),
      controls.until = el("input", { id: "f-until", type: "date", value: params.get("until") || "", onchange: () => apply() })),
    el("div", {}, el("button", { type: "submit", class: "primary", text: "Search" })));
  main.append(el("h1", { text: "Images" }), form, count, gallery, more);

  function apply() {
    const next = new URLSearchParams();
    for (const [name, control] of Object.entries(controls)) if (control.value) next.set(name, control.value);
    location.hash = `#/images?${next}`;
  }
  async function load() {
    const query = new URLSearchParams(params);
    query.set("limit", "48");
    if (cursor) query.set("cursor", cursor);
    let page;
    try {
      page = await api(`/v1/images?${query}`);
    } catch (error) {
      // A cursor of another replica, or of one that restarted: its numbering is not this
      // one's, so the list starts again from the newest rather than skip or repeat images.
      if (!(error instanceof ApiError && error.status === 409 && cursor)) throw error;
      announce("The catalog answering changed; the list starts again from the newest.");
      cursor = null;
      shown = 0;
      gallery.replaceChildren();
      return load();
    }
    gallery.append(...page.images.map(card));
    shown += page.images.length;
    cursor = page.cursor;
    more.hidden = !cursor;
    count.textContent = `${shown} image${shown === 1 ? "" : "s"} shown${cursor ? "; more below" : ""}.`;
  }
  // One load at a time: a double click would ask twice with the same cursor.
  more.addEventListener("click", () => {
    if (more.disabled) return;
    more.disabled = true;
    load().catch((e) => announce(e.message)).finally(() => { more.disabled = false; });
  });
  api("/v1/fleet").then((fleet) => {
    for (const [name] of FILTER_FIELDS) {
      const values = Object.assign({}, fleet.facets[name] || {});
      if (name === "duplicate") Object.assign(values, { any: null, none: null });
      const wanted = params.get(name);
      if (wanted && !(wanted in values)) values[wanted] = null;
      for (const [value, n] of Object.entries(values)) {
        controls[name].append(el("option", { value, selected: value === wanted,
          text: n === null ? value : `${value} (${n})` }));
      }
    }
  }).catch((e) => announce(e.message));
  load().catch((e) => { count.textContent = `Could not list images: ${e.message}`; });
  return null;
};

// --- One image --------------------------------------------------------------------------

function facts(entries) {
  const list = el("dl", { class: "facts" });
  for (const [name, value] of entries) {
    if (value === null || value === undefined || value === "") continue;
    list.append(el("dt", { text: name }),
      el("dd", { text: typeof value === "object" ? JSON.stringify(value) : fmt(value, Number.isInteger(value) ? 0 : 3) }));
  }
  return list;
}

function section(title, ...body) {
  return el("section", { "aria-label": title }, el("h2", { text: title }), ...body);
}

function wide(node) {
  node.classList.add("wide");
  return node;
}

// Before and after: no copy of the image just before enhance or restore is stored, so the
// "before" is the upload as submitted, and the labels say so. Both are drawn at the same
// width, so the same detail sits at the same place; the zoom scales both alike.
function compare(variants, original) {
  const finished = variants.filter((v) => v.url)
    .map((v) => ({ label: `finished: ${v.variant} ${v.format} ${v.width}×${v.height}`, url: v.url,
      width: v.width, caption: `finished ${v.variant} ${v.format}, ${bytes(v.bytes)}` }));
  const shown = original && original.url
    ? [{ label: "original upload", url: original.url, width: original.width || 0,
      caption: `original upload${original.width ? `, ${original.width}×${original.height}` : ""}, ${bytes(original.bytes)}` },
    ...finished]
    : finished;
  if (shown.length < 2) return null;
  // Right: the largest finished variant, the one that shows most of what the stages did.
  const largest = finished.reduce((best, v, i) => (v.width > finished[best].width ? i : best), 0);
  const pick = (id, index) => el("select", { id }, shown.map((v, i) =>
    el("option", { value: String(i), selected: i === index, text: v.label })));
  const a = pick("cmp-a", original && original.url ? 0 : shown.length - 1);
  const b = pick("cmp-b", (original && original.url ? 1 : 0) + largest);
  const zoom = el("select", { id: "cmp-zoom" }, ["0.25", "0.5", "1", "2"].map((z) =>
    el("option", { value: z, selected: z === "0.5", text: `${Number(z) * 100} %` })));
  const figures = el("div", { class: "compare" });
  const draw = () => {
    const scale = Number(zoom.value);
    // The same scale of the larger side for both, so details line up at the same zoom.
    const width = Math.max(...[a, b].map((s) => shown[Number(s.value)].width || 800)) * scale;
    figures.replaceChildren(...[a, b].map((s) => {
      const v = shown[Number(s.value)];
      return el("figure", {}, el("img", { src: v.url, alt: v.label, width: Math.round(width) }),
        el("figcaption", { class: "note", text: v.caption }));
    }));
  };
  for (const control of [a, b, zoom]) control.addEventListener("change", draw);
  draw();
  return section("Before and after",
    el("p", { class: "note", text: original && original.url
      ? "Left is the original upload as submitted (no copy from just before enhance or restore is kept); right is a finished variant. Both at the same width."
      : "The original upload is not stored any more; compare finished variants." }),
    el("div", { class: "row" }, el("div", {}, el("label", { for: "cmp-a", text: "Left" }), a),
      el("div", {}, el("label", { for: "cmp-b", text: "Right" }), b),
      el("div", {}, el("label", { for: "cmp-zoom", text: "Zoom" }), zoom)), figures);
}

// Enhance measures the image before and after its work; validate's measures come first.
function quality(record) {
  const enhance = record.enhancement || {};
  const before = enhance.before || {};
  const after = enhance.after || {};
  const names = [...new Set([...Object.keys(record.quality || {}), ...Object.keys(before), ...Object.keys(after)])];
  if (!names.length) return el("p", { class: "note", text: "Not measured yet." });
  const cell = (v) => el("td", { class: "num", text: typeof v === "number" ? fmt(v, 3) : (v ?? "—") });
  return el("div", {}, el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Measure" }),
      ["At validate", "Before enhance", "After enhance"].map((h) => el("th", { scope: "col", class: "num", text: h })))),
    el("tbody", {}, names.map((name) => el("tr", {}, el("th", { scope: "row", text: name }),
      cell((record.quality || {})[name]), cell(before[name]), cell(after[name])))))),
  enhance.profile ? el("p", { class: "note", text: `Profile ${enhance.profile}; applied: ${
    (enhance.applied || []).join(", ") || "nothing"}${enhance.kept_original ? "; original kept" : ""}` }) : null);
}

Console.pages.image = (main, where) => {
  const id = where.arg;
  const holder = el("div");
  main.append(el("h1", {}, "Image ", el("span", { class: "id", text: id })), holder);
  let last = null;
  let renew = null; // redraws with fresh presigned links before the shown ones expire
  let left = false;
  const opened = Date.now();
  const round = async () => {
    let record;
    try {
      record = await api(`/v1/images/${encodeURIComponent(id)}`);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      // A submission just made is known once its first stage records it; an unknown or
      // erased id never is, so the page says so and stops asking after a minute.
      const waiting = Date.now() - opened < 60000 || Date.now() < Console.watchUntil;
      holder.replaceChildren(el("p", { class: waiting ? "note" : "error", role: "status", text: waiting
        ? "Not in the catalog yet: a new submission appears once its first stage has recorded it."
        : "No image with this id: it was never submitted, or it has been erased." }));
      if (!waiting) stop();
      return;
    }
    const signature = `${record.status}|${record.updated_at}`;
    if (signature === last) {
      if (FINAL.has(record.status) && Date.now() > Console.watchUntil) stop();
      return;
    }
    const nearIds = (record.near_duplicates || []).map((n) => encodeURIComponent(n.image_id));
    const [variants, near, original] = await Promise.all([
      api(`/v1/images/${encodeURIComponent(id)}/variants`),
      nearIds.length
        ? api(`/v1/images?ids=${nearIds.join(",")}`)
        : Promise.resolve({ images: [] }),
      // The upload as it was submitted, for the comparison; gone once the image is erased.
      FINAL.has(record.status) && (record.variants || []).length
        ? api(`/v1/images/${encodeURIComponent(id)}/original`).catch(() => null)
        : Promise.resolve(null)]);
    render(holder, record, variants.variants, near.images, original);
    // Only a drawn state counts as seen: a round whose lookups failed is drawn next time.
    last = signature;
    announce(`Image ${record.status}`);
    // A finished image is no longer polled, so its links would outlive their signatures
    // (catalog.presign_expiry_s): it is drawn again, with new ones, a little before.
    const lives = variants.variants.map((v) => v.expires_in_s).filter(Number.isFinite);
    clearTimeout(renew);
    const again = () => {
      last = null;
      round().catch(() => { if (!left) renew = setTimeout(again, 30000); });
    };
    if (lives.length && !left) renew = setTimeout(again, Math.min(...lives) * 900);
    if (FINAL.has(record.status) && Date.now() > Console.watchUntil) stop();
  };
  const stop = poll(round, 2000);
  return () => { left = true; clearTimeout(renew); stop(); };
};

function render(holder, record, variants, near, original) {
  const stages = Object.entries(record.stages || {});
  const category = record.category;
  holder.replaceChildren(
    el("p", {}, statusBadge(record.status), ` updated ${record.updated_at}`,
      record.duplicate_of ? el("span", {}, " · duplicate of ",
        el("a", { href: `#/image/${encodeURIComponent(record.duplicate_of)}`, text: record.duplicate_of })) : null),
    imageActions(record),
    el("div", { class: "sections" },
      section("Original", facts(Object.entries(record.original || {}).filter(([k]) => k !== "notes")),
        (record.original?.notes || []).length ? el("p", { class: "note", text: record.original.notes.join("; ") }) : null),
      wide(section("Quality", quality(record))),
      section("Category", category ? facts([["name", category.name], ["score", category.score],
        ["evidence", (category.evidence || []).join(", ")]]) : el("p", { class: "note", text: "Not categorized yet." })),
      section("Restore", record.restore ? facts(Object.entries(record.restore)) : el("p", { class: "note", text: "Not restored." }))),
    section("Route", el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, ["Stage", "Outcome", "Seconds", "Attempts", "Detail"].map((h, i) =>
        el("th", { scope: "col", class: i === 2 || i === 3 ? "num" : null, text: h })))),
      el("tbody", {}, stages.map(([name, s]) => el("tr", {}, el("th", { scope: "row", text: name }),
        el("td", { text: s.outcome }), el("td", { class: "num", text: fmt(s.seconds, 3) }),
        el("td", { class: "num", text: fmt(s.attempts) }), el("td", { text: s.detail || "" }))))))),
    section("Variants", variants.length ? el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, ["Variant", "Format", "Size", "Bytes", "Ratio", "Download"].map((h, i) =>
        el("th", { scope: "col", class: i === 3 || i === 4 ? "num" : null, text: h })))),
      el("tbody", {}, variants.map((v, i) => {
        const ratio = (record.variants || [])[i]?.compression_ratio;
        return el("tr", {}, el("td", { text: v.variant }), el("td", { text: v.format }),
          el("td", { text: `${v.width}×${v.height}` }), el("td", { class: "num", text: bytes(v.bytes) }),
          el("td", { class: "num", text: ratio ? `${fmt(ratio, 1)}×` : "—" }),
          el("td", {}, el("a", { href: v.url, download: "", rel: "noreferrer",
            "aria-label": `Download ${v.variant} ${v.format}`, text: "download" })));
      })))) : el("p", { class: "note", text: "No variants yet." })),
    compare(variants, original),
    section("Near-duplicates", near.length ? el("ul", { class: "gallery" }, near.map(card))
      : el("p", { class: "note", text: "None recorded." })),
    section("Errors", (record.errors || []).length ? el("ul", {}, record.errors.map((e) =>
      el("li", { text: `${e.at} ${e.stage}: ${e.reason_class}: ${e.reason}` })))
      : el("p", { class: "note", text: "None." })));
}
