/* app.js: the TinyFleet operator dashboard. Reads the REST API with a Bearer token
   (taken once from ?token= and kept in localStorage), follows /api/v1/stream (SSE) for
   live changes, and renders with plain DOM calls (text only, never HTML from data). */
"use strict";

const TOKEN_KEY = "tinyfleet.token";
const S = {
  token: "", nodes: new Map(), sites: [], models: [], jobs: new Map(), deps: new Map(),
  dep: null, depId: null, job: null, mv: null, tele: { node: "", model: "", records: [] },
  reports: new Map(), source: null, timers: {},
};
const $ = id => document.getElementById(id);

/* ------------------------------------------------------------------ helpers */

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid);
  return el;
}

function ago(ms) {
  if (!ms) return "never";
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 2) return "just now";
  if (s < 90) return s + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 129600) return Math.round(s / 3600) + " h ago";
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
}

const pct = v => (v === null || v === undefined) ? "–" : (100 * v).toFixed(1) + " %";
const num = v => typeof v === "number" ? +v.toPrecision(4) + "" : String(v);
const badge = (text, testid) => h("span", { class: "badge s-" + String(text).toLowerCase(), "data-testid": testid, text });

function flash(text, kind) {
  const el = $("flash");
  el.textContent = text;
  el.className = "banner " + (kind || "info");
  el.hidden = false;
  clearTimeout(S.timers.flash);
  S.timers.flash = setTimeout(() => { el.hidden = true; }, 8000);
}

/* debounce per key: many SSE events in a burst cause one refetch */
function soon(key, fn, ms = 250) {
  clearTimeout(S.timers[key]);
  S.timers[key] = setTimeout(() => fn().catch(report), ms);
}

/* ------------------------------------------------------------------ API + auth */

class ApiError extends Error {
  constructor(status, detail) {
    super(status + ": " + detail);
    this.status = status;
    this.detail = detail;
  }
}

function takeToken() {
  const url = new URL(location.href);
  const t = url.searchParams.get("token");
  if (t !== null) {
    localStorage.setItem(TOKEN_KEY, t);
    url.searchParams.delete("token");           // keep the secret out of the address bar and history
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  return localStorage.getItem(TOKEN_KEY) || "";
}

function detailText(body) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map(d => (d.loc || []).slice(1).join(".") + ": " + d.msg).join("; ");
  }
  return JSON.stringify(body);
}

async function api(path, method = "GET", body = undefined, raw = false) {
  const headers = { Authorization: "Bearer " + S.token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  (window.__inflight = window.__inflight || new Set()).add(path);   // requests on their way (test failure reports)
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "cannot reach the cloud (" + e.message + ")");
  } finally { window.__inflight.delete(path); }
  if (!r.ok) {
    let detail;
    try { detail = detailText(await r.json()); } catch (e) { detail = r.statusText; }
    const err = new ApiError(r.status, detail);
    if (r.status === 401 || r.status === 403) authError(err);
    throw err;
  }
  if (raw) return r.blob();
  return r.json();
}

function authError(err) {
  const text = err.status === 401
    ? `Not signed in (401: ${err.detail}). Open this page as /?token=<viewer or operator token>, or paste a token below.`
    : `Not allowed (403: ${err.detail}). Viewer tokens can only look; actions need an operator token.`;
  showTokenForm(text, err.status);
}

function showTokenForm(text, status) {
  $("auth-error-text").textContent = text;
  $("auth-error").dataset.status = status || "";
  $("auth-error").hidden = false;
}

function report(err) {
  console.error("dashboard:", String(err));
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return;  // banner shown
  flash(err instanceof ApiError ? `Error ${err.status}: ${err.detail}` : String(err), "error");
}

/* ------------------------------------------------------------------ fleet */

async function loadFleet() {
  const [sites, nodes] = await Promise.all([api("/api/v1/sites"), api("/api/v1/nodes")]);
  S.sites = sites;
  S.nodes = new Map(nodes.map(n => [n.id, n]));
  renderFleet();
  fillSelects();
}

