// The UI of issue 6 against the real server, in real headless Chromium: scheduling
// policies in the job form and the overview, pause and resume, backfill, the occurrence
// history with its attempts, and script versions with their diff and rollback.
// Each step waits for a condition; none sleeps a fixed time.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startBrowser, screenshotPath } from "./harness.mjs";

let server;
let browser;
let page;
const dialogs = [];
const pageErrors = [];

before(async () => {
  server = await startServer();
  browser = await startBrowser();
  page = browser.context.pages()[0] || (await browser.context.newPage());
  page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(`console: ${m.text()}`);
  });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function shot(name) {
  await page.evaluate(() => document.querySelectorAll(".toast").forEach((t) => t.remove()));
  await page.screenshot({ path: screenshotPath(name) });
}

const url = (hash) => `${server.base}/${hash}`;
const enc = encodeURIComponent;
const getJob = (id) => server.api("GET", `/api/job?id=${enc(id)}`);
const policy = (key) => page.locator(`#policies-view dd[data-policy="${key}"]`);

async function createJob(body, type = "timing") {
  return server.api("POST", `/api/job?type=${type}`, body);
}

test("policies are edited through the form, a bad value gets the server's message at its field, and the overview shows them", async () => {
  const id = await createJob({ name: "policy-form", cron: "0 0 * * *", script: "console.log('hi')" });
  await page.goto(url(`#/jobs/${enc(id)}`));
  await page.locator("#policies").waitFor();
  // The defaults, and only the fields that apply.
  assert.equal(await page.inputValue("#overlap"), "skip");
  assert.equal(await page.inputValue("#misfire"), "run_once");
  assert.equal(await page.locator("#maxConcurrent").isVisible(), false);
  assert.equal(await page.locator("#maxCatchUp").isVisible(), false);
  assert.equal(await page.locator("#misfireWindowS").isVisible(), true);
  assert.equal(await page.locator("#jitterS").isVisible(), true);
  // Labels name every control.
  for (const c of ["overlap", "misfire", "misfireWindowS", "retries", "retryBackoffMs", "retryMaxBackoffMs", "jitterS"]) {
    assert.equal(await page.locator(`label[for="${c}"]`).count(), 1, c);
  }

  await page.selectOption("#overlap", "allow");
  await page.locator("#maxConcurrent").waitFor();
  await page.fill("#maxConcurrent", "3");
  await page.selectOption("#misfire", "run_all");
  await page.locator("#maxCatchUp").waitFor();
  await page.fill("#misfireWindowS", "300");
  await page.fill("#maxCatchUp", "5");
  await page.fill("#retryBackoffMs", "500");
  await page.fill("#retryMaxBackoffMs", "4000");
  await page.fill("#jitterS", "30");
  // Out of range: the form sends it and shows what the server says, beside the field.
  await page.fill("#retries", "99");
  await page.click("#save-job");
  await page.locator("#retries-error", { hasText: /between 0 and 20/ }).waitFor();
  assert.equal(await page.getAttribute("#retries", "aria-invalid"), "true");
  assert.equal((await getJob(id)).overlap, "skip", "a refused save changes nothing");
  // A rule across two fields names the second.
  await page.fill("#retries", "2");
  await page.fill("#retryMaxBackoffMs", "200");
  await page.click("#save-job");
  await page.locator("#retryMaxBackoffMs-error", { hasText: /retryBackoffMs/ }).waitFor();
  assert.equal(await page.locator("#retries-error").innerText(), "");
  await page.fill("#retryMaxBackoffMs", "4000");
  await page.click("#save-job");
  await page.locator(".toast", { hasText: "Saved" }).waitFor();

  const job = await getJob(id);
  assert.equal(job.overlap, "allow");
  assert.equal(job.maxConcurrent, 3);
  assert.equal(job.misfire, "run_all");
  assert.equal(job.misfireWindowS, 300);
  assert.equal(job.maxCatchUp, 5);
  assert.equal(job.retries, 2);
  assert.equal(job.retryBackoffMs, 500);
  assert.equal(job.retryMaxBackoffMs, 4000);
  assert.equal(job.jitterS, 30);

  // The form shows what was saved; the overview says it in words.
  await page.locator("#maxConcurrent").waitFor();
  assert.equal(await page.inputValue("#maxConcurrent"), "3");
  await page.click(".tabs a:has-text('Overview')");
  await page.waitForURL(/\/overview$/);
  await policy("overlap").waitFor();
  assert.equal(await policy("overlap").innerText(), "allow, up to 3 at once");
  assert.equal(await policy("misfire").innerText(), "run all, within 5 min, at most 5");
  assert.match(await policy("retries").innerText(), /^2 retries, after 500 ms doubling up to 4\.00 s$/);
  assert.equal(await policy("jitter").innerText(), "up to 30 s");
  // The plan: one midnight in the next 24 h (jitter included), and the catch-up policy.
  await page.locator("#plan-fires li").first().waitFor();
  assert.equal(await page.locator("#plan-fires li").count(), 1);
  assert.match(await page.locator("#plan-catchup-policy").innerText(), /run all, window 300 s/);
});

