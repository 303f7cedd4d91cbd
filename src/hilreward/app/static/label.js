"use strict";
// The label station: episode list, episode view (cameras, timeline, keys and buttons), edits list.
// Every edit is POSTed at once; the server writes it to the edits file before answering.
const S = {info: null, episodes: [], ep: null, frame: 0, start: null, endFrame: null, playing: null, edits: []};
window.labelStation = S;  // the browser test reads it
const $ = id => document.getElementById(id);
const prefetched = new Map();

function frameUrl(camera, episode, frame) {
  return `/api/label/frames/${camera}/${episode}/${frame}.jpg?v=${S.info.fingerprint}`;
}

async function init() {
  hil.nav("label").catch(() => {});
  try {
    S.info = await hil.api("GET", "/api/label/info");
  } catch (err) {
    hil.status(err.message, "error");
    return;
  }
  $("dataset").textContent = `${S.info.dataset} · label ${S.info.label_key}`;
  $("edits-path").textContent = S.info.edits_path;
  $("prob-source").textContent = S.info.probability_source
    ? `P(success), ${S.info.probability_source}` : "no probability (start with checkpoint= or suspects=)";
  $("only-suspects").addEventListener("change", renderEpisodes);
  bindControls();
  await Promise.all([loadEpisodes(), loadEdits()]);
  const hash = parseHash();
  const first = hash.ep !== undefined ? hash.ep : (S.episodes[0] && S.episodes[0].episode_index);
  if (first !== undefined) await openEpisode(first, hash.f || 0);
  window.addEventListener("resize", drawTimeline);
}

function parseHash() {
  const out = {};
  for (const part of location.hash.slice(1).split("&")) {
    const [k, v] = part.split("=");
    if (v !== undefined && /^\d+$/.test(v)) out[k] = parseInt(v, 10);
  }
  return out;
}

// ---- episode list ---------------------------------------------------------------------------------
async function loadEpisodes() {
  S.episodes = await hil.api("GET", "/api/label/episodes");
  renderEpisodes();
}

function renderEpisodes() {
  const only = $("only-suspects").checked;
  const body = $("episode-table").tBodies[0];
  body.replaceChildren();
  for (const e of S.episodes) {
    if (only && !e.suspects) continue;
    const tr = document.createElement("tr");
    tr.dataset.episode = e.episode_index;
    if (S.ep && S.ep.episode_index === e.episode_index) tr.className = "selected";
    for (const value of [e.episode_index, e.length, e.positives, e.onset ?? "–", e.offset ?? "–"]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.appendChild(td);
    }
    const suspects = document.createElement("td");
    if (e.suspects) suspects.innerHTML = `<span class="badge warn">${e.suspects}</span>`;
    const edited = document.createElement("td");
    if (e.edited) edited.innerHTML = '<span class="badge edit" title="edited">✎</span>';
    tr.append(suspects, edited);
    tr.addEventListener("click", () => openEpisode(e.episode_index, 0));
    body.appendChild(tr);
    if (tr.className === "selected") tr.scrollIntoView({block: "nearest"});
  }
}

// ---- episode view ---------------------------------------------------------------------------------
async function openEpisode(index, frame) {
  stop();
  try {
    S.ep = await hil.api("GET", `/api/label/episodes/${index}`);
  } catch (err) {
    hil.status(err.message, "error");
    return;
  }
  S.start = S.endFrame = null;
  $("ep-title").textContent = `Episode ${S.ep.episode_index}`;
  const cameras = $("cameras");
  cameras.replaceChildren();
  S.ep.cameras.forEach((key, i) => {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.alt = key;
    img.dataset.camera = i;
    const caption = document.createElement("figcaption");
    caption.textContent = key.replace("observation.images.", "");
    fig.append(img, caption);
    cameras.appendChild(fig);
  });
  renderEpisodes();
  seek(frame);
}

function seek(frame) {
  if (!S.ep) return;
  S.frame = Math.max(0, Math.min(S.ep.length - 1, frame));
  for (const img of $("cameras").querySelectorAll("img")) {
    img.src = frameUrl(img.dataset.camera, S.ep.episode_index, S.frame);
  }
  prefetch();
  const label = S.ep.labels[S.frame], original = S.ep.original[S.frame];
  const p = S.ep.probability && S.ep.probability[S.frame] !== null ? ` · p ${S.ep.probability[S.frame].toFixed(2)}` : "";
  $("frame-info").textContent =
    `frame ${S.frame} / ${S.ep.length - 1} · label ${label}${label !== original ? ` (was ${original})` : ""}${p}`;
  history.replaceState(null, "", `#ep=${S.ep.episode_index}&f=${S.frame}`);
  drawTimeline();
}

