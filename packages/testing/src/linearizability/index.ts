export { checkLinearizable } from './check.js';
export type { CheckOptions, CheckResult, KeyVerdict } from './check.js';
export { formatHistory } from './history.js';
export type { Operation, RegisterValue } from './history.js';
