import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { killSocket, ProxyNetwork, ProxyNetworkError, ProxyNetworkErrorCode, type ProxyNetworkOptions } from '../src/nemesis/proxy.js';

/**
 * The fault-injecting proxy over real sockets on 127.0.0.1. Targets are small echo or sink
 * servers; every test polls for the condition it expects (no fixed sleeps) and closes all it opens.
 */

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (let cleanup = cleanups.pop(); cleanup !== undefined; cleanup = cleanups.pop()) await cleanup();
});

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

async function startNetwork(options: Partial<ProxyNetworkOptions> = {}): Promise<ProxyNetwork> {
  const network = await ProxyNetwork.start({ nodes: ['a', 'b', 'c'], ...options });
  cleanups.push(() => network.close());
  return network;
}

function hostPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
}

/**
 * A target: 'echo' writes back what it reads (after `tag`, if any); 'sink' accepts connections
 * paused and reads nothing until `readAll()`.
 */
class TestServer {
  readonly sockets: Socket[] = [];
  /** What each accepted socket has read, in accept order (sink) or its byte count (both). */
  readonly chunks: Buffer[][] = [];
  receivedBytes = 0;
  address = '';
  readonly #server: Server;

  private constructor(kind: 'echo' | 'sink', tag: string) {
    this.#server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: kind === 'sink' }, (socket) => {
      const chunks: Buffer[] = [];
      this.sockets.push(socket);
      this.chunks.push(chunks);
      socket.on('error', () => undefined);
      if (kind === 'sink') return;
      socket.on('data', (chunk: Buffer) => {
        this.receivedBytes += chunk.length;
      });
      if (tag !== '') socket.write(tag);
      socket.pipe(socket);
    });
  }

  static async start(kind: 'echo' | 'sink', tag = ''): Promise<TestServer> {
    const server = new TestServer(kind, tag);
    await new Promise<void>((resolve) => server.#server.listen({ host: '127.0.0.1', port: 0 }, resolve));
    server.address = `127.0.0.1:${(server.#server.address() as AddressInfo).port}`;
    cleanups.push(() => server.close());
    return server;
  }

  get accepted(): number {
    return this.sockets.length;
  }

  /** Sink: starts reading every socket accepted so far. */
  readAll(): void {
    this.sockets.forEach((socket, i) => {
      socket.on('data', (chunk: Buffer) => {
        this.receivedBytes += chunk.length;
        this.chunks[i]?.push(chunk);
      });
      socket.resume();
    });
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A client connection that records what it receives and how it ended. */
class Client {
  readonly socket: Socket;
  readonly chunks: Buffer[] = [];
  /** Resolves when the socket closes, with the error it saw (null for a clean close). */
  readonly closed: Promise<NodeJS.ErrnoException | null>;
  isClosed = false;
  ended = false;

  constructor(address: string) {
    this.socket = connect({ ...hostPort(address), allowHalfOpen: true, noDelay: true });
    let error: NodeJS.ErrnoException | null = null;
    this.socket.on('data', (chunk: Buffer) => this.chunks.push(chunk));
    this.socket.on('end', () => {
      this.ended = true;
    });
    this.socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e;
    });
    this.closed = new Promise((resolve) =>
      this.socket.on('close', () => {
        this.isClosed = true;
        resolve(error);
      }),
    );
    cleanups.push(async () => {
      this.socket.destroy();
      await this.closed;
    });
  }

  static async open(address: string): Promise<Client> {
    const client = new Client(address);
    await new Promise<void>((resolve, reject) => {
      client.socket.once('connect', resolve);
      client.socket.once('error', reject);
    });
    return client;
  }

  get receivedBytes(): number {
    return this.chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }

  /** Writes `message` and waits for `expected` (default: the message) to be the end of what came back. */
  async roundTrip(message: string, expected = message): Promise<number> {
    const startMs = performance.now();
    const before = this.text();
    this.socket.write(message);
    await waitFor(() => this.text() === before + expected, `echo of ${JSON.stringify(message)}`);
    return performance.now() - startMs;
  }
}

/** A seeded generator, so jitter schedules are reproducible. */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

