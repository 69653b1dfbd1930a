// Elders of the staff member's communities: search (deactivated ones on request), and a new
// elder's record for those who keep the registry (duty staff, district admins).
"use strict";
async function search(q, inactive, list) {
  const query = new URLSearchParams({ q, include_inactive: inactive ? "true" : "false" });
  const { elders } = await api(`/api/v1/console/elders?${query}`);
  list.replaceChildren(...elders.map((e) => el("li", { "data-elder": e.id, class: e.active ? null : "inactive" },
    el("a", { href: `/elders/${encodeURIComponent(e.id)}` }, e.name), " ",
    el("span", { class: "muted" }, `${e.id} · ${e.community_name} · ${e.address}`),
    e.active ? null : el("span", { class: "badge muted" }, tr("elder.inactive")),
    e.lives_alone ? el("span", { class: "badge high" }, tr("elder.lives_alone")) : null,
    e.open_incidents ? el("span", { class: "badge critical" }, tr("elders.open_incidents", { n: e.open_incidents })) : null)));
  if (!elders.length) list.replaceChildren(el("li", { class: "empty" }, tr("elders.none")));
}

// The new elder's form: the community is one of the caller's.
async function newElderForm() {
  const { items } = await api("/api/v1/communities?limit=500");
  const option = (prefix) => (v) => el("option", { value: v }, tr(prefix + v));
  const form = el("form", { id: "new-elder", class: "card record-form", hidden: true },
    el("h3", {}, tr("elders.new")),
    field("field.id", el("input", { name: "id", id: "elder-id", required: true })),
    field("field.community_id", el("select", { name: "community_id", id: "elder-community" },
      ...items.map((c) => el("option", { value: c.id }, `${c.name} (${c.id})`)))),
    field("field.name", el("input", { name: "name", id: "elder-name-input", required: true })),
    field("field.id_number", el("input", { name: "id_number", id: "elder-id-number", autocomplete: "off" })),
    field("field.address", el("input", { name: "address", id: "elder-address" })),
    field("field.phone", el("input", { name: "phone", id: "elder-phone", type: "tel" })),
    field("field.care_level", el("select", { name: "care_level" },
      ...["self_care", "partly_dependent", "dependent"].map(option("care.")))),
    field("field.language", el("select", { name: "language" }, ...["zh-Hans", "en"].map(option("language.")))),
    field("field.medical_notes", el("textarea", { name: "medical_notes", rows: "2" })),
    el("label", { class: "check" }, el("input", { type: "checkbox", name: "lives_alone", id: "elder-lives-alone" }),
      tr("elder.lives_alone")),
    el("p", { class: "error", id: "new-elder-error" }),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", id: "create-elder" }, tr("form.create"))));
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    try {
      const created = await api("/api/v1/elders", { method: "POST", body: JSON.stringify(formValues(form)) });
      location.href = `/elders/${encodeURIComponent(created.id)}`;
    } catch (err) {
      form.querySelector("#new-elder-error").textContent = errorText(err);
    }
  };
  return form;
}

async function main() {
  await setupPage("elders");
  const input = el("input", { type: "search", id: "q", placeholder: tr("elders.placeholder"), value: params.get("q") || "" });
  const inactive = el("input", { type: "checkbox", id: "include-inactive" });
  const list = el("ul", { class: "results", id: "results" });
  const run = () => search(input.value, inactive.checked, list);
  const form = el("form", { class: "search" }, input, el("button", { type: "submit", class: "primary" }, tr("elders.search")),
    el("label", { class: "check" }, inactive, tr("elders.include_inactive")));
  form.onsubmit = (e) => { e.preventDefault(); run(); };
  inactive.onchange = run;
  const page = document.getElementById("page");
  const title = el("h2", {}, tr("elders.title"));
  page.replaceChildren(title, form, list);
  if (canEdit()) {
    const create = await newElderForm();
    const open = el("button", { type: "button", id: "open-new-elder" }, tr("elders.new"));
    open.onclick = () => { create.hidden = false; create.querySelector("#elder-id").focus(); };
    title.after(open, create);
  }
  await run();
}
main();
