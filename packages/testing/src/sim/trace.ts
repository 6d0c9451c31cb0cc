import { describeMessage, type Message } from '@raftkv/raft';

/** One thing that happened in a run, kept cheaply and rendered only when a run fails. */
export type TraceEvent =
  | { readonly kind: 'deliver'; readonly step: number; readonly time: number; readonly message: Message }
  | { readonly kind: 'drop'; readonly step: number; readonly time: number; readonly message: Message; readonly why: string }
  | { readonly kind: 'note'; readonly step: number; readonly time: number; readonly node: string | null; readonly text: string };

/** A ring buffer of the most recent events. */
export class Trace {
  readonly capacity: number;
  #events: TraceEvent[] = [];
  #next = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  add(event: TraceEvent): void {
    if (this.capacity === 0) return;
    if (this.#events.length < this.capacity) this.#events.push(event);
    else this.#events[this.#next] = event;
    this.#next = (this.#next + 1) % this.capacity;
  }

  events(): TraceEvent[] {
    if (this.#events.length < this.capacity) return [...this.#events];
    return [...this.#events.slice(this.#next), ...this.#events.slice(0, this.#next)];
  }

  render(): string {
    return this.events().map(renderEvent).join('\n');
  }
}

export function renderEvent(e: TraceEvent): string {
  const head = `#${e.step} t=${e.time}`;
  switch (e.kind) {
    case 'deliver':
      return `${head} ${describeMessage(e.message)}`;
    case 'drop':
      return `${head} DROP(${e.why}) ${describeMessage(e.message)}`;
    case 'note':
      return `${head}${e.node === null ? '' : ` ${e.node}`} ${e.text}`;
  }
}
