// Elder search within the staff member's communities.
"use strict";
async function search(q, list) {
  const { elders } = await api(`/api/v1/console/elders?q=${encodeURIComponent(q)}`);
  list.replaceChildren(...elders.map((e) => el("li", { "data-elder": e.id },
    el("a", { href: `/elders/${encodeURIComponent(e.id)}` }, e.name), " ",
    el("span", { class: "muted" }, `${e.id} · ${e.community_name} · ${e.address}`),
    e.lives_alone ? el("span", { class: "badge high" }, tr("elder.lives_alone")) : null,
    e.open_incidents ? el("span", { class: "badge critical" }, tr("elders.open_incidents", { n: e.open_incidents })) : null)));
  if (!elders.length) list.replaceChildren(el("li", { class: "empty" }, tr("elders.none")));
}

async function main() {
  await setupPage("elders");
  const input = el("input", { type: "search", id: "q", placeholder: tr("elders.placeholder"), value: params.get("q") || "" });
  const list = el("ul", { class: "results", id: "results" });
  const form = el("form", { class: "search" }, input, el("button", { type: "submit", class: "primary" }, tr("elders.search")));
  form.onsubmit = (e) => { e.preventDefault(); search(input.value, list); };
  document.getElementById("page").replaceChildren(el("h2", {}, tr("elders.title")), form, list);
  await search(input.value, list);
}
main();
