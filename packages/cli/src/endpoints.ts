/**
 * How `raftkv member`, `raftkv leader` and `raftkv start --join` talk to a running cluster: a
 * list of members' HTTP URLs, tried in turn until one answers. Any member takes any request (a
 * follower forwards a change to the leader), so the list only has to hold one live member.
 */
import { Agent, type OutgoingHttpHeaders } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { exchange, ForwardError } from '@raftkv/server';
import { UsageError, urlList } from './args.js';

export const ENDPOINTS_ENV = 'RAFTKV_ENDPOINTS';
export const ENDPOINTS_DEFAULT = 'http://127.0.0.1:8001';

/** One request may take this long at most: above a follower's forwarding deadline (10 s), so that its answer arrives. */
const REQUEST_TIMEOUT_MS = 15_000;
/** An answer larger than this is not one a member sends. */
const ANSWER_BYTES_MAX = 16 * 1024 * 1024;
/** Back-off between rounds over the endpoints: doubles from MIN to MAX. */
export const RETRY_DELAY_MIN_MS = 100;
export const RETRY_DELAY_MAX_MS = 2_000;

export interface Endpoints {
  readonly urls: readonly string[];
  /** Where the URLs came from, for messages: the flag or variable the user set. */
  readonly source: string;
}

/**
 * `--endpoints` when given, else `$RAFTKV_ENDPOINTS`, else the first node of `raftkv cluster`. A
 * bad URL is a UsageError naming where it came from.
 */
export function endpointsFrom(flag: string | undefined, env: Readonly<Record<string, string | undefined>>): Endpoints {
  if (flag !== undefined) return { urls: urlList('endpoints', flag), source: '--endpoints' };
  const fromEnv = env[ENDPOINTS_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    try {
      return { urls: urlList('endpoints', fromEnv), source: ENDPOINTS_ENV };
    } catch (error) {
      // urlList names the flag; the user set the variable.
      throw new UsageError(`${ENDPOINTS_ENV}=${fromEnv}: ${(error as Error).message.replace(/^--endpoints:? ?/, '')}`);
    }
  }
  return { urls: [ENDPOINTS_DEFAULT], source: `the default endpoint (set --endpoints or ${ENDPOINTS_ENV})` };
}

/** An answer: its status and its JSON body. */
export interface Answer {
  readonly endpoint: string;
  readonly status: number;
  readonly body: unknown;
}

/** The cluster refused the request: an answer with the API's `{code, message}` error. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  /** The RAFTKV_* code. */
  readonly code: string;
  readonly status: number;
  readonly endpoint: string;

  constructor(answer: Answer) {
    const body = (typeof answer.body === 'object' && answer.body !== null ? answer.body : {}) as { code?: unknown; message?: unknown };
    const code = typeof body.code === 'string' ? body.code : `HTTP_${answer.status}`;
    const message = typeof body.message === 'string' ? body.message : JSON.stringify(answer.body).slice(0, 300);
    super(`${message} (answered by ${answer.endpoint})`);
    this.code = code;
    this.status = answer.status;
    this.endpoint = answer.endpoint;
  }
}

/** No endpoint gave an answer in time (none reachable, or each said there is no leader yet). */
export class NoAnswerError extends Error {
  override readonly name = 'NoAnswerError';
}

/**
 * A change was sent but its answer was lost (the connection failed after it opened, or the
 * leader did not answer in time): it may or may not have been made.
 */
export class OutcomeUnknownError extends Error {
  override readonly name = 'OutcomeUnknownError';
}

export interface CallOptions {
  /** A JSON body. */
  readonly body?: unknown;
  /** Stop trying at this `performance.now()`; Infinity: until it works or `signal` aborts. */
  readonly deadlineMs: number;
  readonly signal?: AbortSignal;
  /** Told why each round over the endpoints failed, before the back-off. */
  readonly onRetry?: (why: string, delayMs: number) => void;
  readonly retryDelayMaxMs?: number;
  /**
   * Give up after a round in which no endpoint could even be reached (a command run by hand
   * against the wrong URLs should say so at once); by default such rounds are retried like the
   * others (a node joining waits for its cluster to come back).
   */
  readonly failWhenUnreachable?: boolean;
}

