// The REST half of the protocol (api/openapi.json): accounts, people,
// groups, files, push. Every refusal is an `ApiError` carrying the server's
// stable code; callers match on `code`, never on the message.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface TokenPair {
  user: string;
  access_token: string;
  refresh_token: string;
  expires_in: number;
}

export type Right = "add_members" | "remove_members" | "delete_messages" | "mute";
export type Role = "creator" | "admin" | "member" | "subscriber";

export interface Member {
  user: string;
  role: Role;
  rights: Right[];
}

export interface Invite {
  user: string;
  by: string;
  ts_ms: number;
}

export interface Group {
  id: string;
  name: string;
  created_ms: number;
  version: number;
  members: Member[];
  invites: Invite[];
  channel: boolean;
}

export interface Profile {
  user: string;
  display_name: string;
  /** File id of the profile picture, or empty. */
  avatar: string;
}

export interface UploadTicket {
  file_id: string;
  upload_url: string;
  method: string;
  content_type: string;
  expires_in: number;
}

export interface DownloadTicket {
  url: string;
  size: number;
  content_type: string;
  sha256: string;
  expires_in: number;
}

export class Api {
  /** The access token sent as `Authorization: Bearer`. */
  token = "";

  constructor(readonly base: URL) {}

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const resp = await fetch(new URL(path, this.base), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    const json = text ? JSON.parse(text) : {};
    if (!resp.ok) {
      const err = json?.error ?? {};
      throw new ApiError(resp.status, err.code ?? `http_${resp.status}`, err.message ?? resp.statusText);
    }
    return json as T;
  }

  register(username: string, password: string) {
    return this.call<TokenPair>("POST", "/v1/register", { username, password });
  }
  login(username: string, password: string) {
    return this.call<TokenPair>("POST", "/v1/login", { username, password });
  }
  refresh(refresh_token: string) {
    return this.call<TokenPair>("POST", "/v1/refresh", { refresh_token });
  }
  logout(refresh_token: string) {
    return this.call<unknown>("POST", "/v1/logout", { refresh_token });
  }
  me() {
    return this.call<Profile>("GET", "/v1/me");
  }
  updateMe(update: { display_name?: string; avatar?: string }) {
    return this.call<Profile>("PATCH", "/v1/me", update);
  }
  profile(user: string) {
    return this.call<Profile>("GET", `/v1/users/${encodeURIComponent(user)}`);
  }
  /** User names ranked by 3-gram similarity (typos tolerated). */
  async searchUsers(q: string): Promise<string[]> {
    const r = await this.call<{ users: { user: string; score: number }[] }>(
      "GET",
      `/v1/users?q=${encodeURIComponent(q)}`,
    );
    return r.users.map((u) => u.user);
  }
  async groups(): Promise<{ id: string; name: string }[]> {
    return (await this.call<{ groups: { id: string; name: string }[] }>("GET", "/v1/groups")).groups;
  }
  /** The public directory of channels whose name contains `q`. */
  async channels(q = ""): Promise<{ id: string; name: string }[]> {
    const r = await this.call<{ channels: { id: string; name: string }[] }>(
      "GET",
      `/v1/channels?q=${encodeURIComponent(q)}`,
    );
    return r.channels;
  }
  group(id: string) {
    return this.call<Group>("GET", `/v1/groups/${encodeURIComponent(id)}`);
  }
  createGroup(name: string, members: string[], channel = false) {
    return this.call<Group>("POST", "/v1/groups", { name, members, channel });
  }
  renameGroup(id: string, name: string) {
    return this.call<Group>("PATCH", `/v1/groups/${encodeURIComponent(id)}`, { name });
  }
  deleteGroup(id: string) {
    return this.call<unknown>("DELETE", `/v1/groups/${encodeURIComponent(id)}`);
  }
  invite(id: string, user: string) {
    return this.call<Group>("POST", `/v1/groups/${encodeURIComponent(id)}/invites`, { user });
  }
  acceptInvite(id: string) {
    return this.call<Group>("POST", `/v1/groups/${encodeURIComponent(id)}/invites/accept`, {});
  }
  declineInvite(id: string) {
    return this.call<unknown>("POST", `/v1/groups/${encodeURIComponent(id)}/invites/decline`, {});
  }
  subscribe(id: string) {
    return this.call<Group>("POST", `/v1/groups/${encodeURIComponent(id)}/subscribe`, {});
  }
  unsubscribe(id: string) {
    return this.call<unknown>("POST", `/v1/groups/${encodeURIComponent(id)}/unsubscribe`, {});
  }
  /** Remove a member, or leave when `user` is me. */
  removeMember(id: string, user: string) {
    return this.call<unknown>("DELETE", `/v1/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(user)}`);
  }
  setRole(id: string, user: string, role: "admin" | "member", rights: Right[]) {
    return this.call<Group>("PUT", `/v1/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(user)}`, {
      role,
      rights,
    });
  }
  newFile(conversation: string, size: number, content_type: string) {
    return this.call<UploadTicket>("POST", "/v1/files", { conversation, size, content_type });
  }
  downloadUrl(fileId: string) {
    return this.call<DownloadTicket>("POST", `/v1/files/${encodeURIComponent(fileId)}/download-url`, {});
  }
  /**
   * PUTs a file to its signed upload URL, reporting progress (0..1). Uses
   * XMLHttpRequest where there is one: fetch has no upload progress.
   */
  upload(ticket: UploadTicket, data: Blob, progress?: (fraction: number) => void): Promise<void> {
    const url = new URL(ticket.upload_url, this.base).toString();
    if (typeof XMLHttpRequest === "undefined") {
      return fetch(url, { method: "PUT", headers: { "content-type": ticket.content_type }, body: data }).then(
        async (r) => {
          if (!r.ok) throw new ApiError(r.status, `http_${r.status}`, await r.text());
          progress?.(1);
        },
      );
    }
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      xhr.setRequestHeader("content-type", ticket.content_type);
      xhr.upload.onprogress = (ev) => ev.lengthComputable && progress?.(ev.loaded / ev.total);
      xhr.onload = () =>
        xhr.status < 300 ? resolve() : reject(new ApiError(xhr.status, `http_${xhr.status}`, xhr.responseText));
      xhr.onerror = () => reject(new ApiError(0, "network", "upload failed"));
      xhr.send(data);
    });
  }
  async vapidKey(): Promise<string> {
    return (await this.call<{ key: string }>("GET", "/v1/push/vapid-public-key")).key;
  }
  pushSubscribe(sub: PushSubscriptionJSON) {
    return this.call<unknown>("POST", "/v1/push/subscriptions", sub);
  }
}