describe('ProxyNetwork: pass-through', () => {
  it('forwards both ways in order, an 8 MiB payload included', async () => {
    const network = await startNetwork();
    const echo = await TestServer.start('echo');
    network.setTarget('b', 'raft', echo.address);
    const client = await Client.open(network.address('a', 'b'));
    await client.roundTrip('hello');

    const payload = randomBytes(8 * 1024 * 1024);
    client.socket.end(payload);
    await waitFor(() => client.ended, 'the echo to end', 10_000);
    expect(Buffer.concat(client.chunks).equals(Buffer.concat([Buffer.from('hello'), payload]))).toBe(true);
    await client.closed;
    await waitFor(() => network.stats('a', 'b').open === 0, 'the connection to close');
    expect(network.stats('a', 'b')).toEqual({ connections: 1, open: 0, bytesForwarded: 2 * (payload.length + 5), bytesDropped: 0, resets: 0 });
  });

  it('keeps back-pressure: a target that does not read stalls the sender, then gets every byte', async () => {
    const network = await startNetwork();
    const sink = await TestServer.start('sink');
    network.setTarget('b', 'raft', sink.address);
    const client = await Client.open(network.address('a', 'b'));
    const payload = randomBytes(48 * 1024 * 1024);
    for (let offset = 0; offset < payload.length; offset += 1024 * 1024) client.socket.write(payload.subarray(offset, offset + 1024 * 1024));

    // Wait until the proxy stops forwarding (stable for 100 ms): it stopped reading the client.
    let last = -1;
    let stableSinceMs = performance.now();
    await waitFor(() => {
      const forwarded = network.stats('a', 'b').bytesForwarded;
      if (forwarded !== last) [last, stableSinceMs] = [forwarded, performance.now()];
      return forwarded > 0 && performance.now() - stableSinceMs > 100;
    }, 'forwarding to stall');
    expect(network.stats('a', 'b').bytesForwarded).toBeLessThan(payload.length);
    expect(client.socket.writableLength).toBeGreaterThan(0);

    sink.readAll();
    await waitFor(() => sink.receivedBytes === payload.length, 'the sink to read everything', 10_000);
    expect(Buffer.concat(sink.chunks[0] ?? []).equals(payload)).toBe(true);
    expect(network.stats('a', 'b').bytesForwarded).toBe(payload.length);
  });

  it('carries the http channel on its own listener, and router() records the target', async () => {
    const network = await startNetwork();
    const raftEcho = await TestServer.start('echo', 'raft:');
    const httpEcho = await TestServer.start('echo', 'http:');
    const raftRoute = network.router();
    const httpRoute = network.router('http');
    expect(raftRoute('a', 'b', raftEcho.address)).toBe(network.address('a', 'b', 'raft'));
    expect(httpRoute('c', 'b', httpEcho.address)).toBe(network.address('c', 'b', 'http'));

    const addresses = new Set<string>();
    for (const from of network.nodes) {
      for (const to of network.nodes) {
        if (from === to) continue;
        for (const channel of network.channels) addresses.add(network.address(from, to, channel));
      }
    }
    expect(addresses.size).toBe(3 * 2 * 2);

    // The http target of b serves every sender, including one whose router call came from c.
    const http = await Client.open(network.address('a', 'b', 'http'));
    await http.roundTrip('GET', 'http:GET');
    const raft = await Client.open(network.address('a', 'b', 'raft'));
    await raft.roundTrip('frame', 'raft:frame');
    expect(network.stats('a', 'b').connections).toBe(2);
  });

  it('setTarget applies to new connections; without a target a connection is closed at once', async () => {
    const network = await startNetwork();
    const first = await TestServer.start('echo', 'one:');
    const second = await TestServer.start('echo', 'two:');

    const early = new Client(network.address('a', 'b'));
    await waitFor(() => early.ended, 'the proxy to close the connection');
    expect(early.receivedBytes).toBe(0);

    network.setTarget('b', 'raft', first.address);
    const old = await Client.open(network.address('a', 'b'));
    await old.roundTrip('x', 'one:x');
    network.setTarget('b', 'raft', second.address);
    const fresh = await Client.open(network.address('c', 'b'));
    await fresh.roundTrip('y', 'two:y');
    await old.roundTrip('z');
    expect(network.stats('a', 'b').connections).toBe(2);
  });

  it('resets the client when the target refuses the connection', async () => {
    const network = await startNetwork();
    const gone = await TestServer.start('echo');
    const goneAddress = gone.address;
    await gone.close();
    network.setTarget('b', 'raft', goneAddress);
    const refused = new Client(network.address('a', 'b'));
    expect((await refused.closed)?.code).toBe('ECONNRESET');
    await waitFor(() => network.stats('a', 'b').open === 0, 'the proxy to let go of the connection');
  });
});

