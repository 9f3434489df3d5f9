// The web UI against the real server, in real headless Chromium: every item of the
// issue's Tests paragraph. Each step waits for a condition; none sleeps a fixed time.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startBrowser, screenshotPath } from "./harness.mjs";

const XSS = "<img src=x onerror=alert(1)>";

let server;
let browser;
let page;
const requests = [];   // every URL the page asked for, the whole session
const dialogs = [];    // any alert()/confirm() is a failure (the UI uses <dialog>)
const pageErrors = [];

before(async () => {
  server = await startServer();
  browser = await startBrowser();
  page = browser.context.pages()[0] || (await browser.context.newPage());
  browser.context.on("request", (r) => requests.push(r.url()));
  page.on("websocket", (ws) => requests.push(ws.url()));
  page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on("pageerror", (e) => pageErrors.push(e.message));
  // HTTP errors the UI handles (a 400 for a bad cron it shows inline) are not page errors.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(`console: ${m.text()}`);
  });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

/** A screenshot for the README, without the passing notifications of earlier steps. */
async function shot(name) {
  await page.evaluate(() => document.querySelectorAll(".toast").forEach((t) => t.remove()));
  await page.screenshot({ path: screenshotPath(name) });
}

const url = (hash) => `${server.base}/${hash}`;
/** The cron preview's five fire times, for exactly this expression. */
const previewOf = (cron) => page.locator(`#cron-preview[data-cron="${cron}"] #cron-preview-list li`);
const row = (id) => page.locator(`#jobs-table tbody tr[data-job-id="${id}"]`);
let jobId = null;
const NAME = "nightly-report";

test("dashboard shows live numbers and the node table", async () => {
  await page.goto(url("#/"));
  await page.locator("main[data-loaded=true]").waitFor();
  await page.locator('[data-card="jobs"] .value').waitFor();
  assert.match(await page.locator('[data-card="jobs"] .value').innerText(), /^\d+$/);
  assert.equal(await page.locator("#nodes-title").innerText(), "Nodes");
  await page.locator("section[aria-labelledby=nodes-title] tbody tr").first().waitFor();
  assert.equal(await page.locator("section[aria-labelledby=nodes-title] tbody tr").count(), 1);
  assert.equal(await page.locator("svg.chart").count(), 2);
});

