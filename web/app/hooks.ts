import { useEffect, useReducer } from "preact/hooks";
import type { SamvadClient, Call } from "../sdk/index.js";

/** Re-renders the component whenever the client (or call) changes. */
export function useChanges(source: SamvadClient | Call | undefined): void {
  const [, bump] = useReducer((n: number, _: number) => n + 1, 0);
  useEffect(() => source?.subscribe(() => bump(0)), [source]);
}

export function formatTime(ts: number): string {
  if (!ts) return "";
  const d = new Date(ts);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) {
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  return d.toLocaleDateString([], { day: "numeric", month: "short" });
}

export function initials(name: string): string {
  return name.slice(0, 2).toUpperCase();
}

export function formatSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
