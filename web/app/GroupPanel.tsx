// A group's members with their roles, and what I may do to them: invite
// (add_members), remove (remove_members, over a lower role), the rights
// dialog (the creator), rename (admins), leave.
import { useEffect, useState } from "preact/hooks";
import { ApiError, type Group, type Member, type Right, type SamvadClient } from "../sdk/index.js";
import { Dialog } from "./Dialog.js";

const RIGHTS: { right: Right; label: string }[] = [
  { right: "add_members", label: "Add members" },
  { right: "remove_members", label: "Remove members" },
  { right: "delete_messages", label: "Delete messages" },
  { right: "mute", label: "Mute in calls" },
];
const RANK = { member: 0, subscriber: 0, admin: 1, creator: 2 };

export function GroupPanel(props: { client: SamvadClient; group: Group; onChanged: (g: Group) => void; onLeft: () => void }) {
  const { client, group } = props;
  const me = client.state.user!;
  const mine = group.members.find((m) => m.user === me);
  const may = (r: Right) => mine?.role === "creator" || (mine?.role === "admin" && mine.rights.includes(r));
  const [error, setError] = useState("");
  const [q, setQ] = useState("");
  const [found, setFound] = useState<string[]>([]);
  const [editing, setEditing] = useState<Member | undefined>();
  const [name, setName] = useState(group.name);

  useEffect(() => {
    const term = q.trim();
    if (!term) return setFound([]);
    const t = setTimeout(() => {
      client.api
        .searchUsers(term)
        .then((users) => setFound(users.filter((u) => !group.members.some((m) => m.user === u))))
        .catch(() => setFound([]));
    }, 150);
    return () => clearTimeout(t);
  }, [q]);

  const run = async (f: () => Promise<Group | unknown>) => {
    setError("");
    try {
      await f();
      props.onChanged(await client.api.group(group.id));
    } catch (e) {
      setError(e instanceof ApiError ? `${e.message} (${e.code})` : String(e));
    }
  };

  return (
    <aside class="panel" aria-label="Group members">
      <h3>{group.channel ? "Channel" : "Group"}</h3>
      {(mine?.role === "creator" || mine?.role === "admin") && (
        <form class="row" onSubmit={(e) => { e.preventDefault(); void run(() => client.api.renameGroup(group.id, name.trim())); }}>
          <input aria-label="Group name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
          <button type="submit">Rename</button>
        </form>
      )}
      {may("add_members") && (
        <div class="search">
          <input type="search" placeholder="Invite people" aria-label="Invite people" value={q}
            onInput={(e) => setQ(e.currentTarget.value)} />
          {found.length > 0 && (
            <ul class="results" aria-label="People to invite">
              {found.map((u) => (
                <li key={u}>
                  <button onClick={() => { setQ(""); void run(() => client.api.invite(group.id, u)); }}>Invite {u}</button>
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
      <ul class="members" aria-label="Members">
        {group.members.map((m) => (
          <li key={m.user} data-user={m.user}>
            <span class="member-name">{m.user}{m.user === me ? " (you)" : ""}</span>
            <span class={`role role-${m.role}`}>{m.role}</span>
            {m.rights.length > 0 && <span class="muted rights">{m.rights.map((r) => r.replace("_", " ")).join(", ")}</span>}
            <span class="member-actions">
              {mine?.role === "creator" && m.user !== me && (
                <button onClick={() => setEditing(m)} aria-label={`Rights of ${m.user}`}>Rights…</button>
              )}
              {m.user !== me && may("remove_members") && RANK[m.role] < RANK[mine!.role] && (
                <button class="danger" onClick={() => void run(() => client.api.removeMember(group.id, m.user))}
                  aria-label={`Remove ${m.user}`}>Remove</button>
              )}
            </span>
          </li>
        ))}
      </ul>
      {group.invites.length > 0 && (
        <>
          <h4>Invited</h4>
          <ul class="members" aria-label="Invited">
            {group.invites.map((i) => <li key={i.user}>{i.user} <span class="muted">by {i.by}</span></li>)}
          </ul>
        </>
      )}
      {error && <p class="error" role="alert">{error}</p>}
      <button class="danger"
        onClick={() =>
          void (group.channel && mine?.role !== "creator" ? client.api.unsubscribe(group.id) : client.api.removeMember(group.id, me))
            .then(props.onLeft, (e) => setError(e instanceof ApiError ? e.message : String(e)))}>
        {group.channel && mine?.role !== "creator" ? "Unsubscribe" : `Leave ${group.channel ? "channel" : "group"}`}
      </button>
      {editing && (
        <RightsDialog member={editing} onClose={() => setEditing(undefined)}
          onSave={(role, rights) => { setEditing(undefined); void run(() => client.api.setRole(group.id, editing.user, role, rights)); }} />
      )}
    </aside>
  );
}

function RightsDialog(props: { member: Member; onClose: () => void; onSave: (role: "admin" | "member", rights: Right[]) => void }) {
  const [rights, setRights] = useState<Right[]>(props.member.rights);
  const toggle = (r: Right, on: boolean) => setRights(on ? [...rights, r] : rights.filter((x) => x !== r));
  return (
    <Dialog title={`Rights of ${props.member.user}`} onClose={props.onClose}>
      <form onSubmit={(e) => { e.preventDefault(); props.onSave(rights.length ? "admin" : "member", rights); }}>
        <p class="muted">Any right makes {props.member.user} an admin; none, a member.</p>
        {RIGHTS.map(({ right, label }) => (
          <label class="check" key={right}>
            <input type="checkbox" name={right} checked={rights.includes(right)} onChange={(e) => toggle(right, e.currentTarget.checked)} />
            {label}
          </label>
        ))}
        <button class="primary" type="submit">Save rights</button>
      </form>
    </Dialog>
  );
}
