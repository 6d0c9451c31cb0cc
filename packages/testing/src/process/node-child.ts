import { fork, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, RaftKvError, type NodeId } from '@raftkv/raft';
import { isAnnouncement, isReply, type NodeProcessConfig, type Op, type OpArgs, type OpResults, type Reply } from './protocol.js';

/** How a node process ended: its exit status, or the signal that killed it. */
export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export const NodeProcessErrorCode = {
  /** The process exited (or was killed) before it answered. */
  EXITED: 'NODE_PROCESS_EXITED',
  /** The request was addressed to a node whose process is not running. */
  NOT_RUNNING: 'NODE_PROCESS_NOT_RUNNING',
  /** The process did not answer in time (paused, or overloaded). */
  REPLY_TIMEOUT: 'NODE_PROCESS_REPLY_TIMEOUT',
  /** The process did not report ready in time; it was killed. */
  START_TIMEOUT: 'NODE_PROCESS_START_TIMEOUT',
} as const;
export type NodeProcessErrorCode = (typeof NodeProcessErrorCode)[keyof typeof NodeProcessErrorCode];

/**
 * A failure of the process around a node rather than of the node itself (those arrive as
 * RaftKvErrors with the node's code). Carries what the process left behind.
 */
export class NodeProcessError extends Error {
  override readonly name = 'NodeProcessError';
  readonly code: NodeProcessErrorCode;
  readonly nodeId: NodeId;
  /** Set once the process has ended. */
  readonly exit: ExitStatus | null;
  /** The RaftKvError code the node reported when it failed to start, if it did. */
  readonly startFailureCode: string | null;
  /** The tail of the process's stderr when the error was raised. */
  readonly stderr: string;

  constructor(code: NodeProcessErrorCode, nodeId: NodeId, message: string, details: { exit: ExitStatus | null; startFailureCode: string | null; stderr: string }) {
    super(message);
    this.code = code;
    this.nodeId = nodeId;
    this.exit = details.exit;
    this.startFailureCode = details.startFailureCode;
    this.stderr = details.stderr;
  }
}

export function isNodeProcessError(error: unknown, code?: NodeProcessErrorCode): error is NodeProcessError {
  return error instanceof NodeProcessError && (code === undefined || error.code === code);
}

export interface SpawnOptions {
  /** Working directory of the child; `--import tsx` resolves from here. */
  readonly cwd: string;
  /** A child that has not reported ready by then is killed. */
  readonly readyTimeoutMs: number;
  /** Also append everything the process writes to stderr (its logs) to this file. */
  readonly logFile?: string;
  /**
   * Runs Node through a launcher, e.g. `ip netns exec <ns> node`: the process is started as
   * `execPath ...execArgv <node flags> <entry> <config>`, so execArgv must end with the Node
   * binary. The launcher must exec (not fork) Node, so that the pid is the node's.
   */
  readonly launcher?: { readonly execPath: string; readonly execArgv: readonly string[] };
}

/** Where a started node process listens. */
export interface ReadyAddresses {
  /** Its Raft peer port, "host:port". */
  readonly peerAddress: string;
  /** Its HTTP API, "host:port", when it serves one. */
  readonly httpAddress: string | null;
}

/** Bytes of stderr kept per process (the tail: the end is what explains a failure). */
export const STDERR_BYTES_MAX = 256 * 1024;
/** Requests awaiting a reply per process. */
export const PENDING_REQUESTS_MAX = 100_000;

interface Pending {
  readonly op: Op;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** `killed`: a terminating signal was sent and the exit is not yet seen; no request is sent from then on. */
type State = 'starting' | 'running' | 'paused' | 'killed' | 'exited';

/** The module that runs in the child, next to this one (.ts from source, .js once built). */
const ENTRY = join(dirname(fileURLToPath(import.meta.url)), `node-process${extname(fileURLToPath(import.meta.url))}`);

/**
 * One OS process running one raftkv node (node-process.ts), seen from the parent: start, typed
 * requests over IPC, signals, exit status and captured stderr. A restart is a new NodeChild.
 */
export class NodeChild {
  readonly id: NodeId;
  readonly pid: number;
  /** Resolves with the node's addresses once it listens; rejects with a NodeProcessError if it never does. */
  readonly ready: Promise<ReadyAddresses>;
  /** Resolves when the process has ended, however it ended, and its log copy (`logFile`) is flushed. */
  readonly exited: Promise<ExitStatus>;
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, Pending>();
  #nextRequestId = 1;
  #state: State = 'starting';
  #endedByParent = false;
  #exit: ExitStatus | null = null;
  #startFailureCode: string | null = null;
  #stderr = '';
  #stderrDroppedBytes = 0;
  readonly #logFile: WriteStream | null;

