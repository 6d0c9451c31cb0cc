import { afterEach, describe, expect, it } from 'vitest';
import { expectAllReadable, expectAllRunning, FAST, keyOf, ProcessCluster, waitFor } from './process-support.js';

let cluster: ProcessCluster | null = null;
afterEach(async () => {
  await cluster?.close();
  cluster = null;
});

/** A correctness bound, not a benchmark: a new leader within a few randomized election timeouts. */
const FAILOVER_MS_MAX = 10 * FAST.electionTimeoutMs;

describe('failover across OS processes', () => {
  it('kill -9 of the leader: a survivor leads within a few election timeouts, nothing acknowledged is lost, and the killed node catches up', async () => {
    cluster = await ProcessCluster.start({ nodes: 3, ...FAST });
    const first = await cluster.leader();
    const acked = new Map<string, string>();
    for (let k = 0; k < 200; k++) {
      const key = keyOf('before', k);
      await cluster.put(key, `v${k}`);
      acked.set(key, `v${k}`);
    }

    const killedAtMs = performance.now();
    const exited = cluster.kill(first); // SIGKILL is sent before kill() returns
    await cluster.put(keyOf('down', 0), 'd0'); // routed to the new leader, retried until there is one
    const failoverMs = performance.now() - killedAtMs;
    acked.set(keyOf('down', 0), 'd0');
    console.log(`failover: first write acknowledged ${failoverMs.toFixed(0)} ms after kill -9 of leader ${first} (bound ${FAILOVER_MS_MAX} ms)`);
    expect(await exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(failoverMs).toBeLessThan(FAILOVER_MS_MAX);
    const second = await cluster.leader();
    expect(second).not.toBe(first);
    expect(cluster.running).toHaveLength(2);

    for (let k = 1; k < 20; k++) {
      await cluster.put(keyOf('down', k), `d${k}`);
      acked.set(keyOf('down', k), `d${k}`);
    }
    await expectAllReadable(cluster, acked);

    await cluster.restart(first);
    const leader = await cluster.leader(); // every running node, the restarted one too, names it
    const { commit } = await cluster.status(leader);
    await waitFor(`${first} applies up to the leader's commit index ${commit}`, async () => (await cluster!.status(first)).appliedIndexKv >= commit);
    // A linearizable read on the restarted node itself (ReadIndex through the leader) sees a write made while it was down.
    expect(await cluster.request(first, 'get', { key: keyOf('down', 19) })).toMatchObject({ value: 'd19' });
    // And its own copy of the data is whole.
    const local = [
      ...(await cluster.request(first, 'scan', { prefix: 'before/', consistency: 'stale' })),
      ...(await cluster.request(first, 'scan', { prefix: 'down/', consistency: 'stale' })),
    ];
    expect(new Map(local.map((item) => [item.key, item.value]))).toEqual(acked);
    expectAllRunning(cluster);
  });
});
