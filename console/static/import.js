// Ledger upload (CSV or XLSX): the right rows are imported, each wrong row is listed with its
// sheet, row number (as the spreadsheet shows it), column and reason, so staff fix those rows
// and upload the file again (importing the same rows twice updates them, never duplicates).
"use strict";
const SHEETS = ["elders", "contacts", "devices"];
const sheetName = (s) => (SHEETS.includes(s) ? tr("import.sheet." + s) : tr("import.sheet.file"));

function table(id, heads, rows) {
  return el("table", { id }, el("thead", {}, el("tr", {}, ...heads.map((k) => el("th", {}, tr(k))))),
    el("tbody", {}, ...rows));
}

function report(result) {
  const counts = SHEETS.filter((s) => result.imported[s]).map((s) => `${sheetName(s)} ${result.imported[s]}`);
  const parts = [el("p", { id: "import-summary", class: result.errors.length ? "warn-text" : "ok-text" },
    counts.length ? tr("import.done", { counts: counts.join("，") }) : tr("import.nothing"),
    result.errors.length ? ` ${tr("import.rejected", { n: result.errors.length })}` : "")];
  if (result.errors.length) {
    parts.push(el("h3", {}, tr("import.errors")), table("import-errors",
      ["import.sheet", "import.row", "import.field", "import.reason"],
      result.errors.map((e) => el("tr", { "data-row": e.row, "data-sheet": e.sheet },
        el("td", {}, sheetName(e.sheet)), el("td", { class: "row-number" }, e.row ? String(e.row) : "—"),
        el("td", {}, e.field ? (T["field." + e.field] ?? e.field) : "—"), el("td", { class: "reason" }, e.msg)))));
  }
  if (result.rows.length) {
    parts.push(el("h3", {}, tr("import.imported")), table("import-rows", ["import.sheet", "import.row", "import.record"],
      result.rows.map((r) => el("tr", { "data-row": r.row, "data-sheet": r.sheet },
        el("td", {}, sheetName(r.sheet)), el("td", {}, String(r.row)),
        el("td", {}, r.sheet === "elders" ? el("a", { href: `/elders/${encodeURIComponent(r.id)}` }, r.id) : r.id)))));
  }
  if (result.mqtt.length) {
    parts.push(el("h3", {}, tr("import.mqtt")), el("p", { class: "warn-text" }, tr("devices.shown_once")),
      table("import-mqtt", ["devices.username", "devices.password", "devices.topic_prefix"],
        result.mqtt.map((m) => el("tr", {}, el("td", { class: "mono" }, m.username),
          el("td", { class: "mono" }, m.password), el("td", { class: "mono" }, m.topic_prefix)))));
  }
  return parts;
}

async function main() {
  await setupPage("import");
  const page = document.getElementById("page");
  if (!canEdit()) {
    page.replaceChildren(el("p", { class: "empty" }, tr("import.writers_only")));
    return;
  }
  const file = el("input", { type: "file", id: "ledger-file", accept: ".csv,.xlsx", required: true });
  const kind = el("select", { id: "ledger-kind" }, el("option", { value: "" }, tr("import.kind_auto")),
    ...SHEETS.map((s) => el("option", { value: s }, sheetName(s))));
  const skip = el("input", { type: "checkbox", id: "skip-invalid", checked: true });
  const result = el("div", { id: "import-result" });
  const submit = el("button", { type: "submit", class: "primary", id: "upload" }, tr("import.upload"));
  const form = el("form", { id: "ledger-form", class: "card record-form" },
    field("import.file", file), field("import.kind", kind),
    el("label", { class: "check" }, skip, tr("import.skip_invalid")),
    el("div", { class: "actions" }, submit));
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const chosen = file.files[0];
    if (!chosen) return;
    submit.disabled = true;
    result.replaceChildren(el("p", { class: "muted" }, tr("import.working")));
    const query = new URLSearchParams({ filename: chosen.name, kind: kind.value, skip_invalid: skip.checked ? "true" : "false" });
    try {
      const done = await api(`/api/v1/console/ledger?${query}`, { method: "POST", body: await chosen.arrayBuffer(),
        headers: { "content-type": "application/octet-stream" } });
      result.replaceChildren(...report(done));
    } catch (err) {
      // 422: the file could not be read, or (all or nothing) some row was wrong: nothing imported.
      const errors = Array.isArray(err.detail) && err.detail.every((d) => "row" in d) ? err.detail : null;
      result.replaceChildren(el("p", { id: "import-summary", class: "error" },
        err.status === 413 ? tr("import.too_large") : errors ? tr("import.none_imported") : errorText(err)),
      ...(errors ? report({ imported: {}, rows: [], mqtt: [], errors }).slice(1) : []));
    }
    submit.disabled = false;
    result.dataset.done = String(Date.now());
  };
  page.replaceChildren(el("h2", {}, tr("import.title")), el("p", { class: "muted" }, tr("import.explain")),
    form, result);
}
main();
