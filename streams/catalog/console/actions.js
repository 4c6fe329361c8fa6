// The console's actions, for keys allowed to act: replay and delete an image (Image page),
// redrive a dead letter (Fleet page). Each opens a dialog that first says exactly what will
// happen (asked of the API as a dry run where there is one) and acts only on Confirm.
"use strict";

const REPLAY_STAGES = ["validate", "categorize", "enhance", "restore", "compress"];

// describe(): the lines to show, or throws (then Confirm stays disabled and the error shows);
// run(): what to say when done; after(): called when the dialog closes after success.
function confirmAction({ title, confirmLabel, describe, run, after }) {
  const text = el("div", { id: "act-text" }, el("p", { text: "Checking what this will do…" }));
  const result = el("p", { id: "act-result", role: "alert" });
  const confirm = el("button", { type: "button", class: "danger", id: "act-confirm",
    text: confirmLabel, disabled: true });
  const cancel = el("button", { type: "button", id: "act-cancel", text: "Cancel" });
  const dialog = el("dialog", { class: "act", "aria-labelledby": "act-title",
    "aria-describedby": "act-text" },
  el("h2", { id: "act-title", text: title }), text, result,
  el("div", { class: "row" }, confirm, cancel));
  let succeeded = false;
  cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (succeeded && after) after();
  });
  document.body.append(dialog);
  dialog.showModal(); // focus starts on Cancel: Confirm is a deliberate second step
  describe().then((lines) => {
    text.replaceChildren(...lines.map((line) => (line instanceof Node ? line : el("p", { text: line }))));
    confirm.disabled = false;
  }).catch((error) => {
    text.replaceChildren(el("p", { class: "error", text: error.message }));
  });
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    result.className = "";
    result.textContent = "Working…";
    try {
      result.textContent = await run();
      result.className = "ok";
      succeeded = true;
      confirm.hidden = true;
      cancel.textContent = "Close";
    } catch (error) {
      result.className = "error";
      result.textContent = error.message;
      confirm.disabled = false;
    }
    cancel.focus();
  });
}

function postJson(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}) });
}

// --- one image -------------------------------------------------------------------------

function replayDialog(id, stage) {
  const path = `/v1/images/${encodeURIComponent(id)}/replay`;
  confirmAction({
    title: `Replay ${id}`,
    confirmLabel: "Replay",
    describe: async () => {
      const plan = await postJson(path, { stage, dry_run: true });
      const lines = [`Sends the ${plan.stage} input of image ${id} to ${plan.topic} again: ${
        plan.stage} and every later stage of its route run again, with the settings the workers have now.`];
      if (plan.stage !== plan.asked_stage) {
        lines.push(`It cannot start at ${plan.asked_stage}; it starts over at ${plan.stage} (${plan.note}).`);
      } else if (plan.note) lines.push(plan.note);
      lines.push("Variants the new run no longer makes are not removed here "
        + "(pixelfleet replay --wait does that).");
      return lines;
    },
    run: async () => {
      const sent = await postJson(path, { stage });
      Console.watchUntil = Date.now() + 120000;
      return `Sent as replay ${sent.replay_id}, from ${sent.stage}. This page follows the new run.`;
    },
    after: () => route(),
  });
}

function deleteDialog(id) {
  const path = `/v1/images/${encodeURIComponent(id)}`;
  confirmAction({
    title: `Delete ${id} for good`,
    confirmLabel: "Delete for good",
    describe: async () => {
      const plan = await api(`${path}?dry_run=1`, { method: "DELETE" });
      const others = plan.images.filter((i) => i.image_id !== id);
      const keys = plan.images.flatMap((i) => i.keys);
      return [
        `Erases image ${id} for good: its record (the catalog and status forget it) and `
          + `${plan.objects} object${plan.objects === 1 ? "" : "s"} (${bytes(plan.bytes)}) `
          + "from the incoming, work, quarantine and images buckets. This cannot be undone.",
        others.length ? `Also erased, as recorded duplicates of it: ${others.map((i) => i.image_id).join(", ")}.` : null,
        keys.length ? el("ul", { class: "keys" }, keys.slice(0, 20).map((k) => el("li", { text: k })),
          keys.length > 20 ? el("li", { text: `… and ${keys.length - 20} more` }) : null) : null,
      ].filter(Boolean);
    },
    run: async () => {
      const done = await api(path, { method: "DELETE" });
      return `Deleted ${done.images.length} image${done.images.length === 1 ? "" : "s"}: `
        + `${done.objects} object${done.objects === 1 ? "" : "s"}, ${bytes(done.bytes)} freed.`;
    },
    after: () => { location.hash = "#/images"; },
  });
}

