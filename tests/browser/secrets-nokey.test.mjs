// A cluster node without a secret key (cluster mode has no default key file): saving a
// secret is refused with a 503, and the Secrets page shows the server's message and how
// to configure a key instead of breaking. Needs what the cluster tests need: a
// redis-server binary (started here on a free port) and PostgreSQL
// (TRAITOR_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres;
// scripts/test.sh starts it). TRAITOR_TEST_SKIP_POSTGRES=1 skips this file, as it skips
// the store's own PostgreSQL tests.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { startServer, startBrowser, freePort } from "./harness.mjs";

const SKIP = process.env.TRAITOR_TEST_SKIP_POSTGRES === "1" ? "TRAITOR_TEST_SKIP_POSTGRES=1" : false;
const ADMIN = process.env.TRAITOR_TEST_POSTGRES_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const DB = `traitor_ui_${process.pid}_${Date.now()}`;

let redis;
let server;
let browser;
let page;
let dbCreated = false;
const pageErrors = [];

function bin(name) {
  for (const dir of (process.env.PATH || "").split(":").concat(["/usr/sbin", "/usr/bin"])) {
    if (existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  throw new Error(`${name} is missing (scripts/test.sh installs it)`);
}

const psql = (sql) => execFileSync(bin("psql"), [ADMIN, "-v", "ON_ERROR_STOP=1", "-qc", sql], { stdio: "pipe" });

/** The admin URL with another database. */
function dbUrl(name) {
  const u = new URL(ADMIN);
  u.pathname = `/${name}`;
  return u.toString();
}

before(async () => {
  if (SKIP) return;
  psql(`CREATE DATABASE ${DB}`);
  dbCreated = true;
  const port = await freePort();
  redis = spawn(bin("redis-server"), ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  server = await startServer({
    args: ["-m", "multi", "-r", `redis://127.0.0.1:${port}`, "--store", dbUrl(DB), "-c", DB],
    env: { TRAITOR_SECRET_KEY: undefined, TRAITOR_SECRET_KEY_FILE: undefined },
  });
  browser = await startBrowser();
  page = browser.context.pages()[0] || (await browser.context.newPage());
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("dialog", (d) => { pageErrors.push(`dialog: ${d.message()}`); d.dismiss().catch(() => {}); });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
  if (redis) redis.kill("SIGKILL");
  if (dbCreated) { try { psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`); } catch { /* left for the next run to ignore */ } }
});

test("without a secret key, the Secrets page shows the server's 503 message and how to set a key", { skip: SKIP }, async () => {
  await page.goto(`${server.base}/#/secrets`);
  await page.locator("#secrets-empty").waitFor();
  await page.fill("#secret-name", "API_TOKEN");
  await page.fill("#secret-value", "not-kept");
  await page.click("#save-secret");
  const help = page.locator("#secret-key-missing");
  await help.waitFor();
  const text = await help.innerText();
  assert.match(text, /no secret key is configured/, "the server's message");
  assert.match(text, /TRAITOR_SECRET_KEY="\$\(openssl rand -base64 32\)"/, "how to make one");
  assert.match(text, /--secret-key-file/);
  assert.equal(await page.inputValue("#secret-value"), "", "the value is cleared even when refused");
  assert.equal(await page.inputValue("#secret-name"), "API_TOKEN", "the name stays for another try");
  // The page still works: the list is there, and nothing was saved.
  await page.locator("#secrets-empty").waitFor();
  assert.deepEqual(await server.api("GET", "/api/secrets"), []);
  assert.deepEqual(pageErrors, []);
});
