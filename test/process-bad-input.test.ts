import { once } from 'node:events';
import { connect } from 'node:net';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { encode } from '@raftkv/codec';
import { ErrorCode, SeededRandom, type Message, type NodeId } from '@raftkv/raft';
import { PROTOCOL_VERSION, TcpTransport, type StreamKind } from '@raftkv/transport';
import { ClassicLevel } from 'classic-level';
import {
  EXIT_START_FAILED,
  expectAllReadable,
  expectAllRunning,
  FAST,
  isNodeProcessError,
  keyOf,
  NodeProcessErrorCode,
  ProcessCluster,
  waitFor,
} from './process-support.js';

let cluster: ProcessCluster | null = null;
afterEach(async () => {
  await cluster?.close();
  cluster = null;
});

const CLUSTER_ID = 'bad-input-test';
/** A term no real election of these tests reaches: seeing it on a node means a foreign message got in. */
const FOREIGN_TERM = 1_000_000;
const CONNECTION_CLOSE_TIMEOUT_MS = 5_000;

// ---------------------------------------------------------------------------------------------
// Raw bytes on the peer port (frame format: packages/transport/src/wire.ts).

function frame(value: unknown): Buffer {
  const body = encode(value);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.byteLength, 0);
  return Buffer.concat([header, body]);
}

/** A handshake; `uid` is the data directory id of the node it claims to be (the peer it names checks it). */
function hello(clusterId: string, from: NodeId, to: NodeId, uid: string | undefined, stream: StreamKind = 'messages'): Buffer {
  return frame({ v: PROTOCOL_VERSION, clusterId, from, to, stream, ...(uid === undefined ? {} : { uid }) });
}

function randomBytes(random: SeededRandom, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = random.nextInt(256);
  return bytes;
}

/**
 * Opens one connection to `address`, writes `bytes`, half-closes, and resolves when the node
 * has closed the connection (it does, for everything these tests send).
 */
async function sendRaw(address: string, bytes: Buffer): Promise<void> {
  const colon = address.lastIndexOf(':');
  const socket = connect({ host: address.slice(0, colon), port: Number(address.slice(colon + 1)) });
  socket.on('error', () => {}); // the node may reset the connection: that is its answer
  const closed = once(socket, 'close');
  socket.resume(); // a refusal frame may come back; read and drop it
  socket.end(bytes);
  const timeout = sleep(CONNECTION_CLOSE_TIMEOUT_MS).then(() => 'timeout' as const);
  expect(await Promise.race([closed.then(() => 'closed' as const), timeout]), `connection to ${address} not closed by the node`).toBe('closed');
}

interface Attack {
  readonly name: string;
  /** One per connection; `peerUid` is the data directory id of `peer`, as its handshakes carry it. */
  readonly payloads: (target: NodeId, peer: NodeId, peerUid: string) => Buffer[];
  /** What each connection must add one to on the target: a bad frame or refused handshake, or a refused snapshot. */
  readonly counts: 'rejections' | 'framesRejected' | 'snapshotsRejected';
}

const random = new SeededRandom(20_240_601);

