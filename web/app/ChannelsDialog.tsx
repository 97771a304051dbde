// The channel directory: find a channel by name, subscribe, open it.
import { useEffect, useState } from "preact/hooks";
import { ApiError, type SamvadClient } from "../sdk/index.js";
import { Dialog } from "./Dialog.js";

export function ChannelsDialog(props: { client: SamvadClient; onClose: () => void; onOpen: (id: string) => void }) {
  const { client } = props;
  const [q, setQ] = useState("");
  const [found, setFound] = useState<{ id: string; name: string }[]>([]);
  const [error, setError] = useState("");
  const [searching, setSearching] = useState(true);
  useEffect(() => {
    setSearching(true);
    const t = setTimeout(
      () =>
        client.api
          .channels(q.trim())
          .then(setFound, (e) => setError(String(e)))
          .finally(() => setSearching(false)),
      150,
    );
    return () => clearTimeout(t);
  }, [q]);

  const subscribe = async (id: string, name: string) => {
    try {
      await client.api.subscribe(id);
      client.addGroup(id, name, true);
      props.onOpen(id);
    } catch (e) {
      if (e instanceof ApiError && e.code === "already_member") {
        client.addGroup(id, name, true);
        props.onOpen(id);
      } else {
        setError(e instanceof ApiError ? e.message : String(e));
      }
    }
  };

  return (
    <Dialog title="Channels" onClose={props.onClose}>
      <input type="search" placeholder="Find a channel" aria-label="Find a channel" value={q}
        onInput={(e) => setQ(e.currentTarget.value)} />
      <ul class="members" aria-label="Channels found">
        {found.map((c) => {
          const mine = client.conversation(c.id);
          return (
            <li key={c.id}>
              <span class="member-name"># {c.name}</span>
              {mine && !mine.invitedBy ? (
                <button onClick={() => props.onOpen(c.id)}>Open</button>
              ) : (
                <button class="primary" onClick={() => void subscribe(c.id, c.name)} aria-label={`Subscribe to ${c.name}`}>
                  Subscribe
                </button>
              )}
            </li>
          );
        })}
        {searching && found.length === 0 && <li class="muted">Searching…</li>}
        {!searching && found.length === 0 && <li class="muted">No channels{q ? ` named like “${q}”` : " yet"}.</li>}
      </ul>
      {error && <p class="error" role="alert">{error}</p>}
    </Dialog>
  );
}
