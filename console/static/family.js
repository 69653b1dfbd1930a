// The family page: one incident, as one contact, from the link in their SMS. No login: the
// token in the URL is the credential. Live: the timeline follows an SSE stream that resumes
// from Last-Event-ID after a dropped connection.
"use strict";
const token = location.pathname.split("/").pop();
const lang = document.documentElement.lang === "en" ? "en" : "zh-Hans";
let T = {};
const tr = (key, values = {}) =>
  (T[key] ?? key).replace(/\{(\w+)\}/g, (_, k) => (values[k] ?? ""));
const $ = (id) => document.getElementById(id);
const when = (iso) => new Date(iso).toLocaleString(lang === "en" ? "en-GB" : "zh-CN");
const seen = new Set();

function fact(label, value, href) {
  const dd = document.createElement("dd");
  if (href) {
    const a = document.createElement("a");
    a.href = href; a.rel = "noreferrer"; a.textContent = value;
    dd.append(a);
  } else dd.textContent = value;
  const dt = document.createElement("dt");
  dt.textContent = label;
  $("facts").append(dt, dd);
}

function addEntry(entry) {
  if (seen.has(entry.id)) return;
  seen.add(entry.id);
  const li = document.createElement("li");
  li.dataset.id = entry.id;
  const time = document.createElement("time");
  time.textContent = when(entry.at);
  li.append(time, entry.text);
  $("timeline").append(li);
}

function render(s) {
  document.title = tr("family.title", { elder: s.elder });
  $("title").textContent = tr("family.title", { elder: s.elder });
  $("status").textContent = s.status_text;
  $("status").className = `status ${s.status}`;
  $("facts").replaceChildren();
  fact(tr("family.what"), s.what);
  fact(tr("family.when"), when(s.event_time));
  fact(tr("family.where"), s.where);
  if (s.map_link) fact("", tr("family.map"), s.map_link);
  fact(tr("family.taken_by"), s.taken_by || tr("family.nobody_yet"));
  if (s.outcome) fact(tr("family.outcome"), s.outcome);
  const closed = s.status === "resolved";
  $("taking").disabled = closed || s.status === "acknowledged";
  $("reached").disabled = closed;
  for (const e of s.timeline) addEntry(e);
}

async function refresh() {
  const res = await fetch(`/api/family/${token}`);
  if (!res.ok) { expired(); return null; }
  const s = await res.json();
  T = s.labels;
  render(s);
  return s;
}

function expired() {
  $("notice").textContent = T["family.expired"] || (lang === "en" ? "This link has expired." : "此链接已失效。");
  $("actions").hidden = true;
  $("live").textContent = "";
}

async function act(action) {
  const res = await fetch(`/api/family/${token}/actions`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ action }),
  });
  $("notice").textContent = res.ok ? tr("family.done") : (await res.json()).detail;
  await refresh();
}

async function main() {
  $("taking").addEventListener("click", () => act("taking"));
  $("reached").addEventListener("click", () => act("reached_elder"));
  const s = await refresh();
  if (!s) {
    $("notice").textContent = lang === "en" ? "This link has expired." : "此链接已失效。";
    return;
  }
  $("taking").textContent = tr("family.taking");
  $("reached").textContent = tr("family.reached");
  $("timeline-title").textContent = tr("family.timeline");
  const source = new EventSource(`/api/family/${token}/stream?after=${s.last_event_id}`);
  let pending = null;
  source.addEventListener("open", () => { $("live").textContent = tr("family.live"); });
  source.addEventListener("error", () => { $("live").textContent = tr("family.reconnecting"); });
  source.addEventListener("timeline", (ev) => {
    addEntry(JSON.parse(ev.data));
    clearTimeout(pending);  // status, who has it and outcome come with the next refresh
    pending = setTimeout(refresh, 200);
  });
  source.addEventListener("expired", () => { source.close(); expired(); });
}
main();
