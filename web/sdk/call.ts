// A group call: one RTCPeerConnection to the server's SFU, signaled over
// the chat session (`Signal` frames, README "Group calls"). The server names
// whose track is on which mid before each offer; `participants` is what a
// video grid draws.
import type { SamvadClient } from "./client.js";
import { MuteScope as WireMuteScope, type MediaEvent, type Signal } from "./gen/samvad_pb.js";

export interface Participant {
  user: string;
  /** Their video, once it arrives. */
  stream?: MediaStream;
  /** Their voice. */
  audio?: MediaStream;
  /** Muted by themselves or by someone for everyone. */
  muted: boolean;
  /** I muted them for me only. */
  mutedForMe: boolean;
  speaking: boolean;
}

export type MuteScope = "myself" | "for_me" | "everyone";

const WIRE_SCOPE: Record<MuteScope, WireMuteScope> = {
  myself: WireMuteScope.MYSELF,
  for_me: WireMuteScope.FOR_ME,
  everyone: WireMuteScope.EVERYONE,
};

export class Call {
  participants = new Map<string, Participant>();
  local?: MediaStream;
  mutedSelf = false;
  state: RTCPeerConnectionState | "new" = "new";
  /** The last refusal from the server (e.g. mute for everyone without the right). */
  error?: { code: string; message: string };
  private pc?: RTCPeerConnection;
  private owner = new Map<string, { user: string; kind: string }>();
  private off?: () => void;
  private levels?: ReturnType<typeof setInterval>;
  private listeners = new Set<() => void>();

  constructor(
    private readonly client: SamvadClient,
    readonly room: string,
  ) {}

  subscribe(l: () => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  private participant(user: string): Participant {
    let p = this.participants.get(user);
    if (!p) this.participants.set(user, (p = { user, muted: false, mutedForMe: false, speaking: false }));
    return p;
  }

  async join(media: MediaStreamConstraints = { audio: true, video: true }): Promise<void> {
    if (this.pc) return;
    this.off = this.client.onSignal((s) => {
      if (s.room === this.room) void this.onSignal(s.kind);
    });
    const pc = (this.pc = new RTCPeerConnection());
    this.local = await navigator.mediaDevices.getUserMedia(media);
    for (const track of this.local.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
    pc.ontrack = (ev) => {
      const who = this.owner.get(ev.transceiver.mid ?? "");
      if (!who) return;
      const p = this.participant(who.user);
      if (ev.track.kind === "video") p.stream = new MediaStream([ev.track]);
      else p.audio = new MediaStream([ev.track]);
      this.changed();
    };
    pc.onconnectionstatechange = () => {
      this.state = pc.connectionState;
      this.changed();
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this.client.signal(this.room, { case: "join", value: offer.sdp ?? "" });
    this.levels = setInterval(() => void this.measureSpeaking(), 400);
  }

  leave(): void {
    this.client.signal(this.room, { case: "leave", value: {} });
    clearInterval(this.levels);
    this.off?.();
    this.pc?.close();
    this.pc = undefined;
    this.local?.getTracks().forEach((t) => t.stop());
    this.participants.clear();
    this.state = "closed";
    this.changed();
  }

  /** Mutes myself, someone for me, or someone for everyone (needs the group's `mute` right). */
  mute(scope: MuteScope, user: string, muted: boolean): void {
    if (scope === "myself") {
      this.mutedSelf = muted;
      this.local?.getAudioTracks().forEach((t) => (t.enabled = !muted));
    }
    if (scope === "for_me") this.participant(user).mutedForMe = muted;
    this.error = undefined;
    this.client.signal(this.room, { case: "mute", value: { scope: WIRE_SCOPE[scope], user, muted } });
    this.changed();
  }

  private async onSignal(kind: Signal["kind"]): Promise<void> {
    const pc = this.pc;
    if (!pc) return;
    switch (kind.case) {
      case "answer":
        await pc.setRemoteDescription({ type: "answer", sdp: kind.value });
        break;
      case "offer": {
        await pc.setRemoteDescription({ type: "offer", sdp: kind.value });
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        this.client.signal(this.room, { case: "answer", value: answer.sdp ?? "" });
        break;
      }
      case "event":
        this.onEvent(kind.value);
        this.changed();
        break;
      case "error":
        this.error = { code: kind.value.code, message: kind.value.message };
        this.changed();
        break;
    }
  }

  private onEvent(event: MediaEvent): void {
    const e = event.kind;
    switch (e.case) {
      case "participants":
        e.value.users.forEach((u) => this.participant(u));
        break;
      case "joined":
        this.participant(e.value);
        break;
      case "left":
        this.participants.delete(e.value);
        break;
      case "track":
        this.owner.set(e.value.mid, { user: e.value.user, kind: e.value.kind });
        this.participant(e.value.user);
        break;
      case "muted": {
        const { user, muted } = e.value;
        if (user === this.client.user) {
          this.mutedSelf = muted;
          this.local?.getAudioTracks().forEach((t) => (t.enabled = !muted));
        } else {
          this.participant(user).muted = muted;
        }
        break;
      }
    }
  }

  /** Who is speaking: the audio level of each participant's incoming audio. */
  private async measureSpeaking(): Promise<void> {
    if (!this.pc) return;
    const stats = await this.pc.getStats();
    let changed = false;
    stats.forEach((s) => {
      if (s.type !== "inbound-rtp" || s.kind !== "audio") return;
      const who = this.owner.get(s.mid ?? "");
      if (!who) return;
      const p = this.participant(who.user);
      const speaking = (s.audioLevel ?? 0) > 0.02 && !p.muted;
      if (p.speaking !== speaking) {
        p.speaking = speaking;
        changed = true;
      }
    });
    if (changed) this.changed();
  }

  /** Video frames decoded per publisher (what a test waits on). */
  async framesDecoded(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    if (!this.pc) return out;
    const stats = await this.pc.getStats();
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        const user = this.owner.get(s.mid ?? "")?.user ?? `mid ${s.mid}`;
        out[user] = (out[user] ?? 0) + (s.framesDecoded ?? 0);
      }
    });
    return out;
  }
}
