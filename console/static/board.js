// The live incident board: open incidents by severity and age, kept current by the timeline
// stream (SSE). EventSource reconnects by itself and sends Last-Event-ID, so the server replays
// whatever was missed. An unclaimed critical incident flashes and beeps until someone claims it.
"use strict";
let incidents = [];
const OUTCOMES = ["help_sent", "false_alarm", "transferred_120_119", "elder_fine"];
const RANK = { critical: 0, high: 1, medium: 2, low: 3 };
const unclaimed = (i) => !i.claimed_at && (i.status === "open" || i.status === "notifying");
// The elder pressed again after someone took it: the board rings again for two minutes.
const ASKING_AGAIN_MS = 120000;
const askingAgain = (i) => i.status === "acknowledged" && (i.timeline || []).some(
  (ev) => ev.kind === "realerted" && Date.now() - new Date(ev.at) < ASKING_AGAIN_MS);
const notifyStatus = (s) => (T["notify." + s] ? tr("notify." + s) : s || "");
const minutesAgo = (iso) => Math.max(0, Math.floor((Date.now() - new Date(iso)) / 60000));

function timelineText(ev) {
  const d = ev.detail || {};
  switch (ev.kind) {
    case "incident_opened": return tr("timeline.incident_opened", { what: tr("kind." + d.kind) });
    case "alert_joined": return tr("timeline.alert_joined", { what: tr("kind." + d.kind) });
    case "duty_level": return tr("timeline.duty_level", { level: d.level });
    case "escalated": return tr("timeline.escalated", { severity: tr("severity." + d.severity) });
    case "call": case "sms": case "call_status": case "sms_status":
      return tr("timeline." + ev.kind, { ...d, status: notifyStatus(d.status) });
    case "resolved":
      return d.who ? tr("timeline.resolved_by", { who: d.who, outcome: tr("outcome." + d.outcome) })
        : tr("timeline.resolved", { outcome: tr("outcome." + d.outcome) });
    default:
      return T["timeline." + ev.kind] ? tr("timeline." + ev.kind, d) : tr("timeline.other", { kind: ev.kind });
  }
}

function timelineList(items) {
  const tl = el("ol", { class: "timeline" });
  for (const ev of items || []) {
    tl.append(el("li", { "data-kind": ev.kind, class: ev.kind === "all_channels_failed" ? "failed" : null },
      el("time", {}, fmtTime(ev.at)), " ", timelineText(ev)));
  }
  return tl;
}

function actions(i) {
  const box = el("div", { class: "actions" });
  const run = async (action, body) => {
    try {
      await api(`/api/v1/incidents/${i.id}/${action}`, { method: "POST", body: JSON.stringify(body || {}) });
      await refresh();
    } catch (err) {
      alert(tr("console.action_failed", { error: err.message }));
    }
  };
  if (!i.claimed_at && i.status !== "resolved") {
    const b = el("button", { type: "button", class: "claim", "data-action": "claim" }, tr("console.claim"));
    b.onclick = () => run("claim");
    box.append(b);
  }
  if (i.status === "open" || i.status === "notifying") {
    const b = el("button", { type: "button", class: "primary", "data-action": "acknowledge" },
      tr("console.acknowledge"));
    b.onclick = () => run("acknowledge", {});
    box.append(b);
  }
  const outcome = el("select", { "aria-label": tr("console.outcome"), "data-field": "outcome" },
    ...OUTCOMES.map((o) => el("option", { value: o }, tr("outcome." + o))));
  const notes = el("input", { type: "text", placeholder: tr("console.notes"), "data-field": "notes" });
  const resolve = el("button", { type: "button", "data-action": "resolve" }, tr("console.resolve"));
  resolve.onclick = () => run("resolve", { outcome: outcome.value, notes: notes.value });
  box.append(el("span", { class: "resolve" }, outcome, notes, resolve));
  return box;
}

// Where the elder was at the press: at home, or distance and direction with a map link.
function whereabouts(w) {
  if (!w) return null;
  if (w.at_home) return el("p", { class: "meta where" }, `${tr("console.where")}${whereText(w)}`);
  return el("p", { class: "meta where" }, `${tr("console.where")}${whereText(w)} `,
    el("a", { href: w.map_link, target: "_blank", rel: "noreferrer" }, tr("family.map")));
}

