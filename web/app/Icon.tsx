// Inline SVG icons: no icon font, no emoji font needed on the machine.
const PATHS = {
  plus: "M12 5v14M5 12h14",
  clip: "M21 12.5l-8.6 8.6a5.5 5.5 0 0 1-7.8-7.8l9.2-9.2a3.7 3.7 0 0 1 5.2 5.2l-9.2 9.2a1.8 1.8 0 0 1-2.6-2.6l8.5-8.5",
  video: "M3 7h12v10H3zM15 10l6-3v10l-6-3",
  clock: "M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18M12 7v5l3 2",
  alert: "M12 3l10 18H2zM12 10v4M12 17v.5",
  micOff: "M9 5a3 3 0 0 1 6 0v6a3 3 0 0 1-6 0zM5 11a7 7 0 0 0 14 0M12 18v3M3 3l18 18",
  back: "M15 5l-7 7l7 7",
  more: "M5 12h.01M12 12h.01M19 12h.01",
};

export type IconName = keyof typeof PATHS;

export function Icon(props: { name: IconName; size?: number; label?: string }) {
  const size = props.size ?? 18;
  return (
    <svg class={`icon-svg icon-${props.name}`} width={size} height={size} viewBox="0 0 24 24" fill="none"
      stroke="currentColor" stroke-width={props.name === "more" ? 3.5 : 2} stroke-linecap="round" stroke-linejoin="round"
      role={props.label ? "img" : undefined} aria-label={props.label} aria-hidden={props.label ? undefined : "true"}>
      <path d={PATHS[props.name]} />
    </svg>
  );
}
