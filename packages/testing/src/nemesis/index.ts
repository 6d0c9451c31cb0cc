/**
 * Partition testing: the links between nodes (a TCP proxy per directed link, or network
 * namespaces with packet filters), the nemesis that faults them and the node processes, client
 * workloads over HTTP, and the scenario runner behind `pnpm test:partitions`. See docs/testing.md.
 */
export type { LinkControl, LinkDelay, LinkFaultMode, LinkState } from './links.js';
export { ProxyNetwork } from './proxy.js';
export type { ProxyChannel } from './proxy.js';
export { NetnsNetwork } from './netns.js';
export { FAULT_KINDS, isFaultKind, isMembershipFault, isProcessFault, MEMBERSHIP_FAULTS, Nemesis, NETWORK_FAULTS, PROCESS_FAULTS } from './nemesis.js';
export type { FaultKind, MembershipControl, NemesisEvent, NemesisOptions, NemesisTarget, ProcessControl, ScheduleOptions } from './nemesis.js';
export { localClusterTarget, processClusterTarget } from './targets.js';
export { RegisterWorkload, UniqueWriteWorkload } from './workload.js';
export type { HttpEndpoint, LostWriteReport, OperationCounts, Outcome, ReadConsistency, RecordedOperation, RegisterWorkloadOptions, UniqueWriteRecord } from './workload.js';
export { formatSummary, runScenario } from './scenario.js';
export type { ScenarioOptions, ScenarioResult, WorkloadKind } from './scenario.js';
