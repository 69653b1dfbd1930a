// The elder page: the record, contacts in calling order, devices, charts, incidents. Charts are
// drawn by Apache ECharts, served by the console itself (/static/echarts.min.js, no CDN).
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

const RANGES = [1, 7, 30, 90];
const LIMIT_COLOUR = "#dc2626";

const zoom = [{ type: "inside" }, { type: "slider", height: 16, bottom: 6 }];

function drawVitals(box, data) {
  box.replaceChildren();
  if (!data.panels.length) {
    box.append(el("p", { class: "empty", "data-chart-empty": "vitals" }, tr("chart.no_data")));
    return;
  }
  for (const panel of data.panels) {
    const div = el("div", { class: "chart", "data-panel": panel.key });
    box.append(div);
    const limits = panel.limits.map((l) => l.value);
    const chart = newChart(div, "vitals");
    chart.setOption({
      title: { text: tr(panel.key), left: 0, top: 0, textStyle: { fontSize: 13 } },
      legend: { top: 0, right: 0 },
      tooltip: { trigger: "axis" },
      grid: { left: 44, right: 16, top: 56, bottom: 48 },
      xAxis: { type: "time", min: data.since, max: data.until },
      // The alert lines stay in view even when every reading is far from them.
      yAxis: { type: "value", min: (v) => Math.floor(Math.min(v.min, ...limits) * 0.95),
               max: (v) => Math.ceil(Math.max(v.max, ...limits) * 1.05) },
      dataZoom: zoom,
      series: panel.series.map((s, i) => ({
        name: tr(s.series), type: "line", data: s.points, symbolSize: 5,
        markLine: i > 0 ? undefined : {
          symbol: "none", lineStyle: { type: "dashed", color: LIMIT_COLOUR },
          label: { formatter: "{b}", position: "insideStartTop", color: LIMIT_COLOUR },
          data: panel.limits.map((l) => ({ name: tr(l.key, { value: l.value }), yAxis: l.value })),
        },
      })),
    });
  }
  echarts.connect("vitals");  // zoom one panel, the others follow; one tooltip time for all
}

function drawActivity(div, data) {
  const chart = newChart(div);
  chart.setOption({
    title: { text: tr("chart.activity"), left: 0, top: 0, textStyle: { fontSize: 13 } },
    legend: { top: 0, right: 0 },
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    grid: { left: 44, right: 16, top: 56, bottom: 48 },
    xAxis: { type: "category", data: data.days.map((d) => d.slice(5)) },
    yAxis: { type: "value", name: tr("chart.events_per_day") },
    dataZoom: zoom,
    graphic: data.series.length ? [] : [{ type: "text", left: "center", top: "middle",
                                          style: { text: tr("chart.no_data"), fontSize: 16, fill: "#6b7280" } }],
    series: data.series.map((s) => ({ name: tr(s.series), type: "bar", stack: "day", data: s.values })),
  });
}

function chartsCard(id) {
  const picker = el("select", { id: "chart-range" }, ...RANGES.map((d) => el("option",
    { value: d, selected: d === 7 }, d === 1 ? tr("chart.range_day") : tr("chart.range_days", { days: d }))));
  const vitals = el("div", { "data-chart": "vitals" });
  const activity = el("div", { class: "chart", "data-chart": "activity" });
  const card = el("section", { class: "card" },
    el("h3", {}, tr("elder.charts"), el("label", { class: "chart-range" }, tr("chart.range"), " ", picker)),
    vitals, activity);
  const draw = async () => {
    if (!(await loadEcharts())) {
      card.replaceChildren(el("h3", {}, tr("elder.charts")),
        el("p", { class: "empty", id: "charts-missing" }, tr("chart.library_missing")));
      return;
    }
    const url = (name) => `/api/v1/console/elders/${encodeURIComponent(id)}/charts/${name}?days=${picker.value}`;
    const [v, a] = await Promise.all([api(url("vitals")), api(url("activity"))]);
    drawVitals(vitals, v);
    drawActivity(activity, a);
    card.dataset.drawn = picker.value;
  };
  picker.addEventListener("change", draw);
  addEventListener("resize", () => card.querySelectorAll(".chart").forEach((c) => echarts.getInstanceByDom(c)?.resize()));
  return [card, draw];
}

