// One conversation: history paged in on scroll-up, live messages with
// ticks, typing, delete for me / for everyone, files with previews and
// upload progress, what waits to be sent while offline, the group's panel
// and its call.
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import {
  ApiError,
  type AttachmentInfo,
  type ConversationKind,
  describeGroupEvent,
  type Group,
  type Message,
  type SamvadClient,
} from "../sdk/index.js";
import { Avatar } from "./Avatar.js";
import { CallView } from "./CallView.js";
import { GroupPanel } from "./GroupPanel.js";
import { Icon } from "./Icon.js";
import { formatSize, formatTime } from "./hooks.js";

export function ConversationView(props: { client: SamvadClient; chatid: string; onClose: () => void }) {
  const { client, chatid } = props;
  const c = client.conversation(chatid)!;
  const me = client.state.user!;
  const messages = client.messagesOf(chatid);
  const list = useRef<HTMLDivElement>(null);
  const [group, setGroup] = useState<Group | undefined>();
  const [panel, setPanel] = useState(false);
  const [inCall, setInCall] = useState(false);
  const [uploads, setUploads] = useState<{ name: string; progress: number }[]>([]);
  const [error, setError] = useState("");
  const live = client.state.connection === "live";
  const stick = useRef(true);
  const loadingOlder = useRef(false);

  // The group as the server has it now: after every group event too.
  const refreshGroup = () => {
    if (c.kind === "chat" || c.invitedBy) return;
    client.api
      .group(chatid)
      .then((g) => {
        setGroup(g);
        if ((g.channel ? "channel" : "group") !== c.kind || g.name !== c.title) client.addGroup(g.id, g.name, g.channel);
      })
      .catch(() => setGroup(undefined));
  };
  useEffect(refreshGroup, [chatid, c.lastTs, c.invitedBy]);

  // First page of history once connected, unless it is loaded already.
  useEffect(() => {
    if (live && c.oldestHistorySeq === undefined && !c.historyDone && !c.invitedBy) void client.loadOlder(chatid);
  }, [live, chatid]);

  // Reading: what is on screen while the tab is visible is read.
  useEffect(() => {
    const read = () => document.visibilityState === "visible" && client.markRead(chatid);
    read();
    document.addEventListener("visibilitychange", read);
    return () => document.removeEventListener("visibilitychange", read);
  }, [chatid, messages.length, live]);

  // Keep the newest message in view unless the person scrolled up.
  const scrollHeight = useRef(0);
  useLayoutEffect(() => {
    const el = list.current;
    if (!el) return;
    if (loadingOlder.current) {
      el.scrollTop += el.scrollHeight - scrollHeight.current;
      loadingOlder.current = false;
    } else if (stick.current) {
      el.scrollTop = el.scrollHeight;
    }
    scrollHeight.current = el.scrollHeight;
  });

  const onScroll = () => {
    const el = list.current!;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (el.scrollTop < 60 && !c.historyDone && live && !loadingOlder.current) {
      loadingOlder.current = true;
      scrollHeight.current = el.scrollHeight;
      void client.loadOlder(chatid).finally(() => {
        // Nothing came (already loading): let the next scroll ask again.
        setTimeout(() => (loadingOlder.current = false), 50);
      });
    }
  };

  const myMember = group?.members.find((m) => m.user === me);
  const canPost = c.kind !== "channel" || myMember?.role === "creator" || myMember?.role === "admin";
  const mayDeleteOthers = c.kind !== "chat" && (myMember?.role === "creator" || myMember?.rights.includes("delete_messages"));

  const sendFiles = async (files: FileList) => {
    for (const file of Array.from(files)) {
      const entry = { name: file.name, progress: 0 };
      setUploads((u) => [...u, entry]);
      try {
        const type = file.type || "application/octet-stream";
        const ticket = await client.api.newFile(chatid, file.size, type);
        await client.api.upload(ticket, file, (p) => {
          entry.progress = p;
          setUploads((u) => [...u]);
        });
        const a: AttachmentInfo = { fileId: ticket.file_id, name: file.name, contentType: type, size: file.size, sha256: "" };
        client.send(chatid, "", [a]);
      } catch (e) {
        setError(`${file.name}: ${e instanceof ApiError ? e.message : e}`);
      } finally {
        setUploads((u) => u.filter((x) => x !== entry));
      }
    }
  };

  const typing = client.state.typing[chatid];
  const queued = client.queued().filter((m) => m.chatid === chatid).length;
  const peerLine = typing?.length
    ? `${typing.join(", ")} ${typing.length > 1 ? "are" : "is"} typing…`
    : c.kind === "chat"
      ? "direct message"
      : group
        ? `${group.members.length} ${c.kind === "channel" ? "subscribers" : "members"}`
        : "";

  return (
    <section class="conversation-view" aria-label={`Conversation ${c.title}`}>
      <header class="conv-header">
        <button class="icon back" aria-label="Back to conversations" onClick={props.onClose}><Icon name="back" /></button>
        <Avatar client={client} user={c.kind === "chat" ? (c.peer ?? c.title) : c.title} group={c.kind !== "chat"} />
        <div class="conv-header-text">
          <h2>{c.kind === "channel" ? "# " : ""}{group?.name ?? c.title}</h2>
          <span class={`muted ${typing?.length ? "typing" : ""}`} aria-live="polite">{peerLine}</span>
        </div>
        {c.kind === "group" && group && (
          <button onClick={() => setInCall(!inCall)} aria-pressed={inCall}>{inCall ? "Hide call" : <><Icon name="video" /> Call</>}</button>
        )}
        {c.kind !== "chat" && group && (
          <button onClick={() => setPanel(!panel)} aria-expanded={panel}>Members</button>
        )}
      </header>
      {!live && (
        <div class="offline" role="status">
          {client.state.connection === "offline" ? "You are offline. " : "Connecting… "}
          {queued > 0 ? `${queued} message${queued > 1 ? "s" : ""} waiting to be sent.` : ""}
        </div>
      )}
      {c.invitedBy && <InviteBanner client={client} chatid={chatid} by={c.invitedBy} onAnswered={refreshGroup} />}
      <div class="conv-body">
        <div class="column">
          {inCall && group && <CallView client={client} group={group} onLeave={() => setInCall(false)} />}
          <div class="messages" ref={list} onScroll={onScroll} role="log" aria-label="Messages">
            {c.historyDone ? <p class="muted start">This is the start of the conversation.</p> : <p class="muted start">…</p>}
            {messages.map((m, i) => (
              <MessageRow key={m.key} m={m} me={me} client={client} kind={c.kind} showAuthor={c.kind !== "chat" && messages[i - 1]?.from !== m.from}
                mayDelete={m.from === me || !!mayDeleteOthers} />
            ))}
          </div>
          {uploads.map((u) => (
            <div class="upload" key={u.name}>
              <span>Uploading {u.name}</span>
              <progress max={1} value={u.progress} aria-label={`Uploading ${u.name}`} />
            </div>
          ))}
          {error && <p class="error" role="alert" onClick={() => setError("")}>{error}</p>}
          {canPost && !c.invitedBy ? (
            <Composer client={client} chatid={chatid} onFiles={sendFiles} />
          ) : (
            !c.invitedBy && <p class="muted readonly">Only admins post in this channel.</p>
          )}
        </div>
        {panel && group && (
          <GroupPanel client={client} group={group} onChanged={setGroup} onLeft={() => { client.forget(chatid); props.onClose(); }} />
        )}
      </div>
    </section>
  );
}

