import { describe, expect, it } from 'vitest';
import { Role } from '@raftkv/raft';
import { startCluster } from '../src/index.js';

const KEYS = 100_000;
const WRITERS = 128;

describe('a new machine replaces a dead one, catching up through a snapshot', () => {
  it(`of ${KEYS.toLocaleString('en')} keys while the cluster keeps serving writes; it is promoted, and the leader keeps its term`, async () => {
    // Compaction every 20,000 entries: a node that lost everything cannot catch up from the log.
    const cluster = await startCluster({ nodes: 3, snapshotEveryEntries: 20_000, snapshotCatchupEntries: 1_000 });
    try {
      const leader = await cluster.leader();
      let next = 0;
      await Promise.all(
        Array.from({ length: WRITERS }, async () => {
          for (let k = next++; k < KEYS; k = next++) await leader.put(`key/${String(k).padStart(6, '0')}`, `value-${k}`);
        }),
      );
      // A follower's machine dies for good: it is removed, and a new machine (a new id, an empty
      // disk) is added in its place.
      const victim = cluster.nodes.find((n) => n !== leader)!;
      await cluster.stopNode(victim.id);
      await leader.removeMember(victim.id);
      expect(leader.status().firstIndex).toBeGreaterThan(2); // the log really was compacted

      const term = leader.status().term;
      const roles: Role[] = [];
      leader.on('role', (change) => roles.push(change.role));
      const rejoined = await cluster.addNode();
      // Writes go on while the snapshot streams.
      let during = 0;
      let caughtUp = false;
      const writer = (async () => {
        while (!caughtUp) {
          await leader.put(`during/${during}`, 'x');
          during++;
        }
      })();
      const target = KEYS; // every key written before the wipe
      for (;;) {
        const st = rejoined.status();
        if (st.appliedIndexKv >= leader.status().commit - 50 && st.appliedIndexKv > target) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      caughtUp = true;
      await writer;
      // The leader stayed the leader, in the same term: heartbeats were not stuck behind the stream.
      expect(roles).toEqual([]);
      expect(leader.status().term).toBe(term);
      expect(leader.role).toBe(Role.Leader);
      expect(during).toBeGreaterThan(0);
      // The rejoined node holds the keys: sampled reads, and the first 10,000 by a scan.
      const sample = [0, 1, 12_345, 54_321, 99_999];
      for (const k of sample) {
        const item = await rejoined.get(`key/${String(k).padStart(6, '0')}`, { consistency: 'stale' });
        expect(new TextDecoder().decode(item?.value)).toBe(`value-${k}`);
      }
      const all = await rejoined.scan('key/', { consistency: 'stale', limit: 10_000 });
      expect(all).toHaveLength(10_000);
      expect(rejoined.transport.stats().snapshotsReceived).toBeGreaterThanOrEqual(1);
      // It was promoted on its own once caught up, and the removed id is gone for good.
      for (let k = 0; k < 200 && !leader.status().confState.voters.includes(rejoined.id); k++) await new Promise((r) => setTimeout(r, 50));
      expect(leader.status().confState).toEqual({ voters: [...cluster.ids.filter((id) => id !== victim.id && id !== rejoined.id), rejoined.id].sort(), learners: [] });
      await expect(leader.addLearner(victim.id, { peerAddress: victim.peerAddress })).rejects.toThrow(/never comes back under its old id/);
    } finally {
      await cluster.close();
    }
  }, 300_000);
});