describe('ProxyNetwork: drop', () => {
  it('swallows both directions without back-pressure; heal resets the connections with holes', async () => {
    const network = await startNetwork();
    const echo = await TestServer.start('echo');
    network.setTarget('b', 'raft', echo.address);
    const holed = await Client.open(network.address('a', 'b'));
    await holed.roundTrip('ping');
    const fromTarget = await Client.open(network.address('a', 'b'));
    await fromTarget.roundTrip('ping');

    await network.cut('a', 'b', 'drop');
    expect(network.links().find((link) => link.from === 'a' && link.to === 'b')?.fault).toBe('drop');
    // 8 MiB into the blackhole: the proxy reads it all (the sender's buffer empties), nothing arrives.
    const bulk = randomBytes(8 * 1024 * 1024);
    holed.socket.write(bulk);
    await waitFor(() => network.stats('a', 'b').bytesDropped === bulk.length, 'the proxy to drop every byte', 10_000);
    expect(holed.socket.writableLength).toBe(0);
    expect(echo.receivedBytes).toBe(8);
    // The other direction too: bytes the target writes never reach the client.
    echo.sockets[1]?.write('from target');
    await waitFor(() => network.stats('a', 'b').bytesDropped === bulk.length + 11, 'the reply to be dropped');
    expect(fromTarget.text()).toBe('ping');
    // A new connection is accepted, its bytes dropped, and the target never dialed.
    const during = await Client.open(network.address('a', 'b'));
    during.socket.write('lost');
    await waitFor(() => network.stats('a', 'b').bytesDropped === bulk.length + 15, 'the new connection to be dropped');
    expect(echo.accepted).toBe(2);
    expect(holed.isClosed || fromTarget.isClosed || during.isClosed).toBe(false);

    await network.healAll();
    await Promise.all([holed.closed, fromTarget.closed, during.closed]);
    expect(network.stats('a', 'b')).toMatchObject({ connections: 3, resets: 3, bytesForwarded: 16 });
    const after = await Client.open(network.address('a', 'b'));
    await after.roundTrip('back');
  });

  it('lets connections that lost nothing survive the heal', async () => {
    const network = await startNetwork();
    const echo = await TestServer.start('echo');
    network.setTarget('b', 'raft', echo.address);
    const quiet = await Client.open(network.address('a', 'b'));
    await quiet.roundTrip('before');
    const noisy = await Client.open(network.address('a', 'b'));

    await network.cut('a', 'b', 'drop');
    noisy.socket.write('hole');
    await waitFor(() => network.stats('a', 'b').bytesDropped === 4, 'the drop');
    await network.healAll();
    expect((await noisy.closed)?.code).toBe('ECONNRESET');
    expect(network.links().every((link) => link.fault === null && link.delay === null)).toBe(true);

    await quiet.roundTrip('after');
    expect(quiet.isClosed).toBe(false);
    expect(network.stats('a', 'b')).toMatchObject({ connections: 2, open: 1, resets: 1 });
  });

  it('is one-way: cutting a -> b leaves b -> a and a -> c alone', async () => {
    const network = await startNetwork();
    const echo = await TestServer.start('echo');
    for (const node of network.nodes) network.setTarget(node, 'raft', echo.address);
    await network.cut('a', 'b', 'drop');

    const cut = await Client.open(network.address('a', 'b'));
    cut.socket.write('x');
    await waitFor(() => network.stats('a', 'b').bytesDropped === 1, 'the drop');
    const reverse = await Client.open(network.address('b', 'a'));
    await reverse.roundTrip('reverse');
    const other = await Client.open(network.address('a', 'c'));
    await other.roundTrip('other');
    expect(network.links().filter((link) => link.fault !== null)).toEqual([{ from: 'a', to: 'b', fault: 'drop', delay: null }]);
    expect(network.links().map((link) => `${link.from}${link.to}`)).toEqual(['ab', 'ac', 'ba', 'bc', 'ca', 'cb']);
  });
});

