"use strict";
// The operator console: live frames and probability trace (server-sent events), the query queue, and the
// two big buttons that label the frames on screen. Corrections are POSTed; the server stores them before
// it answers, and the acks list follows them until a version that includes them serves.
const C = {
  traces: new Map(),    // trace_id -> {trace_id, episode_id, points: [...]}
  newest: null,         // trace_id of the newest prediction
  follow: null,         // trace_id the operator picked (null: follow the newest)
  cursor: null,         // index of the last frame to label in the shown trace (null: its newest point)
  frames: new Map(),    // prediction_id -> {camera: data URL}
  latest: null,         // the newest frames: {prediction_id, trace_id, images}
  model: null, retrainer: null, connection: null, settings: null, monitor: [],
  k: 5,
  acks: [],             // corrections stored from this page, newest last
  corrected: new Map(), // prediction_id -> label
  queueLoaded: 0, queueTimer: null, queueKey: "",
};
window.consoleState = C;  // the browser test reads it
const $ = id => document.getElementById(id);
const MAX_POINTS = 1000, MAX_FRAMES = 600, QUEUE_EVERY_MS = 2000, MONITOR_EVERY_MS = 3000;

async function init() {
  hil.nav("console").catch(() => {});
  bindControls();
  try {
    applySnapshot(await hil.api("GET", "/api/console/snapshot"));  // errors (a wrong token) show here
  } catch (err) {
    hil.status(err.message, "error");
    setConnection({connected: false, message: err.message});
    return;
  }
  C.k = C.settings.last_k;
  $("k").value = C.k;
  listen();
  loadQueue();
  C.monitor = C.model ? C.model.monitor : [];
  renderMonitor();
  setInterval(loadMonitor, MONITOR_EVERY_MS);
  window.addEventListener("resize", () => { scheduleRender(); renderMonitor(); });
}

// ---- live events ------------------------------------------------------------------------------------
function listen() {
  const source = new EventSource("/api/console/events");
  source.addEventListener("snapshot", e => applySnapshot(JSON.parse(e.data)));
  source.addEventListener("prediction", e => addPrediction(JSON.parse(e.data)));
  source.addEventListener("model", e => {
    C.model = JSON.parse(e.data); renderServer(); renderAcks(); loadQueue(); loadMonitor();
  });
  source.addEventListener("retrainer", e => { C.retrainer = JSON.parse(e.data); renderServer(); renderAcks(); });
  source.addEventListener("connection", e => setConnection(JSON.parse(e.data)));
  source.onerror = () => setConnection({connected: false, message: "live updates lost: reconnecting to the console…"});
  source.onopen = () => { if (C.connection && C.connection.connected) setConnection(C.connection); };
}

function applySnapshot(s) {
  C.settings = s.settings;
  C.model = s.model;
  C.retrainer = s.retrainer;
  C.traces = new Map(s.traces.map(t => [t.trace_id, t]));
  C.newest = s.traces.length ? s.traces[s.traces.length - 1].trace_id : null;
  if (C.follow !== null && !C.traces.has(C.follow)) { C.follow = null; C.cursor = null; }
  C.frames.clear();
  C.latest = s.frames;
  if (s.frames) C.frames.set(s.frames.prediction_id, s.frames.images);
  setConnection(s.connection);
  renderServer();
  scheduleRender();
}

