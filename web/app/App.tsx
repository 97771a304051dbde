// The app's frame: sign-in until there is a session, then the conversation
// list beside the open conversation (one pane at a time on a phone).
import { useEffect, useState } from "preact/hooks";
import type { SamvadClient } from "../sdk/index.js";
import { Auth } from "./Auth.js";
import { Sidebar } from "./Sidebar.js";
import { ConversationView } from "./ConversationView.js";
import { useChanges } from "./hooks.js";

export function App({ client }: { client: SamvadClient }) {
  useChanges(client);
  const [open, setOpen] = useState<string | undefined>(() => decodeURIComponent(location.hash.slice(1)) || undefined);
  const s = client.state;

  useEffect(() => {
    const onHash = () => setOpen(decodeURIComponent(location.hash.slice(1)) || undefined);
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  // Groups I belong to appear in the list even before their first message.
  useEffect(() => {
    if (s.connection !== "live") return;
    client.api
      .groups()
      .then((groups) => groups.forEach((g) => client.conversation(g.id) || client.addGroup(g.id, g.name, false)))
      .catch(() => undefined);
  }, [s.connection === "live", s.user]);

  const select = (chatid: string | undefined) => {
    setOpen(chatid);
    history.replaceState(null, "", chatid ? `#${encodeURIComponent(chatid)}` : location.pathname + location.search);
  };

  if (s.connection === "signed-out" || !s.user) return <Auth client={client} />;
  const conversation = open ? client.conversation(open) : undefined;
  return (
    <div class={`app ${conversation ? "has-open" : ""}`} data-connection={s.connection}>
      <Sidebar client={client} open={open} onOpen={select} />
      <main class="main">
        {conversation ? (
          <ConversationView key={conversation.chatid} client={client} chatid={conversation.chatid} onClose={() => select(undefined)} />
        ) : (
          <div class="empty">
            <h2>Welcome, {s.user}</h2>
            <p>Pick a conversation, or find someone with the search box.</p>
          </div>
        )}
      </main>
    </div>
  );
}
