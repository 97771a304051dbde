import { useState } from "preact/hooks";
import { ApiError, type SamvadClient } from "../sdk/index.js";
import { Dialog } from "./Dialog.js";

export function NewGroupDialog(props: { client: SamvadClient; onClose: () => void; onCreated: (id: string) => void }) {
  const [name, setName] = useState("");
  const [channel, setChannel] = useState(false);
  const [error, setError] = useState("");
  const submit = async (ev: Event) => {
    ev.preventDefault();
    try {
      const g = await props.client.api.createGroup(name.trim(), [], channel);
      props.client.addGroup(g.id, g.name, g.channel);
      props.onCreated(g.id);
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    }
  };
  return (
    <Dialog title={channel ? "New channel" : "New group"} onClose={props.onClose}>
      <form onSubmit={submit}>
        <label>
          Name
          <input name="group-name" required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label class="check">
          <input type="checkbox" checked={channel} onChange={(e) => setChannel(e.currentTarget.checked)} />
          A channel: anyone may subscribe, only admins post
        </label>
        {error && <p class="error" role="alert">{error}</p>}
        <button class="primary" type="submit">Create</button>
      </form>
    </Dialog>
  );
}
