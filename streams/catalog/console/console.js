// The console's core: the API key, calls to /v1, small DOM helpers and the page router.
// The key lives in sessionStorage only: it goes when the tab closes and is never in a URL.
"use strict";

const KEY_NAME = "pixelfleet-api-key";
const Console = {
  pages: {},
  stop: null, // the current page's clean-up: stops its polling
  canAct: null, // whether the key may act (GET /v1/access), asked once per key
  watchUntil: 0, // after an action, the Image page keeps polling a finished image until then
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fmt(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (typeof value !== "number") return String(value);
  return value.toLocaleString("en", { maximumFractionDigits: digits ?? 0,
    minimumFractionDigits: digits ?? 0 });
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function announce(text) {
  document.getElementById("announce").textContent = text;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function apiKey() { return sessionStorage.getItem(KEY_NAME); }

async function mayAct() {
  if (Console.canAct === null) Console.canAct = (await api("/v1/access")).act === true;
  return Console.canAct;
}

async function api(path, options) {
  const init = Object.assign({}, options || {});
  init.headers = Object.assign({ "X-API-Key": apiKey() || "" }, init.headers || {});
  const answer = await fetch(path, init);
  let body = null;
  try { body = await answer.json(); } catch (_) { body = null; }
  // A key that may read but not act keeps working: only a refused key is asked again.
  const readOnly = answer.status === 403 && body && body.error === "not_allowed_to_act";
  if (answer.status === 401 || (answer.status === 403 && !readOnly)) {
    sessionStorage.removeItem(KEY_NAME);
    askForKey(answer.status === 403 ? "That key is not accepted." : "");
    throw new ApiError(answer.status, body);
  }
  if (!answer.ok) throw new ApiError(answer.status, body);
  return body;
}

function askForKey(problem) {
  if (Console.stop) { Console.stop(); Console.stop = null; }
  document.getElementById("forget-key").hidden = true;
  const input = el("input", { id: "key-input", type: "password", autocomplete: "off",
    required: true, "aria-describedby": "key-help" });
  const message = el("p", { id: "key-error", class: "error", role: "alert", text: problem || "" });
  const form = el("form", { class: "key-form", onsubmit: async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_NAME, input.value.trim());
    Console.canAct = null;
    try {
      await api("/v1/stats");
      route();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status >= 500) {
        message.textContent = `The catalog did not answer: ${error.message}`;
      }
    }
  } },
    el("h1", { text: "Sign in with an API key" }),
    el("p", { id: "key-help", class: "note",
      text: "The same key as the catalog API (X-API-Key). It is kept in this tab only." }),
    el("label", { for: "key-input", text: "API key" }), input,
    el("div", { class: "row" }, el("button", { type: "submit", class: "primary", text: "Use this key" })),
    message);
  const main = document.getElementById("main");
  main.replaceChildren(form);
  input.focus();
}

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, "") || "fleet";
  const [path, query] = hash.split("?");
  // A hand-typed "%" is not an escape: kept as written rather than leave a frozen page.
  const decode = (part) => { try { return decodeURIComponent(part); } catch (_) { return part; } };
  const parts = path.split("/").map(decode);
  return { page: parts[0], arg: parts[1] || null, params: new URLSearchParams(query || "") };
}

function route() {
  if (Console.stop) { Console.stop(); Console.stop = null; }
  if (!apiKey()) { askForKey(""); return; }
  document.getElementById("forget-key").hidden = false;
  const where = parseHash();
  const page = Console.pages[where.page] || Console.pages.fleet;
  for (const link of document.querySelectorAll(".top nav a")) {
    const current = link.dataset.page === where.page
      || (where.page === "image" && link.dataset.page === "images");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const main = document.getElementById("main");
  main.replaceChildren();
  Console.stop = page(main, where) || null;
}

// Repeats `work` every `ms` while the page is shown; a failed round is retried next time.
function poll(work, ms) {
  let live = true;
  let timer = null;
  const round = async () => {
    if (!live) return;
    try { await work(); } catch (error) {
      if (!(error instanceof ApiError && error.status < 500)) announce(`Update failed: ${error.message}`);
    }
    if (live) timer = setTimeout(round, ms);
  };
  round();
  return () => { live = false; clearTimeout(timer); };
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_NAME);
    Console.canAct = null;
    askForKey("");
  });
  window.addEventListener("hashchange", route);
  route();
});
