// District admins: staff logins (deactivate, activate, unlock) and the audit log.
"use strict";
const auditAction = (a) => T["audit." + a] ?? a;

function scopeOf(a) {
  if (a.role === "duty_staff") return a.community_name || a.community_id || "";
  if (a.role === "street_supervisor") return `${a.district} ${a.street}`.trim();
  return tr("admin.everywhere");
}

function accountRow(a, refresh) {
  const status = el("td", {},
    el("span", { class: a.active ? "badge ok" : "badge muted" },
      tr(a.active ? "admin.active" : "admin.inactive")),
    a.locked ? el("span", { class: "badge high" }, tr("admin.locked")) : null);
  const actions = el("td", { class: "actions" });
  const act = (label, run) => {
    const b = el("button", { type: "button", "data-action": label }, tr("admin." + label));
    b.onclick = async () => { b.disabled = true; await run(); await refresh(); };
    actions.append(b);
  };
  const path = `/api/v1/staff-accounts/${encodeURIComponent(a.username)}`;
  if (a.active && a.username !== ME.username) {
    act("deactivate", async () => {
      if (!confirm(tr("admin.confirm_deactivate", { name: a.display_name }))) return;
      await api(path, { method: "PATCH", body: JSON.stringify({ active: false }) });
    });
  } else if (!a.active) {
    act("activate", () => api(path, { method: "PATCH", body: JSON.stringify({ active: true }) }));
  }
  if (a.locked) act("unlock", () => api(`${path}/unlock`, { method: "POST" }));
  return el("tr", { "data-username": a.username, class: a.active ? null : "inactive" },
    el("td", {}, a.username), el("td", {}, a.display_name), el("td", {}, tr("role." + a.role)),
    el("td", {}, scopeOf(a)), status,
    el("td", {}, a.last_active ? fmtTime(a.last_active) : "—"), actions);
}

function auditRow(e) {
  const object = e.object_type ? `${T["object." + e.object_type] ?? e.object_type} ${e.object_id}`
    : "";
  return el("tr", { "data-action": e.action },
    el("td", {}, fmtTime(e.at)), el("td", {}, e.username),
    el("td", {}, auditAction(e.action)), el("td", {}, object),
    el("td", { class: "client" }, e.client));
}

const table = (id, heads, rows) => el("table", { id },
  el("thead", {}, el("tr", {}, ...heads.map((k) => el("th", {}, tr(k))))),
  el("tbody", {}, ...rows));

async function main() {
  await setupPage("admin");
  const page = document.getElementById("page");
  if (ME.role !== "district_admin") {
    page.replaceChildren(el("p", { class: "empty" }, tr("admin.admins_only")));
    return;
  }
  const accounts = el("section", { id: "accounts-section" });
  const audit = el("section", { id: "audit-section" });
  page.replaceChildren(accounts, audit);

  async function loadAccounts() {
    const data = await api("/api/v1/staff-accounts");
    accounts.replaceChildren(el("h2", {}, tr("admin.accounts")), table("accounts",
      ["admin.username", "admin.name", "admin.role", "admin.scope", "admin.status",
        "admin.last_active", ""], data.accounts.map((a) => accountRow(a, refresh))));
  }

  const filter = el("input", { id: "audit-user", type: "search",
    placeholder: tr("admin.filter_user") });
  const body = el("tbody");
  const more = el("button", { type: "button", id: "audit-more", hidden: true }, tr("admin.more"));
  let before = null;
  async function loadAudit(reset) {
    if (reset) { before = null; body.replaceChildren(); }
    const q = new URLSearchParams({ limit: "50" });
    if (filter.value.trim()) q.set("username", filter.value.trim());
    if (before) q.set("before_id", before);
    const data = await api(`/api/v1/audit?${q}`);
    body.append(...data.entries.map(auditRow));
    before = data.next_before_id;
    more.hidden = before === null;
  }
  const form = el("form", { id: "audit-filter" }, filter,
    el("button", { type: "submit" }, tr("admin.filter")));
  form.onsubmit = (e) => { e.preventDefault(); loadAudit(true); };
  more.onclick = () => loadAudit(false);
  audit.replaceChildren(el("h2", {}, tr("admin.audit")), form,
    el("table", { id: "audit" }, el("thead", {}, el("tr", {}, ...["admin.at", "admin.who",
      "admin.action", "admin.object", "admin.client"].map((k) => el("th", {}, tr(k))))), body),
    more);

  async function refresh() { await Promise.all([loadAccounts(), loadAudit(true)]); }
  await refresh();
}
main();
