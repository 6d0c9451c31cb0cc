/**
 * The simulator's state machine: a map of registers. A command sets one key to a value that is
 * unique in the run, so every read names the write it observed.
 */
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface PutCommand {
  readonly key: string;
  readonly value: string;
}

export function encodePut(command: PutCommand): Uint8Array {
  return encoder.encode(`${command.key}\u0000${command.value}`);
}

export function decodePut(data: Uint8Array): PutCommand {
  const text = decoder.decode(data);
  const sep = text.indexOf('\u0000');
  if (sep < 0) throw new Error(`simulator: malformed command ${JSON.stringify(text)}`);
  return { key: text.slice(0, sep), value: text.slice(sep + 1) };
}

export function encodeSnapshot(state: ReadonlyMap<string, string>): Uint8Array {
  return encoder.encode(JSON.stringify([...state]));
}

export function decodeSnapshot(data: Uint8Array): Map<string, string> {
  if (data.byteLength === 0) return new Map();
  return new Map(JSON.parse(decoder.decode(data)) as [string, string][]);
}
