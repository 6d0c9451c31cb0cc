export { FORMAT_VERSION, RECORD_BYTES_MAX, SNAPSHOT_DATA_BYTES_MAX } from './format.js';
export type { NodeIdentity } from './format.js';
export { LevelLogStorage } from './level-log-storage.js';
export type { LevelLogStorageOptions } from './level-log-storage.js';
export type { LogDatabase } from './database.js';
export { openLevelLogStorage } from './open.js';