function addPrediction(ev) {
  let trace = C.traces.get(ev.trace_id);
  if (!trace) {
    trace = {trace_id: ev.trace_id, episode_id: ev.point.episode_id, points: []};
    C.traces.set(ev.trace_id, trace);
    while (C.traces.size > 8) C.traces.delete(C.traces.keys().next().value);
  }
  const last = trace.points[trace.points.length - 1];
  if (last && last.prediction_id >= ev.point.prediction_id) return;  // already in the snapshot
  trace.points.push(ev.point);
  if (trace.points.length > MAX_POINTS) {
    trace.points.splice(0, trace.points.length - MAX_POINTS);
    if (C.cursor !== null && C.follow === ev.trace_id) C.cursor = Math.max(0, C.cursor - 1);
  }
  C.newest = ev.trace_id;
  if (ev.images) {
    C.latest = {prediction_id: ev.point.prediction_id, trace_id: ev.trace_id, images: ev.images};
    C.frames.set(ev.point.prediction_id, ev.images);
    if (C.frames.size > MAX_FRAMES) C.frames.delete(C.frames.keys().next().value);
  }
  scheduleRender();
  queueSoon();
}

function queueSoon() {  // the queue changes with every prediction: reload it at most every QUEUE_EVERY_MS
  if (C.queueTimer !== null) return;
  C.queueTimer = setTimeout(loadQueue, Math.max(0, C.queueLoaded + QUEUE_EVERY_MS - Date.now()));
}

function setConnection(c) {
  C.connection = {...(C.connection || {}), ...c};
  const el = $("conn");
  el.className = "conn " + (c.connected ? "up" : "down");
  $("conn-text").textContent = c.connected ? "live" : "offline";
  el.title = c.message || "";
  if (!c.connected) hil.status(c.message, "error");
  else if ($("status").classList.contains("error") && $("status").textContent === (C.lastConnError || "")) hil.status("");
  C.lastConnError = c.connected ? null : c.message;
}

// ---- what is on screen ------------------------------------------------------------------------------
function shownTrace() {
  const id = C.follow !== null && C.traces.has(C.follow) ? C.follow : C.newest;
  return id === null ? null : C.traces.get(id) || null;
}

function cursorIndex(trace) {
  if (!trace || !trace.points.length) return -1;
  return C.cursor === null ? trace.points.length - 1 : Math.min(C.cursor, trace.points.length - 1);
}

function selection() {  // the points the buttons label: the k up to the cursor
  const trace = shownTrace(), end = cursorIndex(trace);
  if (end < 0) return [];
  return trace.points.slice(Math.max(0, end - C.k + 1), end + 1);
}

function held() { return C.follow !== null || C.cursor !== null; }

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; render(); });
}

function render() {
  const trace = shownTrace(), at = cursorIndex(trace);
  const point = at >= 0 ? trace.points[at] : null;
  $("live-title").textContent = trace ? `Episode ${trace.episode_id}` : "Live";
  if (point) {
    const u = point.uncertainty !== null ? ` ± ${point.uncertainty.toFixed(2)}` : "";
    $("point-info").textContent = `step ${point.step} · p ${point.probability.toFixed(2)}${u} · threshold ` +
      `${point.threshold.toFixed(2)} · ${point.success ? "success" : "no success"}`;
  } else {
    $("point-info").textContent = "waiting for the first Predict call…";
  }
  renderCameras(trace, at);
  drawTrace(trace, at);
  renderChips(trace);
  $("hold").textContent = held() ? "live ▶" : "hold";
  $("hold").classList.toggle("held", held());
  const n = selection().length;
  for (const b of [$("false-success"), $("missed-success")]) b.disabled = n === 0;
}

function framesAt(trace, at) {  // the newest kept frames at or before the cursor
  if (!held() || !trace) return C.latest;
  for (let i = at; i >= 0 && i > at - 50; i--) {
    const images = C.frames.get(trace.points[i].prediction_id);
    if (images) return {prediction_id: trace.points[i].prediction_id, images, step: trace.points[i].step};
  }
  return null;
}

