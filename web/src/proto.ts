// Minimal protobuf codec for the frames the page uses (see
// proto/samvad.proto, served at /proto/samvad.proto). Field numbers here
// must match that file.

class Writer {
  private bytes: number[] = [];
  varint(v: number): this {
    while (v > 0x7f) {
      this.bytes.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    this.bytes.push(v);
    return this;
  }
  tag(field: number, wire: number): this {
    return this.varint(field * 8 + wire);
  }
  uint(field: number, v: number): this {
    return v ? this.tag(field, 0).varint(v) : this;
  }
  raw(field: number, b: Uint8Array): this {
    this.tag(field, 2).varint(b.length);
    for (const x of b) this.bytes.push(x);
    return this;
  }
  str(field: number, s: string): this {
    return s ? this.raw(field, new TextEncoder().encode(s)) : this;
  }
  msg(field: number, w: Writer): this {
    return this.raw(field, w.finish());
  }
  finish(): Uint8Array {
    return new Uint8Array(this.bytes);
  }
}

type Fields = Map<number, (number | Uint8Array)[]>;

/** Reads a varint at `pos`; returns [value, next position]. */
export function readVarint(b: Uint8Array, pos: number): [number, number] {
  let v = 0;
  let mul = 1;
  for (;;) {
    if (pos >= b.length) throw new Error("truncated varint");
    const x = b[pos++];
    v += (x & 0x7f) * mul;
    if (!(x & 0x80)) return [v, pos];
    mul *= 128;
  }
}

function parse(b: Uint8Array): Fields {
  const out: Fields = new Map();
  let pos = 0;
  while (pos < b.length) {
    let key: number;
    [key, pos] = readVarint(b, pos);
    const field = Math.floor(key / 8);
    const wire = key & 7;
    let value: number | Uint8Array;
    if (wire === 0) {
      [value, pos] = readVarint(b, pos);
    } else if (wire === 2) {
      let len: number;
      [len, pos] = readVarint(b, pos);
      value = b.subarray(pos, pos + len);
      pos += len;
    } else if (wire === 1) {
      pos += 8;
      continue;
    } else if (wire === 5) {
      pos += 4;
      continue;
    } else {
      throw new Error("bad wire type");
    }
    if (!out.has(field)) out.set(field, []);
    out.get(field)!.push(value);
  }
  return out;
}

const str = (f: Fields, n: number): string => {
  const v = f.get(n)?.[0];
  return v instanceof Uint8Array ? new TextDecoder().decode(v) : "";
};
const num = (f: Fields, n: number): number => {
  const v = f.get(n)?.[0];
  return typeof v === "number" ? v : 0;
};
const sub = (f: Fields, n: number): Fields => {
  const v = f.get(n)?.[0];
  return v instanceof Uint8Array ? parse(v) : new Map();
};

export const hello = (token: string) => new Writer().msg(1, new Writer().str(1, token).str(2, "web")).finish();
export const ack = (seq: number) => new Writer().msg(3, new Writer().uint(1, seq)).finish();
export const sync = (after: number) => new Writer().msg(4, new Writer().uint(1, after)).finish();
export const ping = (nonce: number) => new Writer().msg(7, new Writer().uint(1, nonce)).finish();

/** A media signal for a room (see the Signal message and README). */
export const signal = (room: string, kind: string, payload: string) =>
  new Writer().msg(6, new Writer().str(1, room).str(2, kind).str(3, payload)).finish();

export function send(id: string, to: string, text: string): Uint8Array {
  const head = new Writer().uint(1, 1).str(2, to).str(5, "text").uint(6, 1);
  const body = new Writer().str(1, text).uint(2, Date.now());
  const env = new Writer().str(1, id).msg(2, head).msg(4, body);
  return new Writer().msg(2, new Writer().msg(1, env)).finish();
}

export type ServerFrame =
  | { kind: "welcome"; user: string; session: string }
  | { kind: "accepted"; id: string; serverTs: number }
  | { kind: "deliver"; id: string; from: string; to: string; text: string; seq: number }
  | { kind: "receipt"; seq: number; messageId: string; by: string }
  | { kind: "sync_done"; lastSeq: number; more: boolean }
  | { kind: "error"; code: number; message: string }
  | { kind: "pong"; nonce: number }
  | { kind: "signal"; room: string; signal: string; payload: string }
  | { kind: "other" };

export function decodeServerFrame(b: Uint8Array): ServerFrame {
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
  if (f.has(9)) return { kind: "pong", nonce: num(sub(f, 9), 1) };
  if (f.has(7)) {
    const s = sub(f, 7);
    return { kind: "signal", room: str(s, 1), signal: str(s, 2), payload: str(s, 3) };
  }
  return { kind: "other" };
}

/** Prefixes a frame with its varint length (QUIC / WebTransport streams). */
export function delimit(frame: Uint8Array): Uint8Array {
  const prefix = new Writer().varint(frame.length).finish();
  const out = new Uint8Array(prefix.length + frame.length);
  out.set(prefix);
  out.set(frame, prefix.length);
  return out;
}
