/**
 * Values that cross the boundary of the consensus core: log entries, persistent state,
 * messages, and the `Ready` batch of effects that the caller carries out.
 */

/** A member of the cluster. Chosen by the operator (`n1`, `db-3`, ...); never empty. */
export type NodeId = string;
/** A Raft term (paper section 5.1). Starts at 0, only grows. */
export type Term = number;
/** A position in the replicated log, starting at 1; 0 means "before the first entry". */
export type LogIndex = number;

export const EntryType = {
  /** A client command, or the empty no-op a new leader appends (paper section 8). */
  Normal: 'normal',
  /** A membership change. Reserved: membership changes are applied through the log. */
  ConfChange: 'conf-change',
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface Entry {
  readonly term: Term;
  readonly index: LogIndex;
  readonly type: EntryType;
  /** Opaque command bytes; empty for a leader's no-op. */
  readonly data: Uint8Array;
}

/**
 * The state that must be durable before the node answers anything that depends on it
 * (paper figure 2, "Persistent state on all servers"). `commit` is persisted for a faster
 * restart only; losing it is safe.
 */
export interface HardState {
  readonly term: Term;
  readonly vote: NodeId | null;
  readonly commit: LogIndex;
}

/** The cluster configuration. It is a value of the log: snapshots carry it, and later entries change it. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export interface SnapshotMeta {
  /** The last log index the snapshot covers. */
  readonly index: LogIndex;
  /** The term of the entry at `index`. */
  readonly term: Term;
  /** The configuration in force at `index`. */
  readonly confState: ConfState;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /** The state machine's image at `meta.index`; opaque to the core. */
  readonly data: Uint8Array;
}

/** Opaque token a caller attaches to a ReadIndex request to recognise its answer. */
export type ReadContext = string;

/** A read that became safe: serve it once the state machine has applied `index`. */
export interface ReadState {
  readonly index: LogIndex;
  readonly context: ReadContext;
}

export const Role = {
  Follower: 'follower',
  PreCandidate: 'pre-candidate',
  Candidate: 'candidate',
  Leader: 'leader',
} as const;
export type Role = (typeof Role)[keyof typeof Role];

/** Volatile state the caller may want to observe (role and leader changes). Never persisted. */
export interface SoftState {
  readonly lead: NodeId | null;
  readonly role: Role;
}

interface MessageHeader {
  readonly from: NodeId;
  readonly to: NodeId;
  /** The sender's current term; 0 only for messages that carry no term (none today). */
  readonly term: Term;
}

/** AppendEntries (paper section 5.3). `index`/`logTerm` identify the entry preceding `entries`. */
export interface MsgApp extends MessageHeader {
  readonly type: 'MsgApp';
  readonly index: LogIndex;
  readonly logTerm: Term;
  readonly entries: readonly Entry[];
  readonly commit: LogIndex;
}

/**
 * Reply to MsgApp. On success `index` is the last index now known to match the leader.
 * On rejection `index` echoes the rejected MsgApp's `index`, and `rejectHint`/`logTerm` say
 * where the follower's log may match: the largest index <= rejectHint whose term is <= logTerm
 * (fast back-off, thesis section 5.3 / etcd-io/raft findConflictByTerm).
 */
export interface MsgAppResp extends MessageHeader {
  readonly type: 'MsgAppResp';
  readonly index: LogIndex;
  readonly reject: boolean;
  readonly rejectHint: LogIndex;
  readonly logTerm: Term;
}

/**
 * RequestVote (paper section 5.2) or its pre-vote probe (thesis section 9.6). For a pre-vote,
 * `term` is the term the sender would campaign in; its own term has not been incremented.
 */
export interface MsgVote extends MessageHeader {
  readonly type: 'MsgVote' | 'MsgPreVote';
  /** Index of the candidate's last log entry. */
  readonly index: LogIndex;
  /** Term of the candidate's last log entry. */
  readonly logTerm: Term;
  /** Set when the election was asked for by the leader (TimeoutNow): overrides the leader lease. */
  readonly transfer: boolean;
}

export interface MsgVoteResp extends MessageHeader {
  readonly type: 'MsgVoteResp' | 'MsgPreVoteResp';
  readonly reject: boolean;
}

/**
 * Leader heartbeat. `commit` is capped to what the follower is known to hold. `readRound`
 * is the leader's current ReadIndex round: an acknowledgement of round r confirms leadership
 * for every read that was waiting when round r began (thesis section 6.4).
 */
export interface MsgHeartbeat extends MessageHeader {
  readonly type: 'MsgHeartbeat';
  readonly commit: LogIndex;
  /**
   * The term of the leader's entry at `commit` (0 with `commit` 0, sent when that entry is
   * compacted). The follower commits only if its own log holds (commit, commitTerm): a log as
   * long as the leader's but different (a replaced disk refilled by a deposed leader) must not
   * commit its foreign entries. Log matching (paper section 5.3) then covers the whole prefix.
   */
  readonly commitTerm: Term;
  readonly readRound: number;
  /** The leader's tick count when it created this heartbeat: the anchor of its lease (thesis section 6.4.1). */
  readonly leaseTick: number;
}

export interface MsgHeartbeatResp extends MessageHeader {
  readonly type: 'MsgHeartbeatResp';
  readonly readRound: number;
  /** Echoes the heartbeat's `leaseTick`. */
  readonly leaseTick: number;
}