function renderCameras(trace, at) {
  const box = $("cameras"), shown = framesAt(trace, at);
  const cameras = (C.model && C.model.cameras) || (shown ? Object.keys(shown.images) : []);
  if (!cameras.length) {
    box.innerHTML = '<p class="empty">No frames yet: they appear when the robot calls Predict.</p>';
    return;
  }
  if (box.dataset.cameras !== cameras.join(",")) {
    box.replaceChildren();
    for (const cam of cameras) {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.alt = cam;
      img.dataset.camera = cam;
      const caption = document.createElement("figcaption");
      fig.append(img, caption);
      box.appendChild(fig);
    }
    box.dataset.cameras = cameras.join(",");
  }
  const step = shown && trace ? stepOf(trace, shown.prediction_id) : null;
  for (const fig of box.children) {
    const img = fig.querySelector("img"), cam = img.dataset.camera;
    const url = shown && shown.images[cam];
    if (url && img.getAttribute("src") !== url) img.src = url;
    if (!url) img.removeAttribute("src");
    fig.querySelector("figcaption").textContent = `${cam}${step !== null ? ` · step ${step}` : ""}` +
      (shown ? "" : " · frames of this step were not kept");
  }
}

function stepOf(trace, predictionId) {
  const p = trace.points.find(q => q.prediction_id === predictionId);
  return p ? p.step : null;
}

function drawTrace(trace, at) {
  const {g, w, h, color} = hil.canvas2d($("trace"));
  g.fillStyle = "#f3f0fa";
  g.fillRect(0, 0, w, h);
  const top = 6, bottom = h - 14, y = p => bottom - p * (bottom - top);
  const pts = trace ? trace.points : [];
  const n = Math.max(pts.length, 2), fw = w / n, x = i => (i + 0.5) * fw;
  if (pts.length) {
    const [a, b] = [Math.max(0, at - C.k + 1), at];  // the frames the buttons label
    g.fillStyle = "rgba(31, 111, 235, 0.18)";
    g.fillRect(a * fw, 0, (b - a + 1) * fw, h);
    g.fillStyle = "rgba(110, 64, 201, 0.18)";  // uncertainty band: p ± std of the ensemble
    g.beginPath();
    pts.forEach((p, i) => g.lineTo(x(i), y(Math.min(1, p.probability + (p.uncertainty || 0)))));
    for (let i = pts.length - 1; i >= 0; i--) g.lineTo(x(i), y(Math.max(0, pts[i].probability - (pts[i].uncertainty || 0))));
    g.fill();
    g.strokeStyle = "#9c8fbf";  // threshold (it changes with the version)
    g.setLineDash([4, 3]);
    g.beginPath();
    pts.forEach((p, i) => (i ? g.lineTo(x(i), y(p.threshold)) : g.moveTo(0, y(p.threshold))));
    g.lineTo(w, y(pts[pts.length - 1].threshold));
    g.stroke();
    g.setLineDash([]);
    g.strokeStyle = "#6e40c9";
    g.lineWidth = 2;
    g.beginPath();
    pts.forEach((p, i) => (i ? g.lineTo(x(i), y(p.probability)) : g.moveTo(x(i), y(p.probability))));
    g.stroke();
    g.lineWidth = 1;
    pts.forEach((p, i) => {  // bottom strip: success as served, and the frames corrected from here
      if (p.success) { g.fillStyle = color("--ok"); g.fillRect(i * fw, h - 12, Math.max(fw, 1), 5); }
      const label = C.corrected.get(p.prediction_id);
      if (label !== undefined) { g.fillStyle = label ? color("--ok") : color("--bad"); g.fillRect(i * fw, h - 6, Math.max(fw, 1), 5); }
      if (i && p.model_version !== pts[i - 1].model_version) {  // a new version started serving here
        g.fillStyle = "#1d232b";
        g.fillRect(i * fw, 0, 1, h - 14);
      }
    });
    g.fillStyle = color("--bad");
    g.fillRect(x(at) - 1, 0, 2, h);
  }
  g.fillStyle = "#67717d";
  g.font = "11px system-ui, sans-serif";
  g.fillText("1", 3, top + 8);
  g.fillText("0", 3, bottom);
}

