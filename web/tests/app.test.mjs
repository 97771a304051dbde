// The web app as people use it, in Chromium, through the real `samvad
// serve`: over WebTransport and over WebSocket.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Server, launch, person, shot, openChatWith, openConversation, say, live, loadBin } from "./lib.mjs";

let server, browser;
before(async () => {
  server = await Server.start();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const msg = (page, text) => page.locator(".msg", { hasText: text });

test("two people chat; ticks go sent, delivered, read when the other opens the conversation", async () => {
  const alice = await person(browser, server, "alice", "wt");
  assert.equal(await alice.locator("#status").getAttribute("data-transport"), "webtransport");
  const bob = await person(browser, server, "bob", "ws");
  assert.equal(await bob.locator("#status").getAttribute("data-transport"), "websocket");
  await shot(alice, "01-empty-list");

  await openChatWith(alice, "bob");
  await say(alice, "hello over webtransport");
  // Bob's page is live and acks it: delivered, though he has not opened it.
  await msg(alice, "hello over webtransport").locator(".tick[aria-label=delivered]").waitFor();
  const item = bob.getByRole("list", { name: "Conversation list" }).getByRole("button", { name: /alice/ });
  await item.getByLabel("1 unread").waitFor();
  await shot(bob, "02-list-unread");

  await openConversation(bob, "alice");
  await msg(bob, "hello over webtransport").waitFor();
  await msg(alice, "hello over webtransport").locator(".tick[aria-label=read]").waitFor();
  await say(bob, "and back over websocket");
  await msg(alice, "and back over websocket").waitFor();
  // Alice has the conversation open: Bob's message turns read at once.
  await msg(bob, "and back over websocket").locator(".tick[aria-label=read]").waitFor();

  // Typing reaches the other side (a datagram from WebTransport).
  await alice.getByLabel("Message", { exact: true }).pressSequentially("typ");
  await bob.locator(".conv-header .typing", { hasText: "alice is typing" }).waitFor();
  await shot(alice, "03-chat-alice");
  await shot(bob, "04-chat-bob");

  // Delete for everyone: Bob takes his back; Alice sees it go.
  await msg(bob, "and back over websocket").getByRole("button", { name: "Message actions" }).click();
  await bob.getByRole("menuitem", { name: "Delete for everyone" }).click();
  await alice.locator(".msg.deleted", { hasText: "This message was deleted." }).waitFor();
  // Delete for me: gone from Alice's view only.
  await msg(alice, "hello over webtransport").getByRole("button", { name: "Message actions" }).click();
  await alice.getByRole("menuitem", { name: "Delete for me" }).click();
  await msg(alice, "hello over webtransport").waitFor({ state: "detached" });
  await msg(bob, "hello over webtransport").waitFor();
  await alice.context().close();
  await bob.context().close();
});

test("history comes page by page as the conversation scrolls up", async () => {
  // Dave writes 75 messages from one browser; on a second one his inbox
  // holds none of them (they are his), so they can only come as history.
  const dave = await person(browser, server, "dave", "ws");
  const erin = await server.rest("POST", "/v1/register", { username: "erin", password: "password-123" });
  assert.ok(erin.access_token);
  await openChatWith(dave, "erin");
  await dave.evaluate(async () => {
    const c = window.samvad;
    for (let i = 1; i <= 75; i++) c.send("dave:erin", `note ${i}`);
    while (c.queued().length) await new Promise((r) => setTimeout(r, 50));
  });
  await dave.context().close();

  const again = await person(browser, server, "dave", "wt", { register: false });
  await openChatWith(again, "erin");
  await msg(again, "note 75").waitFor();
  // The first page is 30: note 46 … 75.
  assert.equal(await again.locator(".msg").count(), 30);
  await shot(again, "05-history-first-page");
  for (const expected of [60, 75]) {
    await again.locator(".messages").evaluate((el) => (el.scrollTop = 0));
    await again.waitForFunction((n) => document.querySelectorAll(".msg").length === n, expected);
  }
  await again.locator(".start", { hasText: "This is the start of the conversation." }).waitFor();
  assert.equal(await again.locator(".msg").first().textContent().then((t) => t.includes("note 1")), true);
  await shot(again, "06-history-all-pages");
  await again.context().close();
});

test("a group: created, a member invited who accepts, given a right, and uses it", async () => {
  const ann = await person(browser, server, "gann", "wt");
  const ben = await person(browser, server, "gben", "ws");
  await server.rest("POST", "/v1/register", { username: "gcat", password: "password-123" });

  await ann.getByRole("button", { name: "New group" }).click();
  await ann.getByLabel("Name").fill("Design team");
  await ann.getByRole("button", { name: "Create" }).click();
  await ann.locator(".conv-header h2", { hasText: "Design team" }).waitFor();
  await ann.getByRole("button", { name: "Members" }).click();
  await ann.getByLabel("Invite people").fill("gben");
  await ann.getByRole("button", { name: "Invite gben" }).click();
  await ann.locator(".system", { hasText: "gann invited gben" }).waitFor();

  // Ben sees the invitation in his list and accepts it.
  await openConversation(ben, "Design team");
  await shot(ben, "07-invitation");
  await ben.getByRole("region", { name: "Invitation" }).getByRole("button", { name: "Accept" }).click();
  await ben.locator(".system", { hasText: "gben joined" }).waitFor();
  await ann.locator(".members li[data-user=gben]").waitFor();

  // Without the right Ben may not invite; the creator gives it to him.
  await ben.getByRole("button", { name: "Members" }).click();
  assert.equal(await ben.getByLabel("Invite people").count(), 0);
  await ann.getByRole("button", { name: "Rights of gben" }).click();
  await ann.getByLabel("Add members").check();
  await ann.getByRole("button", { name: "Save rights" }).click();
  await ann.locator(".system", { hasText: "gann made gben an admin (add members)" }).waitFor();
  await shot(ann, "08-group-rights");

  await ben.getByLabel("Invite people").waitFor();
  await ben.getByLabel("Invite people").fill("gcat");
  await ben.getByRole("button", { name: "Invite gcat" }).click();
  await ben.locator(".system", { hasText: "gben invited gcat" }).waitFor();
  await say(ben, "welcome, cat");
  await msg(ann, "welcome, cat").waitFor();
  await shot(ben, "09-group-member-panel");
  await ann.context().close();
  await ben.context().close();
});

// A 48×32 PNG, drawn in the page itself so the test carries no binary file.
async function pngFrom(page) {
  return page.evaluate(async () => {
    const canvas = new OffscreenCanvas(48, 32);
    const g = canvas.getContext("2d");
    g.fillStyle = "#2563eb";
    g.fillRect(0, 0, 48, 32);
    g.fillStyle = "#fde68a";
    g.fillRect(8, 8, 20, 16);
    const blob = await canvas.convertToBlob({ type: "image/png" });
    return Array.from(new Uint8Array(await blob.arrayBuffer()));
  });
}

test("a file is sent and its preview shown; a reload shows the conversation at once and gets only what is new", async () => {
  const fay = await person(browser, server, "ffay", "wt");
  const gus = await person(browser, server, "fgus", "ws");
  await openChatWith(fay, "fgus");
  const png = Buffer.from(await pngFrom(fay));
  await fay.locator(".composer input[type=file]").setInputFiles({ name: "sketch.png", mimeType: "image/png", buffer: png });
  await fay.locator(".msg img.preview[alt='sketch.png']").waitFor();
  await openConversation(gus, "ffay");
  const preview = gus.locator(".msg img.preview[alt='sketch.png']");
  await preview.waitFor();
  await gus.waitForFunction(() => document.querySelector("img.preview")?.naturalWidth === 48);
  await shot(gus, "10-file-preview");

  // Gus closes his tab; Fay writes; Gus opens the app again: the old
  // conversation is there from IndexedDB, and only the new message comes.
  const context = gus.context();
  await gus.close();
  await say(fay, "did you see the sketch?");
  await msg(fay, "did you see the sketch?").locator(".tick[aria-label=sent]").waitFor();
  const back = await context.newPage();
  await back.goto(`${server.base}/?transport=ws`);
  await back.getByRole("list", { name: "Conversation list" }).getByRole("button", { name: /ffay/ }).waitFor();
  await live(back);
  await openConversation(back, "ffay");
  await msg(back, "did you see the sketch?").waitFor();
  await back.locator(".msg img.preview[alt='sketch.png']").waitFor();
  assert.equal(await back.evaluate(() => window.samvad.stats.delivered), 1);
  await shot(back, "11-after-reload");
  await fay.context().close();
  await context.close();
});

test("a call: two pages and a native participant; mute for everyone is refused without the right", async () => {
  const ann = await person(browser, server, "callann", "wt");
  const bob = await person(browser, server, "callbob", "ws");
  const cat = await server.rest("POST", "/v1/register", { username: "callcat", password: "password-123" });
  const annToken = (await server.rest("POST", "/v1/login", { username: "callann", password: "password-123" })).access_token;
  const group = await server.rest("POST", "/v1/groups", { name: "Standup", members: ["callbob", "callcat"] }, annToken);

  for (const page of [ann, bob]) {
    await openConversation(page, "Standup");
    await page.getByRole("button", { name: "Call", exact: true }).click();
  }
  // The native participant (str0m) receives Ann's camera through the SFU.
  const { stdout } = await promisify(execFile)(loadBin, ["--server", server.base, "--transport", "quic", "media-probe",
    "--room", group.id, "--user", "callcat", "--token", cat.access_token, "--from", "callann", "--frames", "20"],
    { timeout: 60000 });
  assert.match(stdout, /got \d+ video frames from callann/);
  await bob.waitForFunction(async () => ((await window.callStats())["callann"] ?? 0) > 10, null, { timeout: 30000 });
  await ann.waitForFunction(async () => ((await window.callStats())["callbob"] ?? 0) > 10, null, { timeout: 30000 });

  // Bob holds no mute right: the server refuses, and he is told.
  await bob.getByRole("button", { name: "Mute callann for everyone" }).click();
  await bob.locator(".call .error", { hasText: "forbidden" }).waitFor();
  // Ann (the creator) may, and Bob sees her muted.
  await ann.getByRole("button", { name: "Mute callbob for everyone" }).click();
  await ann.locator(".tile-wrap[data-user=callbob] [aria-label=muted]").waitFor();
  await bob.getByRole("button", { name: "Unmute me" }).waitFor();
  await shot(ann, "12-call-ann");
  await shot(bob, "13-call-bob");
  await ann.context().close();
  await bob.context().close();
});

test("a channel: found in the directory, subscribed, read-only for subscribers, unsubscribed", async () => {
  const owner = await server.rest("POST", "/v1/register", { username: "chown", password: "password-123" });
  const channel = await server.rest("POST", "/v1/groups", { name: "Release notes", members: [], channel: true }, owner.access_token);
  const kim = await person(browser, server, "chkim", "wt");
  await kim.getByRole("button", { name: "Browse channels" }).click();
  await kim.getByLabel("Find a channel").fill("release");
  await kim.getByRole("button", { name: "Subscribe to Release notes" }).waitFor();
  await shot(kim, "14-channel-directory");
  await kim.getByRole("button", { name: "Subscribe to Release notes" }).click();
  await kim.locator(".conv-header h2", { hasText: "Release notes" }).waitFor();
  await kim.locator(".readonly", { hasText: "Only admins post in this channel." }).waitFor();
  assert.equal(await kim.getByLabel("Message", { exact: true }).count(), 0);

  // The owner posts (over the native client's REST-less path: a page of his own).
  const own = await person(browser, server, "chown", "ws", { register: false });
  await openConversation(own, "Release notes");
  await say(own, "v2 is out");
  await msg(kim, "v2 is out").waitFor();
  await shot(kim, "15-channel-subscriber");

  await kim.getByRole("button", { name: "Members" }).click();
  await kim.getByRole("button", { name: "Unsubscribe" }).click();
  await kim.getByRole("list", { name: "Conversation list" }).getByRole("button", { name: /Release notes/ }).waitFor({ state: "detached" });
  const g = await server.rest("GET", `/v1/groups/${channel.id}`, undefined, owner.access_token);
  assert.ok(!g.members.some((m) => m.user === "chkim"));
  await kim.context().close();
  await own.context().close();
});

test("profile: display name and picture; log out and in again; a push shows a notification", async () => {
  const lia = await person(browser, server, "plia", "wt");
  await lia.context().grantPermissions(["notifications"], { origin: server.base });
  await lia.getByRole("button", { name: "My profile" }).click();
  await lia.getByLabel("Display name").fill("Lia Park");
  await lia.getByRole("button", { name: "Save" }).click();
  await lia.getByRole("status").filter({ hasText: "Saved." }).waitFor();
  const png = Buffer.from(await pngFrom(lia));
  await lia.locator(".dialog input[type=file]").setInputFiles({ name: "me.png", mimeType: "image/png", buffer: png });
  await lia.getByRole("status").filter({ hasText: "Picture updated." }).waitFor();
  await lia.locator(".me img.avatar").waitFor();
  await shot(lia, "18-profile");
  const me = await server.rest("GET", "/v1/users/plia", undefined,
    (await server.rest("POST", "/v1/login", { username: "plia", password: "password-123" })).access_token);
  assert.equal(me.display_name, "Lia Park");
  assert.ok(me.avatar);

  // The service worker turns the server's push payload into a notification.
  await lia.evaluate(() => navigator.serviceWorker.ready);
  const cdp = await lia.context().newCDPSession(lia);
  const registrations = new Promise((resolve) => cdp.on("ServiceWorker.workerRegistrationUpdated", resolve));
  await cdp.send("ServiceWorker.enable");
  const { registrations: [reg] } = await registrations;
  await cdp.send("ServiceWorker.deliverPushMessage", {
    origin: server.base, registrationId: reg.registrationId,
    data: JSON.stringify({ user: "plia", seq: 3, chatid: "alice:plia", from: "alice", id: "m1", server_ts: Date.now(),
      content_type: "text", preview: "are you there?" }),
  });
  await lia.waitForFunction(async () => {
    const r = await navigator.serviceWorker.ready;
    return (await r.getNotifications()).some((n) => n.title === "Message from alice" && n.body === "are you there?");
  });

  await lia.getByRole("button", { name: "Log out" }).click();
  await lia.getByRole("heading", { name: "Samvad" }).waitFor();
  assert.equal(await lia.evaluate(() => window.samvad.state.conversations.length), 0);
  await lia.getByLabel("User name").fill("plia");
  await lia.getByLabel("Password").fill("wrong-password");
  await lia.locator("form.card button[type=submit]").click();
  await lia.getByRole("alert").filter({ hasText: "Wrong user name or password." }).waitFor();
  await shot(lia, "19-login-refused");
  await lia.getByLabel("Password").fill("password-123");
  await lia.locator("form.card button[type=submit]").click();
  await live(lia);
  await lia.context().close();
});

test("on a phone-sized screen one pane shows at a time", async () => {
  const pia = await person(browser, server, "ppia", "ws", { viewport: { width: 390, height: 760 } });
  await openChatWith(pia, "alice");
  await say(pia, "from my phone");
  assert.equal(await pia.locator(".sidebar").isVisible(), false);
  await shot(pia, "20-phone-conversation");
  await pia.getByRole("button", { name: "Back to conversations" }).click();
  await pia.getByRole("list", { name: "Conversation list" }).waitFor();
  await shot(pia, "21-phone-list");
  await pia.context().close();
});
