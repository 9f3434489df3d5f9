// With an auth token configured, the UI asks for it once (a form, not prompt()), keeps it
// in the browser, sends it as a Bearer header, and as ?token= on the debug socket.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startBrowser } from "./harness.mjs";

const TOKEN = "correct-horse-battery-staple";
let server;
let browser;
let page;
const dialogs = [];

before(async () => {
  server = await startServer({ token: TOKEN });
  browser = await startBrowser();
  page = browser.context.pages()[0] || (await browser.context.newPage());
  page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

test("asks for the token once, refuses a wrong one, remembers the right one", async () => {
  await page.goto(`${server.base}/#/`);
  await page.locator("#login-title").waitFor();
  await page.fill("#token", "wrong");
  await page.press("#token", "Enter");
  await page.locator("#token-error", { hasText: "not accepted" }).waitFor();
  await page.fill("#token", TOKEN);
  await page.press("#token", "Enter");
  await page.locator('[data-card="jobs"] .value').waitFor();
  // Kept across a reload: no second prompt.
  await page.reload();
  await page.locator('[data-card="jobs"] .value').waitFor();
  assert.equal(await page.locator("#login-title").count(), 0);
  assert.equal(await page.evaluate(() => localStorage.getItem("traitor.token")), TOKEN);
  assert.deepEqual(dialogs, []);
});

test("the debug socket works with the token", async () => {
  const id = await server.api("POST", "/api/job?type=timing", { name: "with-token", cron: "0 0 * * *", script: "console.log('authorised')" });
  await page.goto(`${server.base}/#/jobs/${encodeURIComponent(id)}/script?debug=1`);
  await page.locator("#console .line", { hasText: "authorised" }).waitFor();
  await page.locator("#debug-end[data-outcome=succeeded]").waitFor();
});

test("forgetting the token brings the prompt back", async () => {
  await page.click("#forget-token");
  await page.locator("#login-title").waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem("traitor.token")), null);
});
