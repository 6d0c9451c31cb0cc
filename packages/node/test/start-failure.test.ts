import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startNode } from '../src/index.js';

describe('a node that fails to start', () => {
  it('releases its data directory, so a second attempt can open it', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'raftkv-start-'));
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as AddressInfo;
    try {
      const options = { id: 'n1', dataDir, members: ['n1'], peers: {} };
      // The peer port is taken: the transport cannot listen, after both stores were opened.
      await expect(startNode({ ...options, listen: { host: '127.0.0.1', port } })).rejects.toThrow();
      // Were the stores still open, LevelDB's lock would refuse this.
      const node = await startNode({ ...options, listen: { host: '127.0.0.1', port: 0 }, tickMs: 10, electionTimeoutMs: 50, heartbeatIntervalMs: 10 });
      node.campaign();
      await node.put('k', 'v');
      expect(new TextDecoder().decode((await node.get('k'))?.value)).toBe('v');
      await node.close();
    } finally {
      blocker.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
