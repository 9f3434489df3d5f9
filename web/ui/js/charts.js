// Two small hand-written SVG charts for the dashboard. No library, no HTML strings.
import { svg, fmtHM, fmtMs } from "./dom.js";

export const GROUPS = [
  { key: "ok", label: "succeeded", cls: "s-succeeded", outcomes: ["succeeded"] },
  { key: "bad", label: "failed", cls: "s-bad", outcomes: ["failed", "crashed"] },
  { key: "warn", label: "limit hit", cls: "s-warn", outcomes: ["timedOut", "outOfMemory", "outputLimit"] },
  { key: "grey", label: "skipped", cls: "s-grey", outcomes: ["skipped", "missed", "cancelled"] },
];

function niceMax(v) {
  if (!(v > 0)) return 1;
  const exp = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= v) return m * exp;
  return 10 * exp;
}

function frame(width, height, pad, max, fmt, minutes) {
  const nodes = [];
  const plotH = height - pad.t - pad.b;
  for (let i = 0; i <= 2; i++) {
    const v = (max * i) / 2;
    const y = pad.t + plotH - (plotH * i) / 2;
    nodes.push(svg("line", { class: i === 0 ? "axis" : "grid-line", x1: pad.l, x2: width - pad.r, y1: y, y2: y }));
    nodes.push(svg("text", { x: pad.l - 6, y: y + 3, "text-anchor": "end" }, fmt(v)));
  }
  const n = minutes.length;
  const step = (width - pad.l - pad.r) / Math.max(n, 1);
  minutes.forEach((m, i) => {
    if ((i % 15 === 0 && i < n - 8) || i === n - 1) {
      const lastOne = i === n - 1;
      nodes.push(svg("text", { x: lastOne ? width - pad.r : pad.l + step * i + step / 2, y: height - 6, "text-anchor": lastOne ? "end" : "middle" }, fmtHM(m.at)));
    }
  });
  return { nodes, step, plotH };
}

/** Stacked bars: runs per minute by outcome group. */
export function runsChart(perMinute, width) {
  const height = 180;
  const pad = { t: 10, r: 8, b: 22, l: 34 };
  const totals = perMinute.map((m) => GROUPS.map((g) => g.outcomes.reduce((s, o) => s + (m.runs[o] || 0), 0)));
  const max = niceMax(Math.max(0, ...totals.map((t) => t.reduce((a, b) => a + b, 0))));
  const { nodes, step, plotH } = frame(width, height, pad, max, (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)), perMinute);
  const bw = Math.max(1, step - Math.min(3, step * 0.25));
  let any = false;
  perMinute.forEach((m, i) => {
    let y = pad.t + plotH;
    const parts = [];
    totals[i].forEach((count, gi) => {
      if (!count) return;
      any = true;
      const h = (plotH * count) / max;
      y -= h;
      parts.push(svg("rect", { class: GROUPS[gi].cls, x: pad.l + step * i + (step - bw) / 2, y, width: bw, height: Math.max(h, 0.5), rx: 1 }));
    });
    if (parts.length) {
      const label = `${fmtHM(m.at)} — ` + GROUPS.map((g, gi) => (totals[i][gi] ? `${totals[i][gi]} ${g.label}` : null)).filter(Boolean).join(", ");
      nodes.push(svg("g", {}, svg("title", {}, label), ...parts));
    }
  });
  if (!any) nodes.push(svg("text", { class: "chart-empty", x: width / 2, y: height / 2, "text-anchor": "middle" }, "No runs in the last hour"));
  return svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "Runs per minute by outcome, last hour" }, ...nodes);
}

/** Lines of p50 and p99 fire lateness per minute. */
export function latenessChart(perMinute, width) {
  const height = 180;
  const pad = { t: 10, r: 8, b: 22, l: 46 };
  const values = perMinute.flatMap((m) => [m.latenessP50Ms, m.latenessP99Ms]).filter((v) => v !== null && v !== undefined);
  const max = niceMax(Math.max(1, ...values));
  const { nodes, step, plotH } = frame(width, height, pad, max, (v) => fmtMs(v), perMinute);
  const series = [["latenessP50Ms", "p50"], ["latenessP99Ms", "p99"]];
  for (const [key, name] of series) {
    let d = "";
    let pen = false;
    perMinute.forEach((m, i) => {
      const v = m[key];
      if (v === null || v === undefined) { pen = false; return; }
      const x = pad.l + step * i + step / 2;
      const y = pad.t + plotH - (plotH * Math.min(v, max)) / max;
      d += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)} `;
      pen = true;
      nodes.push(svg("circle", { class: `d-${name}`, cx: x, cy: y, r: 2.2 }, svg("title", {}, `${fmtHM(m.at)} ${name}: ${fmtMs(v)}`)));
    });
    if (d) nodes.push(svg("path", { class: `l-${name}`, d }));
  }
  if (!values.length) nodes.push(svg("text", { class: "chart-empty", x: width / 2, y: height / 2, "text-anchor": "middle" }, "No lateness measured yet"));
  return svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "Fire lateness p50 and p99 per minute, last hour" }, ...nodes);
}