/** InstallSnapshot (paper section 7). */
export interface MsgSnap extends MessageHeader {
  readonly type: 'MsgSnap';
  readonly snapshot: Snapshot;
}

/** Sent by a leader to a caught-up transfer target: start an election now (thesis section 3.10). */
export interface MsgTimeoutNow extends MessageHeader {
  readonly type: 'MsgTimeoutNow';
}

/** A follower asks the leader for a read index on behalf of its client. */
export interface MsgReadIndex extends MessageHeader {
  readonly type: 'MsgReadIndex';
  readonly context: ReadContext;
}

/** The leader's answer to MsgReadIndex: the follower may serve the read once it applied `index`. */
export interface MsgReadIndexResp extends MessageHeader {
  readonly type: 'MsgReadIndexResp';
  readonly index: LogIndex;
  readonly context: ReadContext;
}

/** A follower forwards a leadership-transfer request to its leader. */
export interface MsgTransferLeader extends MessageHeader {
  readonly type: 'MsgTransferLeader';
  readonly transferee: NodeId;
}

/**
 * A follower tells its leader that its log does not hold what the leader believes it holds: it
 * ends earlier, or it holds a different entry at the heartbeat's commit index. Its data
 * directory was wiped or lost (and maybe refilled since by a deposed leader). Raft's own rules
 * never shrink or change a log below what the follower acknowledged in the same term, so only a
 * lost disk causes this. The leader forgets its view of the follower's log and probes again
 * from `lastIndex`, or sends a snapshot.
 */
export interface MsgLogLost extends MessageHeader {
  readonly type: 'MsgLogLost';
  /**
   * Where the follower's log is known to match the leader's at most: its last index when the
   * log is too short, its commit index when it holds a different entry (a committed prefix is in
   * every later leader's log, paper section 5.4).
   */
  readonly lastIndex: LogIndex;
}

export type Message =
  | MsgApp
  | MsgAppResp
  | MsgVote
  | MsgVoteResp
  | MsgHeartbeat
  | MsgHeartbeatResp
  | MsgSnap
  | MsgTimeoutNow
  | MsgReadIndex
  | MsgReadIndexResp
  | MsgTransferLeader
  | MsgLogLost;

export type MessageType = Message['type'];

/**
 * Everything the core asks its caller to do, handed out by `RawNode.ready()` and acknowledged
 * by `RawNode.advance()`. **The persistence contract** (paper figure 2; thesis sections 3.8 and
 * 10.2.1) is written here, in one place, and the caller must follow it in this order:
 *
 *   1. `messages` may be sent at once, even before step 2 finishes. The core only puts a
 *      message here when it promises nothing that step 2 makes durable: a leader's appends,
 *      heartbeats and snapshots (the leader counts its own copy of an entry towards a quorum
 *      only after `advance()` reports it durable), and replies that carry only already
 *      persisted state.
 *   2. Persist, in one atomic synced write when `mustSync` is true: `snapshot` (if any), then
 *      `entries` (appended after truncating any stored entries at or after `entries[0].index`),
 *      then `hardState` (if any).
 *   3. Only then send `messagesAfterPersist`: votes, vote grants and append acknowledgements
 *      promise that the state of step 2 survives a crash.
 *   4. Install `snapshot` into the state machine (if any), then apply `committedEntries` in
 *      order, then serve `readStates` whose index has been applied.
 *   5. Call `advance()`. Until then `ready()` may not be called again; `tick`, `step`,
 *      `propose` and the other inputs may.
 */
export interface Ready {
  /** Present when the role or the known leader changed since the previous Ready. */
  readonly softState: SoftState | null;
  /** Present when term, vote or commit changed: persist it. */
  readonly hardState: HardState | null;
  /** Entries to append to stable storage. Contiguous, ascending. */
  readonly entries: readonly Entry[];
  /** A snapshot received from the leader: persist it and install it into the state machine. */
  readonly snapshot: Snapshot | null;
  /** Committed entries to apply, contiguous and ascending, all already durable locally after step 2. */
  readonly committedEntries: readonly Entry[];
  /** Messages that may leave before step 2 completes. */
  readonly messages: readonly Message[];
  /** Messages that may only leave after step 2 completes. */
  readonly messagesAfterPersist: readonly Message[];
  /** Linearizable reads that became safe. */
  readonly readStates: readonly ReadState[];
  /** Whether step 2 must be synced to disk (false when only `commit` changed). */
  readonly mustSync: boolean;
}

/** Progress of one peer as the leader sees it (for status pages and tests). */
export interface PeerProgress {
  readonly match: LogIndex;
  readonly next: LogIndex;
  readonly state: 'probe' | 'replicate' | 'snapshot';
  readonly inflightCount: number;
  readonly recentActive: boolean;
  readonly pendingSnapshot: LogIndex;
}

export interface BasicStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: Term;
  readonly vote: NodeId | null;
  readonly lead: NodeId | null;
  readonly commit: LogIndex;
  readonly applied: LogIndex;
  readonly firstIndex: LogIndex;
  readonly lastIndex: LogIndex;
  readonly leadTransferee: NodeId | null;
}

export interface Status extends BasicStatus {
  readonly confState: ConfState;
  /** Only on the leader. */
  readonly progress: ReadonlyMap<NodeId, PeerProgress> | null;
}
