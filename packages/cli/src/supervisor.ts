/**
 * One supervised node process of `raftkv cluster`: spawned as `raftkv start ...` with this
 * process's own Node.js flags (so it runs from the TypeScript sources under tsx, or from dist/),
 * restarted with back-off when it exits unexpectedly, and stopped by its PID: SIGTERM, then
 * SIGKILL after a timeout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NodeId } from '@raftkv/raft';

/** Back-off between restarts: doubles from MIN to MAX while a node keeps failing. */
export const RESTART_DELAY_MIN_MS = 100;
export const RESTART_DELAY_MAX_MS = 5_000;
/** A node that ran this long before exiting counts as healthy again: its back-off starts over. */
export const STABLE_RUN_MS = 10_000;
/** Consecutive quick failures after which a node is left down (a corrupt disk will not heal). */
export const RESTARTS_CONSECUTIVE_MAX = 10;

/** main.ts next to this module (.ts from the sources, .js once built). */
const MAIN = fileURLToPath(new URL(`./main${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

export interface SupervisedNodeOptions {
  readonly id: NodeId;
  /** Arguments after `raftkv start`. */
  readonly startArgs: readonly string[];
  /** stdout and stderr of every run of the node are appended here. */
  readonly logPath: string;
  /** Lines for the person running the cluster. */
  readonly print: (line: string) => void;
}

export class SupervisedNode {
  readonly id: NodeId;
  readonly #options: SupervisedNodeOptions;
  #child: ChildProcess | null = null;
  #exited: Promise<void> = Promise.resolve();
  #startedAtMs = 0;
  #failures = 0;
  #runs = 0;
  #restartTimer: NodeJS.Timeout | null = null;
  #stopping = false;
  /** Every PID this node has had, oldest first. */
  readonly pids: number[] = [];

  constructor(options: SupervisedNodeOptions) {
    this.id = options.id;
    this.#options = options;
  }

  /** The PID of the running process, or null between runs. */
  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  /** Spawns the node process; returns its PID. */
  start(): number {
    if (this.#stopping) throw new Error(`node ${this.id} is stopping; not started`);
    if (this.#child !== null) throw new Error(`node ${this.id} is already running (pid ${this.#child.pid ?? '?'})`);
    const log = openSync(this.#options.logPath, 'a');
    let child: ChildProcess;
    try {
      writeSync(log, `--- raftkv cluster: starting node ${this.id} at ${new Date().toISOString()} ---\n`);
      child = spawn(process.execPath, [...process.execArgv, MAIN, 'start', ...this.#options.startArgs], {
        // Its own process group: a Ctrl-C in the terminal reaches the supervisor only, which
        // stops the nodes in order. The IPC channel ends the node if the supervisor dies.
        detached: true,
        stdio: ['ignore', log, log, 'ipc'],
        env: process.env,
      });
    } finally {
      closeSync(log); // the child has its own copy
    }
    const pid = child.pid;
    if (pid === undefined) throw new Error(`node ${this.id}: spawn of ${process.execPath} produced no process`);
    this.#child = child;
    this.#runs++;
    this.#startedAtMs = Date.now();
    this.pids.push(pid);
    liveChildren.add(child);
    registerExitCleanup();
    child.on('error', () => {}); // a kill of an exited process; 'exit' tells the rest
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        liveChildren.delete(child);
        this.#child = null;
        this.#onExit(code, signal);
        resolve();
      });
    });
    return pid;
  }

  /** Stops the node for good: SIGTERM by PID, SIGKILL if it has not exited after `timeoutMs`. */
  async stop(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer);
    const child = this.#child;
    if (child === null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      this.#options.print(`node ${this.id} (pid ${child.pid ?? '?'}) did not stop within ${timeoutMs} ms; sending SIGKILL`);
      child.kill('SIGKILL');
    }, timeoutMs);
    await this.#exited;
    clearTimeout(timer);
  }

  /** Sends SIGKILL at once (a second Ctrl-C). */
  kill(): void {
    this.#stopping = true;
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer);
    this.#child?.kill('SIGKILL');
  }

  #onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#stopping) return;
    const how = signal === null ? `status ${code ?? '?'}` : `signal ${signal}`;
    this.#failures = Date.now() - this.#startedAtMs >= STABLE_RUN_MS ? 1 : this.#failures + 1;
    if (this.#failures > RESTARTS_CONSECUTIVE_MAX) {
      this.#options.print(`node ${this.id} exited (${how}) ${this.#failures} times in a row; leaving it down (see ${this.#options.logPath})`);
      return;
    }
    const delayMs = Math.min(RESTART_DELAY_MAX_MS, RESTART_DELAY_MIN_MS * 2 ** (this.#failures - 1));
    this.#options.print(`node ${this.id} exited (${how}); restarting in ${delayMs} ms`);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (this.#stopping) return;
      const pid = this.start();
      this.#options.print(`node ${this.id}: restarted, pid ${pid} (run ${this.#runs})`);
    }, delayMs);
  }
}

// No node outlives the supervisor: on any exit of this process, those still running get SIGKILL.
const liveChildren = new Set<ChildProcess>();
let exitCleanupRegistered = false;

function registerExitCleanup(): void {
  if (exitCleanupRegistered) return;
  exitCleanupRegistered = true;
  process.once('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
  });
}
