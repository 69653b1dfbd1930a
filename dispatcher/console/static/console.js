// Duty console: load open incidents, then follow the timeline stream (SSE). EventSource
// reconnects by itself and sends Last-Event-ID, so the server replays whatever was missed.
"use strict";
const params = new URLSearchParams(location.search);
const lang = params.get("lang") === "en" ? "en" : "zh-Hans";
let T = {};
const incidents = new Map();

const tr = (key, values = {}) =>
  (T[key] || key).replace(/\{(\w+)\}/g, (_, k) => (values[k] ?? ""));
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
};
const fmtTime = (iso) => new Date(iso).toLocaleString(lang === "en" ? "en-GB" : "zh-CN");

async function getJSON(url, options) {
  const res = await fetch(url, options);
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return res.json();
}

function timelineText(ev) {
  const d = ev.detail || {};
  switch (ev.kind) {
    case "incident_opened": return tr("timeline.incident_opened", { what: tr("kind." + d.kind) });
    case "alert_joined": return tr("timeline.alert_joined");
    case "call": return tr("timeline.call", d);
    case "sms": return tr("timeline.sms", d);
    case "acknowledged": return tr("timeline.acknowledged", d);
    case "resolved": return tr("timeline.resolved", d);
    default: return ev.kind;
  }
}

function render() {
  const board = document.getElementById("board");
  const open = [...incidents.values()].filter((i) => i.status !== "resolved");
  const rank = { critical: 0, high: 1, medium: 2, low: 3 };
  open.sort((a, b) => rank[a.severity] - rank[b.severity] || a.opened_at.localeCompare(b.opened_at));
  board.replaceChildren(...open.map(card));
  const empty = document.getElementById("empty");
  empty.hidden = open.length > 0;
  empty.textContent = tr("console.none");
}

function card(i) {
  const unclaimed = i.status === "open" || i.status === "notifying";
  const li = el("li", {
    class: `incident sev-${i.severity}${unclaimed ? " unclaimed" : ""}`,
    "data-incident": i.id, "data-status": i.status,
  });
  li.append(
    el("h3", {}, `${tr("kind." + i.kind)} · ${i.elder_name}`),
    el("p", { class: "meta" },
      el("span", { class: `badge ${i.severity}` }, tr("severity." + i.severity)),
      el("span", { class: "badge status" }, tr("status." + i.status)),
      fmtTime(i.event_time)),
    el("p", { class: "meta address" }, `${i.community_name} · ${i.address}`),
  );
  const notes = el("ul", { class: "notifications" });
  for (const n of i.notifications || []) {
    const what = n.channel === "voice" ? "📞" : "✉️";
    notes.append(el("li", { "data-channel": n.channel, "data-status": n.status },
      `${what} ${n.recipient} ${n.to_number} — ${n.status}${n.dry_run ? " (dry-run)" : ""}`));
  }
  const tl = el("ol", { class: "timeline" });
  for (const ev of i.timeline || []) tl.append(el("li", {}, `${fmtTime(ev.at)} ${timelineText(ev)}`));
  li.append(notes, el("details", {}, el("summary", {}, tr("console.timeline")), tl));
  if (unclaimed) {
    const ack = el("button", { class: "primary", type: "button", "data-action": "acknowledge" },
      lang === "en" ? "Take responsibility" : "我来负责");
    ack.onclick = () => act(i.id, "acknowledge", { who: "console" });
    li.append(el("div", { class: "actions" }, ack));
  }
  return li;
}

async function act(id, action, body) {
  await getJSON(`/api/v1/incidents/${id}/${action}`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
}

async function refresh(id) {
  incidents.set(id, await getJSON(`/api/v1/incidents/${id}`));
  render();
}

async function main() {
  T = await getJSON(`/api/v1/i18n/${lang}`);
  document.documentElement.lang = lang;
  document.title = tr("console.title");
  document.getElementById("title").textContent = tr("console.title");
  document.getElementById("incidents-title").textContent = tr("console.incidents");
  const switcher = document.getElementById("lang");
  switcher.textContent = lang === "en" ? "中文" : "English";
  switcher.onclick = () => { location.search = lang === "en" ? "" : "?lang=en"; };

  const state = await getJSON("/api/v1/incidents");
  for (const i of state.incidents) incidents.set(i.id, i);
  const banner = document.getElementById("dryrun");
  banner.hidden = !state.dry_run;
  banner.textContent = tr("console.dryrun");
  render();

  const conn = document.getElementById("conn");
  const source = new EventSource(`/api/v1/stream?after=${state.last_event_id}`);
  source.onopen = () => { conn.dataset.state = "open"; conn.textContent = tr("console.connected"); };
  source.onerror = () => {
    conn.dataset.state = "connecting"; conn.textContent = tr("console.reconnecting");
  };
  source.addEventListener("timeline", (e) => refresh(JSON.parse(e.data).incident_id));
}

main();