function renderFleet() {
  const nodes = [...S.nodes.values()].sort((a, b) => a.id.localeCompare(b.id));
  const online = nodes.filter(n => n.online).length;
  $("fleet-summary").textContent =
    `${nodes.length} nodes · ${online} online · ${S.sites.length} sites`;
  $("sites-table").tBodies[0].replaceChildren(...S.sites.map(s => h("tr", { "data-testid": "site-" + s.id },
    h("td", { text: s.id }), h("td", { text: s.gateway }),
    h("td", { "data-testid": "site-online-" + s.id, text: `${s.online} / ${s.nodes}` }),
    h("td", { text: pct(s.anomaly_rate) }), h("td", { text: ago(s.last_seen) }))));
  $("nodes-empty").hidden = nodes.length > 0;
  $("nodes-table").tBodies[0].replaceChildren(...nodes.map(n => {
    const lr = n.last_result;
    const last = lr ? `${lr.model} v${lr.model_version}: ${num(lr.result)} (score ${num(lr.score)}, #${lr.seq})` : "–";
    const models = Object.entries(n.models || {}).map(([m, v]) => `${m} v${v}`).join(", ") || "–";
    return h("tr", {
      "data-testid": "node-row-" + n.id, class: n.id === S.tele.node ? "selected" : "",
      onclick: () => selectTelemetry(n.id, lr ? lr.model : ""),
    },
    h("td", {}, badge(n.online ? "online" : "offline", "node-online-" + n.id)),
    h("td", { text: n.id }), h("td", { text: n.site }), h("td", { text: n.board || "–" }),
    h("td", { text: n.fw || "–" }), h("td", { text: models }),
    h("td", { "data-testid": "node-last-" + n.id, text: last }),
    h("td", { text: pct(n.anomaly_rate) }),
    h("td", { text: n.free_mem === null || n.free_mem === undefined ? "–" : n.free_mem + " B" }),
    h("td", { text: (n.tags || []).join(", ") }), h("td", { text: ago(n.last_seen) }));
  }));
}

function onNode(n) {
  const old = S.nodes.get(n.id);
  if (old && n.anomaly_rate === undefined) n.anomaly_rate = old.anomaly_rate;
  S.nodes.set(n.id, { ...(old || {}), ...n });
  renderFleet();
  if (!old) fillSelects();
  soon("sites", async () => { S.sites = await api("/api/v1/sites"); renderFleet(); }, 500);
}

/* ------------------------------------------------------------------ telemetry */

function kindOf(model, records) {
  if (model === "sine") return "sine";
  if (model === "anomaly") return "anomaly";
  if (records.some(r => typeof r.result === "string") || model === "keyword" || model === "weather") return "classes";
  return "series";
}

function selectTelemetry(node, model) {
  S.tele.node = node;
  const n = S.nodes.get(node);
  const models = n ? modelsOf(n) : [];
  S.tele.model = model || models[0] || "";
  S.tele.records = [];
  S.tele.loaded = false;               // data-for stays empty until this node's records arrived
  fillTeleSelects();
  renderTelemetry();
  renderFleet();
  loadTelemetry().catch(report);
}

function modelsOf(n) {
  const out = new Set(Object.keys(n.models || {}));
  if (n.last_result) out.add(n.last_result.model);
  return [...out].sort();
}

function fillTeleSelects() {
  const nodes = [...S.nodes.keys()].sort();
  if (!S.tele.node && nodes.length) {
    const first = [...S.nodes.values()].filter(n => n.last_result).sort((a, b) => a.id.localeCompare(b.id))[0];
    S.tele.node = first ? first.id : nodes[0];
    S.tele.model = first ? first.last_result.model : "";
  }
  setOptions($("tele-node"), nodes, S.tele.node);
  const n = S.nodes.get(S.tele.node);
  const models = n ? modelsOf(n) : [];
  if (!models.includes(S.tele.model)) S.tele.model = models[0] || "";
  setOptions($("tele-model"), models, S.tele.model);
}

