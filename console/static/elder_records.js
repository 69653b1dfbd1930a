// The elder page's records, kept by duty staff and district admins: the elder's own details
// (edit, deactivate), contacts in calling order (drag to reorder, add, edit, remove) and away
// periods (add, end or cancel). Loaded by elder.js; street supervisors see them read-only.
"use strict";
const elderUrl = (id) => `/api/v1/elders/${encodeURIComponent(id)}`;
const optionsOf = (prefix, values, selected) =>
  values.map((v) => el("option", { value: v, selected: v === selected }, tr(prefix + v)));

// --- the elder's own details ---------------------------------------------------------------
function recordTools(e) {
  if (!e.active) return el("p", { class: "banner-inactive", id: "elder-inactive" }, tr("elder.inactive_banner"));
  if (!canEdit()) return null;
  const form = el("form", { id: "edit-elder", class: "card record-form", hidden: true },
    field("field.name", el("input", { name: "name", id: "edit-name", value: e.name, required: true })),
    field("field.address", el("input", { name: "address", id: "edit-address", value: e.address, "data-keep-empty": "true" })),
    field("field.phone", el("input", { name: "phone", id: "edit-phone", type: "tel", value: e.phone, "data-keep-empty": "true" })),
    field("field.care_level", el("select", { name: "care_level", id: "edit-care-level" },
      ...optionsOf("care.", ["self_care", "partly_dependent", "dependent"], e.care_level))),
    field("field.language", el("select", { name: "language" }, ...optionsOf("language.", ["zh-Hans", "en"], e.language))),
    e.personal_data_hidden ? null : field("field.id_number", el("input", { name: "id_number", id: "edit-id-number",
      autocomplete: "off", placeholder: e.id_number_masked || "" })),
    e.personal_data_hidden ? null : field("field.medical_notes", el("textarea", { name: "medical_notes",
      rows: "2", "data-keep-empty": "true" }, e.medical_notes || "")),
    el("label", { class: "check" }, el("input", { type: "checkbox", name: "lives_alone", checked: e.lives_alone }),
      tr("elder.lives_alone")),
    el("p", { class: "error" }),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", id: "save-elder" }, tr("form.save"))));
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    try {
      await api(elderUrl(e.id), { method: "PATCH", body: JSON.stringify(formValues(form)) });
      location.reload();
    } catch (err) { form.querySelector(".error").textContent = errorText(err); }
  };
  const edit = el("button", { type: "button", id: "edit-elder-open" }, tr("elder.edit"));
  edit.onclick = () => { form.hidden = !form.hidden; };
  const deactivate = el("button", { type: "button", id: "deactivate-elder" }, tr("elder.deactivate"));
  deactivate.onclick = async () => {
    if (!confirm(tr("elder.confirm_deactivate", { name: e.name }))) return;
    await api(`${elderUrl(e.id)}/deactivate`, { method: "POST" });
    location.reload();
  };
  return el("div", {}, el("div", { class: "actions" }, edit, deactivate), form);
}

// --- contacts in calling order ----------------------------------------------------------------
// Native drag and drop: a row dropped above or below another moves there; the new order is
// saved in one request when the drag ends (up/down buttons do the same from the keyboard).
function sortable(list, saveOrder) {
  let dragged = null;
  list.addEventListener("dragstart", (ev) => {
    dragged = ev.target.closest("li");
    ev.dataTransfer.effectAllowed = "move";
    ev.dataTransfer.setData("text/plain", dragged.dataset.contactId);
    dragged.classList.add("dragging");
  });
  list.addEventListener("dragover", (ev) => {
    const over = ev.target.closest("li");
    if (!dragged || !over || over === dragged) return;
    ev.preventDefault();
    const box = over.getBoundingClientRect();
    over[ev.clientY > box.top + box.height / 2 ? "after" : "before"](dragged);
  });
  list.addEventListener("drop", (ev) => ev.preventDefault());
  list.addEventListener("dragend", () => {
    if (!dragged) return;
    dragged.classList.remove("dragging");
    dragged = null;
    saveOrder();
  });
}

function contactItem(c, index, count, actions) {
  const channels = (c.channels || []).map((ch) => el("span", { class: `channel ${ch}` }, tr("console.channel." + ch)));
  const li = el("li", { "data-contact-id": c.id, draggable: actions ? "true" : null },
    actions ? el("span", { class: "handle", title: tr("contacts.drag") }, "⠿") : null,
    el("span", { class: "pos" }, `${index + 1}.`), " ",
    el("strong", { class: "contact-name" }, c.name), c.relation ? `（${c.relation}）` : "", " ",
    el("span", { class: "phone" }, c.phone), " ", ...channels,
    c.can_sms ? null : el("span", { class: "muted" }, ` ${tr("elder.sms_no")}`));
  if (!actions) return li;
  const button = (key, run, disabled = false) => {
    const b = el("button", { type: "button", "data-action": key, disabled }, tr("contacts." + key));
    b.onclick = run;
    return b;
  };
  li.append(el("span", { class: "row-actions" },
    button("up", () => actions.move(li, -1), index === 0),
    button("down", () => actions.move(li, 1), index === count - 1),
    button("edit", () => actions.edit(li, c)), button("remove", () => actions.remove(c))));
  return li;
}

