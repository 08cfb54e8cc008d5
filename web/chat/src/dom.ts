// A tiny element builder: text goes in as text nodes (never as HTML), so
// message bodies and names cannot inject markup.

type Attrs = Record<string, string | boolean | number | undefined | ((ev: Event) => void)>;
type Child = Node | string | number | false | null | undefined;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else if (k === "class") el.className = String(v);
    else if (k === "value") (el as HTMLInputElement).value = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  return fill(el, ...children);
}

/** Replaces `el`'s children (skipping null, undefined and false). */
export function fill<E extends Element>(el: E, ...children: (Child | Child[])[]): E {
  el.replaceChildren();
  for (const c of children.flat()) {
    if (c === false || c === null || c === undefined) continue;
    el.append(typeof c === "object" ? c : String(c));
  }
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) el.firstChild.remove();
}
