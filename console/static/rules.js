// A community's emergency rules (grouping window, ladder per kind, reminder) as JSON: load,
// preview (validated; who each ladder reaches right now), then save. Saving is for district
// admins and only after a preview of exactly the text being saved.
"use strict";

function rungText(r) {
  const wait = r.wait_s ? ` +${r.wait_s}s` : "";
  const who = r.reaches.length ? r.reaches.join("、") : tr("rules.nobody");
  return `${tr("rules.action." + r.action)} ${r.target}${wait} → ${who}`;
}

function previewTable(p) {
  const rows = Object.entries(p.ladders).map(([kind, l]) => el("tr", { "data-kind": kind },
    el("td", {}, T["kind." + kind] ? tr("kind." + kind) : kind),
    el("td", {}, el("ol", {}, ...l.rungs.map((r) => el("li", {}, rungText(r))))),
    el("td", {}, String(l.rounds))));
  return el("div", {},
    el("p", { id: "on-shift" }, tr("rules.on_shift", {
      level: p.staff_level, names: p.on_shift.join("、") || tr("rules.nobody") })),
    el("table", { id: "preview-table" },
      el("thead", {}, el("tr", {}, ...["rules.kind", "rules.ladder", "rules.rounds"]
        .map((k) => el("th", {}, tr(k))))),
      el("tbody", {}, ...rows)));
}

async function main() {
  await setupPage("rules");
  const page = document.getElementById("page");
  const list = await api("/api/v1/communities?limit=200");
  const wanted = new URLSearchParams(location.search).get("community");
  if (wanted && !list.items.some((c) => c.id === wanted)) {  // a link to one community
    list.items.unshift(await api(`/api/v1/communities/${encodeURIComponent(wanted)}`));
  }
  const select = el("select", { id: "community" },
    ...list.items.map((c) => el("option", { value: c.id }, `${c.name} (${c.id})`)));
  if (wanted) select.value = wanted;
  const text = el("textarea", { id: "rules-json", rows: "20", spellcheck: "false" });
  const status = el("p", { id: "rules-status" });
  const result = el("div", { id: "preview" });
  const previewBtn = el("button", { type: "button", id: "preview-rules" }, tr("rules.preview"));
  const saveBtn = el("button", { type: "button", id: "save-rules", class: "primary",
    disabled: true }, tr("rules.save"));
  let previewed = null;  // the text that was last previewed successfully
  const url = () => `/api/v1/communities/${encodeURIComponent(select.value)}/rules`;

  async function load() {
    const r = await api(url());
    text.value = JSON.stringify(r.rules, null, 2);
    status.textContent = r.stored ? tr("rules.stored", { who: r.updated_by, at: fmtTime(r.updated_at) })
      : tr("rules.defaults");
    result.replaceChildren();
    previewed = null;
    saveBtn.disabled = true;
  }
  function parsed() {
    try { return JSON.parse(text.value); } catch (e) {
      status.textContent = tr("rules.bad_json", { error: e.message });
      return null;
    }
  }
  previewBtn.onclick = async () => {
    const body = parsed();
    if (body === null) return;
    try {
      result.replaceChildren(previewTable(await api(`${url()}/preview`,
        { method: "POST", body: JSON.stringify(body) })));
      previewed = text.value;
      saveBtn.disabled = ME.role !== "district_admin";
      status.textContent = tr("rules.valid");
    } catch (err) {
      result.replaceChildren();
      status.textContent = tr("rules.invalid", { error: err.message });
    }
  };
  saveBtn.onclick = async () => {
    if (previewed !== text.value) { status.textContent = tr("rules.preview_first"); return; }
    await api(url(), { method: "PUT", body: JSON.stringify(parsed()) });
    await load();
    status.textContent = tr("rules.saved");
  };
  text.oninput = () => { saveBtn.disabled = true; };
  select.onchange = load;
  page.replaceChildren(el("h2", {}, tr("console.nav.rules")), select, text,
    el("div", { class: "actions" }, previewBtn, saveBtn), status, result);
  if (list.items.length) await load();
}
main();
