// A minimal typed event emitter (no dependency, a few hundred bytes).

export type Listener<T> = (payload: T) => void;

export class Emitter<E> {
  private listeners: { [K in keyof E]?: Set<Listener<E[K]>> } = {};

  /** Registers `fn` for `event`; returns a function that removes it. */
  on<K extends keyof E>(event: K, fn: Listener<E[K]>): () => void {
    (this.listeners[event] ??= new Set()).add(fn);
    return () => this.off(event, fn);
  }

  off<K extends keyof E>(event: K, fn: Listener<E[K]>): void {
    this.listeners[event]?.delete(fn);
  }

  protected emit<K extends keyof E>(event: K, payload: E[K]): void {
    for (const fn of this.listeners[event] ?? []) {
      try {
        fn(payload);
      } catch (e) {
        // A failing listener must not break the client's state machine.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}
