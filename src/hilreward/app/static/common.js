"use strict";
// Shared by every page: api() (JSON fetch; errors become Error(message) and show in #status), the
// navigation bar (from /api/pages), onKeys() (key bindings that ignore typing in form fields), and the
// canvas helpers of the timelines: canvas2d() (a crisp 2-D context at the screen's pixel ratio, with the
// page's CSS colours) and onScrub() (press or drag along a canvas: the fraction of its width).
const hil = {
  async api(method, url, body) {
    const opts = {method, headers: {}};
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const response = await fetch(url, opts);
    let data = null;
    try { data = await response.json(); } catch (e) { /* not JSON */ }
    if (!response.ok) {
      let msg = data && data.detail;
      if (Array.isArray(msg)) msg = msg.map(d => (d.loc || []).join(".") + ": " + d.msg).join("; ");
      throw new Error(msg || `${response.status} ${response.statusText}`);
    }
    return data;
  },
  status(text, kind) {
    const el = document.getElementById("status");
    if (!el) return;
    el.textContent = text || "";
    el.className = "status " + (kind || "");
  },
  async nav(current) {
    const nav = document.getElementById("nav");
    if (!nav) return;
    for (const page of await hil.api("GET", "/api/pages")) {
      const a = document.createElement("a");
      a.href = page.url;
      a.textContent = page.title;
      if (page.name === current) a.className = "current";
      nav.appendChild(a);
    }
  },
  canvas2d(canvas) {
    const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    const css = getComputedStyle(document.documentElement), color = name => css.getPropertyValue(name).trim();
    return {g, w, h, color};
  },
  onScrub(canvas, at) {  // at(fraction in [0, 1), event): while the pointer is pressed on the canvas
    let dragging = false;
    const fraction = event => {
      const r = canvas.getBoundingClientRect();
      return Math.max(0, Math.min(0.999999, (event.clientX - r.left) / r.width));
    };
    canvas.addEventListener("pointerdown", event => {
      if (at(fraction(event), event) === false) return;  // at() may refuse (nothing to scrub yet)
      dragging = true;
      canvas.setPointerCapture(event.pointerId);
    });
    canvas.addEventListener("pointermove", event => { if (dragging) at(fraction(event), event); });
    canvas.addEventListener("pointerup", () => { dragging = false; });
  },
  onKeys(bindings) {
    document.addEventListener("keydown", event => {
      const t = event.target;
      if (t && (t.tagName === "INPUT" && t.type !== "checkbox" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      const name = (event.shiftKey && event.key.startsWith("Arrow") ? "Shift+" : "") + event.key;
      const action = bindings[name];
      if (!action) return;
      event.preventDefault();
      action(event);
    });
  },
};
