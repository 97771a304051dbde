// One session's byte pipe: WebTransport (a bidirectional stream of
// size-delimited frames, typing on datagrams) or WebSocket (one binary
// message per frame). Frames are the generated protobuf types; nothing here
// knows a field number.
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { sizeDelimitedEncode, sizeDelimitedDecodeStream } from "@bufbuild/protobuf/wire";
import {
  type ClientFrame,
  ClientFrameSchema,
  type ServerFrame,
  ServerFrameSchema,
} from "./gen/samvad_pb.js";

export type TransportName = "webtransport" | "websocket";

/** An open session pipe. `closed` settles once, whichever side closed it. */
export interface Link {
  readonly name: TransportName;
  send(frame: ClientFrame): void;
  /** Sends on a datagram if the transport has them; false if it has not. */
  sendDatagram(frame: ClientFrame): boolean;
  close(): void;
  readonly closed: Promise<string>;
}

export interface LinkEvents {
  frame(frame: ServerFrame): void;
}

export interface CertHash {
  algorithm: string;
  sha256: string;
  quic_port: number;
}

function hexBytes(hex: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

async function* chunks(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * WebTransport to `base`'s QUIC port. The certificate may be self-signed:
 * its hash comes from `/cert-hash`, fetched again on every connect because a
 * restarted server may have a new one.
 */
export async function openWebTransport(base: URL, events: LinkEvents): Promise<Link> {
  const resp = await fetch(new URL("/cert-hash", base));
  if (!resp.ok) throw new Error(`/cert-hash: HTTP ${resp.status}`);
  const cert = (await resp.json()) as CertHash;
  // The QUIC socket is IPv4 by default and "localhost" may resolve to ::1.
  const host = base.hostname === "localhost" ? "127.0.0.1" : base.hostname;
  const wt = new WebTransport(`https://${host}:${cert.quic_port}/wt`, {
    serverCertificateHashes: [{ algorithm: "sha-256", value: hexBytes(cert.sha256) }],
  });
  await wt.ready;
  const stream = await wt.createBidirectionalStream();
  const writer = stream.writable.getWriter();
  const datagrams = wt.datagrams.writable.getWriter();
  let closedReason = "";
  const closed = (async () => {
    const readStream = (async () => {
      for await (const frame of sizeDelimitedDecodeStream(ServerFrameSchema, chunks(stream.readable))) {
        events.frame(frame);
      }
    })();
    const readDatagrams = (async () => {
      for await (const bytes of chunks(wt.datagrams.readable)) {
        try {
          events.frame(fromBinary(ServerFrameSchema, bytes));
        } catch {
          // A datagram that does not decode is dropped: it is only typing.
        }
      }
    })();
    try {
      await Promise.race([readStream, readDatagrams, wt.closed]);
      closedReason = "closed by the server";
    } catch (e) {
      closedReason = String(e);
    }
    try {
      wt.close();
    } catch {
      // Already closed.
    }
    return closedReason;
  })();
  return {
    name: "webtransport",
    send(frame) {
      writer.write(sizeDelimitedEncode(ClientFrameSchema, frame)).catch(() => wt.close());
    },
    sendDatagram(frame) {
      datagrams.write(toBinary(ClientFrameSchema, frame)).catch(() => undefined);
      return true;
    },
    close() {
      try {
        wt.close();
      } catch {
        // Already closed.
      }
    },
    closed,
  };
}

export function openWebSocket(base: URL, events: LinkEvents): Promise<Link> {
  const url = new URL("/ws", base);
  url.protocol = base.protocol === "https:" ? "wss:" : "ws:";
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    let open = false;
    let settle: (reason: string) => void = () => undefined;
    const closed = new Promise<string>((r) => (settle = r));
    ws.onopen = () => {
      open = true;
      resolve({
        name: "websocket",
        send(frame) {
          if (ws.readyState === WebSocket.OPEN) ws.send(toBinary(ClientFrameSchema, frame));
        },
        sendDatagram() {
          return false;
        },
        close() {
          ws.close();
        },
        closed,
      });
    };
    ws.onerror = () => {
      if (!open) reject(new Error("WebSocket failed to open"));
    };
    ws.onclose = (ev) => settle(`WebSocket closed (${ev.code})`);
    ws.onmessage = (ev) => {
      if (!(ev.data instanceof ArrayBuffer)) return;
      let frame: ServerFrame;
      try {
        frame = fromBinary(ServerFrameSchema, new Uint8Array(ev.data));
      } catch {
        ws.close(1002, "undecodable frame");
        return;
      }
      events.frame(frame);
    };
  });
}

/** Builds a client frame of the given kind (typed by the generated oneof). */
export function frame(kind: MessageInitShape<typeof ClientFrameSchema>["kind"]): ClientFrame {
  return create(ClientFrameSchema, { kind });
}
