// The service worker: shows a notification for a Web Push the server sends
// while no tab is live (payload: {user, seq, chatid, from, id, server_ts,
// content_type, preview}), and focuses the app when it is clicked.
const sw = self as unknown as ServiceWorkerGlobalScope;

interface PushPayload {
  chatid?: string;
  from?: string;
  preview?: string;
  id?: string;
}

sw.addEventListener("install", () => void sw.skipWaiting());
sw.addEventListener("activate", (ev) => ev.waitUntil(sw.clients.claim()));

sw.addEventListener("push", (ev) => {
  let p: PushPayload = {};
  try {
    p = ev.data?.json() ?? {};
  } catch {
    p = { preview: ev.data?.text() };
  }
  ev.waitUntil(
    sw.registration.showNotification(p.from ? `Message from ${p.from}` : "Samvad", {
      body: p.preview || "New message",
      tag: p.chatid || "samvad",
      data: { chatid: p.chatid },
    }),
  );
});

sw.addEventListener("notificationclick", (ev) => {
  ev.notification.close();
  const chatid = (ev.notification.data as { chatid?: string } | null)?.chatid;
  const url = chatid ? `/#${encodeURIComponent(chatid)}` : "/";
  ev.waitUntil(
    sw.clients.matchAll({ type: "window" }).then((tabs) => {
      const tab = tabs[0];
      if (tab) return tab.focus().then(() => tab.navigate(url));
      return sw.clients.openWindow(url);
    }),
  );
});
