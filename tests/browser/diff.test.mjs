// Unit tests of the UI's line diff (web/ui/js/diff.js), in Node: no browser, no server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "./harness.mjs";

// web/ui has no package.json saying "module", so the file is imported from its source.
const source = readFileSync(join(REPO, "web", "ui", "js", "diff.js"), "utf8");
const { splitLines, diffLines, diffStats, unifiedHunks, formatUnified, sideBySide } =
  await import(`data:text/javascript;base64,${Buffer.from(source).toString("base64")}`);

/** Applies a diff to its old text: must give the new text. */
function apply(edits) {
  return edits.filter((e) => e.op !== "-").map((e) => e.text);
}
function old(edits) {
  return edits.filter((e) => e.op !== "+").map((e) => e.text);
}

test("splitLines: CRLF, final newline, empty text", () => {
  assert.deepEqual(splitLines(""), []);
  assert.deepEqual(splitLines("a"), ["a"]);
  assert.deepEqual(splitLines("a\n"), ["a"]);
  assert.deepEqual(splitLines("a\r\nb\r\n"), ["a", "b"]);
  assert.deepEqual(splitLines("a\n\nb"), ["a", "", "b"]);
  assert.deepEqual(splitLines(null), []);
});

test("equal texts have no changes", () => {
  const edits = diffLines("a\nb\nc\n", "a\nb\nc\n");
  assert.ok(edits.every((e) => e.op === " "));
  assert.deepEqual(unifiedHunks(edits), []);
  assert.deepEqual(diffStats(edits), { added: 0, removed: 0 });
});

test("from and to nothing", () => {
  assert.deepEqual(diffLines("", "x\ny").map((e) => e.op + e.text), ["+x", "+y"]);
  assert.deepEqual(diffLines("x\ny", "").map((e) => e.op + e.text), ["-x", "-y"]);
  assert.deepEqual(diffLines("", ""), []);
});

test("the classic Myers example is minimal (5 edits)", () => {
  const edits = diffLines("A\nB\nC\nA\nB\nB\nA", "C\nB\nA\nB\nA\nC");
  const { added, removed } = diffStats(edits);
  assert.equal(added + removed, 5);
  assert.deepEqual(apply(edits), ["C", "B", "A", "B", "A", "C"]);
  assert.deepEqual(old(edits), ["A", "B", "C", "A", "B", "B", "A"]);
});

test("line numbers of both sides", () => {
  const edits = diffLines("one\ntwo\nthree\n", "one\n2\nthree\nfour\n");
  assert.deepEqual(edits, [
    { op: " ", text: "one", oldNo: 1, newNo: 1 },
    { op: "-", text: "two", oldNo: 2, newNo: null },
    { op: "+", text: "2", oldNo: null, newNo: 2 },
    { op: " ", text: "three", oldNo: 3, newNo: 3 },
    { op: "+", text: "four", oldNo: null, newNo: 4 },
  ]);
});

test("unified hunks have diff -u's numbers and context", () => {
  const a = Array.from({ length: 20 }, (_, i) => `line ${i + 1}`);
  const b = [...a];
  b[1] = "changed 2";
  b.splice(15, 1); // remove line 16
  const hunks = unifiedHunks(diffLines(a.join("\n"), b.join("\n")), 3);
  assert.equal(hunks.length, 2);
  assert.equal(formatUnified(hunks), [
    "@@ -1,5 +1,5 @@", " line 1", "-line 2", "+changed 2", " line 3", " line 4", " line 5",
    "@@ -13,7 +13,6 @@", " line 13", " line 14", " line 15", "-line 16", " line 17", " line 18", " line 19",
  ].join("\n"));
  // Close changes share a hunk.
  assert.equal(unifiedHunks(diffLines("a\nb\nc\nd\ne", "A\nb\nc\nd\nE"), 3).length, 1);
  // A pure insertion at the top: the old side is empty and starts at 0.
  const top = unifiedHunks(diffLines("x\ny\n", "new\nx\ny\n"), 0);
  assert.deepEqual([top[0].oldStart, top[0].oldCount, top[0].newStart, top[0].newCount], [0, 0, 1, 1]);
});

test("side by side pairs removals with additions", () => {
  const rows = sideBySide(diffLines("a\nb\nc\nd", "a\nB\nC2\nC3\nd"));
  assert.deepEqual(rows.map((r) => [r.left && r.left.text, r.right && r.right.text]), [
    ["a", "a"], ["b", "B"], ["c", "C2"], [null, "C3"], ["d", "d"],
  ]);
});

test("random edits always reproduce both texts, and the result is no longer than LCS allows", () => {
  let seed = 42;
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  const lcs = (a, b) => {
    const t = Array.from({ length: a.length + 1 }, () => new Array(b.length + 1).fill(0));
    for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++) {
      t[i][j] = a[i - 1] === b[j - 1] ? t[i - 1][j - 1] + 1 : Math.max(t[i - 1][j], t[i][j - 1]);
    }
    return t[a.length][b.length];
  };
  for (let round = 0; round < 300; round++) {
    const a = Array.from({ length: rnd(25) }, () => "abcde"[rnd(5)]);
    const b = Array.from({ length: rnd(25) }, () => "abcde"[rnd(5)]);
    const edits = diffLines(a.join("\n"), b.join("\n"));
    assert.deepEqual(old(edits), a);
    assert.deepEqual(apply(edits), b);
    const same = edits.filter((e) => e.op === " ").length;
    assert.equal(same, lcs(a, b), `not minimal for ${a.join("")} → ${b.join("")}`);
    // Line numbers count up on each side.
    let o = 0;
    let n = 0;
    for (const e of edits) {
      if (e.oldNo !== null) assert.equal(e.oldNo, ++o);
      if (e.newNo !== null) assert.equal(e.newNo, ++n);
    }
  }
});

test("a huge difference falls back to remove-then-add, still correct", () => {
  const a = Array.from({ length: 3000 }, (_, i) => `a${i}`).join("\n");
  const b = Array.from({ length: 3000 }, (_, i) => `b${i}`).join("\n");
  const started = Date.now();
  const edits = diffLines(`head\n${a}\ntail`, `head\n${b}\ntail`, { maxEdits: 100 });
  assert.ok(Date.now() - started < 2000);
  assert.deepEqual(diffStats(edits), { added: 3000, removed: 3000 });
  assert.equal(edits[0].text, "head");
  assert.equal(edits[edits.length - 1].text, "tail");
  assert.equal(edits[edits.length - 1].oldNo, 3002);
});