async function loadTelemetry() {
  const { node, model } = S.tele;
  if (!node || !model) { S.tele.records = []; S.tele.loaded = true; renderTelemetry(); return; }
  const q = new URLSearchParams({ node, model, limit: "300" });
  const recs = await api("/api/v1/telemetry?" + q);
  if (node !== S.tele.node || model !== S.tele.model) return;   // the user moved on meanwhile
  if (model === "anomaly") await loadThresholds(recs);
  if (node !== S.tele.node || model !== S.tele.model) return;
  S.tele.records = recs;
  S.tele.loaded = true;
  renderTelemetry();
}

/* the anomaly threshold lives in each version's report.json (written by training) */
async function loadThresholds(recs) {
  for (const v of new Set(recs.map(r => r.model_version))) {
    const key = "anomaly/" + v;
    if (S.reports.has(key)) continue;
    S.reports.set(key, null);
    try {
      const blob = await api(`/api/v1/models/anomaly/${v}/artifacts/report.json`, "GET", undefined, true);
      S.reports.set(key, JSON.parse(await blob.text()));
    } catch (e) { /* no report for this version: no threshold line */ }
  }
}

function renderTelemetry() {
  const { model, records } = S.tele;
  const canvas = $("tele-plot"), bars = $("tele-bars"), list = $("tele-events");
  const kind = kindOf(model, records);
  canvas.dataset.kind = kind;
  canvas.dataset.for = S.tele.loaded ? `${S.tele.node}/${model}` : "";
  canvas.dataset.points = records.length;
  canvas.dataset.threshold = "";
  bars.hidden = list.hidden = kind !== "classes";
  const last = records[records.length - 1];
  $("tele-latest").textContent = last
    ? `latest #${last.seq}: ${num(last.result)} (score ${num(last.score)}) · ${ago(last.ts)}` : "no records";
  /* x axis: seconds since the first record, or the sample number when they share a time */
  const t0 = records.length ? records[0].ts : 0;
  const byTime = records.length > 1 && last.ts - t0 >= 1000;
  const index = new Map(records.map((r, i) => [r, i]));
  const secs = r => byTime ? (r.ts - t0) / 1000 : index.get(r);
  const xlabel = byTime ? "seconds" : "sample";
  const empty = S.tele.node ? `no ${model || ""} telemetry from ${S.tele.node} yet` : "no node selected";
  if (kind === "sine") {
    const withX = records.filter(r => r.features && r.features.length >= 1 && typeof r.result === "number");
    if (withX.length) {
      const truth = [];
      for (let i = 0; i <= 64; i++) { const x = i / 64 * 2 * Math.PI; truth.push([x, Math.sin(x)]); }
      Plot.lines(canvas, {
        series: [{ label: "truth sin(x)", color: "#9aa5b1", points: truth },
                 { label: "model output", color: "#2f6fd0", style: "dots", points: withX.map(r => [r.features[0], r.result]) }],
        xmin: 0, xmax: 2 * Math.PI, ymin: -1.2, ymax: 1.2, xlabel: "x (rad)", empty,
      });
      return;
    }
  }
  if (kind === "anomaly") {
    const rep = last ? S.reports.get("anomaly/" + last.model_version) : null;
    const thr = rep && typeof rep.threshold === "number" ? rep.threshold : null;
    canvas.dataset.threshold = thr === null ? "" : thr;
    Plot.lines(canvas, {
      series: [{ label: "score", color: "#7f8c9d", points: records.map(r => [secs(r), r.score]) },
               { label: "anomaly", color: "#c0392b", style: "dots",
                 points: records.filter(r => r.result === 1 || r.result === "anomaly").map(r => [secs(r), r.score]) }],
      hlines: thr === null ? [] : [{ y: thr, label: "threshold " + num(thr), color: "#c0392b" }],
      ymin: 0, xlabel, empty,
    });
    return;
  }
  if (kind === "classes") {
    const names = [...new Set(records.map(r => String(r.result)))].sort();
    Plot.lines(canvas, {
      series: [{ label: "class", color: "#2f6fd0", style: "dots",
                 points: records.map(r => [secs(r), names.indexOf(String(r.result))]) }],
      ycats: names, xlabel, empty,
    });
    const counts = names.map(c => ({ label: c, value: records.filter(r => String(r.result) === c).length }));
    Plot.bars(bars, { bars: counts, empty });
    list.replaceChildren(...records.slice(-12).reverse().map(r =>
      h("li", { text: `${new Date(r.ts).toLocaleTimeString()}  ${r.result}  (score ${num(r.score)})` })));
    return;
  }
  Plot.lines(canvas, {
    series: [{ label: "result", color: "#2f6fd0", points: records.map(r => [secs(r), Number(r.result)]) }],
    xlabel, empty,
  });
}

