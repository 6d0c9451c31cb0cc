import { afterEach, describe, expect, it } from 'vitest';
import { expectAllReadable, expectAllRunning, FAST, forEachConcurrently, keyOf, ProcessCluster, waitFor } from './process-support.js';

let cluster: ProcessCluster | null = null;
afterEach(async () => {
  await cluster?.close();
  cluster = null;
});

const WRITERS = 16;

/** Kills every node at once: each signal is sent before any exit is awaited. */
async function killAll(c: ProcessCluster): Promise<void> {
  const exits = c.ids.map((id) => c.kill(id));
  for (const exit of await Promise.all(exits)) expect(exit).toEqual({ code: null, signal: 'SIGKILL' });
}

async function restartAll(c: ProcessCluster): Promise<void> {
  await Promise.all(c.ids.map((id) => c.restart(id)));
  await c.leader();
  expectAllRunning(c);
}

describe('kill -9 of every process at once', () => {
  it('after 500 acknowledged concurrent writes: every one survives the restart', async () => {
    cluster = await ProcessCluster.start({ nodes: 3, ...FAST });
    await cluster.leader();
    const keys = Array.from({ length: 500 }, (_, k) => keyOf('k', k));
    const acked = new Map<string, string>();
    await forEachConcurrently(keys, WRITERS, async (key) => {
      await cluster!.put(key, `value of ${key}`);
      acked.set(key, `value of ${key}`);
    });
    expect(acked.size).toBe(500);

    await killAll(cluster);
    await restartAll(cluster);
    await expectAllReadable(cluster, acked);
  });

  it('while writes are in flight: every acknowledged write survives; an unacknowledged one is absent or whole', async () => {
    cluster = await ProcessCluster.start({ nodes: 3, ...FAST });
    await cluster.leader();
    const acked = new Map<string, string>();
    const unacknowledged: string[] = [];
    let next = 0;
    let inFlight = 0;
    let killed = false;
    const writer = async (): Promise<void> => {
      // Bounded: the kill comes long before the keys run out.
      while (!killed && next < 10_000) {
        const key = keyOf('w', next++);
        inFlight++;
        try {
          await cluster!.put(key, `value of ${key}`, { timeoutMs: 5_000 });
          acked.set(key, `value of ${key}`);
        } catch {
          unacknowledged.push(key); // the kill reached it first (or the retry found no node running)
          return;
        } finally {
          inFlight--;
        }
      }
    };
    const writers = Array.from({ length: WRITERS }, writer);
    await waitFor('150 writes acknowledged', () => acked.size >= 150);
    const ackedBeforeKill = new Map(acked);
    const inFlightAtKill = inFlight;
    killed = true;
    await killAll(cluster);
    await Promise.all(writers);
    // A reply the node sent before it died may be read after the signal left: it is an
    // acknowledgement all the same, so every acknowledged write must survive, not only those
    // seen before the kill.
    console.log(
      `crash with writes in flight: ${inFlightAtKill} in flight at the kill; ${ackedBeforeKill.size} acknowledged before it, ${acked.size} in all, ${unacknowledged.length} without an answer`,
    );
    expect(inFlightAtKill).toBeGreaterThan(0); // the kill did land in the middle of writes

    await restartAll(cluster);
    await expectAllReadable(cluster, acked);
    for (const key of unacknowledged) {
      const item = await cluster.get(key);
      if (item !== null) expect(item.value).toBe(`value of ${key}`);
    }
  });
});
