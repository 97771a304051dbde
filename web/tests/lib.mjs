// What the browser and SDK tests share: a real `samvad serve` on fixed free
// ports (so it can be restarted where the pages expect it), Debian's
// Chromium through playwright-core, and screenshots kept for review.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, rmSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { createSocket } from "node:dgram";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const bin = process.env.SAMVAD_BIN ?? new URL("../../target/debug/samvad", import.meta.url).pathname;
export const loadBin = process.env.SAMVAD_LOAD_BIN ?? new URL("../../target/debug/samvad-load", import.meta.url).pathname;
const shots = new URL("../test-results/", import.meta.url).pathname;

/** A port free for both TCP and UDP right now. */
async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const s = createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    const udpFree = await new Promise((resolve) => {
      const u = createSocket("udp4");
      u.once("error", () => resolve(false));
      u.bind(port, "127.0.0.1", () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
}

export class Server {
  static async start() {
    const s = new Server();
    s.dir = mkdtempSync(join(tmpdir(), "samvad-web-"));
    s.quicPort = await freePort();
    s.httpPort = await freePort();
    await s.spawn();
    return s;
  }

  get base() {
    return `http://localhost:${this.httpPort}`;
  }

  async spawn() {
    const ready = join(this.dir, `ready-${Date.now()}.json`);
    this.proc = spawn(bin, ["serve", "--data-dir", join(this.dir, "data"), "--listen", `127.0.0.1:${this.quicPort}`,
      "--http-listen", `127.0.0.1:${this.httpPort}`, "--durability", "buffer", "--ready-file", ready],
      { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, SAMVAD_LOG: "warn" } });
    const exited = new Promise((resolve) => this.proc.once("exit", resolve));
    for (let i = 0; i < 400 && !existsSync(ready); i++) {
      await new Promise((r) => setTimeout(r, 50));
      if (this.proc.exitCode !== null) throw new Error(`samvad serve exited with ${this.proc.exitCode}`);
    }
    if (!existsSync(ready)) throw new Error("samvad serve did not become ready");
    this.info = JSON.parse(readFileSync(ready, "utf8"));
    this.exited = exited;
  }

  /** kill -9, then the same binary on the same ports and data. */
  async kill() {
    this.proc.kill("SIGKILL");
    await this.exited;
  }

  async stop() {
    if (this.proc.exitCode === null) {
      this.proc.kill("SIGKILL");
      await this.exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  async rest(method, path, body, token) {
    const resp = await fetch(`${this.base}${path}`, {
      method,
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await resp.json();
    if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${JSON.stringify(json)}`);
    return json;
  }
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
      // Calls: a synthetic camera and microphone, no permission prompt.
      "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
  });
}

/** A person at their own browser profile (own IndexedDB), on one transport. */
export async function person(browser, server, user, transport, { register = true, viewport } = {}) {
  const context = await browser.newContext({ viewport: viewport ?? { width: 1100, height: 720 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`${user}: page error:`, e));
  await page.goto(`${server.base}/?transport=${transport}`);
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill("password-123");
  if (register) await page.getByRole("button", { name: "New here? Create an account" }).click();
  await page.locator("form.card button[type=submit]").click();
  await live(page);
  return page;
}

export function live(page, timeout = 20000) {
  return page.waitForSelector("#status[data-connection=live]", { timeout });
}

export async function shot(page, name) {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`) });
}

/** Starts a 1:1 chat with `user` through the people search. */
export async function openChatWith(page, user) {
  await page.getByLabel("Search people").fill(user);
  await page.getByRole("list", { name: "People found" }).getByRole("button", { name: user, exact: true }).click();
}

export async function openConversation(page, title) {
  await page.getByRole("list", { name: "Conversation list" }).getByRole("button", { name: new RegExp(title) }).click();
}

export async function say(page, text) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByRole("button", { name: "Send" }).click();
}
