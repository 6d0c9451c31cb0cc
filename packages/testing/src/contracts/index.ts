/**
 * Contract suites (vitest): every implementation of an interface with a deterministic twin runs
 * the same suite. Kept apart from the main entry so that importing `@raftkv/testing` does not
 * load vitest.
 */
export { runLogStorageContract } from './log-storage.js';
export type { MakeStorage, StorageUnderTest, WritableLogStorage } from './log-storage.js';
export { runTransportContract, sampleMessages, ScriptedSnapshotStreams, TransportRecorder } from './transport.js';
export type { ContractHandlers, ContractSnapshotStreams, ContractTransport, MakeTransportPair, TransportPair } from './transport.js';
