// The UI of issue 7 against the real server, in real headless Chromium: secrets (saved,
// granted to a job, never shown or returned, and the 409 on deleting a granted one), a
// job's state written by a real run, and shared modules (create, edit, diff, rollback,
// with a job that loads the module seeing each version). Each step waits for a
// condition; none sleeps a fixed time.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startBrowser, screenshotPath } from "./harness.mjs";

let server;
let browser;
let page;
const dialogs = [];
const pageErrors = [];
const responses = []; // { url, status, body } of every API answer the page received

before(async () => {
  server = await startServer();
  browser = await startBrowser();
  page = browser.context.pages()[0] || (await browser.context.newPage());
  page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(`console: ${m.text()}`);
  });
  page.on("response", async (r) => {
    const u = new URL(r.url());
    if (!u.pathname.startsWith("/api/")) return;
    try { responses.push({ url: r.url(), status: r.status(), body: await r.text() }); } catch { /* a body that went away */ }
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
const createJob = (body) => server.api("POST", "/api/job?type=timing", body);

/** Everything the page shows or holds in its DOM, form values included. */
const pageText = () => page.evaluate(() => {
  const values = [...document.querySelectorAll("input, textarea")].map((i) => i.value).join("\n");
  return `${document.documentElement.outerHTML}\n${document.body.innerText}\n${values}`;
});

/** Runs the job with the header's "Run now" on its run history, and returns the newest run's log. */
async function runNowAndReadLog(id) {
  await page.goto(url(`#/jobs/${enc(id)}/runs`));
  // Loaded: a row, or the line that says there is none.
  await page.locator("#occurrences-table tr.occ-row, #occurrences-table td.empty").first().waitFor();
  const done = "#occurrences-table tr.occ-row[data-outcome=succeeded], #occurrences-table tr.occ-row[data-outcome=failed]";
  const before = await page.locator(done).count();
  await page.click(".job-head button:has-text('Run now')");
  await page.waitForFunction(([sel, n]) => document.querySelectorAll(sel).length > n, [done, before], { timeout: 30000 });
  const newest = page.locator("#occurrences-table tr.occ-row").first();
  assert.equal(await newest.getAttribute("data-outcome"), "succeeded", "the run succeeded");
  await newest.locator("button", { hasText: "Log" }).click();
  await page.locator("#run-log .line").first().waitFor();
  return page.locator("#run-log").innerText();
}

test("a secret is saved, granted to a job in its settings, never shown or returned, and not deleted while granted", async () => {
  const VALUE = `tok-${Math.random().toString(36).slice(2)}-value`;
  const id = await createJob({ name: "uses-a-token", cron: "0 0 * * *", script: "console.log('token is', secrets.API_TOKEN, typeof secrets.API_TOKEN);" });

  await page.goto(url("#/secrets"));
  await page.locator("#secrets-empty").waitFor();
  assert.equal(await page.getAttribute("#secret-value", "type"), "password");
  // A bad name is refused here, before the value is sent.
  await page.fill("#secret-name", "api-token");
  await page.fill("#secret-value", VALUE);
  await page.click("#save-secret");
  await page.locator("#secret-name-error", { hasText: /capitals/i }).waitFor();
  assert.equal(await page.getAttribute("#secret-name", "aria-invalid"), "true");
  await page.fill("#secret-name", "API_TOKEN");
  await page.click("#save-secret");
  const row = page.locator('#secrets-table tr[data-secret="API_TOKEN"]');
  await row.waitFor();
  assert.equal(await page.inputValue("#secret-value"), "", "the value is cleared once sent");
  assert.match(await row.locator("td.grants").innerText(), /no job/);
  assert.ok(!(await pageText()).includes(VALUE), "the value is nowhere in the page");

  // Grant it in the job's settings.
  await page.goto(url(`#/jobs/${enc(id)}`));
  const grant = page.locator("#grant-API_TOKEN");
  await grant.waitFor();
  assert.equal(await grant.isChecked(), false);
  await grant.check();
  await page.click("#save-job");
  await page.locator(".toast", { hasText: /^Saved$/ }).waitFor();
  assert.deepEqual((await getJob(id)).secrets, ["API_TOKEN"]);
  await page.locator("#grant-API_TOKEN:checked").waitFor();

  // The list says who has it, linking to the job.
  await page.goto(url("#/secrets"));
  const link = row.locator(`td.grants a[data-job-id="${id}"]`);
  await link.waitFor();
  assert.equal(await link.innerText(), "uses-a-token");
  await shot("secrets.png");

  // Deleting a granted secret: confirmed, refused by the server, and the page says why.
  await row.locator("button", { hasText: "Delete" }).click();
  await page.locator("dialog[open]", { hasText: "uses-a-token" }).waitFor();
  await page.locator("dialog[open] button", { hasText: "Delete secret" }).click();
  const refusal = page.locator("#secret-delete-error");
  await refusal.waitFor();
  assert.match(await refusal.innerText(), /API_TOKEN was not deleted: .*granted to job\(s\) .*remove the grants first/s);
  assert.equal(await refusal.locator(`a[href="#/jobs/${enc(id)}"]`).count(), 1, "links to the job's settings");
  assert.ok(responses.some((r) => r.status === 409 && r.url.includes("/api/secret?name=API_TOKEN")));
  assert.equal(await row.count(), 1, "still listed");

  // A run of the job reads it, and its log shows it masked.
  const log = await runNowAndReadLog(id);
  assert.match(log, /token is \*\*\* string/);

  // Replace the value through the same form: the field empties again.
  await page.goto(url("#/secrets"));
  await row.locator("button", { hasText: "Replace" }).click();
  assert.equal(await page.inputValue("#secret-name"), "API_TOKEN");
  await page.fill("#secret-value", `${VALUE}-2`);
  await page.click("#save-secret");
  await page.locator(".toast", { hasText: "Replaced the value of API_TOKEN" }).waitFor();
  assert.equal(await page.inputValue("#secret-value"), "");

  // Remove the grant, then the delete goes through.
  await page.goto(url(`#/jobs/${enc(id)}`));
  await page.locator("#grant-API_TOKEN:checked").waitFor();
  await page.locator("#grant-API_TOKEN").uncheck();
  await page.click("#save-job");
  await page.locator(".toast", { hasText: /^Saved$/ }).waitFor();
  assert.deepEqual((await getJob(id)).secrets, []);
  await page.goto(url("#/secrets"));
  await row.locator("button", { hasText: "Delete" }).click();
  await page.locator("dialog[open] button", { hasText: "Delete secret" }).click();
  await page.locator("#secrets-empty").waitFor();
  assert.deepEqual(await server.api("GET", "/api/secrets"), []);

  assert.ok(!(await pageText()).includes(VALUE), "the value is nowhere in the page");
  for (const r of responses) assert.ok(!r.body.includes(VALUE), `the value came back in ${r.url}`);
  assert.ok(responses.some((r) => r.url.includes("/api/secrets")), "the page's answers were recorded");
});

test("a job's State tab shows what a real run stored with kv, pretty-printed, and deletes a key", async () => {
  const id = await createJob({
    name: "counter", cron: "0 0 * * *",
    script: "await kv.set('count', 1);\nawait kv.set('profile', { name: 'ada', tags: ['x', 'y'] });\nconsole.log('stored');",
  });
  await page.goto(url(`#/jobs/${enc(id)}/overview`));
  await page.click(".tabs a:has-text('State')");
  await page.waitForURL(/\/state$/);
  const empty = page.locator("#kv-empty");
  await empty.waitFor();
  assert.match(await empty.innerText(), /await kv\.set\('count', n \+ 1\)/);

  // A real run stores the values; the tab picks them up by itself.
  await page.click(".job-head button:has-text('Run now')");
  const count = page.locator('#kv-table tr[data-kv-key="count"]');
  await count.waitFor({ timeout: 30000 });
  assert.equal(await count.locator("td.kv-value").innerText(), "1");
  const profile = page.locator('#kv-table tr[data-kv-key="profile"] td.kv-value pre');
  assert.equal(await profile.innerText(), JSON.stringify({ name: "ada", tags: ["x", "y"] }, null, 2));
  assert.match(await page.locator("#kv-status").innerText(), /^2 keys/);
  await shot("job-state.png");

  // Delete: cancel changes nothing, confirm removes the key.
  await count.locator("button", { hasText: "Delete" }).click();
  await page.locator("dialog[open]", { hasText: "count" }).waitFor();
  await page.keyboard.press("Escape");
  await page.locator("dialog").waitFor({ state: "detached" });
  assert.equal((await server.api("GET", `/api/job/kv?id=${enc(id)}`)).length, 2);
  await count.locator("button", { hasText: "Delete" }).click();
  await page.locator("dialog[open] button", { hasText: "Delete key" }).click();
  await count.waitFor({ state: "detached" });
  assert.deepEqual((await server.api("GET", `/api/job/kv?id=${enc(id)}`)).map((e) => e.key), ["profile"]);
  assert.match(await page.locator("#kv-status").innerText(), /^1 key /);
});

test("shared modules: create, edit with a note, diff, roll back, delete; a job that requires the module runs each version", async () => {
  const MOD = "greeting";
  const v1 = "// Says hello.\nexports.word = 'one';\nexports.greet = (who) => `hello ${who}`;\n";
  const v2 = "// Says hello.\nexports.word = 'two';\nexports.greet = (who) => `hello ${who}`;\nexports.extra = true;\n";
  const jobId = await createJob({ name: "uses-greeting", cron: "0 0 * * *", script: `const g = require('${MOD}');\nconsole.log('word is', g.word);` });

  await page.goto(url("#/modules"));
  await page.locator("#modules-empty").waitFor();
  await page.click("#new-module");
  await page.waitForURL(/#\/modules\/new$/);
  const content = page.locator(".cm-content");
  await content.waitFor();
  // The editor checks syntax, and knows that an ES module may import and export.
  await content.click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.insertText("import { x } from 'other';\nexport const a = ;\n");
  await page.locator(".cm-lint-marker-error").first().waitFor();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.insertText("import { x } from 'other';\nexport const a = x;\n");
  await page.locator(".cm-lint-marker-error").waitFor({ state: "detached" });
  // A bad name is refused at its field.
  await page.fill("#module-name", "../up");
  await page.click("#save-module");
  await page.locator("#module-name-error", { hasText: /letters, digits/i }).waitFor();
  await page.fill("#module-name", MOD);
  assert.match(await page.locator("#module-usage").innerText(), /require\('greeting'\)/);
  await content.click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.press("Backspace");
  await page.keyboard.insertText(v1);
  await page.click("#save-module");
  await page.waitForURL(/#\/module\/greeting$/);
  await page.locator("#module-version", { hasText: "v1" }).waitFor();
  assert.equal((await server.api("GET", `/api/module?name=${MOD}`)).source, v1);
  // Creating another with the same name does not overwrite it.
  await page.goto(url("#/modules/new"));
  await page.locator(".cm-content").waitFor();
  await page.fill("#module-name", MOD);
  await page.click("#save-module");
  await page.locator("#module-name-error", { hasText: /exists/ }).waitFor();
  assert.equal((await server.api("GET", `/api/module?name=${MOD}`)).version, 1);
  await page.fill("#module-name", "");

  // The list.
  await page.goto(url("#/modules"));
  const row = page.locator(`#modules-table tr[data-module="${MOD}"]`);
  await row.waitFor();
  assert.match(await row.innerText(), /v1/);
  assert.match(await runNowAndReadLog(jobId), /word is one/);

  // Edit and save with a note: version 2, and the job's next run uses it.
  await page.goto(url("#/modules"));
  await row.locator("a", { hasText: "Edit" }).click();
  await page.waitForURL(/#\/module\/greeting$/);
  await page.locator("#dirty-state.saved").waitFor();
  await content.click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.press("Backspace");
  await page.keyboard.insertText(v2);
  await page.locator("#dirty-state.dirty").waitFor();
  await page.fill("#module-note", "say two");
  await page.click("#save-module");
  await page.locator("#dirty-state.saved").waitFor();
  await page.locator("#module-version", { hasText: "v2" }).waitFor();
  assert.equal(await page.inputValue("#module-note"), "");
  let mod = await server.api("GET", `/api/module?name=${MOD}`);
  assert.equal(mod.version, 2);
  assert.equal(mod.note, "say two");
  assert.match(await runNowAndReadLog(jobId), /word is two/);

  // Versions: the first view is the previous one against the current, with the diff.
  await page.goto(url(`#/module/${MOD}`));
  await page.click(".tabs a:has-text('Versions')");
  await page.waitForURL(/#\/module\/greeting\/versions/);
  const rowOf = (v) => page.locator(`#versions-table tbody tr[data-version="${v}"]`);
  await rowOf(2).waitFor();
  assert.equal(await rowOf(2).getAttribute("data-current"), "true");
  assert.match(await rowOf(2).innerText(), /say two/);
  await page.locator("#diff.unified").waitFor();
  assert.equal(await page.inputValue("#diff-from"), "1");
  assert.equal(await page.inputValue("#diff-to"), "2");
  assert.deepEqual(await page.locator("#diff tr.d-del td.tx").allInnerTexts(), ["exports.word = 'one';"]);
  assert.deepEqual(await page.locator("#diff tr.d-add td.tx").allInnerTexts(), ["exports.word = 'two';", "exports.extra = true;"]);
  assert.equal(await page.locator("#diff-stats").innerText(), "+2 −1");
  await shot("module-versions-diff.png");
  await rowOf(1).locator("button", { hasText: "View" }).click();
  await page.locator("#version-source").waitFor();
  assert.match(await page.locator("#version-source").innerText(), /exports\.word = 'one';/);

  // Roll back to version 1: it becomes version 3, and the job's next run says one again.
  await rowOf(1).locator("button", { hasText: "Roll back" }).click();
  await page.locator("dialog[open] button", { hasText: "Roll back" }).click();
  await rowOf(3).waitFor();
  assert.equal(await rowOf(3).getAttribute("data-current"), "true");
  await page.locator("#module-version", { hasText: "v3" }).waitFor();
  await page.locator("#diff", { hasText: "have the same source" }).waitFor();
  mod = await server.api("GET", `/api/module?name=${MOD}`);
  assert.equal(mod.version, 3);
  assert.equal(mod.source, v1);
  assert.match(await runNowAndReadLog(jobId), /word is one/);

  // Delete, confirmed.
  await page.goto(url(`#/module/${MOD}`));
  await page.locator("#delete-module").click();
  await page.locator("dialog[open] button", { hasText: "Delete module" }).click();
  await page.waitForURL(/#\/modules$/);
  await page.locator("#modules-empty").waitFor();
  assert.deepEqual(await server.api("GET", "/api/modules"), []);
});

test("no dialogs or page errors", () => {
  assert.deepEqual(dialogs, []);
  assert.deepEqual(pageErrors, []);
});
