// aiotest web UI: follows /api/events (server-sent events) and drives the
// run through Locust's routes (/swarm, /stop, /stats/reset). No build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { doc: null, points: [], charts: {}, classesShown: false };

function text(el, value) { if (el.textContent !== String(value)) el.textContent = value; }
function fmt(v, digits = 0) { return Number(v || 0).toFixed(digits); }
function cell(value, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = value;
  return td;
}
function fillTable(id, rows, build) {
  const tbody = $(`#${id} tbody`);
  const made = rows.map(build);
  tbody.replaceChildren(...made);
}

// ------------------------------------------------------------- tables
function render(doc) {
  state.doc = doc;
  text($("#state"), doc.state);
  text($("#user-count"), doc.user_count);
  text($("#host"), doc.host || "-");
  text($("#total-rps"), fmt(doc.total_rps, 1));
  text($("#fail-ratio"), `${fmt((doc.fail_ratio || 0) * 100, 1)}%`);
  text($("#version"), doc.version || "");
  const running = ["spawning", "running"].includes(doc.state);
  $("#stop-button").hidden = !running;
  $("#edit-button").hidden = !running;
  document.body.dataset.state = doc.state;
  fillTable("stats-table", doc.stats, (s) => {
    const tr = document.createElement("tr");
    if (s.name === "Aggregated") tr.className = "total";
    tr.append(
      cell(s.method), cell(s.name, "name"), cell(s.num_requests),
      cell(s.num_failures, s.num_failures ? "fail" : ""),
      cell(fmt(s.median_response_time, 2)), cell(fmt(s["response_time_percentile_0.95"], 2)),
      cell(fmt(s["response_time_percentile_0.99"], 2)), cell(fmt(s.avg_response_time, 2)),
      cell(fmt(s.min_response_time, 2)), cell(fmt(s.max_response_time, 2)),
      cell(fmt(s.avg_content_length, 1)), cell(fmt(s.current_rps, 1)), cell(fmt(s.current_fail_per_sec, 1)),
    );
    return tr;
  });
  fillTable("failures-table", doc.errors, (f) => {
    const tr = document.createElement("tr");
    tr.append(cell(f.occurrences), cell(f.method), cell(f.name, "name"), cell(f.error, "name"));
    return tr;
  });
  fillTable("exceptions-table", doc.exceptions, (e) => {
    const tr = document.createElement("tr");
    const tb = cell("", "name");
    const pre = document.createElement("pre");
    pre.textContent = e.traceback;
    tb.append(pre);
    tr.append(cell(e.count), cell(e.msg, "name"), tb, cell(e.nodes, "name"));
    return tr;
  });
  text($("#failure-count"), doc.errors.length ? `(${doc.errors.length})` : "");
  text($("#exception-count"), doc.exceptions.length ? `(${doc.exceptions.length})` : "");
  const distributed = Boolean(doc.is_distributed);
  $("#workers-tab").hidden = !distributed;
  $("#workers-summary").hidden = !distributed;
  if (distributed) {
    text($("#worker-count"), doc.worker_count);
    const workers = [...(doc.workers || [])].sort((a, b) => a.index - b.index);
    fillTable("workers-table", workers, (w) => {
      const tr = document.createElement("tr");
      tr.append(
        cell(w.index), cell(w.worker_id, "name"), cell(w.state), cell(w.user_count),
        cell(fmt(w.cpu_percent, 1)), cell(fmt(w.memory_bytes / 1e6, 1)), cell(fmt(w.last_heartbeat_s, 1)),
      );
      return tr;
    });
  }
  if (!state.classesShown && doc.user_classes) {
    state.classesShown = true;
    const picker = $("#class-picker");
    for (const name of doc.user_classes) {
      const label = document.createElement("label");
      const box = document.createElement("input");
      Object.assign(box, { type: "checkbox", name: "user_classes", value: name, checked: true });
      label.append(box, ` ${name}`);
      picker.append(label);
    }
    picker.hidden = doc.user_classes.length < 2;
  }
  if (!state.optionsShown && doc.extra_options) {
    state.optionsShown = true;
    const box = $("#extra-options");
    for (const opt of doc.extra_options) box.append(optionField(opt));
    box.hidden = doc.extra_options.length === 0;
  }
}

// One field of the aiotestfile's own options (docs/web.md, extra_options):
// a checkbox, a (multiple) select for choices, else a text or password box.
function optionField(opt) {
  const label = document.createElement("label");
  label.title = opt.help || "";
  let input;
  if (opt.is_flag) {
    const off = Object.assign(document.createElement("input"), { type: "hidden", name: opt.name, value: "false" });
    input = Object.assign(document.createElement("input"), { type: "checkbox", name: opt.name, value: "true" });
    input.checked = opt.default === true || String(opt.default).toLowerCase() === "true";
    label.append(off, input, ` ${opt.label}`);
    return label;
  }
  if (opt.choices) {
    input = Object.assign(document.createElement("select"), { name: opt.name, multiple: opt.is_multiple });
    const chosen = new Set([].concat(opt.default ?? []).map(String));
    for (const c of opt.choices) {
      input.append(Object.assign(document.createElement("option"), { value: c, textContent: c, selected: chosen.has(c) }));
    }
  } else {
    input = Object.assign(document.createElement("input"), {
      name: opt.name,
      type: opt.is_secret ? "password" : "text",
      value: opt.default ?? "",
      placeholder: opt.is_secret ? "unchanged" : "",
    });
  }
  input.required = Boolean(opt.is_required) && !opt.is_secret;
  label.append(opt.label, input);
  return label;
}