const agent = new Agent({ keepAlive: false });

/**
 * Sends one request to the first endpoint that answers, and returns that answer, success or
 * error alike, except for those that say "try again": 503 (no leader known, shutting down, a
 * transfer in progress) and 409 CONF_CHANGE_PENDING (another change is being made). On those,
 * and when an endpoint cannot be reached, the next endpoint is tried; after a round over all of
 * them, the round starts again after a back-off, until `deadlineMs`. A change whose request left
 * but whose answer did not come back is not sent again (OutcomeUnknownError): the caller checks.
 */
export async function call(endpoints: Endpoints, method: 'GET' | 'POST' | 'DELETE', path: string, options: CallOptions): Promise<Answer> {
  const isChange = method !== 'GET';
  const headers: OutgoingHttpHeaders = { accept: 'application/json' };
  let body: Buffer | undefined;
  if (options.body !== undefined) {
    body = Buffer.from(JSON.stringify(options.body));
    headers['content-type'] = 'application/json';
  }
  let delayMs = RETRY_DELAY_MIN_MS;
  for (;;) {
    const failures: string[] = [];
    let answered = false;
    for (const endpoint of endpoints.urls) {
      options.signal?.throwIfAborted();
      const remainingMs = options.deadlineMs - performance.now();
      if (remainingMs <= 0) break;
      let answer: Answer;
      try {
        const raw = await exchange(new URL(endpoint), method, headers, body, { path, agent, timeoutMs: Math.min(REQUEST_TIMEOUT_MS, remainingMs), answerBytesMax: ANSWER_BYTES_MAX });
        answer = { endpoint, status: raw.status, body: parseJson(raw.body) };
      } catch (error) {
        if (!(error instanceof ForwardError)) throw error;
        if (isChange && error.connected) {
          throw new OutcomeUnknownError(`${method} ${endpoint}${path}: ${forwardFailure(error)}; the change may or may not have been made`);
        }
        failures.push(`${endpoint}: ${forwardFailure(error)}`);
        continue;
      }
      answered = true;
      if (answer.status === 504 && isChange) throw new OutcomeUnknownError(`${method} ${endpoint}${path}: ${new ApiError(answer).message}; the change may or may not have been made`);
      if (!isTryAgain(answer)) return answer;
      const refused = new ApiError(answer);
      failures.push(`${endpoint}: ${refused.code}: ${refused.message}`);
    }
    const why = failures.length === 0 ? 'no time left' : failures.join('; ');
    const unreachable = !answered && failures.length > 0;
    if ((unreachable && options.failWhenUnreachable === true) || performance.now() + delayMs > options.deadlineMs) throw new NoAnswerError(`no endpoint of ${endpoints.source} (${endpoints.urls.join(', ')}) answered ${method} ${path}${unreachable ? '' : ' in time'}: ${why}`);
    options.onRetry?.(why, delayMs);
    await sleep(delayMs, undefined, options.signal === undefined ? {} : { signal: options.signal });
    delayMs = Math.min(options.retryDelayMaxMs ?? RETRY_DELAY_MAX_MS, delayMs * 2);
  }
}

/** `call`, then the body of a 2xx answer; anything else throws an ApiError. */
export async function callOk(endpoints: Endpoints, method: 'GET' | 'POST' | 'DELETE', path: string, options: CallOptions): Promise<Answer> {
  const answer = await call(endpoints, method, path, options);
  if (answer.status < 200 || answer.status > 299) throw new ApiError(answer);
  return answer;
}

function isTryAgain(answer: Answer): boolean {
  const code = (answer.body as { code?: unknown } | null)?.code;
  return answer.status === 503 || (answer.status === 409 && code === 'RAFTKV_CONF_CHANGE_PENDING');
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return { code: 'NOT_JSON', message: `an answer that is not JSON: ${JSON.stringify(bytes.toString('utf8').slice(0, 200))}` };
  }
}

/** Why a request failed, in the words of the socket (ForwardError's own speak of a leader). */
function forwardFailure(error: ForwardError): string {
  const cause = error.cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return typeof code === 'string' && !cause.message.includes(code) ? `${code}: ${cause.message}` : cause.message;
  }
  return error.message;
}
