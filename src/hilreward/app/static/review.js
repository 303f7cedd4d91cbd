"use strict";
// The review page: corrections the retrainer could not fix (accept / reject, one tap or key), and the timeline
// of versions and refused attempts with their gate metrics. Version and retrainer changes arrive as
// server-sent events and reload what they change.
const TO_REVIEW = "conflicts_live,conflicts_offline,contradicted,superseded,unfixed";
const R = {filter: TO_REVIEW, items: [], selected: null, detail: null, model: null, retrainer: null};
window.reviewState = R;  // the browser test reads it
const $ = id => document.getElementById(id);
const METRICS = [  // gate metrics worth a glance: [key, label, compared with, as percent]
  ["heldout_accuracy", "held-out acc.", "heldout_accuracy_base", true],
  ["regression_accuracy", "acc. on training episodes", "regression_accuracy_base", true],
  ["live_newly_fires", "newly fires (live)", null, false],
  ["live_early_fires", "fires early (live)", "live_early_fires_serving", false],
  ["corrections_fixed", "corrections fixed", "corrections_fixed_serving", true],
  ["holdout_accuracy", "held-out corrections", "holdout_accuracy_serving", true],
  ["corrections_newly_fixed", "newly fixed", null, false],
  ["corrections_broken", "broken", null, false],
  ["corrections_gated", "gated", null, false],
  ["corrections_boundary", "boundary", null, false],
  ["corrections_contradicted", "contradicted", null, false],
  ["corrections_conflicts_offline", "in conflict", null, false],
  ["corrections_conflicts_live", "held (live)", null, false],
  ["corrections_superseded", "superseded", null, false],
  ["corrections_rejected", "rejected", null, false],
  ["retrain_seconds", "s", null, false],
];

async function init() {
  hil.nav("review").catch(() => {});
  bindControls();
  const hash = /id=(\d+)/.exec(location.hash);
  if (hash) R.selected = Number(hash[1]);
  try {
    await Promise.all([loadList(), loadVersions()]);
  } catch (err) {
    hil.status(err.message, "error");
    return;
  }
  if (R.selected !== null) await select(R.selected);
  listen();
}

function listen() {
  const source = new EventSource("/api/review/events");
  const changed = debounce(() => { loadList(); loadVersions(); if (R.selected !== null) select(R.selected, false); }, 300);
  source.addEventListener("snapshot", e => { const s = JSON.parse(e.data); R.model = s.model; R.retrainer = s.retrainer; renderHeader(s.connection); });
  source.addEventListener("model", e => { R.model = JSON.parse(e.data); renderHeader(); changed(); });
  source.addEventListener("retrainer", e => { R.retrainer = JSON.parse(e.data); renderHeader(); changed(); });
  source.addEventListener("connection", e => renderHeader(JSON.parse(e.data)));
}

function debounce(fn, ms) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

function renderHeader(connection) {
  if (connection) R.connection = connection;
  const c = R.connection || {}, m = R.model, r = R.retrainer;
  $("server").textContent = `${c.address || ""}${c.connected === false ? " · not connected" : ""}` +
    (m ? ` · serving #${m.number} ${m.version}` : "");
  $("retrainer").textContent = r ? `retrainer: ${r.state}${r.message ? " " + r.message : ""}` : "";
}

// ---- the list -----------------------------------------------------------------------------------------
async function loadList() {
  const statuses = R.filter ? R.filter.split(",") : [];
  const query = statuses.map(s => `status=${encodeURIComponent(s)}`).join("&");
  const page = await hil.api("GET", `/api/review/corrections${query ? "?" + query : ""}`);
  R.items = page.corrections;
  const k = page.counts;
  $("counts").textContent = `${k.total} stored: ${k.fixed} fixed, ${k.pending} pending, ${k.unfixed} unfixed, ` +
    `${k.conflicts_live} held for firing on live episodes, ` +
    `${k.conflicts_offline} in conflict with offline frames, ${k.contradicted} contradicted, ` +
    `${k.superseded} superseded, ${k.boundary} boundary, ` +
    `${k.unusable} unusable, ${k.rejected} rejected, ${k.accepted} accepted` +
    (page.waiting ? ` · ${page.waiting} listed wait for a verdict` : "");
  const body = $("corrections").tBodies[0];
  body.replaceChildren();
  if (!R.items.length) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td colspan="6" class="muted">${R.filter === TO_REVIEW ? "Nothing to review: the retrainer fixed every correction." : "No correction here."}</td>`;
    body.appendChild(tr);
  }
  for (const c of R.items) {
    const tr = document.createElement("tr");
    tr.dataset.id = c.id;
    if (c.id === R.selected) tr.className = "selected";
    const cells = [`#${c.id}`, c.label ? "✓ success" : "✗ not", null,
                   `${c.probability.toFixed(2)} → ${c.probability_now === null ? "–" : c.probability_now.toFixed(2)}`,
                   `${c.episode_id} · ${c.step}`, c.review ? c.review.verdict : ""];
    cells.forEach((value, i) => {
      const td = document.createElement("td");
      if (i === 2) td.appendChild(statusBadge(c.status));
      else td.textContent = value;
      tr.appendChild(td);
    });
    tr.addEventListener("click", () => select(c.id));
    body.appendChild(tr);
  }
}

