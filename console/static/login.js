"use strict";
async function loginMain() {
  await loadTranslations();
  document.title = tr("console.title");
  document.getElementById("login-title").textContent = tr("console.login.title");
  document.getElementById("l-user").textContent = tr("console.login.username");
  document.getElementById("l-pass").textContent = tr("console.login.password");
  document.getElementById("submit").textContent = tr("console.login.submit");
  const switcher = document.getElementById("lang");
  switcher.textContent = tr("console.lang_switch");
  switcher.onclick = () => {
    localStorage.setItem("eldercare.lang", lang === "en" ? "zh-Hans" : "en");
    location.reload();
  };
  const form = document.getElementById("login");
  const error = document.getElementById("error");
  form.onsubmit = async (e) => {
    e.preventDefault();
    error.hidden = true;
    const body = JSON.stringify({
      username: document.getElementById("username").value,
      password: document.getElementById("password").value,
    });
    const res = await fetch("/api/v1/login", {
      method: "POST", headers: { "content-type": "application/json" }, body,
    });
    if (res.ok) { location.href = "/"; return; }
    error.textContent = tr(res.status === 423 ? "console.login.locked"
      : res.status === 429 ? "console.login.throttled"
      : res.status === 401 ? "console.login.wrong" : "console.login.error");
    error.dataset.status = res.status;
    error.hidden = false;
  };
}
loginMain();