function onTelemetry(ev) {
  for (const r of ev.records) {
    const n = S.nodes.get(r.node);
    if (n) {
      const lr = n.last_result;
      if (!lr || r.ts >= lr.ts) n.last_result = r;
      n.last_seen = Math.max(n.last_seen || 0, Date.now());
    }
  }
  renderFleet();
  if (ev.records.some(r => r.node === S.tele.node && r.model === S.tele.model)) {
    soon("telemetry", loadTelemetry, 200);        // refetch: the stream omits the features
  } else if (!S.tele.model && ev.records.some(r => r.node === S.tele.node)) {
    fillTeleSelects();
    soon("telemetry", loadTelemetry, 200);
  }
}

/* ------------------------------------------------------------------ model registry */

async function loadModels() {
  S.models = await api("/api/v1/models");
  renderModels();
  fillSelects();
}

function renderModels() {
  $("models-list").replaceChildren(...S.models.map(m => h("div", { class: "model", "data-testid": "model-" + m.name },
    h("h3", { text: `${m.name}  (active: ${m.active === null ? "none" : "v" + m.active})` }),
    h("table", { class: "clickable" },
      h("thead", {}, h("tr", {}, ...["v", "status", "source", "key metric", "checks", "parent", ""].map(t => h("th", { text: t })))),
      h("tbody", {}, ...[...m.versions].reverse().map(v => versionRow(m, v)))))));
}

function versionRow(m, v) {
  const metric = Object.entries(v.metrics || {})[0];
  const checks = v.checks && "passed" in v.checks ? (v.checks.passed ? "passed" : "failed") : "–";
  const act = (what) => async (e) => {
    e.stopPropagation();
    try {
      await api(`/api/v1/models/${m.name}/${v.version}/${what}`, "POST");
      flash(`${m.name} v${v.version}: ${what}d`);
      await loadModels();
    } catch (err) { report(err); }
  };
  const id = `${m.name}-${v.version}`;
  return h("tr", { "data-testid": "mv-" + id, class: S.mv === id ? "selected" : "", onclick: () => showVersion(m.name, v.version) },
    h("td", { text: "v" + v.version }), h("td", {}, badge(v.status, "mv-status-" + id)),
    h("td", { text: v.source || "" }),
    h("td", { text: metric ? `${metric[0]} = ${num(metric[1])}` : "–" }), h("td", { text: checks }),
    h("td", { text: v.lineage && v.lineage.parent_version !== null ? "v" + v.lineage.parent_version : "–" }),
    h("td", { class: "actions" },
      h("button", { type: "button", "data-testid": "promote-" + id, disabled: v.status === "active" || v.status === "rejected",
                    onclick: act("promote"), text: "promote" }),
      h("button", { type: "button", "data-testid": "retire-" + id, disabled: v.status === "retired" || v.status === "rejected",
                    onclick: act("retire"), text: "retire" })));
}