test("pause until a time, see it on the job, then resume", async () => {
  const id = await createJob({ name: "pausable", cron: "0 * * * *", script: "console.log('tick')" });
  await page.goto(url(`#/jobs/${enc(id)}/overview`));
  await page.locator("#pause-until").waitFor();
  assert.match(await page.locator("#pause-state").innerText(), /Not paused/);
  // A time in the past: the server refuses, the message is beside the input.
  await page.fill("#pause-until", "2001-01-01T00:00:00");
  await page.click("#pause");
  await page.locator("#pause-until-error", { hasText: /./ }).waitFor();
  assert.equal(await page.getAttribute("#pause-until", "aria-invalid"), "true");
  assert.equal((await getJob(id)).pausedUntil, null);

  await page.click("button:has-text('+1 day')");
  await page.click("#pause");
  await page.locator("#paused-badge").waitFor();
  await page.locator("#pause-state", { hasText: "Paused until" }).waitFor();
  let job = await getJob(id);
  assert.ok(job.pausedUntil, "pausedUntil is set");
  const until = new Date(job.pausedUntil).getTime();
  assert.ok(Math.abs(until - (Date.now() + 24 * 3600e3)) < 5 * 60e3, job.pausedUntil);
  // The plan says how many of the next day's fires the pause skips.
  await page.locator("#plan-paused").waitFor();
  assert.match(await page.locator("#plan-paused").innerText(), /^\d+ of them fall in the pause/);
  // Every tab of the job shows the pause.
  await page.click(".tabs a:has-text('Run history')");
  await page.locator("#paused-badge").waitFor();
  await page.click(".tabs a:has-text('Overview')");

  await page.locator("#resume").click();
  await page.locator("#paused-badge").waitFor({ state: "detached" });
  await page.locator("#pause-state", { hasText: "Not paused" }).waitFor();
  job = await getJob(id);
  assert.equal(job.pausedUntil, null);
  await page.locator("#plan-paused").waitFor({ state: "detached" });

  // And once more, so that pausing after a resume works too.
  await page.click("button:has-text('+1 h')");
  await page.click("#pause");
  await page.locator("#paused-badge").waitFor();
  await page.locator("#resume").click();
  await page.locator("#paused-badge").waitFor({ state: "detached" });
});

test("backfill queues the missed occurrences of a range, and a second backfill suppresses them", async () => {
  const id = await createJob({ name: "backfilled", cron: "0 * * * *", script: "console.log('backfill', job.scheduledAt)" });
  await page.goto(url(`#/jobs/${enc(id)}/overview`));
  await page.locator("#backfill-from").waitFor();
  const local = (ms) => {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  };
  // Three whole hours back, from just after an hour's start: exactly three hourly instants.
  const hour = 3600e3;
  const lastHour = Math.floor(Date.now() / hour) * hour;
  await page.fill("#backfill-from", local(lastHour - 2 * hour - 1000));
  await page.fill("#backfill-to", local(lastHour + 1000));
  await page.click("#backfill");
  await page.locator("#backfill-queued[data-count='3']").waitFor();
  assert.equal(await page.locator("#backfill-queued-list li").count(), 3);
  await page.locator("#backfill-suppressed[data-count='0']").waitFor();

  // They run, in order, as backfill occurrences.
  await page.click("#backfill-result a");
  await page.waitForURL(/\/runs$/);
  const done = page.locator("#occurrences-table tr.occ-row[data-trigger=backfill][data-outcome=succeeded]");
  await page.waitForFunction(() => document.querySelectorAll("#occurrences-table tr.occ-row[data-trigger=backfill][data-outcome=succeeded]").length === 3, null, { timeout: 30000 });
  assert.equal(await done.count(), 3);

  await page.click(".tabs a:has-text('Overview')");
  await page.locator("#backfill-from").waitFor();
  await page.fill("#backfill-from", local(lastHour - 2 * hour - 1000));
  await page.fill("#backfill-to", local(lastHour + 1000));
  await page.click("#backfill");
  await page.locator("#backfill-suppressed[data-count='3']").waitFor();
  await page.locator("#backfill-queued[data-count='0']").waitFor();
  // A range in the future is refused by the server, at the field it names.
  await page.fill("#backfill-to", local(Date.now() + 3 * hour));
  await page.click("#backfill");
  await page.locator("#backfill-to-error, #backfill-result .alert-bad").first().waitFor();
});

