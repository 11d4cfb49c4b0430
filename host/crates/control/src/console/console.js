// Weir's console: one page over the admin API (/v1), with the token the
// user logs in with. Everything a deployment shows may come from a tenant
// or a record (names, errors, dead letters, logs), so text only ever goes
// in through textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("weir-token");
let selected = null;
let timers = [];

async function api(method, path) {
  const r = await fetch(path, { method, headers: { Authorization: `Bearer ${token}` } });
  const body = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) throw Object.assign(new Error((body && body.error) || `${r.status} ${r.statusText}`), { status: r.status });
  return body;
}

// An element with text (or children).
function el(tag, content, className) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  for (const c of [].concat(content ?? [])) e.append(c instanceof Node ? c : String(c));
  return e;
}

function rows(table, items, cells) {
  const body = table.tBodies[0];
  body.replaceChildren(...items.map((item) => {
    const tr = el("tr", cells(item).map((c) => el("td", c)));
    return tr;
  }));
}

const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "");
const short = (digest) => (digest ? digest.slice(0, 12) : "");
const bytes = (n) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);
const query = (d) => (d.tenant ? `?tenant=${encodeURIComponent(d.tenant)}` : "");
const same = (a, b) => a && b && a.name === b.name && a.tenant === b.tenant;
const path = (d, rest = "") => `/v1/deployments/${encodeURIComponent(d.name)}${rest}${query(d)}`;

