// The web app's entry: one SamvadClient over IndexedDB, rendered by Preact.
// `?transport=ws` (or `wt`) forces a transport; the default tries
// WebTransport first.
import { render } from "preact";
import { IndexedDbPersistence, SamvadClient } from "../sdk/index.js";
import { App } from "./App.js";
import "./style.css";

const forced = new URLSearchParams(location.search).get("transport");
const client = new SamvadClient({
  base: new URL(location.origin),
  persistence: new IndexedDbPersistence(),
  transport: forced === "ws" ? "websocket" : forced === "wt" ? "webtransport" : "auto",
});
// For the curious and for the browser tests: the client's counters.
(window as unknown as { samvad: SamvadClient }).samvad = client;

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js").catch(() => undefined);
}

render(<App client={client} />, document.getElementById("root")!);