// ------------------------------------------------------------- charts
const CHARTS = [
  ["chart-rps", "Requests per second", "per second", [["RPS", "#2a9d8f", (p) => p.rps], ["Failures/s", "#c1121f", (p) => p.fps]]],
  ["chart-response-times", "Response times (ms, per window)", "ms",
    [["p50", "#457b9d", (p) => (p.n ? p.p[0] : null)], ["p95", "#e76f51", (p) => (p.n ? p.p[1] : null)], ["p99", "#6d597a", (p) => (p.n ? p.p[2] : null)]]],
  ["chart-users", "Users", "users", [["Users", "#1d3557", (p) => p.users]]],
];

function chartData(series) {
  return [state.points.map((p) => p.t), ...series.map(([, , pick]) => state.points.map(pick))];
}

function drawCharts() {
  for (const [id, title, yLabel, series] of CHARTS) {
    const el = document.getElementById(id);
    if (el.offsetParent === null) continue; // hidden tab: draw when shown
    const data = chartData(series);
    let chart = state.charts[id];
    if (!chart) {
      chart = new uPlot({
        title, width: Math.max(400, el.clientWidth - 10), height: 260,
        series: [{}].concat(series.map(([label, stroke]) => ({ label, stroke, width: 2 }))),
        axes: [{}, { label: yLabel }],
        scales: { x: { time: true } },
      }, data, el);
      state.charts[id] = chart;
      el.dataset.drawn = "true";
    } else {
      chart.setData(data);
    }
    el.dataset.points = String(state.points.length);
  }
}

function addPoints(points) {
  const last = state.points.length ? state.points[state.points.length - 1].t : -Infinity;
  for (const p of points) if (p.t > last) state.points.push(p);
  drawCharts();
}

// ------------------------------------------------------------- live feed
async function loadState() {
  const r = await fetch("api/state", { cache: "no-store" });
  const body = await r.json();
  state.points = [];
  for (const c of Object.values(state.charts)) c.destroy();
  state.charts = {};
  render(body.stats);
  addPoints(body.points);
}

function follow() {
  const source = new EventSource("api/events");
  source.addEventListener("open", () => { text($("#connection"), "live"); loadState(); });
  source.addEventListener("update", (ev) => {
    const update = JSON.parse(ev.data);
    // A new run restarts the history: start the charts over.
    if (update.points.length && state.points.length && update.points[0].t < state.points[0].t) {
      loadState();
      return;
    }
    render(update.stats);
    addPoints(update.points);
  });
  source.addEventListener("error", () => text($("#connection"), "reconnecting"));
}

// ------------------------------------------------------------- commands
async function post(url, form) {
  const r = await fetch(url, { method: "POST", body: form ? new URLSearchParams(form) : undefined });
  let body = {};
  try { body = await r.json(); } catch (_) { body = { success: r.ok, message: r.statusText }; }
  return body;
}

function openStart() {
  const d = state.doc || {};
  $("#start-users").value = d.target_user_count ?? 1;
  $("#start-rate").value = d.spawn_rate ?? 1;
  $("#start-host").value = d.host || "";
  $("#start-run-time").value = d.run_time_s ? `${d.run_time_s}s` : "";
  text($("#start-error"), "");
  $("#start-dialog").showModal();
}

function openEdit() {
  const d = state.doc || {};
  $("#edit-users").value = d.target_user_count ?? d.user_count ?? 1;
  $("#edit-rate").value = d.spawn_rate ?? 1;
  text($("#edit-error"), "");
  $("#edit-dialog").showModal();
}

async function submit(ev, dialog, errorEl) {
  ev.preventDefault();
  const body = await post("swarm", new FormData(ev.target));
  if (body.success) {
    dialog.close();
    await loadState();
  } else {
    text(errorEl, body.message || "the runner refused");
  }
}

function showTab(name) {
  for (const b of document.querySelectorAll("nav.tabs button")) {
    b.setAttribute("aria-selected", String(b.dataset.tab === name));
  }
  for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== `tab-${name}`;
  if (name === "charts") drawCharts();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#new-test-button").addEventListener("click", openStart);
  $("#edit-button").addEventListener("click", openEdit);
  $("#stop-button").addEventListener("click", async () => { await post("stop"); await loadState(); });
  $("#reset-button").addEventListener("click", async () => { await post("stats/reset"); await loadState(); });
  $("#start-form").addEventListener("submit", (ev) => submit(ev, $("#start-dialog"), $("#start-error")));
  $("#edit-form").addEventListener("submit", (ev) => submit(ev, $("#edit-dialog"), $("#edit-error")));
  for (const b of document.querySelectorAll("[data-close]")) {
    b.addEventListener("click", () => b.closest("dialog").close());
  }
  for (const b of document.querySelectorAll("nav.tabs button")) {
    b.addEventListener("click", () => showTab(b.dataset.tab));
  }
  loadState().finally(follow);
});