async function showVersion(name, version) {
  S.mv = `${name}-${version}`;
  renderModels();
  const v = await api(`/api/v1/models/${name}/${version}`);
  $("mv-detail").hidden = false;
  $("mv-title").textContent = `${name} v${version} · ${v.status} · sha256 ${String(v.sha256 || "–").slice(0, 12)}…`;
  const rows = Object.entries(v.metrics || {}).map(([k, x]) => [k, num(x)]);
  if (v.checks && v.checks.held_out) rows.push(["held-out check", JSON.stringify(v.checks.held_out)]);
  if (v.checks && v.checks.vs_active) rows.push(["vs active", v.checks.vs_active.passed ? "passed" : "failed"]);
  if (v.lineage && v.lineage.data) rows.push(["data", v.lineage.data]);
  rows.push(["artifacts", v.artifacts.map(a => `${a} (${v.sizes[a]} B)`).join(", ")]);
  $("mv-metrics").tBodies[0].replaceChildren(...rows.map(([k, x]) => h("tr", {}, h("th", { text: k }), h("td", { text: x }))));
  const pngs = v.artifacts.filter(a => a.endsWith(".png"));
  const plots = $("mv-plots");
  plots.replaceChildren(...(pngs.length ? [] : [h("p", { class: "muted", text: "no report plots" })]));
  for (const file of pngs) {           // <img> cannot send the Bearer header: fetch, then a blob URL
    const blob = await api(`/api/v1/models/${name}/${version}/artifacts/${encodeURIComponent(file)}`, "GET", undefined, true);
    plots.append(h("figure", {}, h("img", { src: URL.createObjectURL(blob), alt: file, "data-testid": "plot-" + file }),
      h("figcaption", { text: file })));
  }
}

function onModel() { soon("models", loadModels, 200); }

/* ------------------------------------------------------------------ jobs */

async function loadJobs() {
  const jobs = await api("/api/v1/jobs");
  const fresh = new Map(jobs.map(j => [j.id, j]));
  for (const [id, j] of S.jobs) if (!fresh.has(id)) fresh.set(id, j);   // created while this list was on its way
  S.jobs = fresh;
  renderJobs();
}

function renderJobs() {
  const jobs = [...S.jobs.values()].sort((a, b) => b.id - a.id);
  $("jobs-table").tBodies[0].replaceChildren(...jobs.map(j => h("tr", {
    "data-testid": "job-row-" + j.id, class: S.job === j.id ? "selected" : "", onclick: () => { S.job = j.id; renderJobs(); },
  },
  h("td", { text: j.id }), h("td", { text: j.model }), h("td", { text: j.site || "all" }), h("td", { text: j.trigger }),
  h("td", {}, badge(j.status, "job-status-" + j.id)),
  h("td", {}, h("progress", { max: "1", value: String(j.progress || 0) }), " " + Math.round(100 * (j.progress || 0)) + " %"),
  h("td", { text: j.result_version ? "v" + j.result_version : (j.error || "–") }), h("td", { text: ago(j.created) }))));
  const j = S.jobs.get(S.job);
  $("job-log").hidden = !j;
  if (j) $("job-log").textContent = `job #${j.id} (${j.status})\n` + (j.log || []).join("\n") + (j.error ? "\nerror: " + j.error : "");
}

function onJob(j) {
  S.jobs.set(j.id, j);
  renderJobs();
  if (j.result_version) onModel();
}

async function startJob(e) {
  e.preventDefault();
  $("job-form-error").textContent = "";
  const body = { model: $("job-model").value, reason: $("job-reason").value || "started from the dashboard" };
  if ($("job-site").value) body.site = $("job-site").value;
  try {
    const j = await api("/api/v1/jobs", "POST", body);
    S.job = j.id;
    onJob(j);
    flash(`retraining job #${j.id} queued`);
  } catch (err) {
    $("job-form-error").textContent = `${err.status || ""} ${err.detail || err}`;
    report(err);
  }
}

