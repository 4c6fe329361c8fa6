// The Upload page: files and URLs sent to the catalog, each followed until it is final.
"use strict";

Console.pages.upload = (main) => {
  const list = el("ul", { class: "uploads", "aria-label": "Submissions" });
  const files = el("input", { id: "u-files", type: "file", multiple: true, accept: "image/*" });
  const urls = el("textarea", { id: "u-urls", rows: 3, placeholder: "https://…" });
  const title = el("input", { id: "u-title", type: "text" });
  const keywords = el("input", { id: "u-keywords", type: "text", placeholder: "ring, gold" });
  const drop = el("div", { class: "drop" }, el("p", { text: "Drop image files here, or choose them:" }),
    el("label", { for: "u-files", text: "Image files" }), files);
  const stoppers = [];
  let left = false; // the page was left: a submission answered later is not followed
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    for (const file of e.dataTransfer.files) send(file);
  });
  const hints = () => {
    const h = {};
    if (title.value.trim()) h.title = title.value.trim();
    const words = keywords.value.split(",").map((w) => w.trim()).filter(Boolean);
    if (words.length) h.keywords = words;
    return h;
  };
  function entry(name) {
    const bar = el("progress", { max: 100, value: 0, "aria-label": `Upload of ${name}` });
    const state = el("span", { text: "uploading" });
    const row = el("li", {}, el("span", { class: "id", text: name }), bar, state);
    list.append(row);
    return { bar, state };
  }
  function follow(id, shown) {
    if (left) return;
    shown.state.replaceChildren(el("a", { href: `#/image/${encodeURIComponent(id)}`, text: id }), " submitted");
    const started = Date.now();
    const stop = poll(async () => {
      // The index answers for an image it does not know yet with an empty list, not a 404.
      const known = (await api(`/v1/images?ids=${encodeURIComponent(id)}`)).images[0];
      const status = known ? known.status : "submitted";
      shown.state.replaceChildren(el("a", { href: `#/image/${encodeURIComponent(id)}`, text: id }), " ", statusBadge(status));
      // Followed for ten minutes at most; the Images page has the rest.
      if (FINAL.has(status) || Date.now() - started > 600000) stop();
    }, 1500);
    stoppers.push(stop);
  }
  function send(file) {
    const shown = entry(file.name);
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("meta", new Blob([JSON.stringify({ hints: hints() })], { type: "application/json" }));
    const request = new XMLHttpRequest();
    request.open("POST", "/v1/images");
    request.setRequestHeader("X-API-Key", apiKey() || "");
    request.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) shown.bar.value = Math.round((100 * e.loaded) / e.total);
    });
    request.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(request.responseText); } catch (_) { body = {}; }
      shown.bar.value = 100;
      if (request.status === 200 || request.status === 202) follow(body.image_id, shown);
      else shown.state.replaceChildren(el("span", { class: "error", text: body.message || `HTTP ${request.status}` }));
    });
    request.addEventListener("error", () => shown.state.replaceChildren(el("span", { class: "error", text: "upload failed" })));
    request.send(form);
  }
  async function sendUrl(url) {
    const shown = entry(url);
    try {
      const body = await api("/v1/images", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ url, hints: hints() }) });
      shown.bar.value = 100;
      follow(body.image_id, shown);
    } catch (e) {
      shown.state.replaceChildren(el("span", { class: "error", text: e.message }));
    }
  }
  const submit = el("button", { type: "button", class: "primary", text: "Submit", onclick: () => {
    for (const file of files.files) send(file);
    for (const url of urls.value.split(/\s+/).filter(Boolean)) sendUrl(url);
    files.value = "";
    urls.value = "";
  } });
  main.append(el("h1", { text: "Upload" }), drop,
    el("div", { class: "fields" }, el("div", {}, el("label", { for: "u-title", text: "Title" }), title),
      el("div", {}, el("label", { for: "u-keywords", text: "Keywords (comma-separated)" }), keywords)),
    el("div", {}, el("label", { for: "u-urls", text: "Image URLs, one per line" }), urls),
    el("div", { class: "row" }, submit), list);
  return () => { left = true; stoppers.forEach((stop) => stop()); };
};
