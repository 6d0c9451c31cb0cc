import { Packr, type Options } from 'msgpackr';

/** `skipValues` is honoured by msgpackr 2.1 but missing from its type definitions. */
type PackrOptions = Options & { skipValues: unknown[] };

/**
 * The one msgpackr instance raftkv encodes with, on disk and on the wire. Every option is
 * spelled out: msgpackr's module-level `pack` and `new Packr()` do not share defaults, and a
 * silent change of default would change the bytes we write.
 */
const options: PackrOptions = {
  // Plain maps and arrays on the wire: no record extension, so any msgpack reader can decode.
  useRecords: false,
  structuredClone: false,
  // Decode msgpack maps to plain objects, never to Map.
  mapsAsObjects: true,
  // Binary stays binary: Uint8Array in, Uint8Array (Buffer) out.
  moreTypes: false,
  bundleStrings: false,
  // Integers beyond 2^53 are rejected rather than silently rounded (none are expected).
  int64AsType: 'number',
  largeBigIntToFloat: false,
  // Undefined is not a msgpack type: drop it, so optional fields simply do not appear.
  skipValues: [undefined],
  variableMapSize: true,
};
export const packr = new Packr(options);

/** Upper bound on any single decoded value (frames and records are capped before decoding). */
export const DECODE_BYTES_MAX = 64 * 1024 * 1024;

export function encode(value: unknown): Buffer {
  return packr.pack(value);
}

/** Decodes one value; throws on malformed input (callers turn that into a typed error). */
export function decode(bytes: Uint8Array): unknown {
  if (bytes.byteLength > DECODE_BYTES_MAX) throw new RangeError(`refusing to decode ${bytes.byteLength} bytes (limit ${DECODE_BYTES_MAX})`);
  return packr.unpack(bytes);
}