// A line chart of `lines` ([{values, className}]) over the points' times.
function chart(svg, times, lines) {
  const w = 320, h = 120, pad = 4;
  svg.setAttribute("viewBox", `0 0 ${w} ${h + 14}`);
  const all = lines.flatMap((l) => l.values).filter((v) => v != null);
  const max = Math.max(1e-9, ...all);
  // The last 15 minutes, or since the first point when there are fewer.
  const now = Date.now(), t0 = Math.max(now - 15 * 60 * 1000, Math.min(times[0] ?? now, now - 60 * 1000)), span = now - t0;
  const x = (t) => pad + ((t - t0) / span) * (w - 2 * pad);
  const y = (v) => h - pad - (v / max) * (h - 2 * pad);
  const ns = "http://www.w3.org/2000/svg";
  const shapes = lines.map((l) => {
    const p = document.createElementNS(ns, "polyline");
    p.setAttribute("points", l.values.map((v, i) => (v == null ? null : `${x(times[i]).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean).join(" "));
    p.setAttribute("class", l.className);
    return p;
  });
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", pad);
  label.setAttribute("y", h + 12);
  label.textContent = all.length ? `max ${max < 10 ? max.toFixed(2) : Math.round(max)}, now ${fmt(lines[0].values.at(-1))}` : "no data yet";
  svg.replaceChildren(...shapes, label);
}
const fmt = (v) => (v == null ? "-" : v < 10 ? v.toFixed(2) : String(Math.round(v)));

async function login(event) {
  event?.preventDefault();
  if (event) token = $("token").value.trim();
  try {
    const list = await api("GET", "/v1/deployments");
    sessionStorage.setItem("weir-token", token);
    $("login-form").hidden = true;
    $("logout").hidden = false;
    $("list").hidden = false;
    $("login-error").textContent = "";
    showList(list);
    every(2000, refreshList);
  } catch (e) {
    token = null;
    sessionStorage.removeItem("weir-token");
    $("login-form").hidden = false;
    $("login-error").textContent = e.status === 401 ? "The token was refused: it is neither the admin's nor a tenant's." : `Cannot log in: ${e.message}`;
  }
}

function every(ms, f) {
  timers.push(setInterval(() => f().catch((e) => console.warn(e)), ms));
}

function logout() {
  timers.forEach(clearInterval);
  timers = [];
  sessionStorage.removeItem("weir-token");
  location.reload();
}

async function refreshList() {
  showList(await api("GET", "/v1/deployments"));
  if (selected) await refreshDetail();
}

function showList(list) {
  $("list-empty").hidden = list.length > 0;
  const body = $("deployments").tBodies[0];
  body.replaceChildren(...list.map((d) => {
    const lag = Object.values(d.host?.lag ?? {}).reduce((a, b) => a + b, 0);
    const tr = el("tr", [d.name, d.tenant ?? "", el("span", d.status, `badge ${d.status}`), d.version, short(d.module), d.host ? lag : ""].map((c) => el("td", c)));
    tr.dataset.name = d.name;
    tr.dataset.tenant = d.tenant ?? "";
    if (same(selected, d)) {
      tr.className = "selected";
      selected = d;
    }
    tr.onclick = () => select(d);
    return tr;
  }));
}

function select(d) {
  selected = d;
  $("detail").hidden = false;
  // Nothing of the deployment shown before stays on screen.
  for (const t of ["dead-letters", "owners", "lag", "failures", "history", "state"]) $(t).tBodies[0].replaceChildren();
  $("logs").replaceChildren();
  $("state-note").textContent = "";
  refreshDetail().catch((e) => console.warn(e));
  refreshSlow().catch((e) => console.warn(e));
}

// The view and this host's activity: every 2 s.
async function refreshDetail() {
  const d = selected;
  const [view, activity] = await Promise.all([api("GET", path(d)), api("GET", path(d, "/activity"))]);
  if (!same(d, selected)) return;
  $("name").textContent = view.tenant ? `${view.tenant} / ${view.name}` : view.name;
  $("status").textContent = view.status;
  $("status").className = `badge ${view.status}`;
  $("error").textContent = view.error ?? "";
  $("module").textContent = view.module;
  $("version").textContent = view.version;
  $("inputs").textContent = view.spec.inputs.join(", ");
  $("output").textContent = view.spec.output;
  $("delivery").textContent = view.spec.delivery ?? "at-least-once";
  $("pause").disabled = view.status === "paused" || view.status === "undeployed";
  $("resume").disabled = view.status !== "paused";
  $("rollback").disabled = !view.previous_module || view.status === "undeployed";
  $("undeploy").disabled = view.status === "undeployed";
  $("host").textContent = activity.host;
  $("records-in-total").textContent = activity.records_in;
  $("records-out-total").textContent = activity.records_out;
  $("dead-lettered-total").textContent = activity.dead_lettered;
  $("state-bytes").textContent = bytes(activity.state_bytes);
  $("restore").textContent = activity.restoring ? `${activity.restoring} partitions restoring, ${activity.restored_keys} keys so far` : `done (${activity.restored_keys} keys restored)`;
  const p = activity.points, t = p.map((q) => q.at_ms);
  chart($("chart-records"), t, [
    { values: p.map((q) => q.records_in), className: "in" },
    { values: p.map((q) => q.records_out), className: "out" },
    { values: p.map((q) => q.failures), className: "bad" },
  ]);
  chart($("chart-latency"), t, [
    { values: p.map((q) => q.batch_ms), className: "in" },
    { values: p.map((q) => q.batch_p99_ms), className: "out" },
  ]);
  chart($("chart-lag"), t, [{ values: p.map((q) => q.lag), className: "in" }]);
  const host = view.host ?? { lag: {}, stopped: {}, partitions: [] };
  const late = (n) => {
    const l = host.late?.[n];
    return l ? `${l.count} (latest ${l.last.topic}@${l.last.offset}, ${l.last.stream_time - l.last.timestamp} ms behind)` : "";
  };
  const held = (n) => {
    const h = host.held?.[n];
    return h ? `held by an open transaction at ${h.topic}@${h.offset} for ${Math.round((Date.now() - h.since_ms) / 1000)} s` : "";
  };
  const unreadable = (n) => {
    const u = host.unreadable?.[n];
    return u ? `cannot read ${u.topic}@${u.offset} for ${Math.round((Date.now() - u.since_ms) / 1000)} s: ${u.reason}` : "";
  };
  const stuck = (n) => host.stopped[n] ?? host.waiting?.[n] ?? (unreadable(n) || held(n));
  rows($("lag"), host.partitions, (n) => [n, host.lag[n] ?? "", host.lag_to_end?.[n] ?? "", late(n), stuck(n)]);
  rows($("failures"), Object.entries(activity.failures_by_kind), ([kind, n]) => [kind, n]);
  rows($("history"), [...view.history].reverse(), (c) => [c.version, new Date(c.at_ms).toLocaleString(), c.what, short(c.module), c.why ?? ""]);
}

// Dead letters (a read of Kafka), owners and logs: every 5 s.
async function refreshSlow() {
  const d = selected;
  if (!d) return;
  const [dead, owners, logs] = await Promise.all([
    api("GET", path(d, "/dead-letters")).catch((e) => ({ error: e.message })),
    api("GET", path(d, "/owners")),
    api("GET", path(d, "/logs")),
  ]);
  if (!same(d, selected)) return;
  if (!dead.error) {
    const h = (r, k) => (r.headers.find(([n]) => n === k) ?? [])[1] ?? "";
    rows($("dead-letters"), dead, (r) => [
      time(Number(h(r, "weir.failed.at")) || r.timestamp_ms),
      `${h(r, "weir.source.topic")}[${h(r, "weir.source.partition")}]@${h(r, "weir.source.offset")}`,
      h(r, "weir.error.kind"),
      h(r, "weir.error.message"),
      r.key ?? "",
      (r.value ?? "") + (r.value_bytes ? ` (${r.value_bytes} bytes)` : "") + (r.decoded ? " (decoded)" : ""),
    ]);
  }
  rows($("owners"), owners, (m) => [m.host, m.partitions.map(([, ps]) => ps.join(", ")).join("; "), m.api_url ?? m.address]);
  $("logs").textContent = logs.map((l) => `${new Date(l.at_ms).toLocaleTimeString()} ${l.level} ${l.message}`).join("\n");
}

// State by key or prefix, gathered by the host from every owner.
async function readState(event) {
  event.preventDefault();
  const d = selected, q = new URLSearchParams(query(d).slice(1));
  const map = $("state-map").value, key = $("state-key").value;
  if (map) q.set("map", map);
  if (key || !map) q.set($("state-prefix").checked || !key ? "prefix" : "key", key);
  try {
    const answer = await api("GET", `/v1/deployments/${encodeURIComponent(d.name)}/state?${q}`);
    if (!same(d, selected)) return;
    const value = (e) => (e.value !== undefined ? JSON.stringify(e.value) : e.value_text ?? `hex ${e.value_hex}`);
    rows($("state"), answer.entries, (e) => [e.partition, e.key_hex ? `hex ${e.key_hex}` : e.key, value(e)]);
    const missing = answer.hosts.filter((h) => h.error).map((h) => `${h.host}: ${h.error}`);
    $("state-note").textContent = `${answer.entries.length} entries${answer.next_after || answer.next_after_hex ? " (more after the last)" : ""}` + (missing.length ? `; not answered: ${missing.join("; ")}` : "");
  } catch (e) {
    $("state-note").textContent = `Cannot read state: ${e.message}`;
  }
}

async function act(what, method, rest) {
  const d = selected;
  if (what === "undeploy" && !confirm(`Undeploy ${d.name}? Its state is kept for a later deploy of the same name.`)) return;
  $("action-result").textContent = `${what}…`;
  try {
    await api(method, path(d, rest));
    $("action-result").textContent = `${what}: done`;
    await refreshList();
  } catch (e) {
    $("action-result").textContent = `${what} failed: ${e.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").onclick = logout;
  $("pause").onclick = () => act("pause", "POST", "/pause");
  $("resume").onclick = () => act("resume", "POST", "/resume");
  $("rollback").onclick = () => act("roll back", "POST", "/rollback");
  $("undeploy").onclick = () => act("undeploy", "DELETE", "");
  $("state-form").addEventListener("submit", readState);
  every(5000, refreshSlow);
  if (token) login();
});
