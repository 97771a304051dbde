// What the client keeps: conversations and their messages, in plain data
// that IndexedDB can store as is (numbers, not bigints).

export type ConversationKind = "chat" | "group" | "channel";

/** My message's progress: queued (not yet durable), sent (Accepted), then receipts. */
export type Status = "queued" | "sent" | "delivered" | "read" | "failed";

export interface AttachmentInfo {
  fileId: string;
  name: string;
  contentType: string;
  size: number;
  sha256: string;
}

/** A group change as the server announces it (`application/vnd.samvad.group-event+json`). */
export interface GroupEvent {
  event: string;
  by?: string;
  user?: string;
  name?: string;
  role?: string;
  rights?: string[];
  new_creator?: string;
}

export interface Message {
  /** `chatid \0 from \0 id`: ids are unique per sender. */
  key: string;
  chatid: string;
  id: string;
  /** Empty for a group's system messages. */
  from: string;
  to: string;
  kind: ConversationKind;
  text: string;
  contentType: string;
  attachments: AttachmentInfo[];
  /** Server time in ms (local time while queued). */
  ts: number;
  /** Position in the conversation, when a history page told it. */
  historySeq?: number;
  /** Mine only. */
  status?: Status;
  deliveredTo?: string[];
  readBy?: string[];
  /** The error code a refused send got. */
  error?: string;
  deleted?: boolean;
  system?: GroupEvent;
}

export interface Conversation {
  chatid: string;
  kind: ConversationKind;
  /** The other user of a 1:1 chat. */
  peer?: string;
  title: string;
  lastText: string;
  lastFrom: string;
  lastTs: number;
  unread: number;
  /** Newest message time I have read (or sent). */
  readTs: number;
  /** Conversation position of the oldest history page entry (undefined: none loaded). */
  oldestHistorySeq?: number;
  historyDone: boolean;
  /** Someone invited me and I have not answered. */
  invitedBy?: string;
}

export const GROUP_EVENT_TYPE = "application/vnd.samvad.group-event+json";

export function messageKey(chatid: string, from: string, id: string): string {
  return `${chatid}\u0000${from}\u0000${id}`;
}

/** The 1:1 conversation id: both names sorted (as the server forms it). */
export function chatId(a: string, b: string): string {
  return a <= b ? `${a}:${b}` : `${b}:${a}`;
}

/** One line for a group event, as a person reads it. */
export function describeGroupEvent(e: GroupEvent, kind: ConversationKind = "group"): string {
  const what = kind === "channel" ? "channel" : "group";
  switch (e.event) {
    case "created":
      return `${e.by} created the ${what} “${e.name}”`;
    case "renamed":
      return `${e.by} renamed the ${what} to “${e.name}”`;
    case "invited":
      return `${e.by} invited ${e.user}`;
    case "joined":
      return `${e.user} joined`;
    case "subscribed":
      return `${e.user} subscribed`;
    case "declined":
      return `${e.user} declined the invitation`;
    case "left":
      return e.new_creator ? `${e.user} left; ${e.new_creator} is now the creator` : `${e.user} left`;
    case "removed":
      return `${e.by} removed ${e.user}`;
    case "role_changed": {
      const rights = e.rights?.length ? ` (${e.rights.map((r) => r.replace("_", " ")).join(", ")})` : "";
      return `${e.by} made ${e.user} ${e.role === "admin" ? "an admin" : "a member"}${rights}`;
    }
    case "deleted":
      return `${e.by} deleted the ${what}`;
    default:
      return `${what}: ${e.event}`;
  }
}
