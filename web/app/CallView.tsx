// The group's call: a grid of videos with names, who is speaking or
// muted, mute myself / for me / for everyone (with the right), leave.
import { useEffect, useRef, useState } from "preact/hooks";
import { Call, type Group, type Participant, type SamvadClient } from "../sdk/index.js";
import { useChanges } from "./hooks.js";
import { Icon } from "./Icon.js";

let current: Call | undefined;
/** The page's call, for the browser tests (frames decoded per publisher). */
(window as unknown as { callStats: () => Promise<Record<string, number>> }).callStats = async () =>
  (await current?.framesDecoded()) ?? {};

export function CallView(props: { client: SamvadClient; group: Group; onLeave: () => void }) {
  const [call] = useState(() => new Call(props.client, props.group.id));
  useChanges(call);
  const me = props.client.state.user!;
  const mine = props.group.members.find((m) => m.user === me);
  const mayMute = mine?.role === "creator" || (mine?.role === "admin" && mine.rights.includes("mute"));

  useEffect(() => {
    current = call;
    call.join().catch((e) => (call.error = { code: "media", message: String(e) }));
    return () => {
      call.leave();
      if (current === call) current = undefined;
    };
  }, []);

  return (
    <section class="call" aria-label="Call" data-state={call.state}>
      <div class="grid">
        <Tile name={`${me} (you)`} stream={call.local} muted={call.mutedSelf} speaking={false} self />
        {[...call.participants.values()].map((p) => (
          <ParticipantTile key={p.user} p={p} mayMute={mayMute} call={call} />
        ))}
      </div>
      {call.error && <p class="error" role="alert">{call.error.message} ({call.error.code})</p>}
      <div class="row controls">
        <button aria-pressed={call.mutedSelf} onClick={() => call.mute("myself", me, !call.mutedSelf)}>
          {call.mutedSelf ? "Unmute me" : "Mute me"}
        </button>
        <button class="danger" onClick={props.onLeave}>Leave call</button>
      </div>
    </section>
  );
}

function ParticipantTile(props: { p: Participant; call: Call; mayMute: boolean }) {
  const { p, call } = props;
  return (
    <div class="tile-wrap" data-user={p.user}>
      <Tile name={p.user} stream={p.stream} muted={p.muted || p.mutedForMe} speaking={p.speaking} />
      {p.audio && <Voice stream={p.audio} muted={p.mutedForMe} />}
      <div class="tile-actions">
        <button onClick={() => call.mute("for_me", p.user, !p.mutedForMe)} aria-label={`${p.mutedForMe ? "Unmute" : "Mute"} ${p.user} for me`}>
          {p.mutedForMe ? "Unmute for me" : "Mute for me"}
        </button>
        <button onClick={() => call.mute("everyone", p.user, !p.muted)} aria-label={`Mute ${p.user} for everyone`}
          title={props.mayMute ? "" : "Needs the group's mute right"}>
          {p.muted ? "Unmute for all" : "Mute for all"}
        </button>
      </div>
    </div>
  );
}

function Tile(props: { name: string; stream?: MediaStream; muted: boolean; speaking: boolean; self?: boolean }) {
  const video = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    if (video.current && props.stream) video.current.srcObject = props.stream;
  }, [props.stream]);
  return (
    <figure class={`tile ${props.speaking ? "speaking" : ""}`}>
      {props.stream ? <video ref={video} autoplay playsInline muted /> : <div class="no-video">{props.name.slice(0, 2)}</div>}
      <figcaption>
        {props.name} {props.muted && <span class="muted-mark" aria-label="muted"><Icon name="micOff" size={14} /></span>}
        {props.speaking && <span class="visually-hidden">speaking</span>}
      </figcaption>
    </figure>
  );
}

function Voice(props: { stream: MediaStream; muted: boolean }) {
  const audio = useRef<HTMLAudioElement>(null);
  useEffect(() => {
    if (audio.current) audio.current.srcObject = props.stream;
  }, [props.stream]);
  return <audio ref={audio} autoplay muted={props.muted} />;
}