function renderChips(shown) {
  const box = $("traces");
  box.replaceChildren();
  const traces = [...C.traces.values()].reverse();
  for (const t of traces) {
    const b = document.createElement("button");
    const last = t.points[t.points.length - 1];
    b.textContent = `ep ${t.episode_id} · ${t.points.length} steps`;
    b.title = last ? `episode ${t.episode_id}, last step ${last.step}` : "";
    if (shown && t.trace_id === shown.trace_id) b.className = "current";
    if (t.trace_id === C.newest) b.classList.add("live");
    b.addEventListener("click", () => {
      C.follow = t.trace_id === C.newest ? null : t.trace_id;
      C.cursor = null;
      scheduleRender();
    });
    box.appendChild(b);
  }
}

// ---- the server panel ---------------------------------------------------------------------------------
function renderServer() {
  const dl = $("server"), m = C.model, r = C.retrainer, c = C.connection || {};
  const rows = [["server", `${c.address || "?"} · ${c.connected ? "connected" : "not connected"}`]];
  if (m) {
    rows.push(["version", `#${m.number} · ${m.version}`], ["threshold", m.threshold.toFixed(2)],
              ["uncertainty", m.ensemble_size ? `${m.ensemble_size} heads` : "none (no ensemble yet)"]);
    const k = m.corrections;
    rows.push(["corrections", `${k.total} · ${k.fixed} fixed · ${k.pending} pending · ${k.unfixed} unfixed · ` +
               (k.conflicts_live ? `${k.conflicts_live} held (they would fire on live episodes) · ` : "") +
               (k.conflicts_offline ? `${k.conflicts_offline} in conflict with offline frames · ` : "") +
               (k.superseded ? `${k.superseded} superseded · ` : "") +
               `${k.contradicted} contradicted · ${k.boundary} boundary · ${k.rejected} rejected`]);
  }
  if (r) rows.push(["retrainer", `${r.state}${r.message ? ": " + r.message : ""}` +
                    (r.attempts ? ` (${r.published} published, ${r.rejected} refused)` : "")]);
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = v;
    if (k === "retrainer") dd.id = "retrainer";
    if (k === "version") dd.id = "version";
    dl.append(dt, dd);
  }
  const waiting = m ? m.needs_review.length : 0;
  const link = $("review-link");
  link.textContent = waiting ? `review (${waiting} waiting)` : "review";
  link.href = waiting ? `/review/#id=${m.needs_review[0]}` : "/review/";
  link.classList.toggle("primary", waiting > 0);
}

// ---- the hacking monitor ---------------------------------------------------------------------------------
// Per served version: claimed success on live episodes (blue), the share of those claims on unfamiliar states
// (orange), false-success flags received (red dots). A policy that starts to hack shows as a rise in claims,
// mostly unfamiliar, before the RL run is wasted.
async function loadMonitor() {
  try {
    C.monitor = await hil.api("GET", "/api/console/monitor");
  } catch (err) {
    return;  // the server panel says what is wrong with the connection
  }
  renderMonitor();
}