  private constructor(config: NodeProcessConfig, options: SpawnOptions) {
    this.id = config.id;
    const nodeFlags = ['--import', 'tsx', '--conditions=@raftkv/source'];
    const launcher = options.launcher;
    this.#child = fork(ENTRY, [JSON.stringify(config)], {
      cwd: options.cwd,
      ...(launcher === undefined ? { execArgv: nodeFlags } : { execPath: launcher.execPath, execArgv: [...launcher.execArgv, ...nodeFlags] }),
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'json',
      env: process.env,
    });
    const pid = this.#child.pid;
    if (pid === undefined) throw new Error(`node process ${config.id}: fork did not produce a process (${ENTRY})`);
    this.pid = pid;
    liveChildren.add(this.#child);
    this.#child.stdout?.resume(); // nothing is written there; drained so that a stray print never blocks the child
    this.#logFile = options.logFile === undefined ? null : createWriteStream(options.logFile, { flags: 'a' });
    this.#logFile?.on('error', () => {}); // losing the copy of a log must not fail the test
    this.#child.stderr?.setEncoding('utf8');
    this.#child.stderr?.on('data', (text: string) => this.#appendStderr(text));
    this.exited = new Promise((resolve) => {
      // 'close', not 'exit': it comes after the IPC channel and stderr have been read to their
      // end, so that no reply the node sent before it died is lost.
      this.#child.once('close', (code, signal) => {
        const exit: ExitStatus = { code, signal };
        this.#exit = exit;
        this.#state = 'exited';
        liveChildren.delete(this.#child);
        this.#failPending();
        // Once the process is known to be gone, the log copy is complete: whoever waits for the
        // end (ProcessCluster.close, and so a script that then exits at once) gets the whole log.
        void closeLog(this.#logFile).then(() => resolve(exit));
      });
    });
    this.#child.on('error', () => {}); // a failed kill of an exited process; the exit event tells the rest
    this.ready = this.#awaitReady(options.readyTimeoutMs);
    this.#child.on('message', (message: unknown) => this.#onMessage(message));
  }

  /** Forks the node process; await `ready` before sending requests. */
  static spawn(config: NodeProcessConfig, options: SpawnOptions): NodeChild {
    registerExitCleanup();
    return new NodeChild(config, options);
  }

  /** The process is up and not stopped by SIGSTOP. */
  get running(): boolean {
    return this.#state === 'running';
  }

  get paused(): boolean {
    return this.#state === 'paused';
  }

  /** Whether this parent sent the signal that ended the process (kill, close): an expected end. */
  get endedByParent(): boolean {
    return this.#endedByParent;
  }

  /** How the process ended; null while it runs. */
  get exit(): ExitStatus | null {
    return this.#exit;
  }

  /** What the process wrote to stderr (its last STDERR_BYTES_MAX bytes). */
  get stderr(): string {
    return this.#stderrDroppedBytes === 0 ? this.#stderr : `[${this.#stderrDroppedBytes} earlier bytes dropped]\n${this.#stderr}`;
  }

