/**
 * A node whose peers are played by the test (FakePeers): snapshot streams arrive at exact
 * moments, over the real LevelDB stores.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, isRaftKvError } from '@raftkv/raft';
import { startNode } from '../src/index.js';
import { FakePeers, leaderImage, msgSnap, until, useTempDirs } from './fake-peers.js';

const VOTERS = ['n1', 'n2', 'n3'];
const tempDir = useTempDirs();

describe('snapshot streams racing on a real node', () => {
  it('a second stream that arrives while the first waits to be installed is refused; the node installs the first and keeps running', async () => {
    // Reproduced on the node before the Ready loop was rewritten: the second stream discarded
    // the staged image the core already held, and the next Ready failed its assertion
    // ("snapshot 1/8 to install, but none is staged"), stopping the node.
    const peers = new FakePeers('n2');
    const node = await startNode({ id: 'n2', dataDir: await tempDir(), members: VOTERS, peers: {}, transport: peers, electionTimeoutMs: 60_000, heartbeatIntervalMs: 100 });
    const errors: Error[] = [];
    node.on('error', (error) => errors.push(error));
    try {
      const first = await leaderImage(10, 1);
      const second = await leaderImage(9, 1);
      // The first stream's receive() resolves once its image is staged and the core took the
      // MsgSnap; the second starts right then, before the loop has installed the first.
      const firstDone = peers.snapshot(msgSnap('n1', 'n2', 1, { index: 8, term: 1 }, VOTERS), first.chunks);
      await firstDone;
      const secondDone = peers.snapshot(msgSnap('n3', 'n2', 2, { index: 9, term: 1 }, VOTERS), second.chunks).then(
        () => null,
        (error: unknown) => error,
      );
      expect(isRaftKvError(await secondDone, ErrorCode.SNAPSHOT_TRANSFER_FAILED)).toBe(true);
      await until(() => node.status().appliedIndexKv === 10);
      expect(errors).toEqual([]);
      const item = await node.get('k10', { consistency: 'stale' });
      expect(new TextDecoder().decode(item?.value)).toBe('v10');
      expect(node.status().firstIndex).toBe(9);
    } finally {
      await node.close();
    }
  });

  it('an image behind the state machine (a later leader lags in applying) keeps the state machine; the node keeps running', async () => {
    // Before the fix: "install: snapshot at 8 is behind the applied index 10", and the node stopped.
    const peers = new FakePeers('n2');
    const node = await startNode({ id: 'n2', dataDir: await tempDir(), members: VOTERS, peers: {}, transport: peers, electionTimeoutMs: 60_000, heartbeatIntervalMs: 100 });
    const errors: Error[] = [];
    node.on('error', (error) => errors.push(error));
    try {
      await peers.snapshot(msgSnap('n1', 'n2', 1, { index: 5, term: 1 }, VOTERS), (await leaderImage(10, 1)).chunks);
      await until(() => node.status().appliedIndexKv === 10);
      await peers.snapshot(msgSnap('n3', 'n2', 2, { index: 7, term: 1 }, VOTERS), (await leaderImage(8, 1)).chunks);
      await until(() => node.status().firstIndex === 8);
      expect(errors).toEqual([]);
      expect(node.status().appliedIndexKv).toBe(10);
      const item = await node.get('k10', { consistency: 'stale' });
      expect(new TextDecoder().decode(item?.value)).toBe('v10');
    } finally {
      await node.close();
    }
  });
});