describe('ProxyNetwork: reset', () => {
  it('resets open connections on every channel, refuses new ones at once, and heals', async () => {
    const network = await startNetwork();
    const echo = await TestServer.start('echo');
    for (const node of network.nodes) network.setTarget(node, 'raft', echo.address);
    network.setTarget('b', 'http', echo.address);
    const raft = await Client.open(network.address('a', 'b', 'raft'));
    await raft.roundTrip('raft');
    const http = await Client.open(network.address('a', 'b', 'http'));
    await http.roundTrip('http');
    const reverse = await Client.open(network.address('b', 'a'));

    await network.cut('a', 'b', 'reset');
    expect((await raft.closed)?.code).toBe('ECONNRESET');
    expect((await http.closed)?.code).toBe('ECONNRESET');
    // The target's side of both connections was reset too.
    await waitFor(() => echo.sockets.slice(0, 2).every((socket) => socket.destroyed), 'the upstream sockets to close');
    expect(echo.sockets[2]?.destroyed).toBe(false);

    const refused = new Client(network.address('a', 'b'));
    expect((await refused.closed)?.code).toBe('ECONNRESET');
    expect(echo.accepted).toBe(3); // raft, http and reverse: the refused one was never dialed
    expect(network.stats('a', 'b')).toMatchObject({ connections: 3, resets: 3 });
    expect(reverse.isClosed).toBe(false);

    await network.healAll();
    const healed = await Client.open(network.address('a', 'b'));
    await healed.roundTrip('healed');
  });

  it('cut reset after a drop destroys the connections the drop held', async () => {
    const network = await startNetwork();
    const echo = await TestServer.start('echo');
    network.setTarget('b', 'raft', echo.address);
    await network.cut('a', 'b', 'drop');
    const held = await Client.open(network.address('a', 'b'));
    await network.cut('a', 'b', 'reset');
    expect((await held.closed)?.code).toBe('ECONNRESET');
    expect(echo.accepted).toBe(0);
  });
});