  /**
   * Sends one request and resolves with the node's answer. A node error rejects with a
   * RaftKvError of the node's code; a process failure with a NodeProcessError.
   */
  request<O extends Op>(op: O, args: OpArgs[O], timeoutMs: number): Promise<OpResults[O]> {
    if (this.#state !== 'running' && this.#state !== 'paused') {
      return Promise.reject(this.#error(NodeProcessErrorCode.NOT_RUNNING, `node process ${this.id} is ${this.#state}; ${op} not sent`));
    }
    if (this.#pending.size >= PENDING_REQUESTS_MAX) return Promise.reject(new Error(`node process ${this.id}: ${PENDING_REQUESTS_MAX} requests pending`));
    const id = this.#nextRequestId++;
    if (op === 'close') this.#endedByParent = true; // the process exits once it answers
    return new Promise<OpResults[O]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(this.#error(NodeProcessErrorCode.REPLY_TIMEOUT, `node process ${this.id} did not answer ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { op, resolve: resolve as (value: unknown) => void, reject, timer });
      this.#child.send({ id, op, args }, (error) => {
        if (error === null) return;
        // The channel closed under us: the exit handler fails the request (if it still waits).
      });
    });
  }

  /**
   * Sends `signal` to this process (by its pid) at once. SIGSTOP and SIGCONT pause and resume
   * it; any other signal is taken to end it (await `exited`).
   */
  signal(signal: NodeJS.Signals): void {
    if (this.#state === 'exited') return;
    if (signal === 'SIGSTOP') {
      if (this.#state === 'running') this.#state = 'paused';
    } else if (signal === 'SIGCONT') {
      if (this.#state === 'paused') this.#state = 'running';
    } else {
      this.#state = 'killed';
      this.#endedByParent = true;
    }
    this.#child.kill(signal);
  }

  #awaitReady(timeoutMs: number): Promise<ReadyAddresses> {
    return new Promise<ReadyAddresses>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(this.#error(NodeProcessErrorCode.START_TIMEOUT, `node process ${this.id} did not report ready within ${timeoutMs} ms; killed`));
        this.#child.kill('SIGKILL');
      }, timeoutMs);
      const onMessage = (message: unknown): void => {
        if (!isAnnouncement(message)) return;
        if (message.type === 'failed') {
          this.#startFailureCode = message.code;
          return; // the exit follows
        }
        clearTimeout(timer);
        this.#child.off('message', onMessage);
        if (this.#state === 'starting') this.#state = 'running';
        resolve({ peerAddress: message.peerAddress, httpAddress: message.httpAddress });
      };
      this.#child.on('message', onMessage);
      void this.exited.then((exit) => {
        clearTimeout(timer);
        this.#child.off('message', onMessage);
        const how = exit.signal === null ? `with status ${exit.code}` : `by ${exit.signal}`;
        reject(this.#error(NodeProcessErrorCode.EXITED, `node process ${this.id} exited ${how} before it was ready`));
      });
    });
  }

  #onMessage(message: unknown): void {
    if (!isReply(message)) return;
    const pending = this.#pending.get(message.id);
    if (pending === undefined) return; // timed out meanwhile
    this.#pending.delete(message.id);
    clearTimeout(pending.timer);
    if (message.ok) pending.resolve(message.value);
    else pending.reject(remoteError(this.id, pending.op, message));
  }

  #failPending(): void {
    const how = this.#exit?.signal ?? `status ${this.#exit?.code ?? '?'}`;
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      this.#pending.delete(id);
      pending.reject(this.#error(NodeProcessErrorCode.EXITED, `node process ${this.id} ended (${how}) before answering ${pending.op}`));
    }
  }

  #appendStderr(text: string): void {
    this.#logFile?.write(text);
    this.#stderr += text;
    const excess = this.#stderr.length - STDERR_BYTES_MAX;
    if (excess > 0) {
      this.#stderr = this.#stderr.slice(excess);
      this.#stderrDroppedBytes += excess;
    }
  }

  #error(code: NodeProcessErrorCode, message: string): NodeProcessError {
    return new NodeProcessError(code, this.id, message, { exit: this.#exit, startFailureCode: this.#startFailureCode, stderr: this.stderr });
  }
}

/** Ends a log copy; resolves once it is written and closed, or has failed (the copy is best effort). */
function closeLog(log: WriteStream | null): Promise<void> {
  if (log === null || log.closed) return Promise.resolve();
  return new Promise((resolve) => {
    log.once('close', () => resolve());
    log.end();
  });
}

function remoteError(id: NodeId, op: Op, reply: Extract<Reply, { ok: false }>): Error {
  if (reply.code !== null && (Object.values(ErrorCode) as string[]).includes(reply.code)) {
    return new RaftKvError(reply.code as ErrorCode, reply.message, { leaderHint: reply.leaderHint });
  }
  return new Error(`node ${id} failed ${op}: ${reply.message}`);
}

// ------------------------------------------------------------------------------------------
// No child outlives the parent: children exit when their IPC channel closes (the parent died,
// however it died), and a parent that exits normally kills those still running.

const liveChildren = new Set<ChildProcess>();
let exitCleanupRegistered = false;

function registerExitCleanup(): void {
  if (exitCleanupRegistered) return;
  exitCleanupRegistered = true;
  process.once('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
  });
}

/**
 * The directory to start children in: the nearest one, from this module upwards, from which
 * `--import tsx` resolves (the workspace root).
 */
export function findWorkspaceRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'node_modules', 'tsx', 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no node_modules/tsx above ${from}: cannot start node processes with --import tsx`);
  }
}
