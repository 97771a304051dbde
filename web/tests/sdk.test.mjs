// The SDK on its own, in Node: the generated codec against the frames the
// Rust side encodes (proto/vectors/frames.json), and SamvadClient against a
// real `samvad serve` over WebSocket (Node has no WebTransport).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fromBinary, toBinary, toJson, fromJson } from "@bufbuild/protobuf";
import { indexedDB, IDBKeyRange } from "fake-indexeddb";
import { SamvadClient, MemoryPersistence, IndexedDbPersistence, pb, messageKey } from "../build/sdk/index.js";
import { Server } from "./lib.mjs";

globalThis.IDBKeyRange ??= IDBKeyRange;

const hexToBytes = (hex) => Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
const bytesToHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

test("every frame the Rust side encodes decodes to its JSON, and canonical ones re-encode byte for byte", () => {
  const { vectors } = JSON.parse(readFileSync(new URL("../../proto/vectors/frames.json", import.meta.url), "utf8"));
  assert.ok(vectors.length >= 10);
  const schemas = { "samvad.v1.ClientFrame": pb.ClientFrameSchema, "samvad.v1.ServerFrame": pb.ServerFrameSchema };
  for (const v of vectors) {
    const schema = schemas[v.message];
    const msg = fromBinary(schema, hexToBytes(v.hex));
    assert.deepEqual(toJson(schema, msg), v.json, v.name);
    const encoded = bytesToHex(toBinary(schema, fromJson(schema, v.json)));
    if (v.canonical) assert.equal(encoded, v.hex, v.name);
    else assert.notEqual(encoded, v.hex, `${v.name} is not canonical`);
  }
});

test("IndexedDB keeps the session, the cursor and a window of recent messages per conversation", async () => {
  const p = new IndexedDbPersistence(`t-${Date.now()}`, indexedDB);
  const conv = { chatid: "a:b", kind: "chat", peer: "b", title: "b", lastText: "", lastFrom: "", lastTs: 0, unread: 0, readTs: 0, historyDone: false };
  const messages = Array.from({ length: 230 }, (_, i) => ({
    key: messageKey("a:b", "b", `m${i}`), chatid: "a:b", id: `m${i}`, from: "b", to: "a", kind: "chat",
    text: `t${i}`, contentType: "text", attachments: [], ts: 1000 + i,
  }));
  await p.save({ session: { user: "a", accessToken: "x", refreshToken: "y", expiresAt: 1, device: "web-1" }, cursor: 230, conversations: [conv], messages });
  const snap = await p.load();
  assert.equal(snap.session.user, "a");
  assert.equal(snap.cursor, 230);
  assert.equal(snap.conversations.length, 1);
  // The newest 200 stay; the 30 oldest were dropped (they come back as history).
  assert.equal(snap.messages.length, 200);
  assert.equal(Math.min(...snap.messages.map((m) => m.ts)), 1030);
  assert.equal((await p.load()).messages.length, 200);
  await p.clear();
  assert.equal((await p.load()).session, undefined);
});

let server;
before(async () => {
  server = await Server.start();
});
after(async () => {
  await server?.stop();
});

function until(client, pred, what) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 15000);
    const check = () => {
      if (pred()) {
        clearTimeout(t);
        off();
        resolve();
      }
    };
    const off = client.subscribe(check);
    check();
  });
}

test("a client sends, receives receipts, and a restarted client syncs only what is new", async () => {
  const base = new URL(server.base);
  const ann = new SamvadClient({ base, persistence: new MemoryPersistence(), transport: "websocket" });
  const bobStore = new MemoryPersistence();
  const bob = new SamvadClient({ base, persistence: bobStore, transport: "websocket" });
  await ann.register("sdkann", "password-123");
  await bob.register("sdkbob", "password-123");
  await until(ann, () => ann.state.connection === "live", "ann live");
  await until(bob, () => bob.state.connection === "live", "bob live");
  assert.equal(ann.state.transport, "websocket");

  const c = ann.openChat("sdkbob");
  const sent = ann.send(c.chatid, "first");
  assert.equal(sent.status, "queued");
  await until(bob, () => bob.messagesOf(c.chatid).some((m) => m.text === "first"), "bob gets it");
  const mine = () => ann.messagesOf(c.chatid).find((m) => m.id === sent.id);
  await until(ann, () => mine().status === "delivered", "DELIVERED");
  assert.equal(bob.conversation(c.chatid).unread, 1);
  bob.markRead(c.chatid);
  await until(ann, () => mine().status === "read", "READ");
  assert.deepEqual(mine().readBy, ["sdkbob"]);

  // Bob goes away; two more come; a new client on his saved state gets those two only.
  bob.stop();
  ann.send(c.chatid, "second");
  ann.send(c.chatid, "third");
  await until(ann, () => ann.queued().length === 0, "accepted");
  const bob2 = new SamvadClient({ base, persistence: bobStore, transport: "websocket" });
  await bob2.ready();
  assert.deepEqual(bob2.messagesOf(c.chatid).map((m) => m.text), ["first"], "shown before connecting");
  await until(bob2, () => bob2.messagesOf(c.chatid).length === 3, "the two new ones");
  assert.deepEqual(bob2.messagesOf(c.chatid).map((m) => m.text), ["first", "second", "third"]);
  assert.equal(bob2.stats.delivered, 2);

  // A send the server refuses for good is marked failed, with its code.
  const bad = ann.openChat("nobody-here");
  const refused = ann.send(bad.chatid, "to no one");
  await until(ann, () => ann.messagesOf(bad.chatid).find((m) => m.id === refused.id)?.status === "failed", "refusal");
  assert.equal(ann.messagesOf(bad.chatid).find((m) => m.id === refused.id).error, "UNKNOWN_RECIPIENT");

  // A refreshed token works and the one it replaced does not come back.
  const before = ann.api.token;
  await new Promise((r) => setTimeout(r, 1100)); // a JWT's iat counts seconds
  await ann.refreshToken();
  assert.notEqual(ann.api.token, before);
  assert.equal((await ann.api.me()).user, "sdkann");
  ann.stop();
  bob2.stop();
});