test("create a timing job through the form, with the live cron preview and inline errors", async () => {
  await page.goto(url("#/jobs/new"));
  await page.locator("#name").waitFor();
  await page.fill("#name", NAME);
  await page.fill("#description", "Builds the nightly report and mails it");
  // A bad expression: the server's parser explains, beside the field.
  await page.fill("#cron", "61 * * * *");
  await page.locator("#cron-error", { hasText: /cron/i }).waitFor();
  assert.equal(await page.getAttribute("#cron", "aria-invalid"), "true");
  // Every second, so that runs appear within the test.
  await page.fill("#cron", "* * * * * *");
  await previewOf("* * * * * *").nth(4).waitFor();
  assert.equal(await previewOf("* * * * * *").count(), 5);
  assert.equal(await page.locator("#cron-error").innerText(), "");
  // A bad limit: the API's error lands beside the field it names.
  await page.fill("#timeLimitMs", "1");
  await page.click("#save-job");
  await page.locator("#timeLimitMs-error", { hasText: /timeLimitMs/ }).waitFor();
  await page.fill("#timeLimitMs", "30000");
  await page.fill("#cron", "*/10 * * * * *");
  await previewOf("*/10 * * * * *").nth(4).waitFor();
  await shot("job-new.png");
  await page.fill("#cron", "* * * * * *");
  await previewOf("* * * * * *").nth(4).waitFor();
  await page.check("#start");
  await page.press("#name", "Enter"); // Enter submits.
  await page.waitForURL(/#\/jobs\/[^/]+\/script$/);
  jobId = decodeURIComponent(page.url().match(/#\/jobs\/([^/]+)\/script$/)[1]);
  const job = await server.api("GET", `/api/job?id=${encodeURIComponent(jobId)}`);
  assert.equal(job.name, NAME);
  assert.equal(job.cron, "* * * * * *");
  assert.equal(job.timeLimitMs, 30000);
  assert.equal(job.state, 1);
});

test("the job is in the list with its schedule, zone and next run", async () => {
  await page.goto(url("#/jobs"));
  await row(jobId).waitFor();
  const r = row(jobId);
  assert.equal(await r.locator(".job-name").innerText(), NAME);
  assert.equal(await r.locator(".sched").innerText(), "* * * * * *");
  assert.equal(await r.locator(".tz").innerText(), "UTC");
  await r.locator("td:nth-child(5) time").waitFor();
  assert.equal(await r.locator("[role=switch]").getAttribute("aria-checked"), "true");
  // Search narrows the list.
  await page.fill("#job-search", "nightly");
  await page.locator("#jobs-count", { hasText: "1 matching" }).waitFor();
  await page.fill("#job-search", "");
  await page.locator("#jobs-count", { hasText: "in total" }).waitFor();
});

test("edit the job's settings from its Edit action", async () => {
  await row(jobId).locator("a", { hasText: "Edit" }).click();
  await page.waitForURL(new RegExp(`#/jobs/${jobId}$`));
  await page.locator("#description").waitFor();
  assert.equal(await page.inputValue("#name"), NAME);
  await page.fill("#description", "Builds the nightly report and mails it to the team");
  await page.fill("#timezone", "Not/AZone");
  await page.click("#save-job");
  await page.locator("#timezone-error", { hasText: /./ }).waitFor();
  await page.fill("#timezone", "Europe/Paris");
  await page.locator("#cron-preview .tzname", { hasText: "Europe/Paris" }).waitFor();
  await page.click("#save-job");
  await page.locator(".job-head .tz", { hasText: "Europe/Paris" }).waitFor();
  const job = await server.api("GET", `/api/job?id=${encodeURIComponent(jobId)}`);
  assert.equal(job.description, "Builds the nightly report and mails it to the team");
  assert.equal(job.timezone, "Europe/Paris");
  assert.equal(job.state, 1, "editing keeps a running job running");
});

test("edit the script: syntax errors are marked, Ctrl+S saves", async () => {
  await page.goto(url(`#/jobs/${encodeURIComponent(jobId)}/script`));
  const content = page.locator(".cm-content");
  await content.waitFor();
  await content.click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.press("Backspace");
  await page.keyboard.insertText("console.log('broken' +;\n");
  await page.locator(".cm-lint-marker-error").first().waitFor();
  await page.locator("#dirty-state.dirty").waitFor();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.press("Backspace");
  await page.keyboard.insertText([
    "// Gathers yesterday's numbers and reports them.",
    "const rows = [3, 1, 4, 1, 5];",
    "console.log('report: starting with', rows.length, 'rows');",
    "for (const [i, n] of rows.entries()) {",
    "  console.info(`row ${i}:`, { n, square: n * n });",
    "}",
    "console.warn('row 1 looks low');",
    "console.log('<b>not bold</b>');",
    "await new Promise((done) => setTimeout(done, 150));",
    "console.error('mail server slow, retried');",
    "console.log('report: done');",
    "",
  ].join("\n"));
  await page.locator(".cm-lint-marker-error").waitFor({ state: "detached" });
  await page.keyboard.press("ControlOrMeta+s");
  await page.locator("#dirty-state.saved").waitFor();
  const saved = await server.api("GET", `/api/script?id=${encodeURIComponent(jobId)}`);
  assert.match(saved.script, /report: done/);
});

test("debug streams the console live, levels coloured, with outcome and duration", async () => {
  await page.click("#debug-run");
  await page.locator("#console .line.lv-log", { hasText: "report: starting with 5 rows" }).waitFor();
  await page.locator("#debug-end[data-outcome=succeeded]").waitFor();
  const lines = await page.locator("#console .line .tx").allInnerTexts();
  assert.ok(lines.includes("report: done"), lines.join("\n"));
  assert.equal(await page.locator("#console .line.lv-warn").count(), 1);
  assert.equal(await page.locator("#console .line.lv-error").count(), 1);
  assert.equal(await page.locator("#console .line.lv-info").count(), 5);
  // Console output is text: the <b> is shown, not rendered.
  assert.equal(await page.locator("#console b", { hasText: "not bold" }).count(), 0);
  assert.ok(lines.includes("<b>not bold</b>"));
  assert.match(await page.locator("#debug-end").innerText(), /\d+(\.\d+)? (ms|s)/);

  // An unsaved draft runs as it is (draft=1), Ctrl+Enter starts it.
  await page.locator(".cm-content").click();
  await page.keyboard.press("ControlOrMeta+End");
  await page.keyboard.insertText("\nthrow new Error('draft only');\n");
  await page.locator("#dirty-state.dirty").waitFor();
  await page.keyboard.press("ControlOrMeta+Enter");
  await page.locator("#console .console-note", { hasText: "unsaved draft" }).waitFor();
  await page.locator("#debug-end[data-outcome=failed]", { hasText: "draft only" }).waitFor();
  await page.locator(".cm-lint-marker-error").first().waitFor(); // The failing line is marked.
  // Back to the saved script for the screenshot.
  await page.keyboard.press("ControlOrMeta+z");
  await page.locator("#dirty-state.saved").waitFor();
  await page.click("#debug-run");
  await page.locator("#debug-end[data-outcome=succeeded]").waitFor();
  await shot("script-debug.png");
});

test("toggle the job off and on from the list", async () => {
  await page.goto(url("#/jobs"));
  const sw = () => row(jobId).locator("[role=switch]");
  await sw().waitFor();
  await sw().click();
  await page.locator(`#jobs-table tr[data-job-id="${jobId}"] [role=switch][aria-checked=false]`).waitFor();
  let job = await server.api("GET", `/api/job?id=${encodeURIComponent(jobId)}`);
  assert.equal(job.state, 0);
  await sw().click();
  await page.locator(`#jobs-table tr[data-job-id="${jobId}"] [role=switch][aria-checked=true]`).waitFor();
  job = await server.api("GET", `/api/job?id=${encodeURIComponent(jobId)}`);
  assert.equal(job.state, 1);
});

test("a run appears in the history, and its console output opens on click", async () => {
  await page.goto(url(`#/jobs/${encodeURIComponent(jobId)}/runs`));
  // By occurrence (the default): one row per occurrence, its latest attempt's log.
  const scheduled = page.locator("#occurrences-table tbody tr.occ-row[data-outcome=succeeded][data-trigger=schedule]").first();
  await scheduled.waitFor({ timeout: 30000 });
  await scheduled.locator("button", { hasText: "Log" }).click();
  await page.locator("#run-log .line", { hasText: "report: done" }).waitFor();
  assert.ok((await page.locator("#run-log .line .tx").allInnerTexts()).includes("<b>not bold</b>"));
  // The flat list of runs filters by outcome.
  await page.click("#mode-runs");
  await page.locator("#runs-table tbody tr[data-outcome=succeeded]", { hasText: "schedule" }).first().waitFor();
  await page.selectOption("#outcome-filter", "failed");
  await page.locator("#runs-table td.empty", { hasText: "No failed runs" }).waitFor();
  await page.selectOption("#outcome-filter", "");
  await page.locator("#runs-table tbody tr[data-outcome]").first().waitFor();
  // Stop it so the history stops growing, then a manual run for the screenshot.
  await server.api("POST", `/api/enable?id=${encodeURIComponent(jobId)}&enable=false`);
  await page.click(".job-head button:has-text('Run now')");
  const manual = page.locator("#runs-table tbody tr[data-outcome=succeeded]", { hasText: "manual" }).first();
  await manual.waitFor();
  await manual.click();
  await page.locator("#run-detail dd", { hasText: /^manual$/ }).waitFor();
  await page.locator("#run-log .line", { hasText: "report: done" }).waitFor();
  await shot("run-history.png");
});

test(`a job named ${XSS} renders as text everywhere`, async () => {
  const id = await server.api("POST", "/api/job?type=timing", {
    name: XSS, description: "<script>alert(2)</script>", cron: "0 0 * * *",
    script: "console.log('<img src=x onerror=alert(3)>')",
  });
  await page.goto(url("#/jobs"));
  await row(id).waitFor();
  assert.equal(await row(id).locator(".job-name").innerText(), XSS);
  assert.equal(await row(id).locator(".job-desc").innerText(), "<script>alert(2)</script>");
  assert.equal(await page.locator("#jobs-table img").count(), 0);
  await page.goto(url(`#/jobs/${encodeURIComponent(id)}/script?debug=1`));
  await page.locator("#debug-end[data-outcome=succeeded]").waitFor();
  assert.equal(await page.locator(".job-title").innerText(), XSS);
  assert.equal(await page.locator("#console .line .tx").first().innerText(), "<img src=x onerror=alert(3)>");
  assert.equal(await page.locator("main img").count(), 0);
  assert.deepEqual(dialogs, []);
  await server.api("DELETE", `/api/job?id=${encodeURIComponent(id)}`);
});

test("screenshots of the dashboard and the jobs list with some data", async () => {
  // A few more jobs, a failing one among them, so the pages show what they are for.
  const make = async (name, body, start, runs = 0) => {
    const id = await server.api("POST", start ? "/api/run?type=timing" : "/api/job?type=timing", { name, ...body });
    for (let i = 0; i < runs; i++) await server.api("POST", `/api/job/trigger?id=${encodeURIComponent(id)}`);
    return id;
  };
  await make("cache-warmup", { description: "Warms the product cache", cron: "0 */5 * * * *", script: "console.log('warm')" }, true, 3);
  await make("billing-sync", { description: "Pulls invoices from the billing API", cron: "0 30 2 * * *", timezone: "Europe/Paris",
    script: "throw new Error('billing API answered 503')" }, true, 2);
  await make("weekly-digest", { description: "Monday digest for the team", cron: "0 8 * * MON", timezone: "America/New_York", script: "console.log('digest')" }, false);
  await server.api("POST", "/api/job?type=delay", { name: "send-reminder", description: "One-off reminder", execAt: Date.now() + 3600e3, script: "console.log('reminder')" });
  await page.goto(url("#/"));
  await page.locator("section[aria-labelledby=fail-title] tbody tr", { hasText: "billing-sync" }).first().waitFor();
  await page.locator("section[aria-labelledby=up-title] tbody tr").first().waitFor();
  const rate = await page.locator('[data-card="rate"] .value').innerText();
  assert.match(rate, /\d+%/);
  await shot("dashboard.png");
  // The failure's Log link opens that run's console.
  await page.locator("section[aria-labelledby=fail-title] a", { hasText: "Log" }).first().click();
  await page.locator("#run-detail .panel-head .badge", { hasText: "failed" }).waitFor();
  await page.locator("#run-detail pre", { hasText: "billing API answered 503" }).waitFor();

  await page.goto(url("#/jobs"));
  await page.locator("#jobs-count", { hasText: "5 in total" }).waitFor();
  await shot("jobs.png");
});

test("delete the job, after a confirmation", async () => {
  await page.goto(url("#/jobs"));
  await row(jobId).waitFor();
  // Cancel first: nothing happens.
  await row(jobId).locator("button", { hasText: "Delete" }).click();
  await page.locator("dialog[open]").waitFor();
  await page.keyboard.press("Escape");
  await page.locator("dialog").waitFor({ state: "detached" });
  await row(jobId).waitFor();
  await row(jobId).locator("button", { hasText: "Delete" }).click();
  await page.locator("dialog[open] button", { hasText: "Delete job" }).click();
  await row(jobId).waitFor({ state: "detached" });
  const all = await server.api("GET", "/api/jobList");
  assert.equal(all.find((j) => j.jobId === jobId), undefined);
});

test("the page asked no host but the server, and raised no errors", () => {
  assert.ok(requests.length > 10, `only ${requests.length} requests recorded`);
  const host = `127.0.0.1:${server.port}`;
  const foreign = requests.filter((u) => {
    if (u.startsWith("data:")) return false;
    const parsed = new URL(u);
    return parsed.host !== host;
  });
  assert.deepEqual(foreign, []);
  assert.ok(requests.some((u) => u.startsWith(`ws://${host}/api/debug`)), "the debug socket was used");
  assert.deepEqual(dialogs, []);
  assert.deepEqual(pageErrors, []);
});
