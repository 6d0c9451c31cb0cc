export { HTTP_STATUS, httpError, ServerErrorCode, toHttpError } from './errors.js';
export type { ErrorBody, HttpError, HttpErrorCode } from './errors.js';
export { FORWARDED_HEADER, FORWARDED_TO_HEADER } from './forward.js';
export { createMetrics, LATENCY_BUCKETS_SECONDS } from './metrics.js';
export type { ServerMetrics } from './metrics.js';
export { CLIENT_ID_HEADER, SEQ_HEADER } from './request.js';
export { BODY_OVERHEAD_BYTES, createServer, FORWARD_TIMEOUT_MS_DEFAULT, itemJson, MOD_INDEX_HEADER, statusJson } from './server.js';
export type { ServedNode, ServerLimits, ServerOptions } from './server.js';