function statusBadge(status) {
  const span = document.createElement("span");
  span.className = "st " + status;
  span.textContent = status;
  return span;
}

// ---- one correction -------------------------------------------------------------------------------------
let selecting = 0;  // only the newest selection renders, however the answers arrive

async function select(id, scroll = true) {
  const mine = ++selecting;
  R.selected = id;  // what a refresh re-selects, even before the answer is in
  let d;
  try {
    d = await hil.api("GET", `/api/review/corrections/${id}`);
  } catch (err) {
    hil.status(err.message, "error");
    return;
  }
  if (mine !== selecting) return;
  R.detail = d;
  history.replaceState(null, "", `#id=${id}`);
  for (const tr of $("corrections").tBodies[0].rows) tr.classList.toggle("selected", Number(tr.dataset.id) === id);
  const c = d.correction;
  $("detail-title").textContent = `Correction #${c.id}`;
  $("detail-status").replaceChildren(statusBadge(c.status));
  const box = $("detail");
  box.className = "";
  box.replaceChildren();
  const frames = document.createElement("div");
  frames.className = "frames";
  const label = y => (y ? "success" : "not success");
  const beside = c.conflict || c.live_conflict;
  frames.append(...figures(d.images, beside ? `this correction, labelled ${label(c.label)}: ` : ""));
  if (c.live_conflict) {  // side by side: what the correction says, and a live frame it would make the reward pay
    const k = c.live_conflict;
    frames.classList.add("conflict");
    frames.append(...figures(d.live_images, `live ep ${k.episode} step ${k.frame}, where it would newly fire: `));
  }
  if (c.conflict) {  // side by side: what the correction says, and the offline frame it makes wrong
    const k = c.conflict;
    frames.classList.add("conflict");
    frames.append(...figures(d.offline_images, `offline ep ${k.episode} frame ${k.frame}, labelled ${label(k.label)}: `));
  }
  if (beside) {
    if (d.offline_note) {
      const note = document.createElement("p");
      note.className = "muted small";
      note.textContent = d.offline_note;
      frames.appendChild(note);
    }
  }
  const facts = document.createElement("dl");
  facts.className = "facts";
  const rows = [
    ["label", c.label ? "success (1)" : "not success (0)"],
    ["status", `${c.status}: ${c.status_detail}`],
    ...(c.conflict ? [["offline conflict", `episode ${c.conflict.episode} frames ${c.conflict.start}–${c.conflict.end - 1} ` +
      `(${c.conflict.kind.replace("_", " ")} when trained on it); accept relabels them to ${label(c.label)}`]] : []),
    ...(c.live_conflict ? [["live conflict", `trained on it, the reward would newly fire in ` +
      `${c.live_conflict.firings.length} recent live episode(s) (episode@step: ` +
      `${c.live_conflict.firings.slice(0, 8).map(([e, t]) => `${e}@${t}`).join(", ")}); accept if those are ` +
      `successes (it trains, and they count as confirmed), reject to drop it`]] : []),
    ...(c.superseded_by ? [["superseded by", `#${c.superseded_by}, a newer label on a near-identical frame: ` +
      `accept this one to make it the newest word`]] : []),
    ["p when made", `${c.probability.toFixed(3)} (version ${c.model_version})`],
    ["p now", c.probability_now === null ? "not judged yet" : c.probability_now.toFixed(3)],
    ["episode · step", `${c.episode_id} · ${c.step}${c.env_index ? ` (env ${c.env_index})` : ""}`],
    ["source", c.source],
    ["stored", when(c.time_unix)],
  ];
  for (const r of d.reviews) rows.push(["review", `${r.verdict} by ${r.reviewer || "?"}${r.note ? ": " + r.note : ""} (${when(r.time_unix)})`]);
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = v;
    facts.append(dt, dd);
  }
  box.append(frames, facts);
  if (d.history.length) {
    const h = document.createElement("ol");
    h.className = "history";
    for (const s of d.history) {
      const li = document.createElement("li");
      li.textContent = `attempt ${s.attempt_id}: ${s.status}${s.probability >= 0 ? `, p ${s.probability.toFixed(3)}` : ""}` +
        (s.detail ? ` (${s.detail})` : "");
      h.appendChild(li);
    }
    const title = document.createElement("div");
    title.className = "muted small";
    title.textContent = "status history";
    box.append(title, h);
  }
  if (scroll && window.innerWidth <= 900) $("detail-panel").scrollIntoView({block: "start"});
}