test("the history groups a retried occurrence: one row, two attempts, each with its log", async () => {
  const id = await createJob({
    name: "flaky-export", description: "Fails, and is retried once",
    cron: "0 0 * * *", retries: 1, retryBackoffMs: 100,
    script: "console.log('attempt', job.attempt, 'of', job.occurrenceId);\nthrow new Error('x');\n",
  });
  await page.goto(url(`#/jobs/${enc(id)}/runs`));
  await page.locator("#occurrences-table td.empty").waitFor();
  await page.click(".job-head button:has-text('Run now')");
  const occ = page.locator("#occurrences-table tr.occ-row[data-attempts='2'][data-outcome=failed]");
  await occ.waitFor({ timeout: 30000 });
  assert.equal(await page.locator("#occurrences-table tr.occ-row").count(), 1, "one occurrence, not one row per attempt");
  assert.equal(await occ.getAttribute("data-trigger"), "manual");
  assert.equal(await occ.locator("td.attempts").innerText(), "2");
  assert.equal(await occ.locator("td.duplicates").innerText(), "0");
  const occId = await occ.getAttribute("data-occurrence-id");
  assert.ok(occId.startsWith(`${id}@`), occId);

  // Expand: the attempts, oldest first, each failed.
  const expand = occ.locator("button.expand");
  assert.equal(await expand.getAttribute("aria-expanded"), "false");
  await expand.click();
  await page.locator("tr.attempt-row").nth(1).waitFor();
  assert.equal(await occ.locator("button.expand").getAttribute("aria-expanded"), "true");
  assert.deepEqual(await page.locator("tr.attempt-row").evaluateAll((rows) => rows.map((r) => [r.dataset.attempt, r.dataset.outcome])),
    [["1", "failed"], ["2", "failed"]]);
  // Each attempt opens the run's log, which knows its attempt.
  await page.locator("tr.attempt-row[data-attempt='2'] button", { hasText: "Log" }).click();
  await page.locator("#run-attempt", { hasText: "2" }).waitFor();
  await page.locator("#run-log .line", { hasText: "attempt 2 of" }).waitFor();
  await page.locator("#run-detail pre", { hasText: "x" }).waitFor();
  assert.match(page.url(), /\?run=/);
  await page.locator("tr.attempt-row[data-attempt='1'] button", { hasText: "Log" }).click();
  await page.locator("#run-attempt", { hasText: "1" }).waitFor();
  await page.locator("#run-log .line", { hasText: "attempt 1 of" }).waitFor();
  // The expansion survives the live refresh.
  const liveText = await page.locator(".toolbar span", { hasText: "Live" }).innerText();
  await page.waitForFunction((t) => [...document.querySelectorAll(".toolbar span")]
    .some((s) => s.textContent.startsWith("Live") && s.textContent !== t), liveText);
  assert.equal(await page.locator("tr.attempt-row").count(), 2);
  await shot("occurrence-history.png");

  // The flat list has both runs, with their attempt numbers.
  await page.click("#mode-runs");
  await page.locator("#runs-table tbody tr[data-outcome=failed]").nth(1).waitFor();
  assert.equal(await page.locator("#runs-table tbody tr[data-outcome=failed]").count(), 2);
  await page.click("#mode-occurrences");
  await page.locator("#occurrences-table tr.occ-row").first().waitFor();
});