function InviteBanner(props: { client: SamvadClient; chatid: string; by: string; onAnswered: () => void }) {
  const [error, setError] = useState("");
  const answer = async (accept: boolean) => {
    try {
      if (accept) {
        const g = await props.client.api.acceptInvite(props.chatid);
        props.client.addGroup(g.id, g.name, g.channel, "");
      } else {
        await props.client.api.declineInvite(props.chatid);
        props.client.forget(props.chatid);
      }
      props.onAnswered();
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    }
  };
  return (
    <div class="invite" role="region" aria-label="Invitation">
      <span><strong>{props.by}</strong> invited you to this group.</span>
      <button class="primary" onClick={() => answer(true)}>Accept</button>
      <button onClick={() => answer(false)}>Decline</button>
      {error && <span class="error">{error}</span>}
    </div>
  );
}

const TICK_LABEL = { queued: "waiting to send", sent: "sent", delivered: "delivered", read: "read", failed: "not sent" };
const TICK = {
  queued: <Icon name="clock" size={12} />,
  sent: "✓",
  delivered: "✓✓",
  read: "✓✓",
  failed: <Icon name="alert" size={12} />,
};

function MessageRow(props: {
  m: Message;
  me: string;
  client: SamvadClient;
  kind: ConversationKind;
  showAuthor: boolean;
  mayDelete: boolean;
}) {
  const { m, me, client } = props;
  const [menu, setMenu] = useState(false);
  if (m.system) {
    return <div class="system" data-event={m.system.event}>{describeGroupEvent(m.system, props.kind)}</div>;
  }
  const mine = m.from === me;
  const status = m.status ?? "sent";
  return (
    <div class={`msg ${mine ? "mine" : "theirs"} ${m.deleted ? "deleted" : ""}`} data-id={m.id} data-status={mine ? status : undefined}>
      {props.showAuthor && !mine && <div class="author">{m.from}</div>}
      <div class="bubble">
        {m.deleted ? (
          <em class="muted">This message was deleted.</em>
        ) : (
          <>
            {m.attachments.map((a) => <AttachmentView key={a.fileId} client={client} a={a} />)}
            {m.text && <p class="text">{m.text}</p>}
          </>
        )}
        <span class="meta">
          <time dateTime={new Date(m.ts).toISOString()}>{formatTime(m.ts)}</time>
          {mine && (
            <span class={`tick tick-${status}`} aria-label={TICK_LABEL[status]} title={m.error ?? TICK_LABEL[status]}>
              {TICK[status]}
            </span>
          )}
        </span>
        {!m.deleted && (
          <button class="icon more" aria-label="Message actions" aria-expanded={menu} onClick={() => setMenu(!menu)}><Icon name="more" size={16} /></button>
        )}
        {menu && (
          <div class="menu" role="menu">
            <button role="menuitem" onClick={() => { setMenu(false); client.deleteForMe(m); }}>Delete for me</button>
            {props.mayDelete && (
              <button role="menuitem" onClick={() => { setMenu(false); client.deleteForEveryone(m); }}>Delete for everyone</button>
            )}
          </div>
        )}
      </div>
    </div>
  );
}

