// One saga: summary, swimlanes per service on a time axis (a bar per step attempt from STARTED to its outcome,
// compensations in another colour, each failure joined to the compensations it triggered), the failures with
// their error, and every event.

import { config, get, traceUrl } from "./api.js";
import { badge, fmtMicros, fmtTime, h, micros, replace, s } from "./dom.js";

const FORWARD_END = new Set(["SUCCEEDED", "FAILED"]);
const COMP_START = "COMPENSATION_STARTED";
const COMP_END = new Set(["COMPENSATED", "COMPENSATION_FAILED"]);

function kindOf(status) {
  return status === COMP_START || COMP_END.has(status) ? "compensation" : "forward";
}

/** Pairs each attempt's start with its outcome: one bar per (step, attempt, kind). */
export function bars(events) {
  const byKey = new Map();
  for (const e of events) {
    const kind = kindOf(e.status);
    const key = `${kind}\u0000${e.step}\u0000${e.attempt}`;
    let bar = byKey.get(key);
    if (!bar) {
      bar = { key, kind, step: e.step, attempt: e.attempt, service: e.service, start: null, end: null, events: [] };
      byKey.set(key, bar);
    }
    bar.events.push(e);
    if (e.status === "STARTED" || e.status === COMP_START) {
      bar.start = e;
      bar.service = e.service;
    } else if (FORWARD_END.has(e.status) || COMP_END.has(e.status)) {
      bar.end = e;
      if (!bar.start) bar.service = e.service;
    }
  }
  return [...byKey.values()];
}

function barTimes(bar, lastTime) {
  const endT = bar.end ? Date.parse(bar.end.recorded_at) : lastTime;
  let startT;
  if (bar.start) startT = Date.parse(bar.start.recorded_at);
  else if (bar.end?.duration_micros) startT = endT - bar.end.duration_micros / 1000;
  else startT = endT;
  return [Math.min(startT, endT), Math.max(startT, endT)];
}