function prefetch() {
  for (let k = 1; k <= 6 && S.frame + k < S.ep.length; k++) {
    S.ep.cameras.forEach((_, camera) => {
      const url = frameUrl(camera, S.ep.episode_index, S.frame + k);
      if (prefetched.has(url)) return;
      const img = new Image();
      img.src = url;
      prefetched.set(url, img);
      if (prefetched.size > 400) prefetched.delete(prefetched.keys().next().value);
    });
  }
}

function markedSpan() {  // [start, end) of the span marked with [ and ] (end defaults to the current frame)
  const a = S.start, b = S.endFrame !== null ? S.endFrame : S.frame;
  return [Math.min(a, b), Math.max(a, b) + 1];
}

function runs(values, draw) {
  let a = 0;
  for (let f = 1; f <= values.length; f++) {
    if (f === values.length || values[f] !== values[a]) {
      draw(a, f, values[a]);
      a = f;
    }
  }
}

function drawTimeline() {
  const canvas = $("timeline");
  if (!S.ep) return;
  const {g, w, h, color} = hil.canvas2d(canvas);
  const n = S.ep.length, fw = w / n, x = f => f * fw;
  const SUSPECT = [0, 8], LABEL = [10, 30], ORIGINAL = [32, 36], PROB = [42, h - 2];
  g.fillStyle = color("--warn");
  for (const s of S.ep.spans) g.fillRect(x(s.start), SUSPECT[0], Math.max(x(s.end) - x(s.start), 2), SUSPECT[1]);
  runs(S.ep.labels, (a, b, v) => {
    g.fillStyle = v ? color("--ok-soft") : color("--no");
    g.fillRect(x(a), LABEL[0], x(b) - x(a), LABEL[1] - LABEL[0]);
  });
  runs(S.ep.original, (a, b, v) => {
    g.fillStyle = v ? color("--ok") : color("--no");
    g.fillRect(x(a), ORIGINAL[0], x(b) - x(a), ORIGINAL[1] - ORIGINAL[0]);
  });
  runs(S.ep.labels.map((v, f) => v !== S.ep.original[f]), (a, b, changed) => {
    if (!changed) return;
    g.fillStyle = color("--accent");
    g.fillRect(x(a), LABEL[1] - 4, Math.max(x(b) - x(a), 1), 4);
  });
  g.fillStyle = "#f3f0fa";
  g.fillRect(0, PROB[0], w, PROB[1] - PROB[0]);
  const py = p => PROB[1] - p * (PROB[1] - PROB[0]);
  g.strokeStyle = "#b9b2cc";
  g.setLineDash([3, 3]);
  g.beginPath();
  g.moveTo(0, py(0.5));
  g.lineTo(w, py(0.5));
  g.stroke();
  g.setLineDash([]);
  if (S.ep.probability) {
    g.strokeStyle = "#6e40c9";
    g.lineWidth = 1.5;
    g.beginPath();
    let pen = false;
    S.ep.probability.forEach((p, f) => {
      if (p === null) { pen = false; return; }
      pen ? g.lineTo(x(f) + fw / 2, py(p)) : g.moveTo(x(f) + fw / 2, py(p));
      pen = true;
    });
    g.stroke();
  }
  if (S.start !== null) {
    const [a, b] = markedSpan();
    g.fillStyle = "rgba(31, 111, 235, 0.25)";
    g.fillRect(x(a), 0, x(b) - x(a), h);
  }
  g.fillStyle = color("--bad");
  g.fillRect(x(S.frame) + fw / 2 - 1, 0, 2, h);
}

// ---- playback ---------------------------------------------------------------------------------------
function play() {
  if (!S.ep) return;
  if (S.frame >= S.ep.length - 1) seek(0);
  S.playing = setInterval(() => (S.frame >= S.ep.length - 1 ? stop() : seek(S.frame + 1)), 1000 / (S.ep.fps || 10));
  $("play").textContent = "pause";
}

function stop() {
  if (S.playing) clearInterval(S.playing);
  S.playing = null;
  $("play").textContent = "play";
}

// ---- edits ------------------------------------------------------------------------------------------
async function edit(start, end, label) {
  if (!S.ep) return;
  try {
    const e = await hil.api("POST", "/api/label/edits", {episode_index: S.ep.episode_index, start, end, label});
    S.start = S.endFrame = null;
    await refresh();
    hil.status(`saved: episode ${e.episode_index}, frames ${e.start}–${e.end - 1} → ${label ? "success" : "no success"}`, "ok");
  } catch (err) {
    hil.status(err.message, "error");
  }
}

