import type { CasExpect } from '@raftkv/kv';
import { validateKey } from '@raftkv/kv';
import type { Consistency, WriteOptions } from '@raftkv/node';
import { ErrorCode, RaftKvError } from '@raftkv/raft';
import { httpError, ServerErrorCode, type HttpError } from './errors.js';

/** A request that cannot be served as asked; the error handler answers with `error`. */
export class RequestError extends Error {
  override readonly name = 'RequestError';
  readonly error: HttpError;

  constructor(error: HttpError) {
    super(error.body.message);
    this.error = error;
  }
}

function bad(message: string): RequestError {
  return new RequestError(httpError(ServerErrorCode.BAD_REQUEST, message));
}

export const KEY_ROUTE_PREFIX = '/v1/kv/';

/**
 * The key of a `/v1/kv/<key>` request, taken from the raw URL rather than the router's
 * parameter so that `/` and percent-escapes (`%2F`, `%3F`) mean exactly one thing: the path
 * after the prefix, percent-decoded once as UTF-8. Throws KEY_INVALID or KEY_TOO_LARGE.
 */
export function keyFromUrl(rawUrl: string, keyBytesMax: number): string {
  const queryAt = rawUrl.indexOf('?');
  const path = queryAt === -1 ? rawUrl : rawUrl.slice(0, queryAt);
  if (!path.startsWith(KEY_ROUTE_PREFIX)) throw bad(`key routes start with ${KEY_ROUTE_PREFIX}`);
  const encoded = path.slice(KEY_ROUTE_PREFIX.length);
  // Bound the work before decoding: each key byte takes at most three characters (%XX).
  if (encoded.length > 3 * keyBytesMax) {
    throw new RaftKvError(ErrorCode.KEY_TOO_LARGE, `key is larger than the limit of ${keyBytesMax} bytes`);
  }
  let key: string;
  try {
    key = decodeURIComponent(encoded); // throws on a bad escape or bytes that are not UTF-8
  } catch {
    throw new RaftKvError(ErrorCode.KEY_INVALID, 'key is not valid percent-encoded UTF-8');
  }
  validateKey(key, keyBytesMax);
  return key;
}

type Query = Readonly<Record<string, unknown>>;

/**
 * The path naming `key` that `keyFromUrl` decodes back to exactly `key`: `/v1/kv/` and the
 * key's UTF-8 bytes, each percent-encoded unless it is an unreserved character (RFC 3986:
 * A-Z a-z 0-9 - . _ ~) or `/`. Used to forward a key instead of the client's raw URL, whose
 * spelling (`%2e%2e`, `\`, a raw `#`) a URL library may rewrite into another key. Throws a
 * URIError for a string with a lone surrogate (never a valid key).
 */
export function canonicalPath(key: string): string {
  return `${KEY_ROUTE_PREFIX}${canonicalEncode(key).replaceAll('%2F', '/')}`;
}

/**
 * The query string (with its `?`, or '' when there is none) for already parsed parameters,
 * each name and value canonically encoded; a repeated parameter is repeated.
 */
export function canonicalQuery(query: Query): string {
  const parts: string[] = [];
  for (const [name, value] of Object.entries(query)) {
    for (const one of Array.isArray(value) ? (value as unknown[]) : [value]) {
      // fastify's query parser gives strings and arrays of strings, nothing else.
      if (typeof one !== 'string') throw new TypeError(`query parameter ${JSON.stringify(name)} is not text`);
      parts.push(`${canonicalEncode(name)}=${canonicalEncode(one)}`);
    }
  }
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}

/**
 * Percent-encodes every UTF-8 byte except the unreserved characters. encodeURIComponent
 * leaves `!'()*` as they are too; they are escaped here so that one string has one spelling.
 * Every `%` of the result starts an escape, so `%2F` in it can only mean an escaped `/`.
 */
export function canonicalEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Refuses query parameters the route does not know (a typo like `?cass=3` must not be ignored). */
export function onlyParams(query: Query, allowed: readonly string[]): void {
  for (const name of Object.keys(query)) {
    if (!allowed.includes(name)) throw bad(`unknown query parameter ${JSON.stringify(name)}; this route takes ${allowed.length === 0 ? 'none' : allowed.join(', ')}`);
  }
}

/** The one value of query parameter `name`, or undefined; given twice is a 400. */
export function single(query: Query, name: string): string | undefined {
  const value = query[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw bad(`query parameter ${name} must be given once`);
  return value;
}

const CONSISTENCY: readonly Consistency[] = ['linearizable', 'lease', 'stale'];

export function consistencyParam(query: Query): Consistency {
  const value = single(query, 'consistency');
  if (value === undefined) return 'linearizable';
  const found = CONSISTENCY.find((c) => c === value);
  if (found === undefined) throw bad(`consistency must be one of ${CONSISTENCY.join(', ')}, got ${JSON.stringify(value)}`);
  return found;
}

const DECIMAL = /^(0|[1-9][0-9]{0,15})$/;

function integerParam(name: string, value: string, min: number, max: number): number {
  const n = DECIMAL.test(value) ? Number(value) : Number.NaN;
  if (!(Number.isSafeInteger(n) && n >= min && n <= max)) throw bad(`${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  return n;
}

/** `?cas=absent` or `?cas=<modIndex>`; undefined for a plain put. */
export function casParam(query: Query): CasExpect | undefined {
  const value = single(query, 'cas');
  if (value === undefined) return undefined;
  if (value === 'absent') return { absent: true };
  return { modIndex: integerParam('cas', value, 0, Number.MAX_SAFE_INTEGER) };
}

export function scanParams(query: Query, scanCountMax: number): { prefix: string; limit: number } {
  const prefix = single(query, 'prefix') ?? '';
  const limit = single(query, 'limit');
  return { prefix, limit: limit === undefined ? scanCountMax : integerParam('limit', limit, 1, scanCountMax) };
}

export const CLIENT_ID_HEADER = 'x-raftkv-client-id';
export const SEQ_HEADER = 'x-raftkv-seq';

/** Exactly-once writes: `X-Raftkv-Client-Id` and `X-Raftkv-Seq` together, or neither. */
export function writeOptions(headers: Readonly<Record<string, string | string[] | undefined>>): WriteOptions {
  const clientId = headers[CLIENT_ID_HEADER];
  const seq = headers[SEQ_HEADER];
  if (clientId === undefined && seq === undefined) return {};
  if (typeof clientId !== 'string' || typeof seq !== 'string') throw bad(`give both ${CLIENT_ID_HEADER} and ${SEQ_HEADER} once, or neither`);
  return { session: { clientId, seq: integerParam(SEQ_HEADER, seq, 0, Number.MAX_SAFE_INTEGER) } };
}
