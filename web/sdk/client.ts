// The Samvad client: one object per signed-in user. It owns the session
// (WebTransport first, WebSocket as the fallback), reconnects with backoff,
// resumes the inbox from the cursor it persisted, refreshes the access token
// before it expires, keeps conversations and recent messages in memory and
// in `Persistence`, and resends what was not yet accepted (same id: never
// delivered twice). The app reads `state` and re-renders on `subscribe`.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Api, ApiError, type TokenPair } from "./api.js";
import {
  Action,
  type Envelope,
  EnvelopeSchema,
  DeliveryState,
  ErrorCode,
  HeadType,
  type ServerFrame,
  type Signal,
  type SignalSchema,
} from "./gen/samvad_pb.js";
import {
  type AttachmentInfo,
  chatId,
  type Conversation,
  type ConversationKind,
  describeGroupEvent,
  GROUP_EVENT_TYPE,
  type GroupEvent,
  type Message,
  messageKey,
} from "./model.js";
import type { Batch, Persistence, SavedSession } from "./persistence.js";

/** One kind of media signal, as `signal()` sends it (the .proto's `Signal.kind`). */
export type SignalKindInit = MessageInitShape<typeof SignalSchema>["kind"];
import { frame, type Link, openWebSocket, openWebTransport, type TransportName } from "./transport.js";

export type ConnectionState = "signed-out" | "offline" | "connecting" | "syncing" | "live";

export interface ClientOptions {
  /** The server's HTTP origin. */
  base: URL;
  persistence: Persistence;
  /** `auto`: WebTransport where the platform has it, else WebSocket. */
  transport?: "auto" | TransportName;
  /** Longest wait between reconnect attempts. */
  maxBackoffMs?: number;
}

export interface ClientState {
  connection: ConnectionState;
  transport?: TransportName;
  user?: string;
  conversations: Conversation[];
  /** Users typing, per conversation. */
  typing: Record<string, string[]>;
  /** The last error worth telling a person (code and text). */
  notice?: string;
}

/** Counters a test or a status bar can read. */
export interface ClientStats {
  /** Deliver frames received since this object was created. */
  delivered: number;
  /** Sessions opened. */
  sessions: number;
}

type Listener = () => void;
const TYPING_TTL_MS = 6000;
const ACK_DELAY_MS = 15;

function toKind(t: HeadType): ConversationKind {
  return t === HeadType.GROUP ? "group" : t === HeadType.CHANNEL ? "channel" : "chat";
}

function headType(k: ConversationKind): HeadType {
  return k === "group" ? HeadType.GROUP : k === "channel" ? HeadType.CHANNEL : HeadType.CHAT;
}

function randomId(): string {
  const b = crypto.getRandomValues(new Uint8Array(9));
  return Array.from(b, (x) => x.toString(36).padStart(2, "0")).join("");
}

export class SamvadClient {
  readonly api: Api;
  readonly stats: ClientStats = { delivered: 0, sessions: 0 };
  state: ClientState = { connection: "signed-out", conversations: [], typing: {} };

  private session?: SavedSession;
  private cursor = 0;
  private conversations = new Map<string, Conversation>();
  private messages = new Map<string, Map<string, Message>>();
  private outbox = new Map<string, Message>();
  private link?: Link;
  private listeners = new Set<Listener>();
  private signalListeners = new Set<(s: Signal) => void>();
  private historyWaiters = new Map<string, (more: boolean) => void>();
  private typingUntil = new Map<string, Map<string, number>>();
  private pending: Batch = {};
  private flushTimer?: ReturnType<typeof setTimeout>;
  private ackUpTo = 0;
  private running = false;
  private backoffMs = 0;
  private refreshTimer?: ReturnType<typeof setTimeout>;
  private wake?: () => void;
  private loaded: Promise<void>;

  constructor(private readonly opts: ClientOptions) {
    this.api = new Api(opts.base);
    this.loaded = this.restore();
  }

  // ------------------------------------------------------------ lifecycle --

