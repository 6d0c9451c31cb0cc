/**
 * Helpers shared by the multi-process tests (test/process-*.test.ts).
 *
 * The harness is imported by path until packages/testing/package.json exports it as
 * `@raftkv/testing/process`; then only this line changes.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import type { ProcessCluster } from '@raftkv/testing/process';

export * from '@raftkv/testing/process';

/** Short timeouts keep elections quick; the ratio is etcd's (heartbeat = election / 10). */
export const FAST = { tickMs: 20, electionTimeoutMs: 200, heartbeatIntervalMs: 20 } as const;

/** How many reads run at once when a test checks its acknowledged writes. */
const READ_CONCURRENCY = 16;
const POLL_MS = 10;

export function keyOf(prefix: string, k: number): string {
  return `${prefix}/${String(k).padStart(4, '0')}`;
}

/** Runs `work` on every item with `concurrency` workers; resolves when all are done. */
export async function forEachConcurrently<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** Polls `condition` until it holds; fails the test with `what` after `timeoutMs`. */
export async function waitFor(what: string, condition: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) expect.unreachable(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(POLL_MS);
  }
}

/**
 * Reads every acknowledged key through the leader (linearizable) and checks its value. Lists
 * every key that is missing or wrong, not just the first.
 */
export async function expectAllReadable(cluster: ProcessCluster, acked: ReadonlyMap<string, string>): Promise<void> {
  const wrong: string[] = [];
  await forEachConcurrently([...acked], READ_CONCURRENCY, async ([key, value]) => {
    const item = await cluster.get(key);
    if (item?.value !== value) wrong.push(`${key}: expected ${value}, read ${item === null ? 'nothing' : item.value}`);
  });
  expect(wrong.sort(), `${wrong.length} of ${acked.size} acknowledged writes lost or wrong`).toEqual([]);
}

/** Every node process of the cluster is still running, and none has exited. */
export function expectAllRunning(cluster: ProcessCluster): void {
  for (const id of cluster.ids) {
    expect(cluster.exitStatus(id), `node ${id} exited; stderr:\n${cluster.stderr(id)}`).toBeNull();
  }
  expect(cluster.running).toEqual(cluster.ids);
}