// Where the elder has been today, around home: a plot in metres (north up) that needs no map
// tiles, the safe zone's circle if there is one, and the newest positions with map links.
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function positionsCard(e) {
  const card = el("section", { class: "card", id: "positions" }, el("h3", {}, tr("elder.positions")));
  const points = (e.positions || []).filter((p) => p.east_m !== undefined);
  if (!e.positions || !e.positions.length) {
    card.append(el("p", { class: "empty" }, tr("elder.positions_none")));
    return card;
  }
  if (points.length) {
    const zone = e.safe_zone && e.safe_zone.shape === "circle" ? e.safe_zone.radius_m : 0;
    const reach = Math.max(200, zone * 1.1, ...points.map((p) => Math.hypot(p.east_m, p.north_m) * 1.15));
    const size = 260, k = size / 2 / reach;
    const plot = svg("svg", { viewBox: `${-size / 2} ${-size / 2} ${size} ${size}`, width: size, height: size,
      class: "positions-plot", role: "img", "aria-label": tr("elder.positions") });
    plot.append(svg("line", { x1: -size / 2, y1: 0, x2: size / 2, y2: 0, class: "axis" }),
      svg("line", { x1: 0, y1: -size / 2, x2: 0, y2: size / 2, class: "axis" }),
      svg("text", { x: 4, y: -size / 2 + 12, class: "axis-label" }, tr("dir.n")));
    if (zone) plot.append(svg("circle", { cx: 0, cy: 0, r: zone * k, class: "zone" }));
    plot.append(svg("circle", { cx: 0, cy: 0, r: 5, class: "home" }));
    points.slice().reverse().forEach((p, i) => {
      const dot = svg("circle", { cx: p.east_m * k, cy: -p.north_m * k, r: i === points.length - 1 ? 5 : 3,
        class: i === points.length - 1 ? "latest" : "point" });
      dot.append(svg("title", {}, `${fmtTime(p.at)} · ${p.at_home ? tr("where.home") : distanceText(p.distance_m)}`));
      plot.append(dot);
    });
    card.append(plot, el("p", { class: "muted" }, tr("elder.positions_scale", { m: distanceText(reach) })));
  }
  const latest = e.positions.slice(0, 5).map((p) => el("li", {}, `${fmtTime(p.at)} · ${whereText(p)} `,
    el("a", { href: p.map_link, target: "_blank", rel: "noreferrer" }, tr("family.map"))));
  card.append(el("ul", { class: "positions-list" }, ...latest));
  return card;
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = el("script", { src });
    script.onload = resolve;
    script.onerror = reject;
    document.head.append(script);
  });
}

async function main() {
  await setupPage("elders");
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const page = document.getElementById("page");
  const url = `/api/v1/console/elders/${encodeURIComponent(id)}`;
  let e;
  try {
    [e] = await Promise.all([api(url), loadScript("/static/elder_records.js")]);
  } catch (err) {
    page.replaceChildren(el("p", { class: "empty", id: "not-found" }, tr("elder.not_found")));
    return;
  }
  // Contacts and away periods redraw themselves after a change, from the record as stored.
  const cards = {};
  const refresh = async () => {
    const fresh = await api(url);
    const contacts = contactsCard(fresh, refresh), away = awayCard(fresh, refresh);
    cards.contacts.replaceWith(contacts);
    cards.away.replaceWith(away);
    Object.assign(cards, { contacts, away });
  };
  cards.contacts = contactsCard(e, refresh);
  cards.away = awayCard(e, refresh);
  const devices = table(["device.kind", "device.room", "device.battery", "device.last_seen", "device.status"],
    e.devices.map((d) => el("tr", { "data-device": d.id },
      el("td", {}, tr("device." + d.kind)), el("td", {}, d.room),
      el("td", {}, d.battery === null ? "—" : `${d.battery}%`),
      el("td", {}, d.last_seen ? fmtTime(d.last_seen) : tr("device.never")),
      el("td", {}, deviceStatus(d)))));
  const [charts, drawCharts] = chartsCard(id);
  const incidents = el("ul", { class: "incidents" }, ...e.incidents.map((i) => el("li", {},
    el("strong", {}, `${tr("kind." + i.kind)} · ${tr("status." + i.status)}`),
    " ", fmtTime(i.opened_at), i.outcome ? ` · ${tr("outcome." + i.outcome)}` : "",
    i.notes ? ` · ${i.notes}` : "")));
  page.replaceChildren(
    el("h2", { id: "elder-name" }, e.name, el("span", { class: "muted" }, ` ${e.id}`)),
    recordTools(e) || "",
    el("div", { class: "columns" },
      el("div", {}, facts(e), cards.contacts, cards.away,
        el("section", { class: "card" }, el("h3", {}, tr("elder.incidents")), incidents)),
      el("div", {},
        charts,
        positionsCard(e),
        el("section", { class: "card" }, el("h3", {}, tr("elder.devices"),
          el("a", { class: "card-link", href: `/devices?q=${encodeURIComponent(e.id)}` }, tr("elder.manage_devices"))),
        devices))),
  );
  await drawCharts();  // once in the page: ECharts sizes itself from its box
}
main();
