// Service statistics: pick a community (or all the login may see) and a range of months; three
// charts (incidents, response times, share acknowledged in time against the target) and a table
// of the same figures. Months are each community's own (its time zone).
"use strict";
const monthOf = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}`;
function monthsAgo(n) {
  const d = new Date();
  d.setDate(1);
  d.setMonth(d.getMonth() - n);
  return monthOf(d);
}

// Every month from `since` to `until` (YYYY-MM, inclusive), so months without incidents show.
function monthRange(since, until) {
  const out = [];
  let [y, m] = since.split("-").map(Number);
  const [y2, m2] = until.split("-").map(Number);
  while ((y < y2 || (y === y2 && m <= m2)) && out.length < 120) {
    out.push(`${y}-${String(m).padStart(2, "0")}`);
    m += 1;
    if (m > 12) { m = 1; y += 1; }
  }
  return out;
}

const pct = (x) => (x === null || x === undefined ? "—" : `${Math.round(x * 1000) / 10}%`);
const num = (x) => (x === null || x === undefined ? "—" : String(x));
const TARGET_COLOUR = "#dc2626";
const TIMINGS = ["first_notification", "acknowledgement", "resolution"];
const zoom = [{ type: "inside" }, { type: "slider", height: 16, bottom: 6 }];
const base = (title) => ({
  title: { text: title, left: 0, top: 0, textStyle: { fontSize: 13 } },
  legend: { top: 22, left: 0 },
  tooltip: { trigger: "axis" },
  grid: { left: 52, right: 24, top: 64, bottom: 48 },
  dataZoom: zoom,
});

function drawCounts(div, months, rows) {
  newChart(div).setOption({
    ...base(tr("stats.chart.incidents")),
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    xAxis: { type: "category", data: months },
    yAxis: { type: "value", minInterval: 1 },
    series: ["incidents", "acknowledged", "resolved"].map((k) => ({
      name: tr(`report.${k}`), type: "bar", data: rows.map((r) => (r ? r[k] : 0)),
    })),
  });
}

function drawTimes(div, months, rows) {
  const series = [];
  for (const t of TIMINGS) {
    for (const q of ["p50", "p90"]) {
      // Resolution takes minutes where acknowledgement takes seconds: its own axis on the right.
      series.push({ name: tr(`stats.${t}_${q}`), type: "line", connectNulls: false, symbolSize: 6,
                    yAxisIndex: t === "resolution" ? 1 : 0,
                    lineStyle: q === "p90" ? { type: "dashed" } : undefined,
                    data: rows.map((r) => (r ? r[`${t}_${q}_s`] : null)) });
    }
  }
  newChart(div).setOption({
    ...base(tr("stats.chart.times")),
    legend: { top: 22, left: 0, type: "scroll" },
    grid: { left: 52, right: 60, top: 72, bottom: 48 },
    xAxis: { type: "category", data: months },
    yAxis: [{ type: "value", axisLabel: { formatter: `{value} ${tr("stats.unit.seconds")}` } },
            { type: "value", splitLine: { show: false },
              axisLabel: { formatter: `{value} ${tr("stats.unit.seconds")}` } }],
    series,
  });
}

function drawShares(div, months, rows, target) {
  const line = (k) => rows.map((r) => (r && r[k] !== null ? Math.round(r[k] * 1000) / 10 : null));
  newChart(div).setOption({
    ...base(tr("stats.chart.shares")),
    tooltip: { trigger: "axis", valueFormatter: (v) => (v === null || v === undefined ? "—" : `${v}%`) },
    xAxis: { type: "category", data: months },
    yAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } },
    series: [
      { name: tr("report.within_60s"), type: "line", data: line("acknowledged_within_60s"), symbolSize: 6,
        markLine: { symbol: "none", lineStyle: { type: "dashed", color: TARGET_COLOUR },
                    label: { formatter: "{b}", position: "insideStartTop", color: TARGET_COLOUR },
                    data: [{ name: tr("stats.target", { value: Math.round(target * 100) }),
                             yAxis: target * 100 }] } },
      { name: tr("report.within_180s"), type: "line", data: line("acknowledged_within_180s"), symbolSize: 6 },
    ],
  });
}

function figuresTable(months, rows) {
  const cols = ["incidents", "acknowledged", "resolved",
    ...TIMINGS.flatMap((t) => [`${t}_p50`, `${t}_p90`]), "within_60s", "within_180s"];
  const head = el("tr", {}, el("th", { scope: "col" }, tr("report.month")),
    ...cols.map((c) => el("th", { scope: "col" }, tr(c.startsWith("within") || !c.includes("_p")
      ? `report.${c}` : `stats.${c}`))));
  const body = months.map((m, i) => {
    const r = rows[i];
    const cell = (c) => {
      if (!r) return c.startsWith("within") || c.includes("_p") ? "—" : "0";
      if (c.startsWith("within")) return pct(r[`acknowledged_${c}`]);
      return num(c.includes("_p") ? r[`${c}_s`] : r[c]);
    };
    return el("tr", { "data-month": m }, el("th", { scope: "row" }, m),
      ...cols.map((c) => el("td", { "data-col": c }, cell(c))));
  });
  return el("table", { id: "stats-table" }, el("caption", {}, tr("stats.table")),
    el("thead", {}, head), el("tbody", {}, ...body));
}

async function main() {
  await setupPage("stats");
  const { items } = await api("/api/v1/communities?limit=200");
  const community = el("select", { id: "community", "aria-label": tr("report.community") },
    el("option", { value: "" }, tr("stats.all")),
    ...items.map((c) => el("option", { value: c.id }, `${c.name} (${c.id})`)));
  if (params.get("community")) community.value = params.get("community");
  const since = el("input", { id: "since", type: "month", value: params.get("since") || monthsAgo(11),
                               "aria-label": tr("stats.since") });
  const until = el("input", { id: "until", type: "month", value: params.get("until") || monthsAgo(0),
                               "aria-label": tr("stats.until") });
  const charts = ["counts", "times", "shares"].map((k) => el("div", { class: "chart", "data-chart": k }));
  const figures = el("div", { id: "figures" });
  const body = el("div", { id: "stats-body" });
  async function show() {
    if (!since.value || !until.value || since.value > until.value) {
      body.replaceChildren(el("p", { class: "empty", id: "stats-error" }, tr("stats.bad_range")));
      return;
    }
    const q = new URLSearchParams({ since: since.value, until: until.value });
    if (community.value) q.set("community", community.value);
    else q.set("pooled", "true");
    const r = await api(`/api/v1/stats?${q}`);
    const months = monthRange(since.value, until.value);
    const byMonth = new Map(r.rows.map((row) => [row.month, row]));
    const rows = months.map((m) => byMonth.get(m) || null);
    figures.replaceChildren(r.rows.length ? figuresTable(months, rows)
      : el("p", { class: "empty", id: "stats-none" }, tr("stats.none")));
    body.replaceChildren(...charts, figures);
    if (!(await loadEcharts())) {
      body.replaceChildren(el("p", { class: "empty", id: "charts-missing" }, tr("chart.library_missing")), figures);
      return;
    }
    drawCounts(charts[0], months, rows);
    drawTimes(charts[1], months, rows);
    drawShares(charts[2], months, rows, r.target_share);
    body.dataset.drawn = `${community.value}|${since.value}|${until.value}`;
  }
  for (const input of [community, since, until]) input.addEventListener("change", show);
  addEventListener("resize", () => charts.forEach((c) => echarts.getInstanceByDom(c)?.resize()));
  document.getElementById("page").replaceChildren(el("h2", {}, tr("stats.title")),
    el("p", { class: "filters" }, community, " ", el("label", {}, tr("stats.since"), " ", since),
      " ", el("label", {}, tr("stats.until"), " ", until)),
    el("p", { class: "muted" }, tr("stats.note")), body);
  await show();
}
main();
