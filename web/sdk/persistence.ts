// Local state that survives a reload: the session, the inbox cursor,
// conversations, recent messages and what waits to be sent. The cursor is
// written in the same transaction as the messages it covers, so a reload
// never skips a message it did not store.
import type { Conversation, Message } from "./model.js";

export interface SavedSession {
  user: string;
  accessToken: string;
  refreshToken: string;
  /** When the access token expires (ms since the epoch). */
  expiresAt: number;
  device: string;
}

export interface Snapshot {
  session?: SavedSession;
  cursor: number;
  conversations: Conversation[];
  messages: Message[];
  outbox: Message[];
}

export interface Batch {
  session?: SavedSession | null;
  cursor?: number;
  conversations?: Conversation[];
  messages?: Message[];
  outboxPut?: Message[];
  outboxDelete?: string[];
}

export interface Persistence {
  load(): Promise<Snapshot>;
  save(batch: Batch): Promise<void>;
  clear(): Promise<void>;
}

/** Messages kept per conversation; older ones come back as history pages. */
export const RECENT_PER_CONVERSATION = 200;

/** For tests and for a client that wants nothing on disk. */
export class MemoryPersistence implements Persistence {
  private snap: Snapshot = { cursor: 0, conversations: [], messages: [], outbox: [] };
  async load(): Promise<Snapshot> {
    return structuredClone(this.snap);
  }
  async save(b: Batch): Promise<void> {
    const s = this.snap;
    if (b.session !== undefined) s.session = b.session ?? undefined;
    if (b.cursor !== undefined) s.cursor = b.cursor;
    const upsert = <T>(list: T[], items: T[] | undefined, key: (t: T) => string) => {
      for (const item of items ?? []) {
        const i = list.findIndex((x) => key(x) === key(item));
        if (i >= 0) list[i] = structuredClone(item);
        else list.push(structuredClone(item));
      }
    };
    upsert(s.conversations, b.conversations, (c) => c.chatid);
    upsert(s.messages, b.messages, (m) => m.key);
    upsert(s.outbox, b.outboxPut, (m) => m.key);
    s.outbox = s.outbox.filter((m) => !b.outboxDelete?.includes(m.key));
  }
  async clear(): Promise<void> {
    this.snap = { cursor: 0, conversations: [], messages: [], outbox: [] };
  }
}

const STORES = ["kv", "conversations", "messages", "outbox"] as const;

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("transaction aborted"));
  });
}

export class IndexedDbPersistence implements Persistence {
  private db: Promise<IDBDatabase>;

  constructor(
    name = "samvad",
    private readonly idb: IDBFactory = indexedDB,
  ) {
    this.db = new Promise((resolve, reject) => {
      const open = this.idb.open(name, 1);
      open.onupgradeneeded = () => {
        const db = open.result;
        db.createObjectStore("kv");
        db.createObjectStore("conversations", { keyPath: "chatid" });
        const messages = db.createObjectStore("messages", { keyPath: "key" });
        messages.createIndex("chatid_ts", ["chatid", "ts"]);
        db.createObjectStore("outbox", { keyPath: "key" });
      };
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
  }

  async load(): Promise<Snapshot> {
    const db = await this.db;
    const tx = db.transaction([...STORES], "readwrite");
    const kv = tx.objectStore("kv");
    const session = (await request(kv.get("session"))) as SavedSession | undefined;
    const cursor = ((await request(kv.get("cursor"))) as number | undefined) ?? 0;
    const conversations = (await request(tx.objectStore("conversations").getAll())) as Conversation[];
    const outbox = (await request(tx.objectStore("outbox").getAll())) as Message[];
    // The newest messages of each conversation, walking its index backwards;
    // anything older than the window is dropped here, once per load.
    const messages: Message[] = [];
    const index = tx.objectStore("messages").index("chatid_ts");
    for (const c of conversations) {
      const range = IDBKeyRange.bound([c.chatid, -Infinity], [c.chatid, Infinity]);
      let kept = 0;
      await new Promise<void>((resolve, reject) => {
        const cur = index.openCursor(range, "prev");
        cur.onerror = () => reject(cur.error);
        cur.onsuccess = () => {
          const c2 = cur.result;
          if (!c2) return resolve();
          if (kept < RECENT_PER_CONVERSATION) {
            messages.push(c2.value as Message);
            kept++;
          } else {
            c2.delete();
          }
          c2.continue();
        };
      });
    }
    await done(tx);
    return { session, cursor, conversations, messages, outbox };
  }

  async save(b: Batch): Promise<void> {
    const db = await this.db;
    const tx = db.transaction([...STORES], "readwrite");
    const kv = tx.objectStore("kv");
    if (b.session === null) kv.delete("session");
    else if (b.session) kv.put(b.session, "session");
    if (b.cursor !== undefined) kv.put(b.cursor, "cursor");
    for (const c of b.conversations ?? []) tx.objectStore("conversations").put(c);
    for (const m of b.messages ?? []) tx.objectStore("messages").put(m);
    for (const m of b.outboxPut ?? []) tx.objectStore("outbox").put(m);
    for (const k of b.outboxDelete ?? []) tx.objectStore("outbox").delete(k);
    await done(tx);
  }

  async clear(): Promise<void> {
    const db = await this.db;
    const tx = db.transaction([...STORES], "readwrite");
    for (const s of STORES) tx.objectStore(s).clear();
    await done(tx);
  }
}