  /** Shows what was persisted at once; connects if a session was saved. */
  private async restore(): Promise<void> {
    const snap = await this.opts.persistence.load();
    this.session = snap.session;
    this.cursor = snap.cursor;
    this.ackUpTo = snap.cursor;
    for (const c of snap.conversations) this.conversations.set(c.chatid, c);
    for (const m of snap.messages) this.bucket(m.chatid).set(m.key, m);
    for (const m of snap.outbox) {
      this.outbox.set(m.key, m);
      this.bucket(m.chatid).set(m.key, m);
    }
    if (this.session) {
      this.api.token = this.session.accessToken;
      this.state.user = this.session.user;
      this.start();
    }
    this.changed();
  }

  ready(): Promise<void> {
    return this.loaded;
  }

  get user(): string | undefined {
    return this.session?.user;
  }

  async register(username: string, password: string): Promise<void> {
    await this.loaded;
    await this.signedIn(await this.api.register(username, password));
  }

  async login(username: string, password: string): Promise<void> {
    await this.loaded;
    await this.signedIn(await this.api.login(username, password));
  }

  async logout(): Promise<void> {
    const refresh = this.session?.refreshToken;
    this.stop();
    this.session = undefined;
    this.api.token = "";
    await this.opts.persistence.clear();
    this.conversations.clear();
    this.messages.clear();
    this.outbox.clear();
    this.cursor = 0;
    this.ackUpTo = 0;
    this.state = { connection: "signed-out", conversations: [], typing: {} };
    this.changed();
    if (refresh) await this.api.logout(refresh).catch(() => undefined);
  }

  private async signedIn(t: TokenPair): Promise<void> {
    if (this.session && this.session.user !== t.user) {
      // Another user on this browser: nothing of the last one stays.
      await this.opts.persistence.clear();
      this.conversations.clear();
      this.messages.clear();
      this.outbox.clear();
      this.cursor = 0;
      this.ackUpTo = 0;
    }
    const device = this.session?.device ?? `web-${randomId().slice(0, 8)}`;
    this.session = {
      user: t.user,
      accessToken: t.access_token,
      refreshToken: t.refresh_token,
      expiresAt: Date.now() + t.expires_in * 1000,
      device,
    };
    this.api.token = t.access_token;
    this.state.user = t.user;
    await this.opts.persistence.save({ session: this.session });
    this.start();
    this.changed();
  }