function card(i) {
  const li = el("li", {
    class: `incident sev-${i.severity}${unclaimed(i) ? " unclaimed" : ""}${askingAgain(i) ? " asking-again" : ""}`,
    "data-incident": i.id, "data-status": i.status, "data-elder": i.elder_id,
  });
  const who = i.acknowledged_by ? tr("console.acknowledged_by", { who: i.acknowledged_by })
    : i.claimed_by ? tr("console.claimed_by", { who: i.claimed_by }) : null;
  li.append(
    el("h3", {}, `${tr("kind." + i.kind)} · `,
      el("a", { href: `/elders/${encodeURIComponent(i.elder_id)}` }, i.elder_name)),
    el("p", { class: "meta" },
      el("span", { class: `badge ${i.severity}` }, tr("severity." + i.severity)),
      el("span", { class: "badge status" }, tr("status." + i.status)),
      el("span", { class: "age" }, tr("console.minutes_ago", { n: minutesAgo(i.opened_at) })),
      " ", fmtTime(i.event_time)),
    el("p", { class: "meta address" }, `${i.community_name} · ${i.address}`),
  );
  const where = whereabouts(i.whereabouts);
  if (where) li.append(where);
  if (who) li.append(el("p", { class: "owner" }, who));
  const notes = el("ul", { class: "notifications" });
  for (const n of i.notifications || []) {
    notes.append(el("li", { "data-channel": n.channel, "data-status": n.status },
      el("span", { class: `channel ${n.channel}` }, tr("console.channel." + n.channel)),
      ` ${n.recipient} ${n.to_number} — ${notifyStatus(n.provider_status || n.status)}`));
  }
  li.append(notes, el("details", { open: i.severity === "critical" },
    el("summary", {}, tr("console.timeline")), timelineList(i.timeline)), actions(i));
  return li;
}

function render() {
  incidents.sort((a, b) => RANK[a.severity] - RANK[b.severity] || a.opened_at.localeCompare(b.opened_at));
  // Keep what someone is typing in a resolve form across a live update.
  const active = document.activeElement;
  const typing = active && ["INPUT", "SELECT", "TEXTAREA"].includes(active.tagName) &&
    active.closest("[data-incident]");
  const board = document.getElementById("board");
  if (!typing) board.replaceChildren(...incidents.map(card));
  const empty = document.getElementById("empty");
  empty.hidden = incidents.length > 0;
  empty.textContent = tr("console.none");
  const again = incidents.some(askingAgain);
  alarm(again || incidents.some((i) => i.severity === "critical" && unclaimed(i)), again);
}

// WebAudio beep while an unclaimed critical incident exists. Browsers only allow sound after a
// click on the page, so a button asks for one until the audio context runs.
let audio = null;
let beeping = null;
function beep() {
  if (!audio || audio.state !== "running") return;
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.frequency.value = 880;
  gain.gain.value = 0.25;
  osc.connect(gain).connect(audio.destination);
  osc.start();
  osc.stop(audio.currentTime + 0.35);
}
function alarm(on, again = false) {
  const banner = document.getElementById("alarm");
  banner.hidden = !on;
  banner.dataset.again = again ? "true" : "false";
  document.getElementById("alarm-text").textContent = tr(again ? "console.alarm_again" : "console.alarm");
  const sound = document.getElementById("sound");
  sound.hidden = !!(audio && audio.state === "running");
  sound.textContent = tr("console.sound_enable");
  if (on && !beeping) { beep(); beeping = setInterval(beep, 1500); }
  if (!on && beeping) { clearInterval(beeping); beeping = null; }
}
function enableSound() {
  if (!audio) audio = new (window.AudioContext || window.webkitAudioContext)();
  audio.resume().then(() => { document.getElementById("sound").hidden = true; });
}

let pending = null;
async function refresh() {
  const state = await api("/api/v1/incidents");
  incidents = state.incidents;
  render();
  return state;
}
function scheduleRefresh() {  // a burst of timeline rows becomes one reload
  if (pending) return;
  pending = setTimeout(async () => { pending = null; await refresh(); }, 150);
}

async function main() {
  await setupPage("board");
  document.getElementById("incidents-title").textContent = tr("console.incidents");
  document.getElementById("sound").onclick = enableSound;
  document.addEventListener("click", enableSound, { once: true });  // any first click allows sound
  const state = await refresh();
  const banner = document.getElementById("dryrun");
  banner.hidden = false;  // the channel is always shown: staff must know whether calls go out
  banner.dataset.channel = state.channel || (state.dry_run ? "dry-run" : "twilio");
  banner.className = state.dry_run ? "dryrun" : "channel";
  banner.textContent = tr(state.dry_run ? "console.dryrun" : "console.channel_twilio");

  const conn = document.getElementById("conn");
  const source = new EventSource(`/api/v1/stream?after=${state.last_event_id}`);
  source.onopen = () => {
    conn.dataset.state = "open"; conn.textContent = tr("console.connected");
    scheduleRefresh();  // anything that changed while disconnected and is not in the timeline
  };
  source.onerror = async () => {
    conn.dataset.state = "connecting"; conn.textContent = tr("console.reconnecting");
    if (source.readyState === EventSource.CLOSED) {  // e.g. the session expired: 401
      try { await api("/api/v1/me"); setTimeout(() => location.reload(), 3000); } catch (_) { /* redirected */ }
    }
  };
  source.addEventListener("timeline", scheduleRefresh);
  source.addEventListener("logged_out", () => { location.href = "/login"; });
  setInterval(render, 60000);  // ages in minutes
}

main();