/* ------------------------------------------------------------------ deployments */

async function loadDeployments() {
  const deps = await api("/api/v1/deployments");
  const fresh = new Map(deps.map(d => [d.id, d]));
  for (const [id, d] of S.deps) if (!fresh.has(id)) fresh.set(id, d);
  S.deps = fresh;
  if (!S.depId && deps.length) S.depId = deps[0].id;
  renderDeployments();
  if (S.depId) await loadDeployment();
}

function total(d) { return Object.values(d.counts || {}).reduce((a, b) => a + b, 0); }
function finished(d) { return (d.waves || []).reduce((a, w) => a + w.finished, 0); }
function countsText(counts) { return Object.entries(counts || {}).sort().map(([k, v]) => `${k} ${v}`).join(" · "); }
function targetText(t) {
  return Object.entries(t || {}).filter(([, v]) => v && v.length).map(([k, v]) => `${k}=${[].concat(v).join(",")}`).join(" ") || "–";
}

function renderDeployments() {
  const deps = [...S.deps.values()].sort((a, b) => b.created - a.created);
  $("deps-table").tBodies[0].replaceChildren(...deps.map(d => h("tr", {
    "data-testid": "dep-row-" + d.id, class: d.id === S.depId ? "selected" : "",
    onclick: () => { S.depId = d.id; renderDeployments(); loadDeployment().catch(report); },
  },
  h("td", { text: d.id + (d.rollback_of ? " (rollback)" : "") }), h("td", { text: `${d.model} v${d.version}` }),
  h("td", { text: targetText(d.target) }), h("td", {}, badge(d.state, "dep-row-state-" + d.id)),
  h("td", {}, h("progress", { max: String(total(d) || 1), value: String(finished(d)) }), ` ${finished(d)}/${total(d)}`),
  h("td", { text: countsText(d.counts) }), h("td", { text: ago(d.created) }))));
  renderDeployment();
}

async function loadDeployment() {
  const id = S.depId;
  const d = await api("/api/v1/deployments/" + encodeURIComponent(id));
  if (id !== S.depId) return;
  S.dep = d;
  S.deps.set(d.id, { ...d, nodes: undefined });
  renderDeployments();
  if (d.rollback && !S.deps.has(d.rollback)) soon("deps", loadDeployments, 300);
}

function renderDeployment() {
  const d = S.dep && S.dep.id === S.depId ? S.dep : null;
  $("dep-detail").hidden = !d;
  if (!d) return;
  $("dep-id").textContent = d.id;
  const st = $("dep-state");
  st.textContent = d.state;
  st.className = "badge s-" + d.state;
  $("dep-reason").textContent = [d.reason, `failures ${d.failure_pct.toFixed(0)} % (abort above ${d.abort.failure_pct} % after ${d.abort.min_nodes})`,
    d.rollback_of ? "rolls back " + d.rollback_of : null, d.rollback ? "rolled back by " + d.rollback : null]
    .filter(Boolean).join(" · ");
  const active = d.state === "running" || d.state === "paused";
  $("dep-pause").disabled = d.state !== "running";
  $("dep-resume").disabled = d.state !== "paused";
  $("dep-cancel").disabled = $("dep-abort").disabled = !active;
  $("dep-waves").replaceChildren(...d.waves.map(w => h("div", {
    class: "wave", "data-testid": "dep-wave-" + w.index, "data-finished": w.finished, "data-size": w.size,
  },
  h("span", { class: "wave-label", text: `wave ${w.index}${w.canary ? " (canary)" : ""}` }),
  h("progress", { max: String(w.size), value: String(w.finished) }),
  h("span", { text: `${w.finished}/${w.size} done · ${w.sent_at ? "sent " + ago(w.sent_at) : "not sent"} · ${countsText(w.states)}` }))));
  $("dep-nodes-table").tBodies[0].replaceChildren(...d.nodes.map(n => h("tr", { "data-testid": "dep-node-" + n.node, "data-wave": n.wave },
    h("td", { text: n.node }), h("td", { text: n.wave }),
    h("td", { text: `${n.prev_version === null ? "–" : "v" + n.prev_version} → v${n.version}` }),
    h("td", {}, badge(n.state, "dep-node-state-" + n.node)), h("td", { text: n.reason || "" }),
    h("td", { text: n.progress === null || n.progress === undefined ? "" : Math.round(100 * n.progress) + " %" }),
    h("td", { text: ago(n.updated) }))));
}

