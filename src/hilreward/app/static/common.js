"use strict";
// Shared by every page: api() (JSON fetch; errors become Error(message) and show in #status), the
// navigation bar (from /api/pages) and onKeys() (key bindings that ignore typing in form fields).
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