function renderMonitor() {
  const items = (C.monitor || []).slice(-12), text = $("monitor-text");
  const {g: ctx, w, h} = hil.canvas2d($("monitor"));
  ctx.clearRect(0, 0, w, h);
  if (!items.length) { text.textContent = "no live episode judged yet"; text.className = "small muted"; return; }
  const slot = w / Math.max(items.length, 6), bar = Math.max(4, slot * 0.3), base = h - 16;
  ctx.font = "10px sans-serif";
  items.forEach((v, i) => {
    const x = i * slot + slot * 0.15;
    ctx.fillStyle = "#2e6fdb";
    ctx.fillRect(x, base - v.claimed_rate * (base - 4), bar, v.claimed_rate * (base - 4));
    ctx.fillStyle = "#e8871e";
    ctx.fillRect(x + bar, base - v.unfamiliar_share * (base - 4), bar, v.unfamiliar_share * (base - 4));
    for (let f = 0; f < Math.min(v.false_success_flags, 8); f++) {
      ctx.fillStyle = "#b42318";
      ctx.beginPath();
      ctx.arc(x + bar, base - 6 - f * 7, 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.fillStyle = "#666";
    ctx.fillText(`#${v.number}`, x, h - 3);
  });
  const v = items[items.length - 1];
  const known = v.claimed - v.claimed_unknown;
  const unfamiliar = known > 0 ? `${v.claimed_unfamiliar} of ${known} claims on unfamiliar states` :
    (v.claimed ? "familiarity unknown (no support bank)" : "no claim yet");
  text.textContent = `#${v.number}: claimed success in ${v.claimed} of ${v.episodes} live episodes ` +
    `(${Math.round(100 * v.claimed_rate)} %) · ${unfamiliar} · ${v.false_success_flags} false-success flag(s)`;
  const worry = v.episodes >= 5 && (v.unfamiliar_share > 0.5 && v.claimed > 2 || v.false_success_flags > 2);
  text.className = worry ? "small warn" : "small";
  text.title = worry ? "the policy may be hunting this version's mistakes: look at the claims in the queue" : "";
}

// ---- corrections ------------------------------------------------------------------------------------
async function correct(label, points, source) {
  if (!points.length) return hil.status("no frame on screen yet: frames appear when the robot calls Predict", "error");
  const what = label ? "success" : "not success";
  try {
    const ack = await hil.api("POST", "/api/console/corrections",
                              {label, prediction_ids: points.map(p => p.prediction_id), source});
    points.forEach(p => C.corrected.set(p.prediction_id, label));
    const ids = ack.correction_ids, first = points[0], last = points[points.length - 1];
    const steps = first.step === last.step ? `step ${first.step}` : `steps ${first.step}–${last.step}`;
    C.acks.push({ids, maxId: Math.max(...ids), label, retraining: ack.retraining, next: ack.next,
                 attempts: C.retrainer ? C.retrainer.attempts : 0,
                 text: `${ids.length === 1 ? "correction" : "corrections"} ${span(ids)}: episode ${first.episode_id}, ${steps} → ${what}`});
    hil.status(`stored ${span(ids)} (${ids.length} frame${ids.length === 1 ? "" : "s"} → ${what})`, "ok");
    renderAcks();
    scheduleRender();
    loadQueue();  // labelled frames leave the queue
  } catch (err) {
    hil.status(err.message, "error");
  }
}

function span(ids) {
  return ids.length === 1 ? `#${ids[0]}` : `#${Math.min(...ids)}–#${Math.max(...ids)}`;
}

function ackState(a) {  // [text, class]: what happened to the corrections since they were stored
  const m = C.model, r = C.retrainer;
  if (m && m.last_correction_id >= a.maxId) return [`✓ served by version #${m.number} (${m.version}), which includes them`, "done"];
  if (!a.retraining) return [a.next, ""];
  if (r && r.attempts > a.attempts && r.state === "rejected") return [`the gate refused the last attempt: ${r.message}; see Review`, "bad"];
  if (r && r.state === "error") return [`the retrainer failed: ${r.message}`, "bad"];
  if (r && r.state === "training") return [`training a new version ${r.message}…`, ""];
  return [a.next, ""];
}

function renderAcks() {
  const list = $("acks");
  list.replaceChildren();
  C.acks.slice(-4).reverse().forEach((a, i) => {
    const li = document.createElement("li");
    li.value = C.acks.length - i;
    const [text, cls] = ackState(a);
    const state = document.createElement("span");
    state.className = "state " + cls;
    state.textContent = text;
    li.append(a.text, state);
    list.appendChild(li);
  });
}

// ---- the query queue ----------------------------------------------------------------------------------
async function loadQueue() {
  clearTimeout(C.queueTimer);
  C.queueTimer = null;
  C.queueLoaded = Date.now();
  let list;
  try {
    list = await hil.api("GET", "/api/console/queries");
  } catch (err) {
    $("queue-count").textContent = "";
    $("queue").innerHTML = "";
    const p = document.createElement("p");
    p.className = "small status error";
    p.textContent = err.message;
    $("queue").appendChild(p);
    C.queueKey = "";
    return;
  }
  const key = list.queries.map(q => `${q.point.prediction_id}:${q.need}`).join(",");
  if (key === C.queueKey) return;  // unchanged: keep the cards (and the images) as they are
  C.queueKey = key;
  const box = $("queue");
  box.replaceChildren();
  $("queue-count").textContent = list.queries.length ? `${list.queries.length} frame${list.queries.length === 1 ? "" : "s"}, neediest first` : "";
  if (!list.queries.length) {
    box.innerHTML = '<p class="muted small">No frame needs a human right now.</p>';
    return;
  }
  for (const q of list.queries) {
    const p = q.point, card = document.createElement("div");
    card.className = "query";
    card.dataset.prediction = p.prediction_id;
    const thumbs = document.createElement("div");
    thumbs.className = "thumbs";
    for (const [cam, url] of Object.entries(q.images)) {
      const img = document.createElement("img");
      img.src = url;
      img.alt = cam;
      img.title = cam;
      thumbs.appendChild(img);
    }
    const meta = document.createElement("div");
    meta.className = "meta";
    const u = p.uncertainty !== null ? ` ± ${p.uncertainty.toFixed(2)}` : "";
    meta.textContent = `p ${p.probability.toFixed(2)}${u} · ep ${p.episode_id} step ${p.step} · ${q.reason}`;
    const answers = document.createElement("div");
    answers.className = "answers";
    for (const [label, text, cls] of [[1, "✓ success", "ok"], [0, "✗ not success", "bad"]]) {
      const b = document.createElement("button");
      b.className = cls;
      b.textContent = text;
      b.addEventListener("click", () => correct(label, [p], "query"));
      answers.appendChild(b);
    }
    card.append(thumbs, meta, answers);
    box.appendChild(card);
  }
}

// ---- keys and buttons ---------------------------------------------------------------------------------
function setK(k) {
  if (!Number.isInteger(k) || k < 1 || k > 1000) {
    hil.status("frames to label: a whole number from 1 to 1000", "error");
    $("k").value = C.k;
    return;
  }
  C.k = k;
  $("k").value = k;
  scheduleRender();
}

function moveCursor(delta) {
  const trace = shownTrace();
  if (!trace || !trace.points.length) return;
  C.follow = trace.trace_id;
  C.cursor = Math.max(0, Math.min(trace.points.length - 1, cursorIndex(trace) + delta));
  scheduleRender();
}

const actions = {
  "f": () => correct(0, selection(), "console"),
  "s": () => correct(1, selection(), "console"),
  " ": () => {
    if (held()) { C.follow = null; C.cursor = null; } else { moveCursor(0); }
    scheduleRender();
  },
  "ArrowLeft": () => moveCursor(-1),
  "ArrowRight": () => moveCursor(1),
  "Shift+ArrowLeft": () => moveCursor(-10),
  "Shift+ArrowRight": () => moveCursor(10),
  "-": () => setK(C.k - 1 || 1),
  "+": () => setK(C.k + 1),
  "=": () => setK(C.k + 1),
};

function bindControls() {
  hil.onKeys(actions);
  for (const button of document.querySelectorAll("#act button[data-key]")) {
    button.addEventListener("click", () => { button.blur(); actions[button.dataset.key](); });
  }
  $("k").addEventListener("change", () => setK(Number($("k").value)));
  hil.onScrub($("trace"), x => {
    const trace = shownTrace();
    if (!trace || !trace.points.length) return;
    C.follow = trace.trace_id;
    C.cursor = Math.floor(x * trace.points.length);
    scheduleRender();
  });
}

init();