function onDeployment(ev) {
  if (ev.node !== undefined && ev.waves === undefined) {      // one node's new state
    if (S.dep && S.dep.id === ev.id) {
      const n = S.dep.nodes.find(x => x.node === ev.node);
      if (n) { n.state = ev.state; n.reason = ev.reason; n.updated = Date.now(); renderDeployment(); }
    }
  } else {
    S.deps.set(ev.id, ev);
    if (!S.depId) S.depId = ev.id;
    renderDeployments();
  }
  /* a rollback's progress changes its parent's node states too, without an event of the parent's own */
  const related = ev.id === S.depId || (S.deps.get(ev.id) || {}).rollback_of === S.depId;
  if (related) soon("dep", loadDeployment, 150);
  /* the stream has no event for a new rollback deployment: its parent names it */
  if (!S.deps.has(ev.id) || (ev.rollback && !S.deps.has(ev.rollback))) soon("deps", loadDeployments, 300);
}

async function deploy(e) {
  e.preventDefault();
  $("dep-form-error").textContent = "";
  const list = id => $(id).value.split(",").map(s => s.trim()).filter(Boolean);
  const target = {};
  if ($("dep-site").value) target.site = $("dep-site").value;
  if (list("dep-tags").length) target.tags = list("dep-tags");
  if (list("dep-nodes").length) target.nodes = list("dep-nodes");
  const body = {
    model: $("dep-model").value, version: Number($("dep-version").value), target,
    canary: Number($("dep-canary").value),
    wave: { mode: $("dep-wave-mode").value, size: Number($("dep-wave-size").value), interval_s: Number($("dep-interval").value) },
    abort: { failure_pct: Number($("dep-failure-pct").value), min_nodes: Number($("dep-min-nodes").value) },
  };
  if (!Object.keys(target).length) { $("dep-form-error").textContent = "choose a target: a site, tags or nodes"; return; }
  $("dep-submit").disabled = true;
  try {
    const d = await api("/api/v1/deployments", "POST", body);
    S.depId = d.id;
    S.dep = d;
    S.deps.set(d.id, { ...d, nodes: undefined });
    renderDeployments();
    flash(`deployment ${d.id} started: ${d.nodes.length} nodes in ${d.waves.length} waves`);
  } catch (err) {
    $("dep-form-error").textContent = `${err.status || ""} ${err.detail || err}`;
    report(err);
  } finally {
    $("dep-submit").disabled = false;
  }
}

async function depAction(what) {
  try {
    S.dep = await api(`/api/v1/deployments/${encodeURIComponent(S.depId)}/${what}`, "POST");
    S.deps.set(S.dep.id, { ...S.dep, nodes: undefined });
    renderDeployments();
    if (S.dep.rollback && !S.deps.has(S.dep.rollback)) soon("deps", loadDeployments, 300);
  } catch (err) { report(err); }
}

/* ------------------------------------------------------------------ form selects */

function setOptions(select, values, current, blank) {
  const opts = (blank !== undefined ? [["", blank]] : []).concat(values.map(v => Array.isArray(v) ? v : [v, v]));
  const keep = current !== undefined ? current : select.value;
  select.replaceChildren(...opts.map(([v, label]) => h("option", { value: v, text: label })));
  if (opts.some(([v]) => String(v) === String(keep))) select.value = keep;
}

