// The Samvad web page: log in, connect over WebTransport (falling back to
// WebSocket), send and show messages. `?transport=ws` forces WebSocket.
import * as proto from "./proto.js";
const $ = (id) => document.getElementById(id);
const status = (s) => ($("status").textContent = s);
function log(text, cls = "") {
    const li = document.createElement("li");
    li.textContent = text;
    if (cls)
        li.className = cls;
    $("log").appendChild(li);
}
let link = null;
let me = "";
let lastSeq = 0;
async function auth(path) {
    const username = $("username").value.trim();
    const password = $("password").value;
    const resp = await fetch(path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username, password }),
    });
    const body = await resp.json();
    if (!resp.ok) {
        log(`${path}: ${body.error?.code ?? resp.status}`, "error");
        return;
    }
    me = body.user;
    await connect(body.access_token);
}
function onFrame(bytes) {
    const f = proto.decodeServerFrame(bytes);
    switch (f.kind) {
        case "welcome":
            status(`connected as ${f.user} via ${link?.name}`);
            void link?.send(proto.sync(lastSeq));
            break;
        case "deliver":
            if (f.seq <= lastSeq)
                return;
            lastSeq = f.seq;
            log(`${f.from}: ${f.text}`, "msg");
            void link?.send(proto.ack(f.seq));
            break;
        case "receipt":
            if (f.seq > lastSeq)
                lastSeq = f.seq;
            log(`delivered to ${f.by}: ${f.messageId}`, "receipt");
            void link?.send(proto.ack(f.seq));
            break;
        case "accepted":
            log(`accepted ${f.id}`, "mine accepted");
            break;
        case "sync_done":
            if (f.more)
                void link?.send(proto.sync(f.lastSeq));
            else
                $("status").dataset.synced = "true";
            break;
        case "error":
            log(`error ${f.code}: ${f.message}`, "error");
            break;
        case "signal":
            void onSignal(f.room, f.signal, f.payload);
            break;
    }
}
// ---- group calls: one RTCPeerConnection to the SFU, signaling on the session.
let pc = null;
let callRoom = "";
/** Whose track each incoming mid carries (from `track` events). */
const trackOwner = new Map();
async function joinCall(room) {
    if (!link || pc)
        return;
    callRoom = room;
    pc = new RTCPeerConnection();
    const local = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    for (const track of local.getTracks())
        pc.addTransceiver(track, { direction: "sendonly" });
    pc.ontrack = (ev) => {
        const mid = ev.transceiver.mid ?? "";
        if (ev.track.kind !== "video")
            return;
        const video = document.createElement("video");
        video.autoplay = true;
        video.muted = true;
        video.dataset.user = trackOwner.get(mid) ?? "";
        video.dataset.mid = mid;
        video.srcObject = new MediaStream([ev.track]);
        $("videos").appendChild(video);
    };
    pc.onconnectionstatechange = () => ($("call").dataset.state = pc?.connectionState ?? "");
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await link.send(proto.signal(room, "join", offer.sdp ?? ""));
}
async function onSignal(room, kind, payload) {
    if (!pc || room !== callRoom || !link)
        return;
    if (kind === "answer") {
        await pc.setRemoteDescription({ type: "answer", sdp: payload });
    }
    else if (kind === "offer") {
        await pc.setRemoteDescription({ type: "offer", sdp: payload });
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        await link.send(proto.signal(room, "answer", answer.sdp ?? ""));
    }
    else if (kind === "event") {
        const event = JSON.parse(payload);
        if (event.type === "track")
            trackOwner.set(event.mid, event.user);
        log(`call: ${event.type} ${event.user ?? ""}`, "call-event");
    }
    else if (kind === "error") {
        log(`call error: ${payload}`, "error");
    }
}
/** Video frames decoded per sender, from getStats (for tests and the curious). */
async function callStats() {
    const out = {};
    if (!pc)
        return out;
    const stats = await pc.getStats();
    stats.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") {
            const user = trackOwner.get(s.mid ?? "") ?? `mid ${s.mid}`;
            out[user] = (out[user] ?? 0) + (s.framesDecoded ?? 0);
        }
    });
    return out;
}
window.callStats = callStats;
async function connectWebTransport(token) {
    const info = await (await fetch("/cert-hash")).json();
    const hash = Uint8Array.from(info.sha256.match(/../g).map((h) => parseInt(h, 16)));
    // The server's UDP socket is IPv4 by default; "localhost" may resolve to ::1 first.
    const host = location.hostname === "localhost" ? "127.0.0.1" : location.hostname;
    const wt = new WebTransport(`https://${host}:${info.quic_port}/wt`, {
        serverCertificateHashes: [{ algorithm: "sha-256", value: hash }],
    });
    await wt.ready;
    const stream = await wt.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    const reader = stream.readable.getReader();
    const l = { name: "webtransport", send: (f) => writer.write(proto.delimit(f)) };
    (async () => {
        let buf = new Uint8Array(0);
        for (;;) {
            const { value, done } = await reader.read();
            if (done)
                break;
            const joined = new Uint8Array(buf.length + value.length);
            joined.set(buf);
            joined.set(value, buf.length);
            buf = joined;
            for (;;) {
                let len, pos;
                try {
                    [len, pos] = proto.readVarint(buf, 0);
                }
                catch {
                    break;
                }
                if (buf.length < pos + len)
                    break;
                onFrame(buf.subarray(pos, pos + len));
                buf = buf.slice(pos + len);
            }
        }
        status("disconnected");
    })();
    await l.send(proto.hello(token));
    return l;
}
function connectWebSocket(token) {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
        ws.binaryType = "arraybuffer";
        const l = { name: "websocket", send: async (f) => ws.send(f) };
        ws.onopen = () => {
            ws.send(proto.hello(token));
            resolve(l);
        };
        ws.onerror = () => reject(new Error("WebSocket failed"));
        ws.onclose = () => status("disconnected");
        ws.onmessage = (ev) => onFrame(new Uint8Array(ev.data));
    });
}
async function connect(token) {
    const forced = new URLSearchParams(location.search).get("transport");
    if (forced !== "ws" && "WebTransport" in window) {
        try {
            link = await connectWebTransport(token);
            return;
        }
        catch (e) {
            log(`WebTransport unavailable (${e}); using WebSocket`, "error");
        }
    }
    link = await connectWebSocket(token);
}
$("join").onclick = () => void joinCall($("room").value.trim());
$("register").onclick = () => void auth("/v1/register");
$("login").onclick = () => void auth("/v1/login");
$("send").onclick = () => {
    const to = $("to").value.trim();
    const text = $("text").value;
    if (!link || !to || !text)
        return;
    const id = `${me}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    log(`me → ${to}: ${text}`, "mine");
    void link.send(proto.send(id, to, text));
};
