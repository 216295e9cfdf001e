// Sagas: counts per state, filters (state, type, step, service, time range), search by saga id, order id or
// trace id, keyset pagination (the API's next_cursor), stuck sagas highlighted.

import { config, get } from "./api.js";
import { badge, fmtTime, h, replace } from "./dom.js";

const FILTERS = ["status", "type", "step", "service", "from", "to"];

/** `datetime-local` value (local time) -> RFC 3339 UTC, or "" */
function toRfc3339(local) {
  if (!local) return "";
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function listPage(params, onChange) {
  const state = {
    filters: Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || ""])),
    q: params.get("q") || "",
    cursors: [""], // cursor of each page walked so far; the last is the current page
    limit: Math.min(500, Math.max(1, Number(params.get("limit")) || 25)),
  };

  const counts = h("div", { class: "counts", id: "counts" });
  const statusSelect = h("select", { id: "filter-status", name: "status" },
    h("option", { value: "" }, "any state"));
  const input = (name, placeholder) =>
    h("input", { id: `filter-${name}`, name, placeholder, value: state.filters[name] });
  const fromInput = h("input", { id: "filter-from", name: "from", type: "datetime-local",
    value: toLocalInput(state.filters.from) });
  const toInput = h("input", { id: "filter-to", name: "to", type: "datetime-local",
    value: toLocalInput(state.filters.to) });
  const typeInput = input("type", "saga type");
  const stepInput = input("step", "step");
  const serviceInput = input("service", "service");
  const searchInput = h("input", { id: "search", name: "q", type: "search", value: state.q,
    placeholder: "saga id, order id or trace id" });
  const rows = h("tbody", { id: "saga-rows" });
  const pager = h("div", { class: "pager" });
  const caption = h("p", { class: "caption", id: "list-caption" });

  function query() {
    const q = new URLSearchParams();
    for (const k of FILTERS) if (state.filters[k]) q.set(k, state.filters[k]);
    if (state.q) q.set("q", state.q);
    if (state.limit !== 25) q.set("limit", state.limit);
    return q.toString();
  }

  function apply() {
    state.filters = {
      status: statusSelect.value,
      type: typeInput.value.trim(),
      step: stepInput.value.trim(),
      service: serviceInput.value.trim(),
      from: toRfc3339(fromInput.value),
      to: toRfc3339(toInput.value),
    };
    state.q = searchInput.value.trim();
    state.cursors = [""];
    onChange(query());
    return refresh();
  }

  const form = h("form", { class: "filters", id: "filters", onsubmit: (e) => { e.preventDefault(); apply(); } },
    h("label", {}, "State ", statusSelect),
    h("label", {}, "Type ", typeInput),
    h("label", {}, "Step ", stepInput),
    h("label", {}, "Service ", serviceInput),
    h("label", {}, "Started from ", fromInput),
    h("label", {}, "to ", toInput),
    h("label", { class: "search" }, "Search ", searchInput),
    h("button", { type: "submit", id: "apply" }, "Apply"),
    h("button", { type: "button", id: "reset", onclick: () => {
      for (const el of [typeInput, stepInput, serviceInput, fromInput, toInput, searchInput]) el.value = "";
      statusSelect.value = "";
      apply();
    } }, "Reset"));

  const node = h("section", { class: "page list" },
    counts, form, caption,
    h("table", { class: "sagas", id: "sagas" },
      h("thead", {}, h("tr", {},
        ["Saga id", "State", "Type", "Order id", "Started", "Last event", "Failed step", "Events", "Services"]
          .map((c) => h("th", {}, c)))),
      rows),
    pager);

  function renderCounts(stats) {
    const chips = [h("button", { type: "button", class: "chip total", "data-count-state": "",
      onclick: () => { statusSelect.value = ""; apply(); } },
      h("span", { class: "n" }, String(stats.sagas_total)), " sagas")];
    for (const [st, n] of Object.entries(stats.sagas_by_status)) {
      chips.push(h("button", { type: "button", class: `chip state-${st.toLowerCase()}`, "data-count-state": st,
        onclick: () => { statusSelect.value = st; apply(); } },
        h("span", { class: "n" }, String(n)), ` ${st}`));
    }
    chips.push(h("span", { class: `chip stuck${stats.stuck_sagas > 0 ? " alert" : ""}`, id: "stuck-count",
      title: `not terminal and silent for ${stats.stuck_after_seconds} s` },
      h("span", { class: "n" }, String(stats.stuck_sagas)), " stuck"));
    replace(counts, chips);
    if (statusSelect.options.length === 1) {
      for (const st of Object.keys(stats.sagas_by_status)) statusSelect.append(h("option", { value: st }, st));
      statusSelect.value = state.filters.status;
    }
  }

  function renderRows(items, stats, cfg) {
    const terminal = new Set(cfg.terminalStates || []);
    const stuckBefore = Date.now() - stats.stuck_after_seconds * 1000;
    replace(rows, items.map((saga) => {
      const stuck = !terminal.has(saga.status) && Date.parse(saga.updated_at) < stuckBefore;
      return h("tr", { class: stuck ? "stuck" : null, "data-saga-id": saga.saga_id, "data-state": saga.status,
        "data-stuck": stuck ? "true" : null },
        h("td", {}, h("a", { href: `#/saga/${encodeURIComponent(saga.saga_id)}`, class: "saga-link" }, saga.saga_id),
          stuck ? h("span", { class: "stuck-tag", title: "not terminal and silent too long" }, "stuck") : null),
        h("td", {}, badge(saga.status)),
        h("td", {}, saga.saga_type),
        h("td", {}, saga.order_id ?? ""),
        h("td", { class: "time" }, fmtTime(saga.started_at)),
        h("td", { class: "time" }, fmtTime(saga.updated_at)),
        h("td", {}, saga.failed_step ?? ""),
        h("td", { class: "num" }, String(saga.event_count)),
        h("td", { class: "services" }, saga.services.map((sv) => h("div", {}, sv))));
    }));
    if (items.length === 0) {
      rows.append(h("tr", { class: "empty" }, h("td", { colspan: "9" }, "No saga matches.")));
    }
  }

  function renderPager(next) {
    const pageNo = state.cursors.length;
    replace(pager,
      h("button", { type: "button", id: "prev-page", disabled: pageNo <= 1 ? "disabled" : null,
        onclick: () => { state.cursors.pop(); refresh(); } }, "← Newer"),
      h("span", { class: "page-no" }, `page ${pageNo}`),
      h("button", { type: "button", id: "next-page", disabled: next ? null : "disabled",
        onclick: () => { state.cursors.push(next); refresh(); } }, "Older →"));
  }

  let latest = 0;

  async function refresh() {
    // a poll still in flight when the operator pages or filters must not paint over the newer answer
    const seq = ++latest;
    const search = state.q;
    const cursor = state.cursors[state.cursors.length - 1];
    const [stats, cfg, page] = await Promise.all([
      get("/api/v1/stats"),
      config(),
      search
        ? get("/api/v1/search", { q: search })
        : get("/api/v1/sagas", { ...state.filters, cursor, limit: state.limit }),
    ]);
    if (seq !== latest) return;
    if (search) {
      caption.textContent = `Sagas named by “${search}” (saga id, order id or trace id)`;
      replace(pager);
    } else {
      caption.textContent = "Newest first";
      renderPager(page.next_cursor);
    }
    renderCounts(stats);
    renderRows(page.items, stats, cfg);
  }

  return { node, refresh };
}