  /** Runs the connect loop until `stop` or sign-out. */
  private start(): void {
    if (this.running) return;
    this.running = true;
    this.scheduleRefresh();
    void this.loop();
    if (typeof window !== "undefined") window.addEventListener("online", this.retryNow);
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.refreshTimer);
    this.link?.close();
    this.retryNow();
    if (typeof window !== "undefined") window.removeEventListener("online", this.retryNow);
  }

  private retryNow = () => this.wake?.();

  private async loop(): Promise<void> {
    while (this.running && this.session) {
      this.setConnection("connecting");
      let link: Link | undefined;
      try {
        link = await this.open();
      } catch (e) {
        this.state.notice = `cannot connect: ${e instanceof Error ? e.message : e}`;
      }
      if (link) {
        this.link = link;
        this.stats.sessions++;
        this.state.transport = link.name;
        link.send(frame({ case: "hello", value: { token: this.session.accessToken, device: this.session.device } }));
        const reason = await link.closed;
        this.link = undefined;
        this.historyWaiters.forEach((w) => w(true));
        this.historyWaiters.clear();
        if (!this.running) break;
        this.state.notice = reason;
      }
      this.setConnection("offline");
      this.backoffMs = Math.min(
        this.opts.maxBackoffMs ?? 15000,
        this.backoffMs ? this.backoffMs * 2 : 250,
      );
      const wait = this.backoffMs / 2 + Math.random() * (this.backoffMs / 2);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
    }
    this.setConnection(this.session ? "offline" : "signed-out");
  }

  private async open(): Promise<Link> {
    const want = this.opts.transport ?? "auto";
    const events = { frame: (f: ServerFrame) => this.onFrame(f) };
    if (want !== "websocket" && typeof WebTransport !== "undefined") {
      try {
        return await Promise.race([
          openWebTransport(this.opts.base, events),
          new Promise<never>((_, reject) => setTimeout(() => reject(new Error("WebTransport timed out")), 4000)),
        ]);
      } catch (e) {
        if (want === "webtransport") throw e;
      }
    }
    return openWebSocket(this.opts.base, events);
  }

  /** Refreshes the access token at 80 % of its life; a failed refresh signs out only when refused. */
  private scheduleRefresh(): void {
    clearTimeout(this.refreshTimer);
    if (!this.session) return;
    const inMs = Math.max(1000, (this.session.expiresAt - Date.now()) * 0.8);
    this.refreshTimer = setTimeout(() => void this.refreshToken(), Math.min(inMs, 2 ** 31 - 1));
  }

  async refreshToken(): Promise<void> {
    if (!this.session) return;
    try {
      const t = await this.api.refresh(this.session.refreshToken);
      this.session = {
        ...this.session,
        accessToken: t.access_token,
        refreshToken: t.refresh_token,
        expiresAt: Date.now() + t.expires_in * 1000,
      };
      this.api.token = t.access_token;
      await this.opts.persistence.save({ session: this.session });
      this.scheduleRefresh();
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.status === 400)) {
        await this.logout();
      } else {
        this.refreshTimer = setTimeout(() => void this.refreshToken(), 5000);
      }
    }
  }

  // ------------------------------------------------------------ listeners --

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  onSignal(l: (s: Signal) => void): () => void {
    this.signalListeners.add(l);
    return () => this.signalListeners.delete(l);
  }

  private changed(): void {
    this.state = {
      ...this.state,
      conversations: [...this.conversations.values()].sort((a, b) => b.lastTs - a.lastTs),
      typing: this.typingNow(),
    };
    for (const l of this.listeners) l();
  }

  private setConnection(c: ConnectionState): void {
    if (this.state.connection === c) return;
    this.state.connection = c;
    if (c === "live") {
      this.backoffMs = 0;
      this.state.notice = undefined;
    }
    this.changed();
  }

  // ------------------------------------------------------------- reading --

  conversation(chatid: string): Conversation | undefined {
    return this.conversations.get(chatid);
  }

  /** The messages of a conversation, oldest first. */
  messagesOf(chatid: string): Message[] {
    return [...(this.messages.get(chatid)?.values() ?? [])].sort(
      (a, b) => a.ts - b.ts || (a.historySeq ?? 0) - (b.historySeq ?? 0),
    );
  }

  /** What waits to be sent (accepted by nobody yet). */
  queued(): Message[] {
    return [...this.outbox.values()];
  }

  // ------------------------------------------------------------- frames --

  private onFrame(f: ServerFrame): void {
    const k = f.kind;
    switch (k.case) {
      case "welcome":
        this.setConnection("syncing");
        // Everything not yet accepted goes again, in the order written.
        for (const m of [...this.outbox.values()].sort((a, b) => a.ts - b.ts)) this.transmit(m);
        this.link?.send(
          frame({
            case: "sync",
            value: this.cursor > 0 ? { afterSeq: BigInt(this.cursor) } : { resume: true },
          }),
        );
        break;
      case "deliver":
        if (k.value.envelope) this.onDeliver(k.value.envelope);
        break;
      case "receipt": {
        const r = k.value;
        this.noteSeq(Number(r.seq));
        const ids = r.messageIds.length ? r.messageIds : [r.messageId];
        for (const id of ids) {
          const m = this.messages.get(r.chatid)?.get(messageKey(r.chatid, this.session?.user ?? "", id));
          if (!m) continue;
          if (r.state === DeliveryState.READ) {
            m.readBy = [...new Set([...(m.readBy ?? []), r.by])];
            m.status = "read";
          } else if (r.state === DeliveryState.DELIVERED) {
            m.deliveredTo = [...new Set([...(m.deliveredTo ?? []), r.by])];
            if (m.status !== "read") m.status = "delivered";
          }
          this.stage({ messages: [m] });
        }
        this.changed();
        break;
      }
      case "accepted": {
        const m = [...this.outbox.values()].find((x) => x.id === k.value.id);
        if (m) {
          this.outbox.delete(m.key);
          if (m.status === "queued") m.status = "sent";
          m.ts = Number(k.value.serverTs) || m.ts;
          this.stage({ messages: [m], outboxDelete: [m.key] });
          this.touch(m);
          this.changed();
        }
        break;
      }
      case "syncDone":
        if (k.value.more) {
          this.link?.send(frame({ case: "sync", value: { afterSeq: k.value.lastSeq } }));
        } else {
          this.flush();
          this.setConnection("live");
        }
        break;
      case "history":
        this.onHistory(k.value.chatid, k.value.messages, k.value.more);
        break;
      case "presence": {
        const p = k.value;
        if (p.chatid) {
          const users = this.typingUntil.get(p.chatid) ?? new Map<string, number>();
          if (p.typing) users.set(p.user, Date.now() + TYPING_TTL_MS);
          else users.delete(p.user);
          this.typingUntil.set(p.chatid, users);
          setTimeout(() => this.changed(), TYPING_TTL_MS + 50);
          this.changed();
        }
        break;
      }
      case "signal":
        for (const l of this.signalListeners) l(k.value);
        break;
      case "error":
        this.onError(k.value.code, k.value.message, k.value.ref);
        break;
      case "pong":
      case undefined:
        break;
    }
  }

  private onError(code: ErrorCode, message: string, ref: string): void {
    if (code === ErrorCode.BAD_TOKEN || code === ErrorCode.TOKEN_EXPIRED) {
      // The session ends; a fresh token is fetched before the next one.
      void this.refreshToken().then(() => this.link?.close());
      return;
    }
    const m = ref ? [...this.outbox.values()].find((x) => x.id === ref) : undefined;
    if (m && code !== ErrorCode.UNAVAILABLE && code !== ErrorCode.RATE_LIMITED) {
      // Refused for good: it stays visible, marked, and leaves the outbox.
      m.status = "failed";
      m.error = ErrorCode[code] ?? String(code);
      this.outbox.delete(m.key);
      this.stage({ messages: [m], outboxDelete: [m.key] });
    } else if (m) {
      // Retried at the next session (same id).
      setTimeout(() => this.outbox.has(m.key) && this.transmit(m), 1000);
    }
    this.state.notice = `${ErrorCode[code] ?? code}: ${message}`;
    this.changed();
  }

  private onDeliver(env: Envelope): void {
    const seq = Number(env.seq);
    if (seq && seq <= this.cursor) return;
    this.stats.delivered++;
    const m = this.fromEnvelope(env);
    const me = this.session?.user ?? "";
    const conv = this.ensureConversation(m.chatid, m.kind, m.kind === "chat" ? (m.from === me ? m.to : m.from) : m.to);
    if (env.head?.action === Action.DELETE) {
      const target = this.messages.get(m.chatid)?.get(messageKey(m.chatid, env.refFrom, env.refId));
      if (target) {
        target.deleted = true;
        target.text = "";
        target.attachments = [];
        this.stage({ messages: [target] });
      }
    } else {
      const existing = this.messages.get(m.chatid)?.get(m.key);
      if (existing) {
        // My own message from another device, or a replay: keep the receipts.
        m.status = existing.status ?? m.status;
        m.readBy = existing.readBy;
        m.deliveredTo = existing.deliveredTo;
        m.historySeq = existing.historySeq;
      }
      this.bucket(m.chatid).set(m.key, m);
      if (m.system) this.onGroupEvent(conv, m.system);
      if (m.from !== me && !existing && m.ts > conv.readTs && !m.system) conv.unread++;
      this.touch(m);
      this.stage({ messages: [m] });
    }
    this.noteSeq(seq);
    this.changed();
  }

  private onGroupEvent(conv: Conversation, e: GroupEvent): void {
    const me = this.session?.user;
    if (e.event === "invited" && e.user === me) conv.invitedBy = e.by;
    if ((e.event === "joined" || e.event === "declined") && e.user === me) conv.invitedBy = undefined;
    if ((e.event === "created" || e.event === "renamed" || (e.event === "invited" && e.user === me)) && e.name) {
      conv.title = e.name;
    }
    this.stage({ conversations: [conv] });
  }

  private onHistory(chatid: string, envs: Envelope[], more: boolean): void {
    const conv = this.conversations.get(chatid);
    const batch: Message[] = [];
    for (const env of envs) {
      const m = this.fromEnvelope(env);
      m.historySeq = Number(env.seq);
      const existing = this.messages.get(chatid)?.get(m.key);
      if (existing) {
        existing.historySeq = m.historySeq;
        batch.push(existing);
      } else {
        this.bucket(chatid).set(m.key, m);
        batch.push(m);
      }
      if (conv && (conv.oldestHistorySeq === undefined || m.historySeq < conv.oldestHistorySeq)) {
        conv.oldestHistorySeq = m.historySeq;
      }
      if (conv && m.ts > conv.lastTs) this.touch(m);
    }
    if (conv) {
      conv.historyDone = !more;
      this.stage({ conversations: [conv] });
    }
    this.stage({ messages: batch });
    this.historyWaiters.get(chatid)?.(more);
    this.historyWaiters.delete(chatid);
    this.changed();
  }

  private fromEnvelope(env: Envelope): Message {
    const me = this.session?.user ?? "";
    const head = env.head;
    const kind = toKind(head?.type ?? HeadType.CHAT);
    const from = head?.from ?? "";
    const to = head?.to ?? "";
    const chatid = head?.chatid || (kind === "chat" ? chatId(from, to) : to);
    const contentType = head?.contentType ?? "";
    let system: GroupEvent | undefined;
    if (contentType === GROUP_EVENT_TYPE) {
      try {
        system = JSON.parse(env.body?.text ?? "") as GroupEvent;
      } catch {
        system = { event: "unknown" };
      }
    }
    const attachments: AttachmentInfo[] = env.attachments.map((a) => ({
      fileId: a.fileId,
      name: a.name,
      contentType: a.contentType,
      size: Number(a.size),
      sha256: a.sha256,
    }));
    const text = env.body?.text ?? "";
    return {
      key: messageKey(chatid, from, env.id),
      chatid,
      id: env.id,
      from,
      to,
      kind,
      text,
      contentType,
      attachments,
      ts: Number(env.serverTs) || Number(env.body?.ts ?? 0) || Date.now(),
      status: from === me ? "sent" : undefined,
      // A message deleted for everyone keeps its place and loses its content.
      deleted: !system && !text && attachments.length === 0,
      system,
    };
  }

  // ------------------------------------------------------- acks, storage --

  /** Records that `seq` was received; the ack goes once it is stored. */
  private noteSeq(seq: number): void {
    if (seq > this.ackUpTo) this.ackUpTo = seq;
    this.scheduleFlush();
  }

  private stage(b: Batch): void {
    const p = this.pending;
    if (b.messages) p.messages = [...(p.messages ?? []), ...b.messages];
    if (b.conversations) p.conversations = [...(p.conversations ?? []), ...b.conversations];
    if (b.outboxPut) p.outboxPut = [...(p.outboxPut ?? []), ...b.outboxPut];
    if (b.outboxDelete) p.outboxDelete = [...(p.outboxDelete ?? []), ...b.outboxDelete];
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => this.flush(), ACK_DELAY_MS);
  }

  /** Stores what arrived, with the cursor, in one transaction; then acks. */
  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const batch = this.pending;
    this.pending = {};
    const upTo = this.ackUpTo;
    const advance = upTo > this.cursor;
    if (advance) batch.cursor = upTo;
    if (batch.conversations) batch.conversations = [...new Map(batch.conversations.map((c) => [c.chatid, c])).values()];
    if (batch.messages) batch.messages = [...new Map(batch.messages.map((m) => [m.key, m])).values()];
    void this.opts.persistence
      .save(structuredClone(batch))
      .then(() => {
        if (advance && upTo > this.cursor) {
          this.cursor = upTo;
          this.link?.send(frame({ case: "ack", value: { seq: BigInt(upTo) } }));
        }
      })
      .catch((e) => {
        this.state.notice = `local storage failed: ${e}`;
        this.changed();
      });
  }

  private bucket(chatid: string): Map<string, Message> {
    let b = this.messages.get(chatid);
    if (!b) this.messages.set(chatid, (b = new Map()));
    return b;
  }

  private ensureConversation(chatid: string, kind: ConversationKind, other: string): Conversation {
    let c = this.conversations.get(chatid);
    if (!c) {
      c = {
        chatid,
        kind,
        peer: kind === "chat" ? other : undefined,
        title: kind === "chat" ? other : chatid,
        lastText: "",
        lastFrom: "",
        lastTs: 0,
        unread: 0,
        readTs: 0,
        historyDone: false,
      };
      this.conversations.set(chatid, c);
      this.stage({ conversations: [c] });
    }
    return c;
  }

  /** Moves a conversation's preview forward to `m` if it is newer. */
  private touch(m: Message): void {
    const c = this.conversations.get(m.chatid);
    if (!c || m.ts < c.lastTs) return;
    c.lastTs = m.ts;
    c.lastFrom = m.from;
    c.lastText = m.system
      ? describeGroupEvent(m.system, c.kind)
      : m.deleted
        ? "message deleted"
        : m.text || (m.attachments[0] ? `${m.attachments[0].contentType.startsWith("image/") ? "Photo" : "File"}: ${m.attachments[0].name}` : "");
    if (m.from === this.session?.user) c.readTs = Math.max(c.readTs, m.ts);
    this.stage({ conversations: [c] });
  }

  private typingNow(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    const now = Date.now();
    for (const [chatid, users] of this.typingUntil) {
      const live = [...users].filter(([, until]) => until > now).map(([u]) => u);
      if (live.length) out[chatid] = live;
    }
    return out;
  }

  // ------------------------------------------------------------- actions --

  /** Opens (or creates locally) the 1:1 conversation with `user`. */
  openChat(user: string): Conversation {
    const me = this.session?.user ?? "";
    const c = this.ensureConversation(chatId(me, user), "chat", user);
    this.changed();
    return c;
  }

  /** Makes a group or channel I belong to known to the list (from REST). */
  addGroup(id: string, name: string, channel: boolean, invitedBy?: string): Conversation {
    const c = this.ensureConversation(id, channel ? "channel" : "group", id);
    c.title = name;
    c.kind = channel ? "channel" : "group";
    if (invitedBy !== undefined) c.invitedBy = invitedBy || undefined;
    this.stage({ conversations: [c] });
    this.changed();
    return c;
  }

  /** Drops a conversation from the list (after leaving a group). */
  forget(chatid: string): void {
    const c = this.conversations.get(chatid);
    if (!c) return;
    this.conversations.delete(chatid);
    c.lastTs = -1;
    this.changed();
  }

  /** Sends a message; it shows at once as queued and is resent until accepted. */
  send(chatid: string, text: string, attachments: AttachmentInfo[] = []): Message {
    const me = this.session?.user ?? "";
    const c = this.conversations.get(chatid);
    if (!c) throw new Error(`no conversation ${chatid}`);
    const id = `${Date.now().toString(36)}-${randomId()}`;
    const m: Message = {
      key: messageKey(chatid, me, id),
      chatid,
      id,
      from: me,
      to: c.kind === "chat" ? (c.peer ?? "") : chatid,
      kind: c.kind,
      text,
      contentType: attachments.length && !text ? "file" : "text",
      attachments,
      ts: Date.now(),
      status: "queued",
    };
    this.outbox.set(m.key, m);
    this.bucket(chatid).set(m.key, m);
    this.touch(m);
    this.stage({ outboxPut: [m], messages: [m] });
    this.flush();
    this.transmit(m);
    this.changed();
    return m;
  }

  private envelope(m: Message): Envelope {
    return create(EnvelopeSchema, {
      id: m.id,
      head: {
        type: headType(m.kind),
        to: m.to,
        from: m.from,
        chatid: m.chatid,
        contentType: m.contentType,
        action: Action.MESSAGE,
      },
      body: { text: m.text, ts: BigInt(m.ts) },
      attachments: m.attachments.map((a) => ({
        fileId: a.fileId,
        name: a.name,
        contentType: a.contentType,
        size: BigInt(a.size),
        sha256: a.sha256,
      })),
    });
  }

  private transmit(m: Message): void {
    if (!this.link) return;
    this.link.send(frame({ case: "send", value: { envelope: this.envelope(m) } }));
  }

  /** Delete for everyone: the author, or a group member with `delete_messages`. */
  deleteForEveryone(m: Message): void {
    const me = this.session?.user ?? "";
    const id = `del-${Date.now().toString(36)}-${randomId()}`;
    const env = create(EnvelopeSchema, {
      id,
      head: {
        type: headType(m.kind),
        to: m.kind === "chat" ? (m.from === me ? m.to : m.from) : m.chatid,
        from: me,
        chatid: m.chatid,
        action: Action.DELETE,
      },
      refId: m.id,
      refFrom: m.from,
    });
    this.link?.send(frame({ case: "send", value: { envelope: env } }));
  }

  /** Delete for me: gone from my inbox and my view of the history. */
  deleteForMe(m: Message): void {
    this.link?.send(frame({ case: "hide", value: { chatid: m.chatid, author: m.from, messageIds: [m.id] } }));
    this.messages.get(m.chatid)?.delete(m.key);
    m.deleted = true;
    this.stage({ messages: [{ ...m, deleted: true, text: "", attachments: [] }] });
    this.changed();
  }

  /** Reports what I have read of a conversation: READ receipts for the authors. */
  markRead(chatid: string): void {
    const c = this.conversations.get(chatid);
    const me = this.session?.user;
    if (!c || !me) return;
    const byAuthor = new Map<string, string[]>();
    let newest = c.readTs;
    for (const m of this.messages.get(chatid)?.values() ?? []) {
      if (m.from && m.from !== me && !m.system && m.ts > c.readTs) {
        byAuthor.set(m.from, [...(byAuthor.get(m.from) ?? []), m.id]);
        newest = Math.max(newest, m.ts);
      }
    }
    if (!byAuthor.size && !c.unread) return;
    if (this.link) {
      for (const [author, ids] of byAuthor) {
        this.link.send(frame({ case: "read", value: { chatid, author, messageIds: ids } }));
      }
    } else if (byAuthor.size) {
      return; // Read again once connected.
    }
    c.readTs = newest;
    c.unread = 0;
    this.stage({ conversations: [c] });
    this.changed();
  }

  /** Asks for the page of history before what is loaded; resolves with "more". */
  loadOlder(chatid: string, limit = 30): Promise<boolean> {
    const c = this.conversations.get(chatid);
    if (!c || c.historyDone || !this.link) return Promise.resolve(false);
    if (this.historyWaiters.has(chatid)) return Promise.resolve(true);
    return new Promise((resolve) => {
      this.historyWaiters.set(chatid, resolve);
      this.link?.send(
        frame({
          case: "history",
          value: { chatid, beforeSeq: BigInt(c.oldestHistorySeq ?? 0), limit },
        }),
      );
    });
  }

  /** Typing on a datagram where the transport has them, on the stream otherwise. */
  typing(chatid: string, active: boolean): void {
    const c = this.conversations.get(chatid);
    if (!c || !this.link) return;
    const f = frame({ case: "typing", value: { to: c.kind === "chat" ? (c.peer ?? "") : chatid, chatid, active } });
    if (!this.link.sendDatagram(f)) this.link.send(f);
  }

  /** Media signaling for a call; answers come through `onSignal`. */
  signal(room: string, kind: SignalKindInit): void {
    this.link?.send(frame({ case: "signal", value: { room, kind } }));
  }

  /** Subscribes this browser to Web Push through its service worker. */
  async enablePush(registration: ServiceWorkerRegistration): Promise<void> {
    const key = await this.api.vapidKey();
    const raw = Uint8Array.from(atob(key.replace(/-/g, "+").replace(/_/g, "/")), (ch) => ch.charCodeAt(0));
    const sub = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: raw });
    await this.api.pushSubscribe(sub.toJSON());
  }
}
