// Minimal protobuf codec for the frames the page uses (see
// proto/samvad.proto, served at /proto/samvad.proto). Field numbers here
// must match that file.
class Writer {
    bytes = [];
    varint(v) {
        while (v > 0x7f) {
            this.bytes.push((v & 0x7f) | 0x80);
            v = Math.floor(v / 128);
        }
        this.bytes.push(v);
        return this;
    }
    tag(field, wire) {
        return this.varint(field * 8 + wire);
    }
    uint(field, v) {
        return v ? this.tag(field, 0).varint(v) : this;
    }
    raw(field, b) {
        this.tag(field, 2).varint(b.length);
        for (const x of b)
            this.bytes.push(x);
        return this;
    }
    str(field, s) {
        return s ? this.raw(field, new TextEncoder().encode(s)) : this;
    }
    msg(field, w) {
        return this.raw(field, w.finish());
    }
    finish() {
        return new Uint8Array(this.bytes);
    }
}
/** Reads a varint at `pos`; returns [value, next position]. */
export function readVarint(b, pos) {
    let v = 0;
    let mul = 1;
    for (;;) {
        if (pos >= b.length)
            throw new Error("truncated varint");
        const x = b[pos++];
        v += (x & 0x7f) * mul;
        if (!(x & 0x80))
            return [v, pos];
        mul *= 128;
    }
}
function parse(b) {
    const out = new Map();
    let pos = 0;
    while (pos < b.length) {
        let key;
        [key, pos] = readVarint(b, pos);
        const field = Math.floor(key / 8);
        const wire = key & 7;
        let value;
        if (wire === 0) {
            [value, pos] = readVarint(b, pos);
        }
        else if (wire === 2) {
            let len;
            [len, pos] = readVarint(b, pos);
            value = b.subarray(pos, pos + len);
            pos += len;
        }
        else if (wire === 1) {
            pos += 8;
            continue;
        }
        else if (wire === 5) {
            pos += 4;
            continue;
        }
        else {
            throw new Error("bad wire type");
        }
        if (!out.has(field))
            out.set(field, []);
        out.get(field).push(value);
    }
    return out;
}
const str = (f, n) => {
    const v = f.get(n)?.[0];
    return v instanceof Uint8Array ? new TextDecoder().decode(v) : "";
};
const num = (f, n) => {
    const v = f.get(n)?.[0];
    return typeof v === "number" ? v : 0;
};
const sub = (f, n) => {
    const v = f.get(n)?.[0];
    return v instanceof Uint8Array ? parse(v) : new Map();
};
export const hello = (token) => new Writer().msg(1, new Writer().str(1, token).str(2, "web")).finish();
export const ack = (seq) => new Writer().msg(3, new Writer().uint(1, seq)).finish();
export const sync = (after) => new Writer().msg(4, new Writer().uint(1, after)).finish();
export const ping = (nonce) => new Writer().msg(7, new Writer().uint(1, nonce)).finish();
/** A media signal for a room (see the Signal message and README). */
export const signal = (room, kind, payload) => new Writer().msg(6, new Writer().str(1, room).str(2, kind).str(3, payload)).finish();
export function send(id, to, text) {
    const head = new Writer().uint(1, 1).str(2, to).str(5, "text").uint(6, 1);
    const body = new Writer().str(1, text).uint(2, Date.now());
    const env = new Writer().str(1, id).msg(2, head).msg(4, body);
    return new Writer().msg(2, new Writer().msg(1, env)).finish();
}
export function decodeServerFrame(b) {
    const f = parse(b);
    if (f.has(1)) {
        const w = sub(f, 1);
        return { kind: "welcome", user: str(w, 1), session: str(w, 2) };
    }
    if (f.has(2)) {
        const a = sub(f, 2);
        return { kind: "accepted", id: str(a, 1), serverTs: num(a, 2) };
    }
    if (f.has(3)) {
        const env = sub(sub(f, 3), 1);
        const head = sub(env, 2);
        return {
            kind: "deliver",
            id: str(env, 1),
            from: str(head, 3),
            to: str(head, 2),
            text: str(sub(env, 4), 1),
            seq: num(env, 6),
        };
    }
    if (f.has(4)) {
        const r = sub(f, 4);
        return { kind: "receipt", seq: num(r, 1), messageId: str(r, 2), by: str(r, 3) };
    }
    if (f.has(5)) {
        const s = sub(f, 5);
        return { kind: "sync_done", lastSeq: num(s, 1), more: num(s, 2) === 1 };
    }
    if (f.has(8)) {
        const e = sub(f, 8);
        return { kind: "error", code: num(e, 1), message: str(e, 2) };
    }
    if (f.has(9))
        return { kind: "pong", nonce: num(sub(f, 9), 1) };
    if (f.has(7)) {
        const s = sub(f, 7);
        return { kind: "signal", room: str(s, 1), signal: str(s, 2), payload: str(s, 3) };
    }
    return { kind: "other" };
}
/** Prefixes a frame with its varint length (QUIC / WebTransport streams). */
export function delimit(frame) {
    const prefix = new Writer().varint(frame.length).finish();
    const out = new Uint8Array(prefix.length + frame.length);
    out.set(prefix);
    out.set(frame, prefix.length);
    return out;
}