const RAW_ATTACKS: readonly Attack[] = [
  {
    name: 'random bytes',
    payloads: () => Array.from({ length: 16 }, () => randomBytes(random, 1 + random.nextInt(2048))),
    counts: 'rejections',
  },
  {
    // A plausible length prefix, so that the random body is decoded and parsed as a handshake.
    name: 'random frame bodies',
    payloads: () =>
      Array.from({ length: 16 }, () => {
        const body = randomBytes(random, 1 + random.nextInt(512));
        const header = Buffer.alloc(4);
        header.writeUInt32BE(body.byteLength, 0);
        return Buffer.concat([header, body]);
      }),
    counts: 'rejections',
  },
  {
    name: 'an oversized length prefix (0xFFFFFFFF)',
    payloads: () => [Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), randomBytes(random, 64)])],
    counts: 'rejections',
  },
  {
    name: 'a truncated frame',
    payloads: (target, peer, peerUid) => {
      const whole = hello(CLUSTER_ID, peer, target, peerUid);
      return [whole.subarray(0, 2), whole.subarray(0, whole.byteLength - 3)];
    },
    counts: 'rejections',
  },
  {
    name: 'a handshake with another cluster id, then a message',
    payloads: (target, peer, peerUid) => [
      Buffer.concat([hello('another-cluster', peer, target, peerUid), frame({ t: 'msg', m: heartbeat(peer, target) })]),
    ],
    counts: 'rejections',
  },
  {
    // The identity of a real peer, then messages that do not validate: the connection is
    // closed before anything reaches the core.
    name: 'a handshake from a known peer, then invalid messages',
    payloads: (target, peer, peerUid) =>
      [
        { t: 'msg', m: { ...heartbeat(peer, target), term: -1 } },
        { t: 'msg', m: { ...heartbeat(peer, target), term: 'one' } },
        { t: 'msg', m: { ...heartbeat(target, target) } }, // from someone other than the handshaken peer
        { t: 'msg', m: { type: 'MsgApp', from: peer, to: target, term: 1, index: 0, logTerm: 0, commit: 0, entries: [{ index: 5, term: 1, type: 'normal', data: Buffer.alloc(1) }] } },
        { t: 'msg', m: { type: 'MsgSnap', from: peer, to: target, term: 1, snapshot: { meta: { index: 1, term: 1, confState: { voters: [], learners: [] } }, data: Buffer.alloc(0) } } },
        { t: 'msg', m: { type: 'MsgNonsense', from: peer, to: target, term: 1 } },
        { t: 'something-else' },
      ].map((m) => Buffer.concat([hello(CLUSTER_ID, peer, target, peerUid), frame(m)])),
    counts: 'framesRejected', // past the handshake: the message itself is refused
  },
  {
    // A snapshot stream from a real peer's identity whose bytes are not a snapshot: the trailer
    // does not verify, or it does but the content is garbage, or the stream breaks off. The
    // node refuses it; the MsgSnap (with a term no one reached) never reaches the core.
    name: 'snapshot streams that do not verify',
    payloads: (target, peer, peerUid) => {
      const begin = Buffer.concat([hello(CLUSTER_ID, peer, target, peerUid, 'snapshot'), frame({ t: 'snap-begin', m: snapshotMessage(peer, target) })]);
      const chunk = randomBytes(random, 4096);
      const trailer = (crc: number): Buffer => frame({ t: 'snap-end', chunkCount: 1, byteCount: chunk.byteLength, crc32: crc });
      return [
        Buffer.concat([begin, frame({ t: 'snap-chunk', d: chunk }), trailer((crc32(chunk) + 1) >>> 0)]),
        Buffer.concat([begin, frame({ t: 'snap-chunk', d: chunk }), trailer(crc32(chunk))]),
        Buffer.concat([begin, frame({ t: 'snap-chunk', d: chunk })]),
      ];
    },
    counts: 'snapshotsRejected',
  },
  {
    // A known peer's name without its data directory id, or with another: a machine that was
    // replaced, or someone guessing. Refused at the handshake, before any message is read.
    name: 'a handshake from a known peer without its uid, or with another',
    payloads: (target, peer) => [
      Buffer.concat([hello(CLUSTER_ID, peer, target, undefined), frame({ t: 'msg', m: heartbeat(peer, target) })]),
      Buffer.concat([hello(CLUSTER_ID, peer, target, 'not-the-peers-uid'), frame({ t: 'msg', m: heartbeat(peer, target) })]),
    ],
    counts: 'rejections',
  },
];

function snapshotMessage(from: NodeId, to: NodeId): Message {
  const meta = { index: FOREIGN_TERM, term: FOREIGN_TERM, confState: { voters: ['n1', 'n2', 'n3'], learners: [] } };
  return { type: 'MsgSnap', from, to, term: FOREIGN_TERM, snapshot: { meta, data: new Uint8Array(0) } };
}

function heartbeat(from: NodeId, to: NodeId): Message {
  return { type: 'MsgHeartbeat', from, to, term: FOREIGN_TERM, commit: 0, commitTerm: 0, readRound: 0, leaseTick: 0 };
}

async function rejections(c: ProcessCluster, id: NodeId, counts: Attack['counts'] = 'rejections'): Promise<number> {
  const stats = await c.request(id, 'transportStats', {});
  if (counts === 'rejections') return stats.framesRejected + stats.handshakesRejected;
  return counts === 'framesRejected' ? stats.framesRejected : stats.snapshotsRejected;
}

async function expectNoForeignTerm(c: ProcessCluster): Promise<void> {
  for (const id of c.ids) expect((await c.status(id)).term, `node ${id} took a term from outside the cluster`).toBeLessThan(FOREIGN_TERM);
}

// ---------------------------------------------------------------------------------------------
// Raw access to a node's LevelDB log, as an operator's tool (or a failing disk) would touch it.

/**
 * Flips one byte inside the value of the log entry record in the middle of the log (after the
 * 4 checksum bytes, so that the checksum no longer matches) and returns that entry's index.
 */
async function corruptMiddleEntry(logDir: string): Promise<number> {
  const db = new ClassicLevel<string, Uint8Array>(logDir, { keyEncoding: 'utf8', valueEncoding: 'view' });
  await db.open();
  try {
    const keys = await db.keys({ gte: 'e/', lt: 'e0' }).all(); // 'e/' + hex digits; '0' sorts right after '/'
    expect(keys.length).toBeGreaterThan(10);
    const key = keys[Math.floor(keys.length / 2)]!;
    const record = await db.get(key);
    expect(record?.byteLength).toBeGreaterThan(5);
    const damaged = Uint8Array.from(record!);
    const last = damaged.byteLength - 1;
    damaged[last] = (damaged[last] ?? 0) ^ 0x5a;
    await db.put(key, damaged);
    return Number.parseInt(key.slice(2), 16);
  } finally {
    await db.close();
  }
}

