// The console: hash routes (#/sagas, #/saga/<id>, #/overview), the token field, polling, the error banner.

import { ApiError, setToken, token } from "./api.js";
import { h, replace } from "./dom.js";
import { listPage } from "./list.js";
import { detailPage } from "./detail.js";
import { overviewPage } from "./overview.js";

/** How often the page refreshes its data. */
const POLL_MS = 3000;

const main = document.getElementById("main");
const errorBox = document.getElementById("error");
const updated = document.getElementById("updated");
let page = null;
let generation = 0;

function showError(e) {
  let text;
  if (e instanceof ApiError && e.status === 401) {
    text = token()
      ? "The API token was refused (401 unauthorized): enter the token the service was started with (--api-token)."
      : "This service needs an API token (401 unauthorized): enter it above.";
  } else if (e instanceof ApiError && e.status === 404) {
    text = `Not found: ${e.message}`;
  } else if (e instanceof ApiError) {
    text = `The API answered ${e.status || "nothing"} (${e.code}): ${e.message}`;
  } else {
    text = `The page failed: ${e?.message ?? e}`;
  }
  errorBox.textContent = text;
  errorBox.dataset.status = e instanceof ApiError ? String(e.status) : "";
  errorBox.hidden = false;
  document.body.classList.add("has-error");
  if (e instanceof ApiError && e.status === 401) {
    document.getElementById("token").placeholder = token() ? "token refused: enter another" : "--api-token";
    // no data without a valid token
    replace(main);
    page = null;
  }
}

function clearError() {
  errorBox.hidden = true;
  errorBox.textContent = "";
  document.body.classList.remove("has-error");
}

function route() {
  const hash = location.hash.replace(/^#/, "") || "/sagas";
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  if (path.startsWith("/saga/")) {
    return { name: "detail", make: () => detailPage(decodeURIComponent(path.slice("/saga/".length))) };
  }
  if (path === "/overview") return { name: "overview", make: () => overviewPage() };
  return { name: "sagas", make: () => listPage(params, (q) => navigate(`#/sagas${q ? `?${q}` : ""}`)) };
}

function navigate(hash) {
  if (location.hash === hash) return;
  history.replaceState(null, "", hash);
  // the list keeps its own state; only the address changes (shareable filters)
}

async function refresh(gen) {
  if (!page) return;
  try {
    await page.refresh();
    if (gen !== generation) return;
    clearError();
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (gen !== generation) return;
    showError(e);
  }
}

async function show() {
  generation += 1;
  const gen = generation;
  const r = route();
  document.body.dataset.page = r.name;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.id === `nav-${r.name === "detail" ? "sagas" : r.name}`);
  }
  replace(main, h("p", { class: "loading" }, "Loading…"));
  page = r.make();
  replace(main, page.node);
  await refresh(gen);
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  setToken(input.value.trim());
  input.value = "";
  input.placeholder = token() ? "token set for this tab" : "--api-token (kept for this tab only)";
  show();
});
document.getElementById("token-clear").addEventListener("click", () => {
  setToken("");
  document.getElementById("token").placeholder = "--api-token (kept for this tab only)";
  show();
});
if (token()) document.getElementById("token").placeholder = "token set for this tab";

window.addEventListener("hashchange", show);
setInterval(() => {
  if (document.visibilityState === "visible") refresh(generation);
}, POLL_MS);
show();
