// DOM helpers. Data only ever reaches the page as text nodes or attribute values (never as markup): saga ids,
// error messages and metadata are written by the services and must be treated as hostile.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "text") {
      node.textContent = String(value);
    } else {
      node.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: `h("td", {class: "x"}, "text", otherNode)`. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replaces the children of `node`. */
export function replace(node, ...children) {
  node.replaceChildren();
  return build(node, {}, children);
}

/** `2024-11-24 00:00:01.001` in local time. */
export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** A duration in microseconds as `850 µs`, `12.5 ms`, `3.20 s`, `4.0 min`. */
export function fmtMicros(us) {
  if (us === null || us === undefined || Number.isNaN(us)) return "";
  const a = Math.abs(us);
  if (a < 1000) return `${Math.round(us)} µs`;
  if (a < 1e6) return `${(us / 1000).toFixed(a < 1e4 ? 2 : 1)} ms`;
  if (a < 6e7) return `${(us / 1e6).toFixed(2)} s`;
  if (a < 3.6e9) return `${(us / 6e7).toFixed(1)} min`;
  return `${(us / 3.6e9).toFixed(1)} h`;
}

/** Microseconds between two RFC 3339 times (millisecond precision in the browser). */
export function micros(fromIso, toIso) {
  return (Date.parse(toIso) - Date.parse(fromIso)) * 1000;
}

/** A state badge. */
export function badge(state) {
  return h("span", { class: `badge state-${String(state).toLowerCase()}`, "data-state": state }, state);
}