const urls = new Map<string, Promise<string>>();

function AttachmentView(props: { client: SamvadClient; a: AttachmentInfo }) {
  const { a, client } = props;
  const [src, setSrc] = useState<string | undefined>();
  const image = a.contentType.startsWith("image/");
  const fetchUrl = () => {
    let p = urls.get(a.fileId);
    if (!p) {
      p = client.api.downloadUrl(a.fileId).then(async (t) => {
        const blob = await (await fetch(new URL(t.url, client.api.base))).blob();
        return URL.createObjectURL(blob);
      });
      urls.set(a.fileId, p);
      p.catch(() => urls.delete(a.fileId));
    }
    return p;
  };
  useEffect(() => {
    if (image) void fetchUrl().then(setSrc).catch(() => undefined);
  }, [a.fileId]);
  const download = async () => {
    const href = await fetchUrl();
    const link = document.createElement("a");
    link.href = href;
    link.download = a.name;
    link.click();
  };
  return (
    <div class="attachment">
      {image && src && <img class="preview" src={src} alt={a.name} />}
      <button class="file" onClick={download} aria-label={`Download ${a.name}`}>
        <Icon name="clip" size={14} /> {a.name} <span class="muted">{formatSize(a.size)}</span>
      </button>
    </div>
  );
}

function Composer(props: { client: SamvadClient; chatid: string; onFiles: (f: FileList) => void }) {
  const [text, setText] = useState("");
  const typingSent = useRef(0);
  const stopTimer = useRef<ReturnType<typeof setTimeout>>();
  const send = () => {
    const t = text.trim();
    if (!t) return;
    props.client.send(props.chatid, t);
    setText("");
    props.client.typing(props.chatid, false);
    typingSent.current = 0;
  };
  const onInput = (value: string) => {
    setText(value);
    const now = Date.now();
    if (now - typingSent.current > 3000) {
      props.client.typing(props.chatid, true);
      typingSent.current = now;
    }
    clearTimeout(stopTimer.current);
    stopTimer.current = setTimeout(() => {
      props.client.typing(props.chatid, false);
      typingSent.current = 0;
    }, 4000);
  };
  return (
    <form class="composer" onSubmit={(e) => { e.preventDefault(); send(); }}>
      <label class="button icon" aria-label="Attach files" title="Attach files">
        <Icon name="clip" />
        <input type="file" multiple class="visually-hidden" aria-label="Attach files"
          onChange={(e) => { const f = e.currentTarget.files; if (f?.length) props.onFiles(f); e.currentTarget.value = ""; }} />
      </label>
      <textarea rows={1} placeholder="Write a message" aria-label="Message" value={text}
        onInput={(e) => onInput(e.currentTarget.value)}
        onKeyDown={(e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); } }} />
      <button class="primary" type="submit" aria-label="Send">Send</button>
    </form>
  );
}