function swimlanes(timeline, width) {
  const events = timeline.events;
  const all = bars(events);
  const lanes = [];
  for (const b of all) if (!lanes.includes(b.service)) lanes.push(b.service);
  const times = events.map((e) => Date.parse(e.recorded_at));
  let t0 = Math.min(...times);
  let t1 = Math.max(...times);
  for (const b of all) {
    const [a] = barTimes(b, t1);
    t0 = Math.min(t0, a);
  }
  const span = Math.max(t1 - t0, 1);
  const LABEL = 170;
  const WIDTH = Math.max(700, Math.floor(width) - 2);
  const LANE = 46;
  const TOP = 28;
  const plot = WIDTH - LABEL - 150; // room for the last bars' labels
  const x = (t) => LABEL + ((t - t0) / span) * plot;
  const height = TOP + lanes.length * LANE + 10;

  const svg = s("svg", { class: "swimlanes", id: "swimlanes", viewBox: `0 0 ${WIDTH} ${height}`,
    width: WIDTH, height, role: "img", "aria-label": "Timeline: one lane per service" });
  svg.append(s("defs", {},
    s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7",
      orient: "auto-start-reverse" }, s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow-head" }))));

  // axis
  const axis = s("g", { class: "axis" });
  for (let i = 0; i <= 5; i++) {
    const t = t0 + (span * i) / 5;
    axis.append(
      s("line", { x1: x(t), x2: x(t), y1: TOP - 6, y2: height - 6, class: "tick" }),
      s("text", { x: x(t), y: TOP - 10, class: "tick-label", "text-anchor": i === 0 ? "start" : i === 5 ? "end" : "middle" },
        `+${fmtMicros((t - t0) * 1000) || "0 µs"}`));
  }
  svg.append(axis);

  lanes.forEach((service, i) => {
    const y = TOP + i * LANE;
    svg.append(s("g", { class: "lane", "data-service": service },
      s("rect", { x: 0, y, width: WIDTH, height: LANE, class: i % 2 ? "lane-bg odd" : "lane-bg" }),
      s("text", { x: 8, y: y + LANE / 2 + 4, class: "lane-label" }, service)));
  });

  const barIndex = new Map(); // event id -> bar geometry
  const barsGroup = s("g", { class: "bars" });
  for (const b of all) {
    const [a, z] = barTimes(b, t1);
    const lane = lanes.indexOf(b.service);
    const y = TOP + lane * LANE + (b.kind === "compensation" ? 24 : 6);
    const x0 = x(a);
    const w = Math.max(x(z) - x0, 6);
    const outcome = b.end ? b.end.status : "IN_FLIGHT";
    const failure = b.events.find((e) => e.status === "FAILED");
    const cause = b.events.find((e) => e.triggered_by)?.triggered_by ?? null;
    const geometry = { x0, x1: x0 + w, y, h: 16 };
    for (const e of b.events) barIndex.set(e.event_id, geometry);
    const tip = `${b.step} #${b.attempt} (${b.kind}) on ${b.service}: ${outcome}` +
      (b.end?.duration_micros != null ? `, handler ${fmtMicros(b.end.duration_micros)}` : "") +
      (b.end?.error_kind ? ` — ${b.end.error_kind}: ${b.end.error_message ?? ""}` : "");
    barsGroup.append(s("g", {
      class: `bar ${b.kind} outcome-${outcome.toLowerCase()}`,
      "data-step": b.step, "data-attempt": b.attempt, "data-kind": b.kind, "data-service": b.service,
      "data-outcome": outcome,
      "data-event-ids": b.events.map((e) => e.event_id).join(" "),
      "data-failure-id": failure ? failure.event_id : null,
      "data-triggered-by": cause,
    },
    s("title", {}, tip),
    s("rect", { x: x0, y, width: w, height: 16, rx: 3 }),
    barLabel(b, x0, w, y, WIDTH)));
  }

  // failure -> compensation links
  const links = s("g", { class: "links" });
  for (const e of events) {
    if (e.status !== "FAILED" || !e.triggered_compensations) continue;
    const from = barIndex.get(e.event_id);
    const seen = new Set();
    for (const compId of e.triggered_compensations) {
      const to = barIndex.get(compId);
      if (!to || !from || seen.has(to)) continue;
      seen.add(to);
      const sx = from.x1;
      const sy = from.y + from.h / 2;
      const tx = to.x0;
      const ty = to.y + to.h / 2;
      const mx = (sx + tx) / 2;
      links.append(s("path", {
        class: "link", "data-from": e.event_id, "data-to": compId,
        d: `M ${sx} ${sy} C ${mx} ${sy}, ${mx} ${ty}, ${tx - 2} ${ty}`, "marker-end": "url(#arrow)",
      }, s("title", {}, `failure of ${e.step} triggered this compensation`)));
    }
  }
  svg.append(barsGroup, links);
  return svg;
}

/** The step's name inside its bar when it fits, else right of it, else left of it. */
function barLabel(b, x0, w, y, width) {
  const text = `${b.step}${b.attempt > 1 ? ` #${b.attempt}` : ""}${b.kind === "compensation" ? " ↺" : ""}`;
  const textWidth = text.length * 6.5;
  if (textWidth + 10 < w) {
    return s("text", { x: x0 + 5, y: y + 12, class: "bar-label inside" }, text);
  }
  const right = x0 + w + 4 + textWidth < width - 4;
  return s("text", { x: right ? x0 + w + 4 : x0 - 4, y: y + 12, class: "bar-label",
    "text-anchor": right ? "start" : "end" }, text);
}

function traceLinks(events, template) {
  const ids = [...new Set(events.map((e) => e.metadata?.traceId).filter(Boolean))];
  if (ids.length === 0) return h("span", { class: "muted" }, "none recorded");
  return ids.map((id) => {
    const url = traceUrl(template, id);
    return url
      ? h("a", { href: url, class: "trace-link", target: "_blank", rel: "noopener noreferrer", "data-trace-id": id },
        h("code", {}, id))
      : h("code", { class: "trace-id", "data-trace-id": id }, id);
  });
}

function failures(events) {
  const byId = new Map(events.map((e) => [e.event_id, e]));
  const failed = events.filter((e) => e.status === "FAILED" || e.status === "COMPENSATION_FAILED");
  if (failed.length === 0) return null;
  return h("section", { class: "failures", id: "failures" },
    h("h2", {}, "Failures"),
    failed.map((f) => {
      const comps = (f.triggered_compensations || []).map((id) => byId.get(id)).filter(Boolean);
      return h("div", { class: `failure ${f.status.toLowerCase()}`, "data-failure-id": f.event_id },
        h("div", { class: "failure-head" },
          badge(f.status), " ", h("strong", {}, f.step), ` attempt ${f.attempt} on ${f.service} at ${fmtTime(f.recorded_at)}`),
        h("div", { class: "error-text" },
          h("span", { class: "error-kind" }, f.error_kind ?? "error"), ": ",
          h("span", { class: "error-message" }, f.error_message ?? "")),
        comps.length
          ? h("div", { class: "triggered" }, "Triggered compensations: ",
            h("ul", {}, comps.map((c) => h("li", { "data-compensation-id": c.event_id },
              h("strong", {}, c.step), ` ${c.status} on ${c.service} at ${fmtTime(c.recorded_at)}`))))
          : null);
    }));
}

function eventsTable(events) {
  const byId = new Map(events.map((e) => [e.event_id, e]));
  return h("table", { class: "events", id: "events" },
    h("thead", {}, h("tr", {}, ["Recorded", "Service", "Step", "Status", "Attempt", "Handler", "Error", "Linked"]
      .map((c) => h("th", {}, c)))),
    h("tbody", {}, events.map((e) => {
      const cause = e.triggered_by ? byId.get(e.triggered_by) : null;
      return h("tr", { class: `status-${e.status.toLowerCase()}`, "data-event-id": e.event_id },
        h("td", { class: "time" }, fmtTime(e.recorded_at)),
        h("td", {}, e.service),
        h("td", {}, e.step),
        h("td", {}, badge(e.status)),
        h("td", { class: "num" }, String(e.attempt)),
        h("td", { class: "num" }, fmtMicros(e.duration_micros)),
        h("td", {}, e.error_kind ? `${e.error_kind}: ${e.error_message ?? ""}` : ""),
        h("td", {}, cause ? `← failure of ${cause.step}` : e.triggered_compensations?.length
          ? `→ ${e.triggered_compensations.length} compensation event(s)` : ""));
    })));
}

export function detailPage(sagaId) {
  const body = h("div", { class: "detail-body" });
  const node = h("section", { class: "page detail", "data-saga-id": sagaId },
    h("p", {}, h("a", { href: "#/sagas" }, "← all sagas")),
    h("h1", { id: "saga-title" }, sagaId),
    body);

  async function refresh() {
    const [timeline, cfg] = await Promise.all([
      get(`/api/v1/sagas/${encodeURIComponent(sagaId)}/timeline`), config()]);
    const saga = timeline.saga;
    const events = timeline.events;
    const first = events[0]?.recorded_at;
    const last = events[events.length - 1]?.recorded_at;
    const facts = [
      ["State", saga ? badge(saga.status) : "deriving…"],
      ["Type", saga?.saga_type ?? events[0]?.saga_type ?? ""],
      ["Order id", saga?.order_id ?? ""],
      ["Started", fmtTime(saga?.started_at ?? first)],
      ["Last event", fmtTime(saga?.updated_at ?? last)],
      ["Duration", first && last ? fmtMicros(micros(first, last)) : ""],
      ["Failed step", saga?.failed_step ?? "—"],
      ["Pending compensations", saga?.pending_compensations?.join(", ") || "—"],
      ["Events", String(events.length)],
      ["Trace", traceLinks(events, cfg.traceUrlTemplate)],
    ];
    replace(body,
      h("dl", { class: "facts", id: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("h2", {}, "Timeline"),
      h("p", { class: "legend" },
        h("span", { class: "key forward" }), " step ",
        h("span", { class: "key failed" }), " failed ",
        h("span", { class: "key compensation" }), " compensation ",
        h("span", { class: "key link" }), " failure → the compensations it triggered"),
      h("div", { class: "swim-wrap" }, swimlanes(timeline, body.clientWidth)),
      failures(events),
      h("h2", {}, "Events"),
      eventsTable(events));
  }

  return { node, refresh };
}