test("script versions: save with a note, see the diff, roll back", async () => {
  const v1 = "// Sends the export.\nconst target = 'one';\nconsole.log('sending to', target);\nconsole.log('done');\n";
  const id = await createJob({ name: "versioned", cron: "0 0 * * *", script: v1 });
  await page.goto(url(`#/jobs/${enc(id)}/script`));
  const content = page.locator(".cm-content");
  await content.waitFor();
  await content.click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.press("Backspace");
  await page.keyboard.insertText("// Sends the export.\nconst target = 'two';\nconsole.log('sending to', target);\nconsole.log('retrying once');\nconsole.log('done');\n");
  await page.locator("#dirty-state.dirty").waitFor();
  await page.fill("#script-note", "point it at two, log the retry");
  await page.click("#save-script");
  // (hasText is a case-insensitive substring: "Unsaved" would match "Saved".)
  await page.locator("#dirty-state.saved").waitFor();
  assert.equal(await page.inputValue("#script-note"), "");
  let job = await getJob(id);
  assert.equal(job.scriptVersion, 2);
  assert.equal(job.scriptNote, "point it at two, log the retry");

  await page.click(".tabs a:has-text('Versions')");
  const rowOf = (v) => page.locator(`#versions-table tbody tr[data-version="${v}"]`);
  await rowOf(2).waitFor();
  assert.equal(await page.locator("#versions-table tbody tr").count(), 2);
  assert.equal(await rowOf(2).getAttribute("data-current"), "true");
  assert.equal(await rowOf(1).getAttribute("data-current"), "false");
  assert.match(await rowOf(2).innerText(), /point it at two, log the retry/);
  assert.equal(await rowOf(2).locator("button", { hasText: "Roll back" }).count(), 0, "the current version has no rollback");

  // The first view: the previous version against the current one, unified.
  await page.locator("#diff.unified").waitFor();
  assert.equal(await page.inputValue("#diff-from"), "1");
  assert.equal(await page.inputValue("#diff-to"), "2");
  assert.deepEqual(await page.locator("#diff tr.d-del td.tx").allInnerTexts(), ["const target = 'one';"]);
  assert.deepEqual(await page.locator("#diff tr.d-add td.tx").allInnerTexts(), ["const target = 'two';", "console.log('retrying once');"]);
  assert.equal(await page.locator("#diff-stats").innerText(), "+2 −1");
  assert.match(await page.locator("#diff tr.hunk").first().innerText(), /^@@ -1,4 \+1,5 @@$/);
  // Side by side: the changed line faces its replacement.
  await page.click("button[data-layout=split]");
  await page.locator("#diff.split").waitFor();
  const changed = page.locator("#diff tr.d-change").first();
  assert.deepEqual(await changed.locator("td.tx").allInnerTexts(), ["const target = 'one';", "const target = 'two';"]);
  await shot("script-versions-diff.png");
  await page.click("button[data-layout=unified]");
  await page.locator("#diff.unified").waitFor();
  // View a version's source.
  await rowOf(1).locator("button", { hasText: "View" }).click();
  await page.locator("#version-source").waitFor();
  assert.match(await page.locator("#version-source").innerText(), /const target = 'one';/);

  // Roll back to version 1: confirmed, it becomes version 3, the current one.
  await rowOf(1).locator("button", { hasText: "Roll back" }).click();
  await page.locator("dialog[open]").waitFor();
  await page.keyboard.press("Escape");
  await page.locator("dialog").waitFor({ state: "detached" });
  assert.equal((await getJob(id)).scriptVersion, 2, "cancel changes nothing");
  await rowOf(1).locator("button", { hasText: "Roll back" }).click();
  await page.locator("dialog[open] button", { hasText: "Roll back" }).click();
  await rowOf(3).waitFor();
  assert.equal(await rowOf(3).getAttribute("data-current"), "true");
  assert.equal(await rowOf(2).getAttribute("data-current"), "false");
  job = await getJob(id);
  assert.equal(job.scriptVersion, 3);
  const script = await server.api("GET", `/api/script?id=${enc(id)}`);
  assert.equal(script.script, v1);
  // The header follows, and version 1 is now the same script as the current one.
  await page.locator(".job-head a.badge", { hasText: "script v3" }).waitFor();
  await page.locator("#diff", { hasText: "have the same script" }).waitFor();
  // Version 2 against the current shows the rollback's change the other way round.
  await rowOf(2).locator("button", { hasText: "Diff" }).click();
  await page.locator("#diff.unified").waitFor();
  assert.deepEqual(await page.locator("#diff tr.d-add td.tx").allInnerTexts(), ["const target = 'one';"]);
});

test("no dialogs or page errors", () => {
  assert.deepEqual(dialogs, []);
  assert.deepEqual(pageErrors, []);
});
