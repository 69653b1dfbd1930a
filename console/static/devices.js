// Devices of the staff member's communities: status (online, offline, never seen), battery and
// last seen, problems first; those who keep the registry rotate a device's MQTT password (the
// new one is shown once, here, and the old one stops working at once).
"use strict";
function statusBadge(d) {
  if (d.offline) return el("span", { class: "badge critical" }, tr("device.offline"));
  if (!d.last_seen) return el("span", { class: "badge" }, tr("device.never"));
  return el("span", { class: "badge ok" }, tr("device.online"));
}

function credentialsBox(device, login) {
  const row = (key, value, id) => [el("dt", {}, tr(key)), el("dd", {}, el("code", { id }, value))];
  return el("section", { class: "card credentials", id: "credentials", "data-device": device.id },
    el("h3", {}, tr("devices.new_credentials", { id: device.id })),
    el("dl", { class: "facts" }, ...row("devices.username", login.username, "cred-username"),
      ...row("devices.password", login.password, "cred-password"),
      ...row("devices.topic_prefix", login.topic_prefix, "cred-topic")),
    el("p", { class: "warn-text" }, tr("devices.shown_once")));
}

function deviceRow(d, low, rotate) {
  const action = el("td", {});
  if (rotate) {
    const b = el("button", { type: "button", "data-action": "rotate" }, tr("devices.rotate"));
    b.onclick = () => rotate(d, b);
    action.append(b);
  }
  return el("tr", { "data-device": d.id, "data-online": d.offline || !d.last_seen ? "false" : "true" },
    el("td", {}, statusBadge(d), d.low_battery ? el("span", { class: "badge high" }, tr("device.low_battery")) : null),
    el("td", {}, tr("device." + d.kind)), el("td", { class: "mono" }, d.id), el("td", {}, d.room),
    el("td", {}, el("a", { href: `/elders/${encodeURIComponent(d.elder_id)}` }, d.elder_name)),
    el("td", {}, d.community_name),
    el("td", { class: d.low_battery ? "warn" : null }, d.battery === null ? "—" : `${d.battery}%`),
    el("td", {}, d.last_seen ? fmtTime(d.last_seen) : tr("device.never")),
    action);
}

async function main() {
  await setupPage("devices");
  const page = document.getElementById("page");
  const q = el("input", { type: "search", id: "q", placeholder: tr("devices.placeholder"), value: params.get("q") || "" });
  const problems = el("input", { type: "checkbox", id: "problems-only", checked: params.get("problems") === "1" });
  const form = el("form", { class: "search" }, q, el("button", { type: "submit", class: "primary" }, tr("elders.search")),
    el("label", { class: "check" }, problems, tr("devices.problems_only")));
  const shown = el("div", { id: "credentials-slot" });
  const list = el("div", {});
  page.replaceChildren(el("h2", {}, tr("devices.title")), form, shown, list);

  async function rotate(d, button) {
    if (!confirm(tr("devices.confirm_rotate", { id: d.id }))) return;
    button.disabled = true;
    try {
      const login = await api(`/api/v1/devices/${encodeURIComponent(d.id)}/credentials`, { method: "POST" });
      shown.replaceChildren(credentialsBox(d, login));
    } catch (err) {
      shown.replaceChildren(el("p", { class: "error" }, errorText(err)));
    }
    button.disabled = false;
  }
  async function load() {
    const query = new URLSearchParams({ q: q.value.trim(), problems: problems.checked ? "true" : "false" });
    const { devices, low_battery } = await api(`/api/v1/console/devices?${query}`);
    const head = ["device.status", "device.kind", "devices.id", "device.room", "devices.elder", "elder.community",
      "device.battery", "device.last_seen", ""].map((k) => el("th", {}, k ? tr(k) : ""));
    list.replaceChildren(devices.length
      ? el("table", { id: "devices" }, el("thead", {}, el("tr", {}, ...head)),
        el("tbody", {}, ...devices.map((d) => deviceRow(d, low_battery, canEdit() ? rotate : null))))
      : el("p", { class: "empty" }, tr(problems.checked ? "devices.none" : "devices.none_found")),
      el("p", { class: "muted" }, tr("devices.legend", { low: low_battery })));
  }
  form.onsubmit = (e) => { e.preventDefault(); load(); };
  problems.onchange = load;
  await load();
}
main();
