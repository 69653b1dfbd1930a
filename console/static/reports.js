// The monthly supervision report: pick a community and a month, read the figures, download the
// Excel workbook (summary, every incident, the 10 % call-back sample).
"use strict";
function lastMonth() {
  const d = new Date();
  d.setDate(1);
  d.setMonth(d.getMonth() - 1);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}`;
}

const pct = (x) => (x === null || x === undefined ? null : `${Math.round(x * 1000) / 10}%`);

async function main() {
  await setupPage("reports");
  const { items } = await api("/api/v1/communities?limit=200");
  const community = el("select", { id: "community" },
    ...items.map((c) => el("option", { value: c.id }, `${c.name} (${c.id})`)));
  const month = el("input", { id: "month", type: "month", value: params.get("month") || lastMonth() });
  if (params.get("community")) community.value = params.get("community");
  const figures = el("div", { id: "figures" });
  const download = el("a", { id: "download", class: "button" }, tr("report.page.download"));
  async function show() {
    const q = `community=${encodeURIComponent(community.value)}&month=${month.value}`;
    download.href = `/api/v1/reports/monthly.xlsx?${q}&lang=${lang}`;
    const r = await api(`/api/v1/reports/monthly?${q}`);
    const s = r.summary || {};
    const row = (key, value) => el("tr", {}, el("th", {}, tr(`report.${key}`)),
      el("td", {}, value === null || value === undefined ? "—" : String(value)));
    figures.replaceChildren(r.incidents === 0 ? el("p", { class: "empty" }, tr("report.page.none"))
      : el("table", { id: "summary" },
        row("incidents", r.incidents), row("acknowledged", s.acknowledged),
        row("resolved", s.resolved), row("acknowledgement_p50", s.acknowledgement_p50_s),
        row("acknowledgement_p90", s.acknowledgement_p90_s),
        row("within_60s", pct(s.acknowledged_within_60s)),
        row("within_180s", pct(s.acknowledged_within_180s))),
      el("p", { id: "sample" }, tr("report.page.sample", { n: r.sample, total: r.incidents })));
  }
  community.addEventListener("change", show);
  month.addEventListener("change", show);
  document.getElementById("page").replaceChildren(el("h2", {}, tr("report.page.title")),
    el("p", { class: "filters" }, community, " ", month, " ", download), figures);
  if (items.length) await show();
}
main();
