// The elder page: the record, contacts in calling order, devices, 7-day charts, incidents.
"use strict";
const yesNo = (b) => tr(b ? "elder.yes" : "elder.no");

function facts(e) {
  const rows = [
    ["elder.community", e.community_name], ["elder.address", e.address],
    ["elder.phone", e.phone], ["elder.lives_alone", yesNo(e.lives_alone)],
    ["elder.care_level", tr("care." + e.care_level)],
  ];
  if (!e.personal_data_hidden) {
    if ("id_number_masked" in e) rows.push(["elder.id_number", e.id_number_masked || "—"]);
    rows.push(["elder.medical_notes", e.medical_notes || "—"]);
  }
  const dl = el("dl", { class: "facts" });
  for (const [k, v] of rows) dl.append(el("dt", {}, tr(k)), el("dd", { "data-field": k }, v ?? ""));
  if (e.lives_alone) dl.querySelector('[data-field="elder.lives_alone"]').classList.add("warn");
  return el("section", { class: "card" }, dl,
    e.personal_data_hidden ? el("p", { class: "muted" }, tr("elder.personal_hidden")) : null);
}

function table(head, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, tr(h))))),
    el("tbody", {}, ...rows));
}

function deviceStatus(d) {
  if (d.offline) return el("span", { class: "badge critical" }, tr("device.offline"));
  if (d.low_battery) return el("span", { class: "badge high" }, tr("device.low_battery"));
  return d.last_seen ? el("span", { class: "badge ok" }, tr("device.ok"))
    : el("span", { class: "badge" }, tr("device.never"));
}

async function main() {
  await setupPage("elders");
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const page = document.getElementById("page");
  let e;
  try {
    e = await api(`/api/v1/console/elders/${encodeURIComponent(id)}`);
  } catch (err) {
    page.replaceChildren(el("p", { class: "empty", id: "not-found" }, tr("elder.not_found")));
    return;
  }
  const contacts = table(["elder.contact_name", "elder.phone", ""], e.contacts.map((c) => el("tr", {},
    el("td", {}, `${c.priority}. ${c.name}（${c.relation}）`), el("td", {}, c.phone),
    el("td", {}, c.can_sms ? "" : tr("elder.sms_no")))));
  const devices = table(["device.kind", "device.room", "device.battery", "device.last_seen", "device.status"],
    e.devices.map((d) => el("tr", { "data-device": d.id },
      el("td", {}, tr("device." + d.kind)), el("td", {}, d.room),
      el("td", {}, d.battery === null ? "—" : `${d.battery}%`),
      el("td", {}, d.last_seen ? fmtTime(d.last_seen) : tr("device.never")),
      el("td", {}, deviceStatus(d)))));
  const chart = (name) => el("img", {
    class: "chart", alt: tr("chart." + name), "data-chart": name,
    src: `/api/v1/console/elders/${encodeURIComponent(id)}/charts/${name}.png?lang=${lang}`,
  });
  const incidents = el("ul", { class: "incidents" }, ...e.incidents.map((i) => el("li", {},
    el("strong", {}, `${tr("kind." + i.kind)} · ${tr("status." + i.status)}`),
    " ", fmtTime(i.opened_at), i.outcome ? ` · ${tr("outcome." + i.outcome)}` : "",
    i.notes ? ` · ${i.notes}` : "")));
  page.replaceChildren(
    el("h2", { id: "elder-name" }, e.name, el("span", { class: "muted" }, ` ${e.id}`)),
    el("div", { class: "columns" },
      el("div", {}, facts(e),
        el("section", { class: "card" }, el("h3", {}, tr("elder.contacts")), contacts),
        el("section", { class: "card" }, el("h3", {}, tr("elder.incidents")), incidents)),
      el("div", {},
        el("section", { class: "card" }, el("h3", {}, tr("elder.charts")), chart("vitals"), chart("activity")),
        el("section", { class: "card" }, el("h3", {}, tr("elder.devices")), devices))),
  );
}
main();
