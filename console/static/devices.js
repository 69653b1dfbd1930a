// Device health: offline and low-battery devices of the staff member's communities.
"use strict";
async function main() {
  await setupPage("devices");
  const { devices } = await api("/api/v1/console/devices/problems");
  const rows = devices.map((d) => el("tr", { "data-device": d.id },
    el("td", {}, d.offline ? el("span", { class: "badge critical" }, tr("device.offline")) : null,
      d.low_battery ? el("span", { class: "badge high" }, tr("device.low_battery")) : null),
    el("td", {}, tr("device." + d.kind)), el("td", {}, d.room),
    el("td", {}, el("a", { href: `/elders/${encodeURIComponent(d.elder_id)}` }, d.elder_name)),
    el("td", {}, `${d.community_name} · ${d.address}`),
    el("td", {}, d.battery === null ? "—" : `${d.battery}%`),
    el("td", {}, d.last_seen ? fmtTime(d.last_seen) : tr("device.never"))));
  const head = ["device.status", "device.kind", "device.room", "devices.elder", "elder.address",
    "device.battery", "device.last_seen"].map((k) => el("th", {}, tr(k)));
  document.getElementById("page").replaceChildren(el("h2", {}, tr("devices.title")),
    devices.length ? el("table", { id: "devices" }, el("thead", {}, el("tr", {}, ...head)), el("tbody", {}, ...rows))
      : el("p", { class: "empty" }, tr("devices.none")));
}
main();