describe('ProxyNetwork: delay', () => {
  it('adds delayMs to each direction of the link only', async () => {
    const network = await startNetwork();
    const echo = await TestServer.start('echo');
    for (const node of network.nodes) network.setTarget(node, 'raft', echo.address);
    const delayed = await Client.open(network.address('a', 'b'));
    const reverse = await Client.open(network.address('b', 'a'));
    await network.delay('a', 'b', { delayMs: 60, jitterMs: 0 });
    expect(network.links()[0]).toEqual({ from: 'a', to: 'b', fault: null, delay: { delayMs: 60, jitterMs: 0 } });

    // A round trip crosses the link twice (request and echo).
    expect(await delayed.roundTrip('slow')).toBeGreaterThanOrEqual(120);
    expect(await reverse.roundTrip('fast')).toBeLessThan(60);
  });

  it('keeps byte order under jitter', async () => {
    const network = await startNetwork({ random: lcg(7) });
    const echo = await TestServer.start('echo');
    network.setTarget('b', 'raft', echo.address);
    const client = await Client.open(network.address('a', 'b'));
    await network.delay('a', 'b', { delayMs: 1, jitterMs: 40 });

    let expected = '';
    for (let i = 0; i < 200; i += 1) {
      const line = `${i}\n`;
      expected += line;
      client.socket.write(line);
      // Let the proxy read each line as its own chunk, so each gets its own draw.
      if (i % 2 === 0) await sleep(1);
    }
    await waitFor(() => client.receivedBytes === expected.length, 'every line to come back');
    expect(client.text()).toBe(expected);
  });

  it('removing the delay lets scheduled chunks go at their time, and new ones behind them', async () => {
    const network = await startNetwork();
    const echo = await TestServer.start('echo');
    network.setTarget('b', 'raft', echo.address);
    const client = await Client.open(network.address('a', 'b'));
    await network.delay('a', 'b', { delayMs: 150, jitterMs: 0 });

    const startMs = performance.now();
    client.socket.write('first.');
    await sleep(20);
    await network.delay('a', 'b', null);
    client.socket.write('second.');
    await waitFor(() => client.text() === 'first.second.', 'both chunks, in order');
    expect(performance.now() - startMs).toBeGreaterThanOrEqual(150);
    expect(echo.receivedBytes).toBe(13);

    expect(await client.roundTrip('third.')).toBeLessThan(100);
  });

  it('a drop catches chunks still waiting in a delay', async () => {
    const network = await startNetwork();
    const echo = await TestServer.start('echo');
    network.setTarget('b', 'raft', echo.address);
    const client = await Client.open(network.address('a', 'b'));
    await network.delay('a', 'b', { delayMs: 50, jitterMs: 0 });
    client.socket.write('late');
    await waitFor(() => network.stats('a', 'b').open === 1 && client.socket.writableLength === 0, 'the write');
    await network.cut('a', 'b', 'drop');
    await waitFor(() => network.stats('a', 'b').bytesDropped === 4, 'the delayed chunk to be dropped');
    expect(echo.receivedBytes).toBe(0);
  });
});

describe('ProxyNetwork: validation and close', () => {
  it('rejects unknown nodes, self links, bad delays, bad addresses and unproxied channels', async () => {
    await expect(ProxyNetwork.start({ nodes: [] })).rejects.toThrow(/nodes must not be empty/);
    await expect(ProxyNetwork.start({ nodes: ['a', 'a'] })).rejects.toThrow(/duplicate node id/);
    await expect(ProxyNetwork.start({ nodes: ['a', 'b'], channels: [] })).rejects.toThrow(/channels must not be empty/);
    const network = await startNetwork({ channels: ['raft'] });

    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (error) {
        return error instanceof ProxyNetworkError ? error.code : 'not a ProxyNetworkError';
      }
      return undefined;
    };
    expect(code(() => network.address('a', 'z'))).toBe(ProxyNetworkErrorCode.INVALID_ARGUMENT);
    expect(() => network.address('a', 'a')).toThrow(/two different nodes/);
    expect(() => network.address('a', 'b', 'http')).toThrow(/channel "http" is not proxied/);
    expect(() => network.setTarget('z', 'raft', '127.0.0.1:1')).toThrow(/unknown node "z"/);
    expect(() => network.setTarget('b', 'raft', '127.0.0.1')).toThrow(/host:port/);
    expect(() => network.setTarget('b', 'raft', '127.0.0.1:0')).toThrow(/host:port/);
    expect(() => network.router('http')).toThrow(/not proxied/);
    await expect(network.cut('q', 'b', 'drop')).rejects.toThrow(/unknown node "q"/);
    await expect(network.cut('b', 'b', 'reset')).rejects.toThrow(/two different nodes/);
    await expect(network.delay('a', 'b', { delayMs: -1, jitterMs: 0 })).rejects.toThrow(/delayMs must be/);
    await expect(network.delay('a', 'b', { delayMs: 1, jitterMs: Number.NaN })).rejects.toThrow(/jitterMs must be/);
    expect(() => network.stats('a', 'nobody')).toThrow(/unknown node/);
    network.setTarget('b', 'raft', '[::1]:8080');
  });

  it('close() releases every listener, socket and timer, and is idempotent', async () => {
    // Handles close asynchronously, and earlier tests' may still be closing: compare counts per kind.
    const kinds = ['TCPServerWrap', 'TCPSocketWrap', 'Timeout'];
    const resources = (): number[] => {
      const active = process.getActiveResourcesInfo();
      return kinds.map((kind) => active.filter((name) => name === kind).length);
    };
    const before = resources();

    const echo = await TestServer.start('echo');
    const network = await ProxyNetwork.start({ nodes: ['a', 'b', 'c'] });
    network.setTarget('b', 'raft', echo.address);
    const client = await Client.open(network.address('a', 'b'));
    await network.delay('a', 'b', { delayMs: 10_000, jitterMs: 0 });
    client.socket.write('pending in a timer');
    await waitFor(() => client.socket.writableLength === 0, 'the write');
    const addresses = network.links().map(({ from, to }) => network.address(from, to));

    await Promise.all([network.close(), network.close()]);
    await network.close();
    expect((await client.closed)?.code).toBe('ECONNRESET');
    expect(network.stats('a', 'b').open).toBe(0);
    await expect(network.cut('a', 'b', 'drop')).rejects.toThrow(/closed/);
    expect(() => network.address('a', 'b')).toThrow(/closed/);
    for (const address of addresses) {
      const probe = new Client(address);
      expect((await probe.closed)?.code).toBe('ECONNREFUSED');
    }
    await echo.close();
    await waitFor(() => resources().every((count, i) => count <= (before[i] ?? 0)), 'no more handles than before the test');
  });
});

