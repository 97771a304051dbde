// @samvad/sdk: the browser client library the web app is built on.
//
// - `client`: SamvadClient, the session, sync, persistence and every chat action
// - `transport`: WebTransport and WebSocket pipes of generated protobuf frames
// - `api`: the REST calls (accounts, people, groups, files, push)
// - `persistence`: IndexedDB (and in-memory) local state
// - `model`: conversations and messages as plain data
// - `call`: a group call through the SFU
// - `gen/samvad_pb`: generated from proto/proto/samvad.proto by protoc-gen-es
export * from "./client.js";
export * from "./api.js";
export * from "./model.js";
export * from "./persistence.js";
export * from "./call.js";
export { type Link, type TransportName, openWebSocket, openWebTransport, frame } from "./transport.js";
export * as pb from "./gen/samvad_pb.js";
