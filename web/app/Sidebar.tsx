// The conversation list: who I am and how I am connected, people search
// (the server's 3-gram search as I type), new group, and every chat, group
// and channel ordered by its latest message.
import { useEffect, useState } from "preact/hooks";
import type { Conversation, SamvadClient } from "../sdk/index.js";
import { Avatar } from "./Avatar.js";
import { Icon } from "./Icon.js";
import { formatTime } from "./hooks.js";
import { NewGroupDialog } from "./NewGroupDialog.js";
import { ProfileDialog } from "./ProfileDialog.js";
import { ChannelsDialog } from "./ChannelsDialog.js";

const STATE_LABEL = {
  "signed-out": "signed out",
  offline: "offline",
  connecting: "connecting…",
  syncing: "syncing…",
  live: "online",
};

export function Sidebar(props: { client: SamvadClient; open?: string; onOpen: (chatid: string) => void }) {
  const { client } = props;
  const s = client.state;
  const [q, setQ] = useState("");
  const [found, setFound] = useState<string[]>([]);
  const [dialog, setDialog] = useState<"group" | "profile" | "channels" | undefined>();

  useEffect(() => {
    const term = q.trim();
    if (!term) return setFound([]);
    const t = setTimeout(() => {
      client.api
        .searchUsers(term)
        .then((users) => setFound(users.filter((u) => u !== s.user)))
        .catch(() => setFound([]));
    }, 150);
    return () => clearTimeout(t);
  }, [q]);

  const startChat = (user: string) => {
    const c = client.openChat(user);
    setQ("");
    props.onOpen(c.chatid);
  };

  return (
    <aside class="sidebar" aria-label="Conversations">
      <header class="me">
        <button class="me-button" onClick={() => setDialog("profile")} aria-label="My profile">
          <Avatar client={client} user={s.user!} />
          <span>
            <strong>{s.user}</strong>
            <span class={`conn conn-${s.connection}`} id="status" data-connection={s.connection}
              data-transport={s.transport ?? ""}>
              {STATE_LABEL[s.connection]}
              {s.transport && s.connection === "live" ? ` · ${s.transport === "webtransport" ? "WebTransport" : "WebSocket"}` : ""}
            </span>
          </span>
        </button>
      </header>
      <div class="actions">
        <button onClick={() => setDialog("group")} aria-label="New group"><Icon name="plus" /> New group</button>
        <button onClick={() => setDialog("channels")} aria-label="Browse channels"># Channels</button>
      </div>
      <div class="search">
        <input type="search" placeholder="Search people" aria-label="Search people" value={q}
          onInput={(e) => setQ(e.currentTarget.value)} />
        {found.length > 0 && (
          <ul class="results" aria-label="People found">
            {found.map((u) => (
              <li key={u}>
                <button onClick={() => startChat(u)}>
                  <Avatar client={client} user={u} /> {u}
                </button>
              </li>
            ))}
          </ul>
        )}
      </div>
      <ul class="conversations" aria-label="Conversation list">
        {s.conversations.map((c) => (
          <ConversationItem key={c.chatid} c={c} client={client} active={c.chatid === props.open}
            onOpen={() => props.onOpen(c.chatid)} />
        ))}
        {s.conversations.length === 0 && <li class="muted hint">No conversations yet.</li>}
      </ul>
      {dialog === "group" && (
        <NewGroupDialog client={client} onClose={() => setDialog(undefined)}
          onCreated={(id) => { setDialog(undefined); props.onOpen(id); }} />
      )}
      {dialog === "channels" && (
        <ChannelsDialog client={client} onClose={() => setDialog(undefined)}
          onOpen={(id) => { setDialog(undefined); props.onOpen(id); }} />
      )}
      {dialog === "profile" && <ProfileDialog client={client} onClose={() => setDialog(undefined)} />}
    </aside>
  );
}

function ConversationItem(props: { c: Conversation; client: SamvadClient; active: boolean; onOpen: () => void }) {
  const { c } = props;
  const typing = props.client.state.typing[c.chatid];
  const me = props.client.state.user;
  const preview = typing?.length
    ? `${typing.join(", ")} typing…`
    : c.invitedBy
      ? `${c.invitedBy} invited you`
      : c.lastText
        ? `${c.lastFrom === me ? "You: " : c.kind !== "chat" && c.lastFrom ? `${c.lastFrom}: ` : ""}${c.lastText}`
        : "";
  return (
    <li>
      <button class={`conversation ${props.active ? "active" : ""}`} onClick={props.onOpen}
        aria-current={props.active ? "page" : undefined} data-chatid={c.chatid}>
        <Avatar client={props.client} user={c.kind === "chat" ? (c.peer ?? c.title) : c.title} group={c.kind !== "chat"} />
        <span class="conv-text">
          <span class="conv-top">
            <span class="conv-title">{c.kind === "channel" ? "# " : ""}{c.title}</span>
            <time class="conv-time">{formatTime(c.lastTs)}</time>
          </span>
          <span class="conv-bottom">
            <span class={`conv-preview ${typing?.length ? "typing" : ""}`}>{preview}</span>
            {c.unread > 0 && <span class="badge" aria-label={`${c.unread} unread`}>{c.unread}</span>}
          </span>
        </span>
      </button>
    </li>
  );
}
