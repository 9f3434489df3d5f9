// DOM helpers. Text is only ever set with textContent / text nodes: nothing here parses
// HTML, so names, descriptions and console output from the API always render as text.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) { for (const c of child) append(node, c); return; }
  node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.setAttribute("class", value);
    else if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "value" || key === "checked" || key === "disabled" || key === "selected") {
      node[key] = value;
    } else if (key === "style" && typeof value === "object") {
      Object.assign(node.style, value);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
}

/** el("a", {href: "#/"}, "text", child, [more]) — an element with text-only children. */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

/** The same for SVG elements. */
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** Replaces a node's children. */
export function fill(node, ...children) {
  clear(node);
  append(node, children);
  return node;
}

// ---- formatting ---------------------------------------------------------------

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const dateShort = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const hm = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

export function toDate(v) {
  if (v === null || v === undefined || v === "") return null;
  const d = typeof v === "number" ? new Date(v) : new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** A time in the browser's zone: the time only today, "Nov 25, 01:30 AM" this year, else in full. */
export function fmtTime(v) {
  const d = toDate(v);
  if (!d) return "—";
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return timeOnly.format(d);
  if (d.getFullYear() === now.getFullYear()) return dateShort.format(d);
  return dateTime.format(d);
}
export function fmtFull(v) { const d = toDate(v); return d ? dateTime.format(d) : "—"; }
export function fmtHM(v) { const d = toDate(v); return d ? hm.format(d) : ""; }

/** A time in a given IANA zone, with the zone's short name. */
export function fmtInZone(v, timeZone) {
  const d = toDate(v);
  if (!d) return "—";
  try {
    return new Intl.DateTimeFormat(undefined, {
      weekday: "short", year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZone, timeZoneName: "short",
    }).format(d);
  } catch {
    return dateTime.format(d);
  }
}

/** "in 5 s", "3 min ago". */
export function fmtRelative(v, now = Date.now()) {
  const d = toDate(v);
  if (!d) return "";
  const diff = d.getTime() - now;
  const abs = Math.abs(diff);
  let text;
  if (abs < 1000) return diff >= 0 ? "now" : "just now";
  if (abs < 60e3) text = `${Math.round(abs / 1e3)} s`;
  else if (abs < 3600e3) text = `${Math.round(abs / 60e3)} min`;
  else if (abs < 86400e3) text = `${(abs / 3600e3).toFixed(abs < 36000e3 ? 1 : 0)} h`;
  else text = `${Math.round(abs / 86400e3)} d`;
  return diff >= 0 ? `in ${text}` : `${text} ago`;
}

/** Milliseconds as "12 ms", "1.4 s", "2 min 3 s". */
export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  const n = Number(ms);
  if (Math.abs(n) < 1000) return `${Math.round(n)} ms`;
  if (Math.abs(n) < 60e3) return `${(n / 1000).toFixed(n < 10e3 ? 2 : 1)} s`;
  const m = Math.floor(n / 60e3);
  return `${m} min ${Math.round((n - m * 60e3) / 1000)} s`;
}

export function fmtInt(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString(); }

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** "YYYY-MM-DDTHH:MM:SS" in the browser's zone, for <input type=datetime-local>. */
export function toLocalInput(v) {
  const d = toDate(v);
  if (!d) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** The value of a datetime-local input (the browser's zone) as a Date; null when empty or invalid. */
export function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** Seconds as "45 s", "10 min", "2 h", "1 d 6 h". */
export function fmtSeconds(s) {
  if (s === null || s === undefined) return "—";
  const n = Number(s);
  if (n < 60) return `${n} s`;
  if (n < 3600) return n % 60 ? `${Math.floor(n / 60)} min ${n % 60} s` : `${n / 60} min`;
  if (n < 86400) return n % 3600 ? `${Math.floor(n / 3600)} h ${Math.round((n % 3600) / 60)} min` : `${n / 3600} h`;
  return n % 86400 ? `${Math.floor(n / 86400)} d ${Math.round((n % 86400) / 3600)} h` : `${n / 86400} d`;
}

// ---- outcomes ---------------------------------------------------------------------

export const OUTCOMES = [
  "succeeded", "failed", "crashed", "timed_out", "out_of_memory", "output_limit",
  "cancelled", "skipped", "missed", "running",
];

export function outcomeTone(outcome) {
  switch (outcome) {
    case "succeeded": return "ok";
    case "failed": case "crashed": return "bad";
    case "timed_out": case "out_of_memory": case "output_limit": return "warn";
    case "running": return "info";
    default: return "grey";
  }
}

export function outcomeLabel(outcome) {
  return String(outcome || "").replace(/_/g, " ");
}

export function badge(outcome, extra) {
  return el("span", { class: `badge ${outcomeTone(outcome)}`, dataset: { outcome } }, outcomeLabel(outcome), extra);
}

/** Wraps a time in <time> with the full date as a tooltip. */
export function timeEl(v, { relative = false } = {}) {
  const d = toDate(v);
  if (!d) return el("span", { class: "faint" }, "—");
  return el("time", { datetime: d.toISOString(), title: fmtFull(d) },
    relative ? fmtRelative(d) : fmtTime(d));
}

export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/** Keeps the focused control focused across a re-render: elements carry data-key. */
export function preserveFocus(container, render) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.key : null;
  render();
  if (key) {
    const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}
