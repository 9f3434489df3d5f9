// The audit log in the UI against the real server with two named tokens, in real headless
// Chromium: the Audit page lists who changed what, its filters narrow it (and stay in
// the URL), "Load older" pages back, and a job's Audit tab shows that job's entries only.
// Each step waits for a condition; none sleeps a fixed time.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startBrowser, screenshotPath } from "./harness.mjs";

const CI = "ci-secret-5b6c";
const ALICE = "alice-secret-7d8e";
const SECRET_VALUE = "never-shown-Value-3f2a";
let server;
let browser;
let page;
const pageErrors = [];

before(async () => {
  server = await startServer({ token: CI, tokenName: "ci", args: ["--auth-token", `alice:${ALICE}`] });
  browser = await startBrowser();
  page = browser.context.pages()[0] || (await browser.context.newPage());
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(`console: ${m.text()}`);
  });
  // Signed in as ci, as the login form would leave it.
  await page.goto(`${server.base}/healthz`);
  await page.evaluate((t) => localStorage.setItem("traitor.token", t), CI);
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

const url = (hash) => `${server.base}/${hash}`;
const enc = encodeURIComponent;

/** The API as alice. */
async function asAlice(method, path, body) {
  const r = await fetch(`${server.base}${path}`, {
    method, headers: { "Content-Type": "application/json", Authorization: `Bearer ${ALICE}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await r.json();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
  return json.data;
}

/** `[actor, action]` of every row shown, top to bottom. */
async function rows() {
  return page.locator("#audit-table tbody tr[data-action]").evaluateAll((trs) =>
    trs.map((tr) => [tr.querySelector(".badge").textContent, tr.dataset.action]));
}

let jobId;
let otherId;

test("the Audit page lists who changed what, newest first, never a secret's value", async () => {
  jobId = await server.api("POST", "/api/job?type=timing", { name: "nightly", cron: "0 0 * * *", script: "console.log(1)" });
  await asAlice("PUT", `/api/job?id=${enc(jobId)}`, { cron: "30 0 * * *" });
  await asAlice("POST", `/api/script?id=${enc(jobId)}`, { script: "console.log('two')", note: "second" });
  await server.api("PUT", "/api/secret?name=API_KEY", { value: SECRET_VALUE });
  otherId = await asAlice("POST", "/api/job?type=timing", { name: "other", cron: "@hourly" });

  await page.goto(url("#/audit"));
  await page.locator('#audit-table tbody tr[data-action="job.create"]').first().waitFor();
  assert.equal(await page.getAttribute('[data-nav="audit"]', "aria-current"), "page");
  assert.deepEqual(await rows(), [
    ["alice", "job.create"], ["ci", "secret.put"], ["alice", "script.update"],
    ["alice", "job.update"], ["ci", "job.create"],
  ]);
  const update = page.locator('#audit-table tr[data-action="job.update"]');
  assert.equal((await update.locator('li[data-field="cron"]').textContent()).trim(), "cron: 0 0 * * * → 30 0 * * *");
  const script = page.locator('#audit-table tr[data-action="script.update"] li[data-field="script"]');
  assert.match(await script.textContent(), /^script: v1 → v2 · 18 B · second$/);
  // A job's id links to the job.
  assert.equal(await update.locator("a").getAttribute("href"), `#/jobs/${enc(jobId)}/overview`);
  const text = await page.locator("#audit-table").textContent();
  assert.ok(!text.includes(SECRET_VALUE), text);
  assert.ok(!text.includes("console.log"), text);
  await page.evaluate(() => document.querySelectorAll(".toast").forEach((t) => t.remove()));
  await page.screenshot({ path: screenshotPath("audit.png") });
});

test("filters narrow the list and stay in the URL", async () => {
  await page.goto(url("#/audit"));
  await page.locator('#audit-table tbody tr[data-action="job.create"]').first().waitFor();
  await page.fill("#audit-actor", "alice");
  await page.press("#audit-actor", "Enter");
  await page.waitForFunction(() => location.hash === "#/audit?actor=alice");
  await page.waitForFunction(() => [...document.querySelectorAll("#audit-table tbody tr[data-action] .badge")].every((b) => b.textContent === "alice"));
  assert.deepEqual(await rows(), [["alice", "job.create"], ["alice", "script.update"], ["alice", "job.update"]]);

  await page.selectOption("#audit-action", "job.create");
  await page.waitForFunction(() => location.hash === "#/audit?actor=alice&action=job.create");
  await page.waitForFunction(() => document.querySelectorAll("#audit-table tbody tr[data-action]").length === 1);
  assert.deepEqual(await rows(), [["alice", "job.create"]]);

  // Reloading the URL keeps the filters.
  await page.reload();
  await page.locator("#audit-table tbody tr[data-action]").first().waitFor();
  assert.equal(await page.inputValue("#audit-actor"), "alice");
  assert.equal(await page.inputValue("#audit-action"), "job.create");
  assert.deepEqual(await rows(), [["alice", "job.create"]]);

  await page.fill("#audit-actor", "nobody");
  await page.press("#audit-actor", "Enter");
  await page.locator("#audit-table td.empty", { hasText: "No entry matches" }).waitFor();
});

test("a job's Audit tab shows its own entries, and Load older pages back", async () => {
  // 55 more changes of the job: more than one page of 50.
  for (let i = 0; i < 55; i++) await server.api("PUT", `/api/job?id=${enc(jobId)}`, { description: `change ${i}` });
  await page.goto(url(`#/jobs/${enc(jobId)}/audit`));
  await page.locator("#audit-table tbody tr[data-action]").first().waitFor();
  assert.equal(await page.locator('.tabs a[aria-current="page"]').textContent(), "Audit");
  assert.equal(await page.locator("#audit-table tbody tr[data-action]").count(), 50);
  assert.equal(await page.locator("#audit-count").textContent(), "50 entries shown");
  const first = page.locator("#audit-table tbody tr[data-action]").first();
  assert.equal((await first.locator('li[data-field="description"]').textContent()).trim(), "description: change 53 → change 54");
  await page.click('[data-key="older"]');
  await page.locator("#audit-count", { hasText: "58 entries shown" }).waitFor();
  // Only this job: the other job's creation is not here, the job's own is last.
  const actions = (await rows()).map((r) => r[1]);
  assert.equal(actions.at(-1), "job.create");
  assert.equal(actions.filter((a) => a === "job.create").length, 1);
  assert.equal(await page.locator(`#audit-table a[href*="${otherId}"]`).count(), 0);
  await page.locator(".pager", { hasText: "That is all." }).waitFor();
  assert.deepEqual(pageErrors, []);
});