async function verdict(v) {
  if (R.selected === null) return hil.status("pick a correction in the list first", "error");
  const id = R.selected, note = $("note").value.trim();
  try {
    await hil.api("POST", "/api/review/reviews", {ids: [id], verdict: v, note});
    $("note").value = "";
    await Promise.all([loadList(), select(id, false)]);
    const relabel = R.detail && R.detail.correction.conflict ? ", and the offline frames it conflicts with are relabelled" : "";
    hil.status(v === "reject" ? `rejected #${id}: it never trains again (the retrainer retrains without it)`
                              : `accepted #${id}: it trains fully, even when contradicted${relabel}`, "ok");
  } catch (err) {
    hil.status(err.message, "error");
  }
}

function figures(images, prefix) {
  return Object.entries(images).map(([cam, url]) => {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = url;
    img.alt = prefix + cam;
    const cap = document.createElement("figcaption");
    cap.textContent = prefix + cam;
    fig.append(img, cap);
    return fig;
  });
}

function when(t) {
  const d = new Date(t * 1000), today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

// ---- versions -------------------------------------------------------------------------------------------
async function loadVersions() {
  const t = await hil.api("GET", "/api/review/versions");
  const entries = t.versions.map(v => ({
    time: v.created_unix, title: `#${v.number} · ${v.version}`, serving: v.serving, refused: false,
    sub: v.number === 0 ? "the checkpoint the server started with"
                        : `trained on ${v.corrections_used} corrections (up to #${v.last_correction_id})`,
    metrics: (t.attempts.find(a => a.passed && a.number === v.number) || v).metrics, reason: ""}));
  for (const a of t.attempts.filter(a => !a.passed)) {
    entries.push({time: a.time_unix, title: "refused by the gate", serving: false, refused: true,
                  sub: `corrections up to #${a.last_correction_id}`, metrics: a.metrics, reason: a.reason});
  }
  entries.sort((a, b) => b.time - a.time);
  const list = $("timeline");
  list.replaceChildren();
  for (const e of entries) {
    const li = document.createElement("li");
    const w = document.createElement("span");
    w.className = "when";
    w.textContent = when(e.time);
    const what = document.createElement("span");
    what.className = "what" + (e.refused ? " refused" : "") + (e.serving ? " serving" : "");
    what.textContent = `${e.title} `;
    const sub = document.createElement("span");
    sub.className = "muted";
    sub.style.fontWeight = "400";
    sub.textContent = `· ${e.sub}`;
    what.appendChild(sub);
    const metrics = document.createElement("div");
    metrics.className = "metrics";
    for (const text of metricTexts(e.metrics)) {
      const m = document.createElement("span");
      m.textContent = text;
      metrics.appendChild(m);
    }
    li.append(w, what, metrics);
    if (e.reason) {
      const r = document.createElement("div");
      r.className = "reason";
      r.textContent = e.reason;
      li.appendChild(r);
    }
    list.appendChild(li);
  }
}

function metricTexts(m) {
  const fmt = (v, pct) => (pct ? `${(v * 100).toFixed(1)} %` : Number.isInteger(v) ? `${v}` : v.toFixed(1));
  const out = [];
  for (const [key, label, base, pct] of METRICS) {
    if (!(key in m)) continue;
    out.push(label === "s" ? `${fmt(m[key], false)} s` :
      `${label} ${fmt(m[key], pct)}${base && base in m ? ` (was ${fmt(m[base], pct)})` : ""}`);
  }
  if (!out.length) {  // a checkpoint's own metrics: a few accuracies
    for (const [k, v] of Object.entries(m).filter(([k]) => /acc/.test(k)).slice(0, 4)) out.push(`${k} ${fmt(v, true)}`);
  }
  return out;
}

// ---- keys -------------------------------------------------------------------------------------------------
function step(delta) {
  if (!R.items.length) return;
  const i = R.items.findIndex(c => c.id === R.selected);
  const next = R.items[Math.max(0, Math.min(R.items.length - 1, i < 0 ? 0 : i + delta))];
  select(next.id);
}

const actions = {
  "a": () => verdict("accept"),
  "r": () => verdict("reject"),
  "j": () => step(1),
  "k": () => step(-1),
};

function bindControls() {
  hil.onKeys(actions);
  $("accept").addEventListener("click", () => verdict("accept"));
  $("reject").addEventListener("click", () => verdict("reject"));
  $("filter").addEventListener("change", () => {
    R.filter = $("filter").value;
    loadList().catch(err => hil.status(err.message, "error"));
  });
}

init();