/** Resolves with what settled first: `promise` ('settled') or the timeout ('timed out'). */
function within(promise: Promise<unknown>, ms: number): Promise<'settled' | 'timed out'> {
  return Promise.race([promise.then(() => 'settled' as const), sleep(ms).then(() => 'timed out' as const)]);
}

/** Keeps the event loop busy for `ms`: timers that come due meanwhile then run in one timers phase. */
function block(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe('ProxyNetwork: a reset right after a forwarded FIN', () => {
  // end() queues a shutdown that libuv carries out at the loop's next pending phase; until then
  // uv_tcp_close_reset refuses the handle (EINVAL), and Node 20 leaves it half-closed for good:
  // no 'close', and the process spins in its exit path (Environment::CleanupHandles) forever.
  it('killSocket resets a socket whose shutdown is still queued, and the socket closes', async () => {
    const sink = await TestServer.start('sink');
    const client = await Client.open(sink.address);
    await waitFor(() => sink.accepted === 1, 'the accept');
    client.socket.end(); // nothing buffered: the shutdown is queued at once
    killSocket(client.socket, true);
    expect(await within(client.closed, 2_000)).toBe('settled');
    expect(await client.closed).toBeNull(); // no EINVAL from a refused reset
  });

  it('killSocket resets at once a socket whose end() still waits for buffered writes', async () => {
    const sink = await TestServer.start('sink'); // reads nothing: the write below stays buffered
    const client = await Client.open(sink.address);
    client.socket.write(Buffer.alloc(32 * 1024 * 1024));
    client.socket.end();
    expect(client.socket.writableLength).toBeGreaterThan(0);
    killSocket(client.socket, true);
    expect(client.socket.destroyed).toBe(true);
    expect(await within(client.closed, 2_000)).toBe('settled');
  });

  it('a reset cut in the timers phase that delivered a delayed FIN: the connection closes, and close() returns', async () => {
    const echo = await TestServer.start('echo');
    const network = await startNetwork({ channels: ['raft'] });
    network.setTarget('b', 'raft', echo.address);
    await network.delay('a', 'b', { delayMs: 30, jitterMs: 0 });
    const client = await Client.open(network.address('a', 'b'));
    await waitFor(() => echo.accepted === 1, 'the proxy to dial the target');

    // The proxy reads the FIN at once and forwards it from a timer 30 ms later (upstream.end()).
    // Blocking the loop from 10 to 50 ms makes that timer and the cut at 35 ms run in one timers
    // phase, with no pending phase (where libuv carries out the shutdown) between them.
    client.socket.end();
    setTimeout(() => block(40), 10);
    await sleep(35);
    await network.cut('a', 'b', 'reset');

    expect(await within(client.closed, 2_000)).toBe('settled');
    await waitFor(() => network.stats('a', 'b').open === 0, 'both sockets of the connection to close');
    expect(await within(network.close(), 2_000)).toBe('settled');
  });
});
