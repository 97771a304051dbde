// The server is killed and comes back on the same ports: the app
// reconnects by itself, what was written meanwhile is sent, nothing lost.
import { test, before, after } from "node:test";
import { Server, launch, person, shot, openChatWith, openConversation, say, live } from "./lib.mjs";

let server, browser;
before(async () => {
  server = await Server.start();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

test("the server restarts and the app reconnects with nothing lost", async () => {
  const rio = await person(browser, server, "rio", "wt");
  const sam = await person(browser, server, "sam", "ws");
  await openChatWith(rio, "sam");
  await say(rio, "before the restart");
  await openConversation(sam, "rio");
  await sam.locator(".msg", { hasText: "before the restart" }).waitFor();

  await server.kill();
  await rio.locator("#status[data-connection=offline], #status[data-connection=connecting]").waitFor();
  await say(rio, "written while the server was down");
  await rio.locator(".offline", { hasText: "1 message waiting to be sent" }).waitFor();
  await shot(rio, "22-offline");

  await server.spawn();
  await live(rio, 40000);
  await live(sam, 40000);
  await sam.locator(".msg", { hasText: "written while the server was down" }).waitFor({ timeout: 20000 });
  await rio.locator(".msg", { hasText: "written while the server was down" }).locator(".tick[aria-label=read]").waitFor();
  await say(sam, "got it");
  await rio.locator(".msg", { hasText: "got it" }).waitFor();
  // Each message exactly once on both sides.
  for (const page of [rio, sam]) {
    for (const text of ["before the restart", "written while the server was down", "got it"]) {
      const n = await page.locator(".msg", { hasText: text }).count();
      if (n !== 1) throw new Error(`${text}: shown ${n} times`);
    }
  }
  await shot(rio, "23-reconnected");
});
