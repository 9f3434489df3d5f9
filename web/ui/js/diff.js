// A line diff (Myers' O(ND) algorithm) for the script versions view. No DOM and no
// imports, so it runs unchanged under Node for its unit test (tests/browser/diff.test.mjs).
//
// An edit is { op, text, oldNo, newNo }: op " " (in both), "-" (only in the old text) or
// "+" (only in the new one); oldNo / newNo are 1-based line numbers, null on the side the
// line is absent from.

/** Lines of a text: "\r\n" counts as "\n", and a final newline does not start a line. */
export function splitLines(text) {
  if (text === null || text === undefined || text === "") return [];
  const lines = String(text).split("\n").map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/**
 * The shortest edit script from `a` to `b` (arrays of comparable numbers), as a list of
 * [op, aIndex, bIndex]; null when it needs more than `maxD` edits.
 */
function myers(a, b, maxD) {
  const n = a.length;
  const m = b.length;
  const max = n + m;
  const off = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace = [];
  let found = false;
  for (let d = 0; d <= max && !found; d++) {
    if (d > maxD) return null;
    // v before step d, for diagonals -d-1 … d+1: all that backtracking at step d reads.
    trace.push(v.slice(off - d - 1, off + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[off + k - 1] < v[off + k + 1]) ? v[off + k + 1] : v[off + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) { x++; y++; }
      v[off + k] = x;
      if (x >= n && y >= m) { found = true; break; }
    }
  }
  const script = [];
  let x = n;
  let y = m;
  for (let d = trace.length - 1; d >= 0; d--) {
    const t = trace[d];
    const at = (k) => t[k + d + 1];
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = d === 0 ? 0 : prevX - prevK;
    while (x > prevX && y > prevY) { x--; y--; script.push([" ", x, y]); }
    if (d > 0) {
      if (x === prevX) script.push(["+", x, prevY]);
      else script.push(["-", prevX, y]);
    }
    x = prevX;
    y = prevY;
  }
  return script.reverse();
}

/**
 * The line diff of two texts. Common leading and trailing lines are matched first; the
 * middle goes through Myers' algorithm, unless it would take more than `maxEdits` edits,
 * when it is shown as removed-then-added (correct, only not minimal).
 */
export function diffLines(oldText, newText, { maxEdits = 4000 } = {}) {
  const a = splitLines(oldText);
  const b = splitLines(newText);
  // Lines become small integers, so the inner loop compares numbers.
  const ids = new Map();
  const id = (line) => {
    let n = ids.get(line);
    if (n === undefined) { n = ids.size; ids.set(line, n); }
    return n;
  };
  const ai = a.map(id);
  const bi = b.map(id);
  let start = 0;
  while (start < ai.length && start < bi.length && ai[start] === bi[start]) start++;
  let endA = ai.length;
  let endB = bi.length;
  while (endA > start && endB > start && ai[endA - 1] === bi[endB - 1]) { endA--; endB--; }

  const edits = [];
  for (let i = 0; i < start; i++) edits.push({ op: " ", text: a[i], oldNo: i + 1, newNo: i + 1 });
  const midA = ai.slice(start, endA);
  const midB = bi.slice(start, endB);
  const script = myers(midA, midB, maxEdits);
  if (script) {
    for (const [op, x, y] of script) {
      if (op === " ") edits.push({ op, text: a[start + x], oldNo: start + x + 1, newNo: start + y + 1 });
      else if (op === "-") edits.push({ op, text: a[start + x], oldNo: start + x + 1, newNo: null });
      else edits.push({ op, text: b[start + y], oldNo: null, newNo: start + y + 1 });
    }
  } else {
    for (let i = start; i < endA; i++) edits.push({ op: "-", text: a[i], oldNo: i + 1, newNo: null });
    for (let j = start; j < endB; j++) edits.push({ op: "+", text: b[j], oldNo: null, newNo: j + 1 });
  }
  for (let i = endA, j = endB; i < a.length; i++, j++) edits.push({ op: " ", text: a[i], oldNo: i + 1, newNo: j + 1 });
  return edits;
}

/** How many lines were added and removed. */
export function diffStats(edits) {
  let added = 0;
  let removed = 0;
  for (const e of edits) {
    if (e.op === "+") added++;
    else if (e.op === "-") removed++;
  }
  return { added, removed };
}

/**
 * Unified hunks: the changes with `context` unchanged lines around them; changes closer
 * than twice the context share a hunk. Each hunk has the "@@ -a,b +c,d @@" numbers.
 */
export function unifiedHunks(edits, context = 3) {
  const changed = [];
  edits.forEach((e, i) => { if (e.op !== " ") changed.push(i); });
  if (!changed.length) return [];
  const ranges = [];
  for (const i of changed) {
    const lo = Math.max(0, i - context);
    const hi = Math.min(edits.length - 1, i + context);
    const last = ranges[ranges.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else ranges.push([lo, hi]);
  }
  return ranges.map(([lo, hi]) => {
    const lines = edits.slice(lo, hi + 1);
    let oldStart = 0;
    let newStart = 0;
    let oldCount = 0;
    let newCount = 0;
    for (const e of lines) {
      if (e.oldNo !== null) { if (!oldStart) oldStart = e.oldNo; oldCount++; }
      if (e.newNo !== null) { if (!newStart) newStart = e.newNo; newCount++; }
    }
    // An empty side starts after the line before the hunk, as diff -u writes it.
    if (!oldCount) oldStart = lineBefore(edits, lo, "oldNo");
    if (!newCount) newStart = lineBefore(edits, lo, "newNo");
    return { oldStart, oldCount, newStart, newCount, lines };
  });
}

function lineBefore(edits, index, key) {
  for (let i = index - 1; i >= 0; i--) if (edits[i][key] !== null) return edits[i][key];
  return 0;
}

/** "@@ -1,3 +1,4 @@" */
export function hunkHeader(h) {
  return `@@ -${h.oldStart},${h.oldCount} +${h.newStart},${h.newCount} @@`;
}

/** The hunks as `diff -u` would print their bodies (without the file header). */
export function formatUnified(hunks) {
  const out = [];
  for (const h of hunks) {
    out.push(hunkHeader(h));
    for (const e of h.lines) out.push(`${e.op}${e.text}`);
  }
  return out.join("\n");
}

/**
 * Rows for a side-by-side view: unchanged lines on both sides; a run of removals and
 * additions between unchanged lines is paired row by row (a side is null where its run
 * is shorter).
 */
export function sideBySide(edits) {
  const rows = [];
  let dels = [];
  let adds = [];
  const flush = () => {
    const n = Math.max(dels.length, adds.length);
    for (let i = 0; i < n; i++) rows.push({ left: dels[i] || null, right: adds[i] || null });
    dels = [];
    adds = [];
  };
  for (const e of edits) {
    if (e.op === "-") dels.push(e);
    else if (e.op === "+") adds.push(e);
    else { flush(); rows.push({ left: e, right: e }); }
  }
  flush();
  return rows;
}
