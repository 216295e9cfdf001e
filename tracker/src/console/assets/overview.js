// Overview: events/s, failures and compensation failures over time, the slowest steps (p50/p99), DLQ count and
// consumer lag (from /api/v1/overview and /api/v1/stats).

import { get } from "./api.js";
import { fmtMicros, h, replace, s } from "./dom.js";

function tile(id, label, value, alert) {
  return h("div", { class: `tile${alert ? " alert" : ""}`, id },
    h("div", { class: "value" }, value), h("div", { class: "label" }, label));
}

/** Every bucket of the window, zeros where the API had none. */
function series(overview) {
  const step = overview.bucket_seconds * 1000;
  const since = Date.parse(overview.since);
  const byStart = new Map(overview.buckets.map((b) => [Math.round((Date.parse(b.start) - since) / step), b]));
  const n = Math.max(1, Math.ceil((Date.now() - since) / step));
  const out = [];
  for (let i = 0; i < n; i++) {
    const b = byStart.get(i);
    out.push({ t: since + i * step, events: b?.events ?? 0, failures: b?.failures ?? 0,
      compensation_failures: b?.compensation_failures ?? 0 });
  }
  return out;
}

function chart(points, bucketSeconds, width) {
  const W = Math.max(700, Math.floor(width) - 2);
  const H = 220;
  const L = 50;
  const B = 24;
  const max = Math.max(1, ...points.map((p) => p.events));
  const bw = (W - L - 10) / points.length;
  const y = (v) => H - B - (v / max) * (H - B - 30);
  const svg = s("svg", { class: "activity", id: "activity", viewBox: `0 0 ${W} ${H}`, width: W, height: H,
    role: "img", "aria-label": "Events, failures and compensation failures per bucket" });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s("line", { x1: L, x2: W - 10, y1: y(v), y2: y(v), class: "grid" }),
      s("text", { x: L - 6, y: y(v) + 4, class: "tick-label", "text-anchor": "end" },
        (v / bucketSeconds).toFixed(v / bucketSeconds < 10 ? 2 : 0)));
  }
  svg.append(s("text", { x: 8, y: 14, class: "tick-label" }, "events/s"));
  points.forEach((p, i) => {
    const x0 = L + i * bw;
    const g = s("g", { class: "bucket", "data-events": p.events, "data-failures": p.failures,
      "data-compensation-failures": p.compensation_failures },
    s("title", {}, `${new Date(p.t).toLocaleTimeString()}: ${p.events} events, ${p.failures} failures, ` +
      `${p.compensation_failures} compensation failures`),
    s("rect", { x: x0 + 1, y: y(p.events), width: Math.max(bw - 2, 1), height: H - B - y(p.events), class: "ev" }));
    if (p.failures) {
      g.append(s("rect", { x: x0 + 1, y: y(p.failures), width: Math.max(bw / 2 - 1, 1),
        height: H - B - y(p.failures), class: "fail" }));
    }
    if (p.compensation_failures) {
      g.append(s("rect", { x: x0 + bw / 2, y: y(p.compensation_failures), width: Math.max(bw / 2 - 1, 1),
        height: H - B - y(p.compensation_failures), class: "compfail" }));
    }
    svg.append(g);
    if (i % Math.ceil(points.length / 6) === 0) {
      svg.append(s("text", { x: x0, y: H - 6, class: "tick-label" },
        new Date(p.t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
    }
  });
  return svg;
}

function rateText(rate) {
  if (rate === 0) return "0";
  if (rate >= 10) return rate.toFixed(0);
  if (rate >= 0.1) return rate.toFixed(2);
  return rate.toPrecision(2);
}

export function overviewPage() {
  let minutes = 60;
  const body = h("div", { class: "overview-body" });
  const select = h("select", { id: "window", onchange: () => { minutes = Number(select.value); refresh(); } },
    [15, 60, 360, 1440].map((m) => h("option", { value: m, selected: m === minutes ? "selected" : null },
      m < 60 ? `last ${m} min` : `last ${m / 60} h`)));
  const node = h("section", { class: "page overview" },
    h("div", { class: "row" }, h("h1", {}, "Overview"), h("label", {}, "Window ", select)),
    body);

  async function refresh() {
    const [stats, overview] = await Promise.all([get("/api/v1/stats"), get("/api/v1/overview", { minutes })]);
    const points = series(overview);
    const recent = points.slice(-5);
    const rate = recent.reduce((a, p) => a + p.events, 0) / (recent.length * overview.bucket_seconds);
    const failuresTotal = points.reduce((a, p) => a + p.failures, 0);
    const compTotal = points.reduce((a, p) => a + p.compensation_failures, 0);
    replace(body,
      h("div", { class: "tiles" },
        tile("tile-rate", "events/s (last 5 buckets)", rateText(rate)),
        tile("tile-failures", "failures in window", String(failuresTotal), failuresTotal > 0),
        tile("tile-compfail", "compensation failures in window", String(compTotal), compTotal > 0),
        tile("tile-stuck", "stuck sagas", String(stats.stuck_sagas), stats.stuck_sagas > 0),
        tile("tile-dlq", "sent to the DLQ since start", String(stats.dlq_since_start), stats.dlq_since_start > 0),
        tile("tile-lag", "consumer lag", stats.consumer_lag == null ? "n/a" : String(stats.consumer_lag)),
        tile("tile-events", "events stored", String(stats.events_total))),
      h("h2", {}, "Activity"),
      h("p", { class: "legend" },
        h("span", { class: "key ev" }), " events ",
        h("span", { class: "key fail" }), " failures ",
        h("span", { class: "key compfail" }), " compensation failures ",
        h("span", { class: "muted" }, `(${overview.bucket_seconds} s buckets)`)),
      h("div", { class: "swim-wrap" }, chart(points, overview.bucket_seconds, body.clientWidth)),
      h("h2", {}, "Slowest steps"),
      h("table", { class: "steps", id: "slowest" },
        h("thead", {}, h("tr", {}, ["Saga type", "Step", "Attempts", "p50", "p99"].map((c) => h("th", {}, c)))),
        h("tbody", {}, overview.slowest_steps.length
          ? overview.slowest_steps.map((st) => h("tr", { "data-step": st.step },
            h("td", {}, st.saga_type), h("td", {}, st.step), h("td", { class: "num" }, String(st.count)),
            h("td", { class: "num" }, fmtMicros(st.p50_micros)), h("td", { class: "num" }, fmtMicros(st.p99_micros))))
          : h("tr", {}, h("td", { colspan: "5" }, "No finished step in the window.")))));
  }

  return { node, refresh };
}
