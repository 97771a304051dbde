import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

/** A modal dialog on the native <dialog> element (focus trap and Escape for free). */
export function Dialog(props: { title: string; onClose: () => void; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    ref.current?.showModal();
  }, []);
  return (
    <dialog ref={ref} class="dialog" aria-label={props.title} onClose={props.onClose}
      onCancel={(e) => { e.preventDefault(); props.onClose(); }}>
      <header>
        <h2>{props.title}</h2>
        <button class="icon" aria-label="Close" onClick={props.onClose}>✕</button>
      </header>
      {props.children}
    </dialog>
  );
}