// The Actions section of the Image page: hidden controls for a key that may only read.
function imageActions(record) {
  const holder = el("section", { "aria-label": "Actions" }, el("h2", { text: "Actions" }));
  mayAct().then((allowed) => {
    if (!allowed) {
      holder.append(el("p", { class: "note", text: "This key may read only; replaying or deleting needs a key listed in PIXELFLEET_CATALOG_ACTING_KEY_HASHES." }));
      return;
    }
    if (!FINAL.has(record.status)) {
      holder.append(el("p", { class: "note", text: `Actions wait until the image is finished (now ${record.status}).` }));
      return;
    }
    const on = new Set(record.route || []);
    const stage = el("select", { id: "act-stage" }, REPLAY_STAGES.filter((s) => s === "validate" || on.has(s))
      .map((s) => el("option", { value: s, text: s })));
    holder.append(el("div", { class: "row" },
      el("div", {}, el("label", { for: "act-stage", text: "Replay from stage" }), stage),
      el("button", { type: "button", id: "act-replay", text: "Replay…",
        onclick: () => replayDialog(record.image_id, stage.value) }),
      el("button", { type: "button", id: "act-delete", class: "danger", text: "Delete for good…",
        onclick: () => deleteDialog(record.image_id) })));
  }).catch((error) => holder.append(el("p", { class: "error", text: error.message })));
  return holder;
}

// --- dead letters (Fleet page) ---------------------------------------------------------

function redriveDialog(letter, reload) {
  confirmAction({
    title: `Redrive dead letter ${letter.letter}`,
    confirmLabel: "Redrive",
    describe: async () => [
      `Re-sends dead letter ${letter.letter} (image ${letter.image_id}, ${letter.stage}: `
        + `${letter.reason_class}) to ${letter.topic}, once; ${letter.stage} then tries it again.`,
      `Fix the cause first. It failed with: ${letter.reason}`,
      letter.redriven_by ? `It was already re-sent by redrive ${letter.redriven_by}; this sends it once more.` : null,
    ].filter(Boolean),
    run: async () => {
      const done = await postJson(`/v1/dlq/${letter.letter}/redrive`, { again: Boolean(letter.redriven_by) });
      const restored = done.restored_from ? ` Its original was copied back from ${done.restored_from}.` : "";
      return `Re-sent as redrive ${done.redrive_id} to ${done.to_topic}.${restored}`;
    },
    after: reload,
  });
}

// The letters of one stage and reason, each with a Redrive button for a key that may act.
async function showLetters(holder, stage, reason) {
  holder.replaceChildren(el("p", { class: "note", text: "Reading the dead-letter topic…" }));
  const [found, allowed] = await Promise.all([
    api(`/v1/dlq?stage=${encodeURIComponent(stage)}&reason=${encodeURIComponent(reason)}&limit=50`),
    mayAct()]);
  const reload = () => showLetters(holder, stage, reason).catch((e) => announce(e.message));
  holder.replaceChildren(el("h3", { text: `Dead letters: ${stage}, ${reason}` }),
    el("p", { class: "note", text: `${found.count} on the topic; the newest ${found.letters.length} below.${
      allowed ? "" : " This key may read only: redriving needs an acting key."}` }),
    found.letters.length ? el("ul", { class: "letters" }, found.letters.map((l) => el("li", {},
      el("span", { class: "note", text: `${l.at} · dlq@${l.letter} · ` }),
      el("a", { href: `#/image/${encodeURIComponent(l.image_id)}`, text: l.image_id }),
      el("span", { text: ` ${l.reason}` }),
      l.redriven_by ? el("span", { class: "note", text: ` (re-sent by ${l.redriven_by})` }) : null,
      allowed ? el("button", { type: "button", class: "redrive", "data-letter": l.letter,
        text: l.redriven_by ? "Redrive again…" : "Redrive…", onclick: () => redriveDialog(l, reload) }) : null)))
      : el("p", { class: "note", text: "None on the topic (past its retention, or never sent there)." }));
}
