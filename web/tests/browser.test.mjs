import { mkdirSync } from "node:fs";
// Chromium end to end: the page logs in, connects over WebTransport (and
// over the WebSocket fallback), sends and shows messages, through the real
// `samvad serve` binary.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const bin = process.env.SAMVAD_BIN ?? new URL("../../target/debug/samvad", import.meta.url).pathname;
let server, dir, browser, base;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "samvad-web-"));
  const ready = join(dir, "ready.json");
  server = spawn(bin, ["serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
    "--durability", "buffer", "--ready-file", ready], { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, SAMVAD_LOG: "warn" } });
  for (let i = 0; i < 300 && !existsSync(ready); i++) await new Promise((r) => setTimeout(r, 50));
  const info = JSON.parse(readFileSync(ready, "utf8"));
  base = `http://localhost:${info.http.split(":")[1]}`;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
      // Calls: a synthetic camera and microphone, no permission prompt.
      "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
    // Playwright gives every launch a fresh, empty profile directory.
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

async function open(user, transport) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error("page error:", e));
  await page.goto(`${base}/?transport=${transport}`);
  await page.fill("#username", user);
  await page.fill("#password", "password-123");
  await page.click("#register");
  await page.waitForSelector("#status[data-synced=true]", { timeout: 15000 });
  return page;
}

test("chat between a WebTransport page and a WebSocket page", async () => {
  const alice = await open("alice", "wt");
  assert.match(await alice.textContent("#status"), /via webtransport/);
  const bob = await open("bob", "ws");
  assert.match(await bob.textContent("#status"), /via websocket/);

  await alice.fill("#to", "bob");
  await alice.fill("#text", "hello over webtransport");
  await alice.click("#send");
  await alice.waitForSelector("li.accepted", { timeout: 10000 });
  await bob.waitForSelector("li.msg:has-text('alice: hello over webtransport')", { timeout: 10000 });
  // Bob's page acked it: Alice sees the DELIVERED receipt.
  await alice.waitForSelector("li.receipt:has-text('delivered to bob')", { timeout: 10000 });

  await bob.fill("#to", "alice");
  await bob.fill("#text", "and back over websocket");
  await bob.click("#send");
  await alice.waitForSelector("li.msg:has-text('bob: and back over websocket')", { timeout: 10000 });
  // What a person sees, kept for review (web/test-results/, not committed).
  mkdirSync(new URL("../test-results/", import.meta.url), { recursive: true });
  await alice.screenshot({ path: new URL("../test-results/chat-alice.png", import.meta.url).pathname });
  await bob.screenshot({ path: new URL("../test-results/chat-bob.png", import.meta.url).pathname });
});

const loadBin = process.env.SAMVAD_LOAD_BIN ?? new URL("../../target/debug/samvad-load", import.meta.url).pathname;

async function rest(path, body, token) {
  const resp = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  const json = await resp.json();
  assert.ok(resp.ok, `${path}: ${JSON.stringify(json)}`);
  return json;
}

test("a group call from a page reaches a native participant and another page", async () => {
  const ann = await open("callann", "wt");
  const bob = await open("callbob", "ws");
  const cat = await rest("/v1/register", { username: "callcat", password: "password-123" });
  const annToken = (await rest("/v1/login", { username: "callann", password: "password-123" })).access_token;
  const group = await rest("/v1/groups", { name: "call", members: ["callbob", "callcat"] }, annToken);

  for (const page of [ann, bob]) {
    await page.fill("#room", group.id);
    await page.click("#join");
  }
  // The native participant (str0m) receives Ann's camera through the SFU.
  const { stdout } = await promisify(execFile)(loadBin, ["--server", base, "--transport", "quic", "media-probe",
    "--room", group.id, "--user", "callcat", "--token", cat.access_token, "--from", "callann", "--frames", "20"],
    { timeout: 60000 });
  assert.match(stdout, /got \d+ video frames from callann/);
  // So does Bob's page: frames decoded, per getStats().
  await bob.waitForFunction(async () => ((await window.callStats())["callann"] ?? 0) > 10, null, { timeout: 30000 });
  // And Ann's page gets Bob's camera the same way.
  await ann.waitForFunction(async () => ((await window.callStats())["callbob"] ?? 0) > 10, null, { timeout: 30000 });
});