async function undo(index) {
  try {
    const e = index === undefined ? await hil.api("POST", "/api/label/edits/undo")
                                  : await hil.api("DELETE", `/api/label/edits/${index}`);
    await refresh();
    hil.status(`undone: episode ${e.episode_index}, frames ${e.start}–${e.end - 1}`, "ok");
  } catch (err) {
    hil.status(err.message, "error");
  }
}

async function refresh() {
  const [ep] = await Promise.all([hil.api("GET", `/api/label/episodes/${S.ep.episode_index}`), loadEpisodes(), loadEdits()]);
  S.ep = ep;
  seek(S.frame);
}

async function loadEdits() {
  S.edits = await hil.api("GET", "/api/label/edits");
  $("edit-count").textContent = `${S.edits.length} edit${S.edits.length === 1 ? "" : "s"}`;
  const list = $("edits");
  list.replaceChildren();
  for (const e of [...S.edits].reverse()) {
    const li = document.createElement("li");
    li.value = e.index + 1;
    li.className = "edit";
    const link = document.createElement("a");
    link.href = `#ep=${e.episode_index}&f=${e.start}`;
    link.textContent = `episode ${e.episode_index}, frames ${e.start}–${e.end - 1}`;
    link.addEventListener("click", event => { event.preventDefault(); openEpisode(e.episode_index, e.start); });
    const when = document.createElement("span");
    when.className = "muted";
    when.textContent = ` ${e.time.replace("T", " ").replace("+00:00", " UTC")}`;
    const button = document.createElement("button");
    button.textContent = "undo";
    button.addEventListener("click", () => undo(e.index));
    li.append(link, ` → ${e.label ? "success" : "no success"}`, when, button);
    list.appendChild(li);
  }
}

function labelSpan(label) {
  if (S.start === null) return hil.status("mark the span first: [ at its first frame, ] at its last", "error");
  const [a, b] = markedSpan();
  edit(a, b, label);
}

// ---- suspects -----------------------------------------------------------------------------------------
async function nextSuspect(dir) {
  if (!S.ep) return;
  const spans = S.ep.spans;
  const here = dir > 0 ? spans.find(s => s.start > S.frame) : [...spans].reverse().find(s => s.start < S.frame);
  if (here) return seek(here.start);
  const others = S.episodes.filter(e => e.suspects > 0 &&
    (dir > 0 ? e.episode_index > S.ep.episode_index : e.episode_index < S.ep.episode_index));
  const target = dir > 0 ? others[0] : others[others.length - 1];
  if (!target) return hil.status(`no ${dir > 0 ? "further" : "earlier"} suspect span`);
  await openEpisode(target.episode_index, 0);
  const pick = dir > 0 ? S.ep.spans[0] : S.ep.spans[S.ep.spans.length - 1];
  if (pick) seek(pick.start);
}

// ---- keys, buttons, timeline ------------------------------------------------------------------------
const actions = {
  "ArrowLeft": () => seek(S.frame - 1),
  "ArrowRight": () => seek(S.frame + 1),
  "Shift+ArrowLeft": () => seek(S.frame - 10),
  "Shift+ArrowRight": () => seek(S.frame + 10),
  " ": () => (S.playing ? stop() : play()),
  "s": () => edit(S.frame, S.ep.length, 1),
  "f": () => edit(S.frame, S.ep.length, 0),
  "[": () => { S.start = S.frame; drawTimeline(); hil.status(`span starts at frame ${S.frame}`); },
  "]": () => {
    if (S.start === null) return hil.status("press [ at the span's first frame first", "error");
    S.endFrame = S.frame;
    drawTimeline();
    const [a, b] = markedSpan();
    hil.status(`span frames ${a}–${b - 1}: press 1 (success) or 0 (no success)`);
  },
  "1": () => labelSpan(1),
  "0": () => labelSpan(0),
  "u": () => undo(),
  "n": () => nextSuspect(1),
  "p": () => nextSuspect(-1),
};

function bindControls() {
  hil.onKeys(actions);
  for (const button of document.querySelectorAll(".controls button")) {
    button.addEventListener("click", () => { button.blur(); actions[button.dataset.key](); });
  }
  hil.onScrub($("timeline"), x => {
    if (!S.ep) return false;
    seek(Math.floor(x * S.ep.length));
  });
}

init();
