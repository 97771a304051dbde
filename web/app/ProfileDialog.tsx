// My profile: display name, avatar upload, notifications, log out.
import { useEffect, useState } from "preact/hooks";
import { ApiError, type SamvadClient } from "../sdk/index.js";
import { Avatar, forgetPicture } from "./Avatar.js";
import { Dialog } from "./Dialog.js";

export function ProfileDialog(props: { client: SamvadClient; onClose: () => void }) {
  const { client } = props;
  const [displayName, setDisplayName] = useState("");
  const [note, setNote] = useState("");
  // The field opens once the stored name is in: typing before that would
  // be overwritten when it arrives.
  const [loaded, setLoaded] = useState(false);
  useEffect(() => {
    client.api
      .me()
      .then((me) => setDisplayName(me.display_name))
      .catch(() => undefined)
      .finally(() => setLoaded(true));
  }, []);

  const save = async (ev: Event) => {
    ev.preventDefault();
    try {
      await client.api.updateMe({ display_name: displayName.trim() });
      setNote("Saved.");
    } catch (e) {
      setNote(e instanceof ApiError ? e.message : String(e));
    }
  };

  const uploadAvatar = async (file: File) => {
    try {
      const ticket = await client.api.newFile("@avatars", file.size, file.type || "application/octet-stream");
      await client.api.upload(ticket, file);
      await client.api.updateMe({ avatar: ticket.file_id });
      forgetPicture(client.user!);
      window.dispatchEvent(new Event("samvad-avatar"));
      setNote("Picture updated.");
    } catch (e) {
      setNote(e instanceof ApiError ? e.message : String(e));
    }
  };

  const notifications = async () => {
    try {
      const reg = await navigator.serviceWorker.ready;
      if ((await Notification.requestPermission()) !== "granted") throw new Error("notifications are blocked");
      await client.enablePush(reg);
      setNote("Notifications on for this browser.");
    } catch (e) {
      setNote(`Notifications unavailable: ${e instanceof Error ? e.message : e}`);
    }
  };

  return (
    <Dialog title="Profile" onClose={props.onClose}>
      <div class="profile-head">
        <Avatar client={client} user={client.user!} size={64} />
        <label class="button">
          Change picture
          <input type="file" accept="image/*" class="visually-hidden"
            onChange={(e) => e.currentTarget.files?.[0] && void uploadAvatar(e.currentTarget.files[0])} />
        </label>
      </div>
      <form onSubmit={save}>
        <label>
          Display name
          <input name="display-name" maxLength={64} value={displayName} disabled={!loaded} onInput={(e) => setDisplayName(e.currentTarget.value)} />
        </label>
        <button class="primary" type="submit">Save</button>
      </form>
      <div class="row">
        <button onClick={notifications}>Enable notifications</button>
        <button class="danger" onClick={() => void client.logout()}>Log out</button>
      </div>
      {note && <p role="status">{note}</p>}
    </Dialog>
  );
}