function fillSelects() {
  const names = S.models.map(m => m.name);
  setOptions($("dep-model"), names);
  setOptions($("job-model"), names);
  const sites = S.sites.map(s => s.id);
  setOptions($("dep-site"), sites, undefined, "(any)");
  setOptions($("job-site"), sites, undefined, "(all sites)");
  fillVersions();
  fillTeleSelects();
}

function fillVersions() {
  const m = S.models.find(x => x.name === $("dep-model").value);
  const versions = m ? m.versions.filter(v => v.status === "candidate" || v.status === "active") : [];
  setOptions($("dep-version"), versions.reverse().map(v => [v.version, `v${v.version} (${v.status})`]));
}

/* ------------------------------------------------------------------ live stream */

function connect() {
  if (S.source) S.source.close();
  const live = $("live");
  const src = new EventSource("/api/v1/stream?token=" + encodeURIComponent(S.token));
  S.source = src;
  src.onopen = () => { live.dataset.state = "live"; live.textContent = "● live"; };
  src.onerror = () => {
    if (src.readyState === EventSource.CLOSED) {   // refused (e.g. 401): find out why, retry later
      live.dataset.state = "offline"; live.textContent = "○ offline";
      api("/api/v1/sites").then(() => setTimeout(connect, 3000), report);
    } else {
      live.dataset.state = "reconnecting"; live.textContent = "◌ reconnecting…";
    }
  };
  const on = (kind, fn) => src.addEventListener(kind, e => {
    try { fn(JSON.parse(e.data)); } catch (err) { console.error(kind, err); }
  });
  on("telemetry", onTelemetry);
  on("node", onNode);
  on("deployment", onDeployment);
  on("job", onJob);
  on("model", onModel);
}

/* ------------------------------------------------------------------ start */

async function loadAll() {
  $("auth-error").hidden = true;
  await loadModels();
  await Promise.all([loadFleet(), loadJobs(), loadDeployments()]);
  await loadTelemetry();
  document.body.dataset.loaded = "yes";
}

function start() {
  S.token = takeToken();
  $("token-form").addEventListener("submit", e => {
    e.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    location.reload();
  });
  $("token-change").addEventListener("click", () => {
    showTokenForm("Paste a viewer or operator token; it is kept in this browser (localStorage).");
    $("token-input").focus();
  });
  $("dep-form").addEventListener("submit", deploy);
  $("dep-model").addEventListener("change", fillVersions);
  $("job-form").addEventListener("submit", startJob);
  for (const what of ["pause", "resume", "cancel", "abort"]) $("dep-" + what).addEventListener("click", () => depAction(what));
  $("tele-node").addEventListener("change", e => selectTelemetry(e.target.value, ""));
  $("tele-model").addEventListener("change", e => selectTelemetry(S.tele.node, e.target.value));
  window.addEventListener("resize", () => soon("resize", async () => renderTelemetry(), 150));
  if (!S.token) {
    showTokenForm("No token yet. Open this page as /?token=<viewer or operator token>, or paste a token below.", 401);
    $("live").textContent = "○ offline";
    $("live").dataset.state = "offline";
    return;
  }
  /* close the stream when the page goes away: a page kept in the back/forward cache would
     otherwise hold its connection, and a browser allows only 6 per host */
  window.addEventListener("pagehide", () => { if (S.source) S.source.close(); });
  window.addEventListener("pageshow", e => { if (e.persisted) connect(); });
  connect();            // first, so that nothing that happens while the lists load is missed
  loadAll().catch(err => {
    report(err);
    if (err instanceof ApiError && err.status === 401) {
      S.source.close();
      $("live").textContent = "○ offline";
      $("live").dataset.state = "offline";
    }
  });
  /* online status ages without events: refresh the fleet now and then */
  setInterval(() => { if ($("auth-error").hidden) loadFleet().catch(report); }, 20000);
  setInterval(() => { renderJobs(); renderDeployment(); }, 5000);
}

start();