// ---------------------------------------------------------------------------------------------

describe('bad input on the peer port and on disk', () => {
  it('garbage, oversized and truncated frames, another cluster and invalid messages: each connection is refused, no node exits, writes go on', async () => {
    cluster = await ProcessCluster.start({ nodes: 3, clusterId: CLUSTER_ID, ...FAST });
    const c = cluster;
    const leader = await c.leader();
    const follower = c.ids.find((id) => id !== leader)!;
    const acked = new Map<string, string>();
    const write = async (key: string): Promise<void> => {
      await c.put(key, `value of ${key}`);
      acked.set(key, `value of ${key}`);
    };
    for (let k = 0; k < 20; k++) await write(keyOf('before', k));

    let step = 0;
    for (const target of [follower, leader]) {
      const peer = c.ids.find((id) => id !== target && id !== (target === leader ? follower : leader))!;
      for (const attack of RAW_ATTACKS) {
        const payloads = attack.payloads(target, peer, (await c.status(peer)).uid);
        const before = await rejections(c, target, attack.counts);
        for (const bytes of payloads) await sendRaw(c.address(target), bytes);
        // A stream that broke off is refused once the node sees the close, a moment after ours.
        await waitFor(`${attack.name} → ${target}: ${payloads.length} refused`, async () => (await rejections(c, target, attack.counts)) >= before + payloads.length);
        expect(await rejections(c, target, attack.counts), `${attack.name} → ${target}: one refusal per connection`).toBe(before + payloads.length);
        await write(keyOf('after', step++));
        expectAllRunning(c);
      }
    }
    await expectNoForeignTerm(c);
    await expectAllReadable(c, acked);
  });

  it('a TcpTransport of another cluster, with the same node ids, is refused at the handshake', async () => {
    cluster = await ProcessCluster.start({ nodes: 3, clusterId: CLUSTER_ID, ...FAST });
    const c = cluster;
    const leader = await c.leader();
    const follower = c.ids.find((id) => id !== leader)!;
    await c.put('k', 'v');
    for (const [impostorId, target] of [
      [leader, follower],
      [follower, leader],
    ] as const) {
      const before = await rejections(c, target);
      const impostor = new TcpTransport({ id: impostorId, clusterId: 'another-cluster', listen: { host: '127.0.0.1', port: 0 }, peers: new Map([[target, c.address(target)]]) });
      await impostor.start({ onMessage: () => {}, onSnapshotStatus: () => {}, onUnreachable: () => {} }, { open: async function* () {}, receive: async () => {} });
      try {
        impostor.send(heartbeat(impostorId, target));
        await waitFor(`${target} refuses the impostor ${impostorId}`, () => (impostor.stats().peers.get(target)?.refused ?? 0) >= 1);
      } finally {
        await impostor.close();
      }
      expect(await rejections(c, target)).toBeGreaterThan(before);
      await c.put(`after-impostor-${impostorId}`, 'v');
      expectAllRunning(c);
    }
    await expectNoForeignTerm(c);
  });

  it('a corrupt log entry on disk: the node refuses to start (exit 2, RAFTKV_STORAGE_CORRUPT naming the directory and the index); the others serve on', async () => {
    cluster = await ProcessCluster.start({ nodes: 3, ...FAST });
    const c = cluster;
    const leader = await c.leader();
    const follower = c.ids.find((id) => id !== leader)!;
    const acked = new Map<string, string>();
    for (let k = 0; k < 50; k++) {
      await c.put(keyOf('before', k), `v${k}`);
      acked.set(keyOf('before', k), `v${k}`);
    }
    // The follower has the entries on its disk once it applied them.
    const { commit } = await c.status(leader);
    await waitFor(`${follower} applies index ${commit}`, async () => (await c.status(follower)).appliedIndexKv >= commit);
    await c.kill(follower);

    const logDir = join(c.nodeDataDir(follower), 'log');
    const index = await corruptMiddleEntry(logDir);
    const failure = await c.restart(follower).then(
      () => null,
      (error: unknown) => error,
    );
    expect(isNodeProcessError(failure, NodeProcessErrorCode.EXITED), `restart did not fail: ${String(failure)}`).toBe(true);
    expect(isNodeProcessError(failure) && failure.startFailureCode).toBe(ErrorCode.STORAGE_CORRUPT);
    expect(c.exitStatus(follower)).toEqual({ code: EXIT_START_FAILED, signal: null });
    const line = c.stderr(follower).split('\n').find((l) => l.includes(ErrorCode.STORAGE_CORRUPT));
    expect(line, `stderr:\n${c.stderr(follower)}`).toBeDefined();
    expect(line).toContain(logDir);
    expect(line).toMatch(new RegExp(`\\b${index}\\b`));

    for (let k = 0; k < 20; k++) {
      await c.put(keyOf('after', k), `a${k}`);
      acked.set(keyOf('after', k), `a${k}`);
    }
    await expectAllReadable(c, acked);
    expect(c.running).toEqual(c.ids.filter((id) => id !== follower));
  });
});