function contactForm(c, onSubmit) {
  const form = el("form", { class: "inline-form contact-form" },
    el("input", { name: "name", placeholder: tr("field.name"), value: c ? c.name : "", required: true }),
    el("input", { name: "relation", placeholder: tr("field.relation"), value: c ? c.relation : "", "data-keep-empty": "true" }),
    el("input", { name: "phone", type: "tel", placeholder: tr("field.phone"), value: c ? c.phone : "", required: true }),
    el("button", { type: "submit", class: "primary" }, tr(c ? "form.save" : "contacts.add")),
    el("span", { class: "error" }));
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    try { await onSubmit(formValues(form)); } catch (err) { form.querySelector(".error").textContent = errorText(err); }
  };
  return form;
}

function contactsCard(e, refresh) {
  const editable = canEdit() && e.active;
  const list = el("ol", { id: "contacts", class: "contacts" });
  const status = el("p", { class: "muted", id: "contacts-status" });
  const card = el("section", { class: "card", id: "contacts-card" }, el("h3", {}, tr("elder.contacts")),
    editable && e.contacts.length > 1 ? el("p", { class: "muted" }, tr("contacts.hint")) : null, list, status);
  const render = (contacts) => {
    list.replaceChildren(...contacts.map((c, i) => contactItem(c, i, contacts.length, editable ? actions : null)));
    if (!contacts.length) list.replaceChildren(el("li", { class: "empty" }, tr("contacts.none")));
  };
  const saveOrder = async () => {
    const ids = [...list.querySelectorAll("li[data-contact-id]")].map((li) => Number(li.dataset.contactId));
    if (ids.join() === e.contacts.map((c) => c.id).join()) return;
    try {
      const saved = await api(`/api/v1/console/elders/${encodeURIComponent(e.id)}/contacts/order`,
        { method: "PUT", body: JSON.stringify({ contact_ids: ids }) });
      e.contacts = saved.contacts;
      status.textContent = tr("contacts.order_saved");
    } catch (err) { status.textContent = errorText(err); }
    render(e.contacts);
    list.dataset.saved = e.contacts.map((c) => c.id).join(",");
  };
  const actions = {
    move(li, step) {
      const other = step < 0 ? li.previousElementSibling : li.nextElementSibling;
      if (other) { (step < 0 ? other.before(li) : other.after(li)); saveOrder(); }
    },
    edit(li, c) {
      li.replaceChildren(contactForm(c, async (values) => {
        await api(`/api/v1/contacts/${c.id}`, { method: "PATCH", body: JSON.stringify(values) });
        await refresh();
      }));
    },
    async remove(c) {
      if (!confirm(tr("contacts.confirm_remove", { name: c.name }))) return;
      await api(`/api/v1/contacts/${c.id}/deactivate`, { method: "POST" });
      await refresh();
    },
  };
  render(e.contacts);
  if (editable) {
    sortable(list, saveOrder);
    const next = Math.max(0, ...e.contacts.map((c) => c.priority)) + 1;
    const add = contactForm(null, async (values) => {
      await api(`${elderUrl(e.id)}/contacts`, { method: "POST", body: JSON.stringify({ ...values, priority: next }) });
      await refresh();
    });
    add.id = "add-contact";
    card.append(el("h4", {}, tr("contacts.add")), add);
  }
  return card;
}

// --- away periods -----------------------------------------------------------------------------
const localInput = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);

function awayCard(e, refresh) {
  const editable = canEdit() && e.active;
  const rows = e.away_periods.map((p) => {
    const action = el("td", {});
    if (editable && p.state !== "over") {
      const b = el("button", { type: "button", "data-action": p.state === "upcoming" ? "cancel" : "end" },
        tr(p.state === "upcoming" ? "away.cancel" : "away.end"));
      b.onclick = async () => {
        await api(`/api/v1/console/away-periods/${p.id}/end`, { method: "POST" });
        await refresh();
      };
      action.append(b);
    }
    return el("tr", { "data-away": p.id, "data-state": p.state },
      el("td", {}, fmtTime(p.starts_at)), el("td", {}, p.ends_at ? fmtTime(p.ends_at) : tr("away.open_ended")),
      el("td", {}, p.reason), el("td", {}, el("span", { class: `badge away-${p.state}` }, tr("away." + p.state))), action);
  });
  const card = el("section", { class: "card", id: "away-card" }, el("h3", {}, tr("away.title")),
    el("p", { class: "muted" }, tr("away.explain")),
    rows.length ? el("table", { id: "away" }, el("thead", {}, el("tr", {},
      ...["away.starts", "away.ends", "away.reason", "away.state", ""].map((k) => el("th", {}, k ? tr(k) : "")))),
    el("tbody", {}, ...rows)) : el("p", { class: "empty" }, tr("away.none")));
  if (!editable) return card;
  const form = el("form", { id: "add-away", class: "inline-form" },
    field("away.starts", el("input", { type: "datetime-local", id: "away-starts", value: localInput(new Date()), required: true })),
    field("away.ends", el("input", { type: "datetime-local", id: "away-ends" })),
    field("away.reason", el("input", { id: "away-reason", placeholder: tr("away.reason_hint") })),
    el("button", { type: "submit", class: "primary" }, tr("away.add")), el("span", { class: "error" }));
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const ends = form.querySelector("#away-ends").value;
    const body = { starts_at: new Date(form.querySelector("#away-starts").value).toISOString(),
      ends_at: ends ? new Date(ends).toISOString() : null, reason: form.querySelector("#away-reason").value.trim() };
    try {
      await api(`${elderUrl(e.id)}/away-periods`, { method: "POST", body: JSON.stringify(body) });
      await refresh();
    } catch (err) { form.querySelector(".error").textContent = errorText(err); }
  };
  card.append(form);
  return card;
}
