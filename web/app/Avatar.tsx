// A user's picture (their profile's avatar file) or their initials. Looked
// up once per user per page: the URLs are short-lived, the image is cached
// by the browser as a blob.
import { useEffect, useState } from "preact/hooks";
import type { SamvadClient } from "../sdk/index.js";
import { initials } from "./hooks.js";

const pictures = new Map<string, Promise<string | undefined>>();

export function forgetPicture(user: string): void {
  pictures.delete(user);
}

function picture(client: SamvadClient, user: string): Promise<string | undefined> {
  let p = pictures.get(user);
  if (!p) {
    p = client.api
      .profile(user)
      .then(async (profile) => {
        if (!profile.avatar) return undefined;
        const ticket = await client.api.downloadUrl(profile.avatar);
        const blob = await (await fetch(new URL(ticket.url, client.api.base))).blob();
        return URL.createObjectURL(blob);
      })
      .catch(() => undefined);
    pictures.set(user, p);
  }
  return p;
}

function hue(s: string): number {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return h;
}

export function Avatar(props: { client: SamvadClient; user: string; group?: boolean; size?: number }) {
  const [src, setSrc] = useState<string | undefined>();
  const [version, setVersion] = useState(0);
  useEffect(() => {
    let live = true;
    if (!props.group) void picture(props.client, props.user).then((u) => live && setSrc(u));
    const refresh = () => setVersion((v) => v + 1);
    window.addEventListener("samvad-avatar", refresh);
    return () => {
      live = false;
      window.removeEventListener("samvad-avatar", refresh);
    };
  }, [props.user, props.group, version]);
  const size = props.size ?? 36;
  return src ? (
    <img class="avatar" src={src} alt="" width={size} height={size} />
  ) : (
    <span class={`avatar ${props.group ? "group" : ""}`} aria-hidden="true"
      style={{ width: `${size}px`, height: `${size}px`, background: `hsl(${hue(props.user)} 55% 45%)` }}>
      {initials(props.user)}
    </span>
  );
}
