// logwarden's dashboard: plain JavaScript, no build step, nothing fetched from outside.
// Everything it shows comes from the API with the token kept in sessionStorage; values are
// written with textContent, never as HTML, so log text cannot run in the page.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("logwarden-token"), page: "overview", sort: "count", chart: null, timer: null };

// Problems the page meets (script errors, CSP violations) are listed in #diagnostics, so a
// headless browser test can read them from the DOM.
function diagnose(kind, text) {
  const li = document.createElement("li");
  li.dataset.kind = kind;
  li.textContent = `${kind}: ${text}`;
  $("diagnostics").appendChild(li);
}
// Capturing, so a script or style sheet that fails to load is caught too.
window.addEventListener("error", (e) => diagnose("error", e.message || `failed to load ${e.target && (e.target.src || e.target.href)}`), true);
window.addEventListener("unhandledrejection", (e) => diagnose("rejection", String(e.reason)));
const consoleError = console.error.bind(console);
console.error = (...args) => { diagnose("console", args.join(" ")); consoleError(...args); };
document.addEventListener("securitypolicyviolation", (e) => diagnose("csp", `${e.violatedDirective} ${e.blockedURI}`));

function fragment() {
  return new URLSearchParams(location.hash.slice(1));
}

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const resp = await fetch(url, { headers: { Authorization: `Bearer ${state.token}` } });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(body.error ? body.error.message : `HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return body;
}

function range() {
  const w = $("window").value;
  if (w === "custom") return { from: $("from").value, to: $("to").value || "now" };
  return { from: `now-${w}`, to: "now" };
}

const ms = (v) => (v === null || v === undefined ? "-" : v.toFixed(1));
const pct = (v) => `${(v * 100).toFixed(2)} %`;

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

// One event as a table row: time, status, method, path (secrets shown redacted), duration, client.
function eventRow(h, className) {
  const tr = document.createElement("tr");
  if (className) tr.className = className;
  tr.dataset.id = h.id;
  cell(tr, new Date(h.timestamp_ms).toISOString());
  cell(tr, h.status ?? "-", "num");
  cell(tr, h.method ?? "-");
  redactedText(cell(tr, ""), (h.path ?? h.raw ?? "") + (h.query ? `?${h.query}` : ""));
  cell(tr, h.duration_ms === undefined ? "-" : h.duration_ms.toFixed(1), "num");
  cell(tr, h.client_ip ?? "-");
  return tr;
}

// Shows redacted values as such: the text is split on [REDACTED...] and those parts marked.
function redactedText(td, text) {
  td.textContent = "";
  for (const part of String(text).split(/(\[REDACTED(?::[0-9a-f]+)?\])/)) {
    if (!part) continue;
    if (part.startsWith("[REDACTED")) {
      const s = document.createElement("span");
      s.className = "redacted";
      s.textContent = part;
      td.appendChild(s);
    } else {
      td.appendChild(document.createTextNode(part));
    }
  }
}

async function loadOverview() {
  const r = range();
  const route = $("route").value;
  const stats = await api("/api/v1/stats", { ...r, route, sort: state.sort === "key" ? "count" : state.sort, limit: 200 });
  const t = stats.total;
  $("total-count").textContent = t.count;
  $("total-rps").textContent = t.rps.toFixed(2);
  $("total-errors").textContent = pct(t.error_rate);
  $("total-latency").textContent = `${ms(t.p50_ms)} / ${ms(t.p95_ms)} / ${ms(t.p99_ms)}`;
  const groups = state.sort === "key" ? [...stats.groups].sort((a, b) => a.key.localeCompare(b.key)) : stats.groups;
  const body = $("routes").tBodies[0];
  body.textContent = "";
  for (const g of groups) {
    const tr = document.createElement("tr");
    tr.dataset.route = g.key;
    cell(tr, g.key);
    cell(tr, g.count, "num");
    cell(tr, g.rps.toFixed(3), "num");
    cell(tr, ms(g.p50_ms), "num");
    cell(tr, ms(g.p95_ms), "num");
    cell(tr, ms(g.p99_ms), "num");
    cell(tr, ms(g.max_ms), "num");
    cell(tr, pct(g.error_rate), "num");
    cell(tr, g.slow_count, "num");
    cell(tr, g.apdex === null ? "-" : g.apdex.toFixed(2), "num");
    tr.addEventListener("click", () => { $("route").value = g.key; loadOverview(); });
    body.appendChild(tr);
  }
  $("routes-shown").textContent = stats.groups_total > groups.length ? `(${groups.length} of ${stats.groups_total})` : "";
  $("routes-shown").dataset.total = stats.groups_total;
  await drawChart(stats.from, stats.to, route);
  // The slowest routes by p99 and their slowest requests, linked to their context.
  const slow = await api("/api/v1/stats/slow", { from: Math.floor(stats.from / 1000), to: Math.ceil(stats.to / 1000), n: 5, requests: 3 });
  const sbody = $("slowest").tBodies[0];
  sbody.textContent = "";
  for (const r of slow.routes) {
    for (const q of r.requests) {
      const tr = document.createElement("tr");
      tr.className = "hit";
      cell(tr, r.route);
      cell(tr, ms(r.stats.p99_ms), "num");
      cell(tr, new Date(q.timestamp_ms).toISOString());
      redactedText(cell(tr, ""), q.path ?? "-");
      cell(tr, ms(q.duration_ms), "num");
      cell(tr, q.status ?? "-", "num");
      tr.addEventListener("click", () => { show("search"); state.pending = openContext(q.id); });
      sbody.appendChild(tr);
    }
  }
}

async function drawChart(from, to, route) {
  const span = to - from;
  // At most about 300 points: whole minutes per point.
  const minutes = Math.max(1, Math.ceil(span / 60000 / 300));
  const ts = await api("/api/v1/stats/timeseries", { from: Math.floor(from / 1000), to: Math.ceil(to / 1000), interval: `${minutes}m`, route });
  const xs = [], p50 = [], p95 = [], p99 = [];
  for (const p of ts.points) {
    xs.push(p.t / 1000);
    p50.push(p.p50_ms);
    p95.push(p.p95_ms);
    p99.push(p.p99_ms);
  }
  const el = $("chart");
  el.dataset.points = xs.length;
  el.dataset.maxP99 = Math.max(0, ...p99.filter((v) => v !== null));
  const data = [xs, p50, p95, p99];
  // Requests/s and the 5xx share over the same points.
  const rps = ts.points.map((p) => p.rps);
  const errors = ts.points.map((p) => (p.count ? p.error_rate * 100 : null));
  const tel = $("traffic-chart");
  tel.dataset.points = xs.length;
  tel.dataset.requests = ts.points.reduce((a, p) => a + p.count, 0);
  if (state.traffic) state.traffic.setData([xs, rps, errors]);
  else state.traffic = new uPlot({
    width: Math.max(400, tel.clientWidth || 900),
    height: 200,
    series: [{}, { label: "requests/s", stroke: "#1849a9", scale: "rps" }, { label: "5xx %", stroke: "#d92d20", scale: "pct" }],
    axes: [{}, { scale: "rps", label: "req/s" }, { scale: "pct", side: 1, label: "5xx %", grid: { show: false } }],
  }, [xs, rps, errors], tel);
  if (state.chart) {
    state.chart.setData(data);
    return;
  }
  state.chart = new uPlot({
    width: Math.max(400, el.clientWidth || 900),
    height: 260,
    series: [
      {},
      { label: "p50 ms", stroke: "#12b76a", spanGaps: false },
      { label: "p95 ms", stroke: "#f79009", spanGaps: false },
      { label: "p99 ms", stroke: "#d92d20", spanGaps: false },
    ],
    axes: [{}, { label: "ms" }],
    hooks: {
      // Selecting a range on the chart searches the requests behind it.
      setSelect: [(u) => {
        if (u.select.width < 2) return;
        const a = Math.floor(u.posToVal(u.select.left, "x"));
        const b = Math.ceil(u.posToVal(u.select.left + u.select.width, "x"));
        $("window").value = "custom";
        $("from").value = String(a);
        $("to").value = String(b);
        $("q").value = route ? `route:"${route}"` : "*";
        show("search");
        runSearch();
      }],
    },
  }, data, el);
}

async function runSearch() {
  const r = range();
  const res = await api("/api/v1/search", { q: $("q").value || "*", ...r, limit: 100 });
  $("search-summary").textContent = `${res.hits.length} of ${res.total} matching events`;
  const body = $("hits").tBodies[0];
  body.textContent = "";
  $("context").hidden = true;
  for (const h of res.hits) {
    const tr = eventRow(h, "hit");
    cell(tr, (h.anomalies || []).join(" "));
    tr.addEventListener("click", () => { state.pending = openContext(h.id); });
    body.appendChild(tr);
  }
  return res;
}

async function openContext(id) {
  const ctx = await api(`/api/v1/events/${encodeURIComponent(id)}/context`, { before: 5, after: 5 });
  const list = $("context-lines");
  list.textContent = "";
  const add = (ev, focus) => {
    const li = document.createElement("li");
    if (focus) li.className = "focus";
    li.dataset.id = ev.id;
    redactedText(li, ev.raw);
    list.appendChild(li);
  };
  ctx.before.forEach((e) => add(e, false));
  add(ctx.event, true);
  ctx.after.forEach((e) => add(e, false));
  $("context").hidden = false;
  $("context").dataset.event = id;
}

async function loadAnomalies() {
  const r = range();
  const rep = await api("/api/v1/security-report", { ...r, n: 10 });
  $("verdict").textContent = rep.status;
  for (const s of ["critical", "high", "moderate", "low"]) $(`sev-${s}`).textContent = rep.severity[s];
  const fill = (id, rows) => {
    const body = $(id).tBodies[0];
    body.textContent = "";
    for (const x of rows) {
      const tr = document.createElement("tr");
      cell(tr, x.value);
      cell(tr, x.count, "num");
      body.appendChild(tr);
    }
  };
  fill("top-clients", rep.top_clients);
  fill("top-rules", rep.top_rules);
  fill("top-families", rep.families);
  const advice = $("advice");
  advice.textContent = "";
  for (const a of rep.recommendations) {
    const li = document.createElement("li");
    li.textContent = a;
    advice.appendChild(li);
  }
  const span = rep.to - rep.from;
  const minutes = Math.max(1, Math.ceil(span / 60000 / 300));
  // One series per severity, or per top family or rule (at most five).
  const dim = $("anomaly-dim").value;
  const values = dim === "severity"
    ? ["CRITICAL", "HIGH", "MODERATE", "LOW"]
    : (dim === "family" ? rep.families : rep.top_rules).slice(0, 5).map((x) => x.value);
  const field = { severity: "severity", family: "family", rule: "anomalies" }[dim];
  const colours = ["#912018", "#d92d20", "#f79009", "#667085", "#1849a9"];
  const params = { from: Math.floor(rep.from / 1000), to: Math.ceil(rep.to / 1000), interval: `${minutes}m` };
  const per = await Promise.all(values.map((v) => api("/api/v1/stats/timeseries", { ...params, q: `${field}:"${v}"` })));
  const xs = per.length ? per[0].points.map((p) => p.t / 1000) : [];
  const data = [xs, ...per.map((ts) => ts.points.map((p) => p.count))];
  const el = $("anomaly-chart");
  el.dataset.points = xs.length;
  el.dataset.series = values.join(" ");
  el.dataset.total = data.slice(1).flat().reduce((a, b) => a + b, 0);
  // The series change with the dimension: draw a new chart each time.
  if (state.anomalyChart) state.anomalyChart.destroy();
  state.anomalyChart = new uPlot({
    width: Math.max(400, el.clientWidth || 900),
    height: 200,
    series: [{}, ...values.map((v, i) => ({ label: v, stroke: colours[i % colours.length] }))],
  }, data, el);
  const events = await api("/api/v1/search", { q: "anomaly_score:>0", ...r, limit: 50 });
  const body = $("anomaly-events").tBodies[0];
  body.textContent = "";
  for (const h of events.hits) {
    const tr = document.createElement("tr");
    tr.className = "hit";
    cell(tr, new Date(h.timestamp_ms).toISOString());
    cell(tr, h.severity ?? "-");
    cell(tr, h.client_ip ?? "-");
    redactedText(cell(tr, ""), (h.path ?? "") + (h.query ? `?${h.query}` : ""));
    cell(tr, (h.anomalies || []).join(" "));
    tr.addEventListener("click", () => { $("q").value = `id:"${h.id}"`; show("search"); state.pending = openContext(h.id); });
    body.appendChild(tr);
  }
}

async function loadAlerts() {
  const a = await api("/api/v1/alerts");
  const labels = (l) => Object.entries(l).filter(([k]) => k !== "alertname").map(([k, v]) => `${k}=${v}`).join(" ");
  const list = $("alert-list").tBodies[0];
  list.textContent = "";
  for (const i of a.alerts) {
    const tr = document.createElement("tr");
    cell(tr, i.state, i.state);
    cell(tr, i.rule);
    cell(tr, labels(i.labels));
    cell(tr, i.value, "num");
    cell(tr, new Date(i.active_since_ms).toISOString());
    cell(tr, i.annotations.summary ?? "");
    list.appendChild(tr);
  }
  const hist = $("alert-history").tBodies[0];
  hist.textContent = "";
  for (const h of a.history.slice(0, 50)) {
    const tr = document.createElement("tr");
    cell(tr, new Date(h.at_ms).toISOString());
    cell(tr, h.status);
    cell(tr, h.rule);
    cell(tr, labels(h.labels));
    hist.appendChild(tr);
  }
  const rules = $("alert-rules").tBodies[0];
  rules.textContent = "";
  for (const r of a.rules) {
    const tr = document.createElement("tr");
    cell(tr, r.name);
    cell(tr, r.kind);
    cell(tr, r.window);
    cell(tr, r.threshold, "num");
    cell(tr, r.for_ ?? r.for ?? "");
    rules.appendChild(tr);
  }
}

// The live view reads the tail stream with fetch (EventSource cannot send the token).
async function startLive() {
  stopLive();
  const controller = new AbortController();
  state.live = controller;
  const url = new URL("/api/v1/tail", location.origin);
  url.searchParams.set("q", $("q").value || "*");
  url.searchParams.set("since", fragment().get("since") || "now-1m");
  url.searchParams.set("max_seconds", fragment().get("max_seconds") || "3600");
  const resp = await fetch(url, { headers: { Authorization: `Bearer ${state.token}` }, signal: controller.signal });
  if (!resp.ok) throw new Error(`live tail: HTTP ${resp.status}`);
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  const body = $("live-events").tBodies[0];
  for (;;) {
    const { value, done } = await reader.read().catch(() => ({ done: true }));
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    let at;
    while ((at = buffered.indexOf("\n\n")) >= 0) {
      const message = buffered.slice(0, at);
      buffered = buffered.slice(at + 2);
      const data = message.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (!data) continue;
      const h = JSON.parse(data);
      const tr = eventRow(h);
      body.prepend(tr);
      while (body.rows.length > 200) body.deleteRow(body.rows.length - 1);
      const n = Number($("live-count").dataset.count) + 1;
      $("live-count").dataset.count = n;
      $("live-count").textContent = n;
    }
  }
}

function stopLive() {
  if (state.live) state.live.abort();
  state.live = null;
}

function show(page) {
  state.page = page;
  if (page !== "live") stopLive();
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== page;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
}

async function refresh() {
  try {
    $("status").textContent = "";
    if (state.page === "overview") await loadOverview();
    else if (state.page === "anomalies") await loadAnomalies();
    else if (state.page === "alerts") await loadAlerts();
    else if (state.page === "live") startLive().catch((e) => { if (e.name !== "AbortError") $("status").textContent = e.message; });
    else if ($("q").value) await runSearch();
  } catch (e) {
    if (e.status === 401) return logout("The token was refused.");
    $("status").textContent = e.message;
  }
}

function logout(message) {
  sessionStorage.removeItem("logwarden-token");
  state.token = null;
  $("app").hidden = true;
  $("nav").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

async function login(token) {
  state.token = token;
  try {
    await api("/api/v1/stats", { window: "1h", group_by: "none" });
  } catch (e) {
    logout(e.status === 401 ? "This token was refused." : e.message);
    return false;
  }
  sessionStorage.setItem("logwarden-token", token);
  $("login").hidden = true;
  $("app").hidden = false;
  $("nav").hidden = false;
  return true;
}

async function start() {
  const f = fragment();
  // A link may carry the token once (it is moved to session storage and out of the URL),
  // the page, the range and a search to run.
  if (f.get("token")) {
    state.token = f.get("token");
    f.delete("token");
    history.replaceState(null, "", `#${f}`);
  }
  if (f.get("from")) {
    $("window").value = "custom";
    $("from").value = f.get("from");
    $("to").value = f.get("to") || "now";
  }
  if (f.get("q")) $("q").value = f.get("q");
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (await login($("token").value)) refresh();
  });
  $("logout").addEventListener("click", () => logout());
  $("range").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.addEventListener("click", () => { state.sort = th.dataset.sort; loadOverview(); });
  }
  for (const a of document.querySelectorAll("nav a")) {
    a.addEventListener("click", (e) => { e.preventDefault(); show(a.dataset.page); refresh(); });
  }
  $("anomaly-dim").addEventListener("change", () => loadAnomalies());
  if (f.get("by")) $("anomaly-dim").value = f.get("by");
  $("auto").addEventListener("change", () => {
    clearInterval(state.timer);
    if ($("auto").checked) state.timer = setInterval(refresh, 10000);
  });
  show(f.get("page") || "overview");
  if (!state.token || !(await login(state.token))) {
    document.body.dataset.ready = "login";
    return;
  }
  await refresh();
  // `open=first` opens the context of the first hit, as a click would.
  if (state.page === "search" && f.get("open") === "first") {
    const first = document.querySelector("#hits tbody tr");
    if (first) {
      first.click();
      await state.pending;
    }
  }
  document.body.dataset.ready = "yes";
}

start().catch((e) => diagnose("start", e.message));
