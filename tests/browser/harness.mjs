// Test harness: starts the real traitor binary on a free port with a temp data dir,
// and headless Chromium (Debian's /usr/bin/chromium) through playwright-core.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { mkdtempSync, rmSync, existsSync, openSync, readFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
// The committed screenshots in docs/screenshots are refreshed on request
// (TRAITOR_SCREENSHOTS_DIR=docs/screenshots); ordinary runs write under target/ so that a
// test run leaves the work tree clean.
export const SCREENSHOTS = process.env.TRAITOR_SCREENSHOTS_DIR
  ? join(REPO, process.env.TRAITOR_SCREENSHOTS_DIR)
  : join(REPO, "target", "screenshots");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

async function until(what, fn, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await fn()) return;
    } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

/**
 * Starts traitor; resolves when /healthz answers 200. `args` are added to its command
 * line and `env` to its environment (e.g. a cluster node's `-m multi`). `token` is the
 * secret `api()` sends (named `tokenName` on the server, else `default`).
 */
export async function startServer({ token, tokenName, args: extraArgs = [], env = {} } = {}) {
  const bin = process.env.TRAITOR_BIN || join(REPO, "target", "debug", "traitor");
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`cargo build --bins\` first`);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "traitor-ui-"));
  const logPath = join(dir, "server.log");
  const out = openSync(logPath, "a");
  const args = ["-p", String(port), "--ip", "127.0.0.1", "--data-dir", join(dir, "data"), "--workers", "2"];
  if (token) args.push("--auth-token", tokenName ? `${tokenName}:${token}` : token);
  args.push(...extraArgs);
  const child = spawn(bin, args, { stdio: ["ignore", out, out], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info", ...env } });
  let exited = null;
  child.on("exit", (code, signal) => { exited = { code, signal }; });
  const base = `http://127.0.0.1:${port}`;
  try {
    await until("traitor's /healthz", async () => {
      if (exited) throw new Error(`traitor exited early (${JSON.stringify(exited)}):\n${readFileSync(logPath, "utf8").slice(-3000)}`);
      const r = await fetch(`${base}/healthz`);
      return r.status === 200;
    }, 60000);
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
  return {
    port, base, dir, logPath,
    /** Calls the API from the test (not the browser), with the token when set. */
    async api(method, path, body) {
      const headers = { "Content-Type": "application/json" };
      if (token) headers.Authorization = `Bearer ${token}`;
      const r = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const json = await r.json();
      if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
      return json && typeof json === "object" && "data" in json ? json.data : json;
    },
    log: () => readFileSync(logPath, "utf8"),
    async stop() {
      if (!exited) {
        child.kill("SIGTERM");
        await until("traitor to exit", () => exited !== null, 10000).catch(() => child.kill("SIGKILL"));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  const userDataDir = mkdtempSync(join(tmpdir(), "traitor-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  context.setDefaultTimeout(20000);
  return {
    context,
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

export function screenshotPath(name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return join(SCREENSHOTS, name);
}
