// Shared by every console page: language, translations, the header, and API calls that carry
// the CSRF token (double submit: the token is in a cookie and must come back in a header).
"use strict";
const params = new URLSearchParams(location.search);
if (params.get("lang")) localStorage.setItem("eldercare.lang", params.get("lang"));
// The browser's own choice, else the platform's default (ELDERCARE_LANGUAGE, set by the server).
const lang = (localStorage.getItem("eldercare.lang") || document.documentElement.dataset.defaultLang)
  === "en" ? "en" : "zh-Hans";
let T = {};
let ME = null;

const tr = (key, values = {}) =>
  (T[key] ?? key).replace(/\{(\w+)\}/g, (_, k) => (values[k] ?? ""));
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
};
// Where the elder is, from the server's whereabouts ({at_home, distance_m, direction}): "在家",
// "距家约1.5公里，东北方向", or "" when neither home nor direction is known.
const distanceText = (m) => (m < 1000 ? tr("unit.m", { n: Math.max(10, Math.round(m / 10) * 10) })
  : tr("unit.km", { n: (m / 1000).toFixed(1) }));
const whereText = (w) => (w.at_home ? tr("where.home")
  : w.distance_m !== null && w.direction
    ? tr("where.away", { distance: distanceText(w.distance_m), direction: tr(`dir.${w.direction}`) }) : "");
const fmtTime = (iso) => iso ? new Date(iso).toLocaleString(lang === "en" ? "en-GB" : "zh-CN") : "";
const csrf = () => (document.cookie.match(/(?:^|;\s*)eldercare_csrf=([^;]+)/) || [])[1] || "";

async function api(url, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.method && options.method !== "GET") {
    headers["X-CSRF-Token"] = decodeURIComponent(csrf());
    if (typeof options.body === "string") headers["content-type"] = "application/json";
  }
  const res = await fetch(url, { ...options, headers, credentials: "same-origin" });
  if (res.status === 401 && !url.endsWith("/login")) {
    location.href = "/login";
    throw new Error("login required");
  }
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
    const err = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    err.status = res.status;
    err.detail = detail;
    throw err;
  }
  return res.json();
}

// Who keeps the registry's records: district admins and duty staff (street supervisors read).
const canEdit = () => ME && (ME.role === "district_admin" || ME.role === "duty_staff");

// Why the server refused a value, in the page's language: the locale text `errors.<type>` with
// the error's `ctx` filled in (devices/reasons.py); the server's English text for a type the
// locales do not know.
function reasonText(d) {
  const key = `errors.${d.type}`;
  if (d.type && T[key] !== undefined) return tr(key, d.ctx || {});
  return String(d.msg ?? "").replace(/^Value error, /, "");
}

// An API error as a person reads it: each field named in their language, with the reason.
function errorText(err) {
  if (!Array.isArray(err.detail)) return tr("form.failed", { error: err.message });
  return err.detail.map((d) => {
    const name = (d.loc || []).filter((x) => typeof x === "string" && x !== "body").pop() || "";
    return name ? `${T["field." + name] ?? name}：${reasonText(d)}` : reasonText(d);
  }).join("；");
}

// A labelled form field; `input` carries its own id and name.
const field = (key, input) => el("label", { class: "field" }, el("span", {}, tr(key)), input);

// The values of a form's named fields: checkboxes as booleans, empty optional fields left out.
function formValues(form) {
  const out = {};
  for (const input of form.querySelectorAll("[name]")) {
    if (input.type === "checkbox") out[input.name] = input.checked;
    else if (input.value.trim() !== "" || input.dataset.keepEmpty === "true") out[input.name] = input.value.trim();
  }
  return out;
}

// Apache ECharts, served by the console itself (/static/echarts.min.js, no CDN); false when
// it is not installed (the page then says how to install it).
function loadEcharts() {
  if (window.echarts) return Promise.resolve(true);
  return new Promise((resolve) => {
    const script = el("script", { src: "/static/echarts.min.js" });
    script.onload = () => resolve(true);
    script.onerror = () => resolve(false);
    document.head.append(script);
  });
}

function newChart(box, group) {
  const old = echarts.getInstanceByDom(box);
  if (old) old.dispose();
  // SVG: crisp on any screen, and the labels are text (read by screen readers and tests).
  const chart = echarts.init(box, null, { renderer: "svg", locale: lang === "en" ? "EN" : "ZH" });
  if (group) chart.group = group;
  // No animation: a duty console shows the state at once (and screenshots show it whole).
  chart.setOption({ animation: false });
  return chart;
}

async function loadTranslations() {
  T = await api(`/api/v1/i18n/${lang}`);
  document.documentElement.lang = lang;
}

// Header with navigation, the signed-in person, logout and the language switch.
async function setupPage(active) {
  await loadTranslations();
  ME = await api("/api/v1/me");
  document.title = tr("console.title");
  const nav = el("nav");
  const pages = [["board", "/"], ["elders", "/elders"], ["devices", "/devices"]];
  if (canEdit()) pages.push(["import", "/import"]);
  pages.push(["reports", "/reports"], ["stats", "/stats"]);
  if (ME.role === "district_admin") pages.push(["rules", "/rules"], ["admin", "/admin"]);
  for (const [key, href] of pages) {
    nav.append(el("a", { href, class: key === active ? "active" : null }, tr(`console.nav.${key}`)));
  }
  const who = el("span", { class: "who", id: "who" }, `${ME.name} · ${tr("role." + ME.role)}`);
  const logout = el("button", { type: "button", id: "logout" }, tr("console.logout"));
  logout.onclick = async () => {
    await api("/api/v1/logout", { method: "POST" });
    location.href = "/login";
  };
  const switcher = el("button", { type: "button", id: "lang" }, tr("console.lang_switch"));
  switcher.onclick = () => {
    localStorage.setItem("eldercare.lang", lang === "en" ? "zh-Hans" : "en");
    location.search = "";
  };
  const header = document.getElementById("top");
  header.replaceChildren(el("h1", {}, tr("console.title")), nav,
    el("span", { id: "conn", class: "conn" }), who, switcher, logout);
}
