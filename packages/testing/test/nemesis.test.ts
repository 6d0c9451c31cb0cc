/**
 * The nemesis against a fake network and fake processes: each named fault hits exactly the
 * links and processes it says, stop undoes it, a seed names a schedule, and a schedule leaves
 * nothing cut, dead or paused behind.
 */
import type { NodeId } from '@raftkv/raft';
import { describe, expect, it } from 'vitest';
import type { LinkControl, LinkDelay, LinkFaultMode, LinkState } from '../src/nemesis/links.js';
import { FAULT_KINDS, Nemesis, type FaultKind, type NemesisTarget } from '../src/nemesis/nemesis.js';

class FakeNetwork implements LinkControl {
  nodes: readonly NodeId[];
  readonly supportsDelay: boolean;
  readonly faults = new Map<string, LinkFaultMode>();
  readonly delays = new Map<string, LinkDelay>();
  /** How many times a partition was put up (cut calls in a row count once per healAll). */
  heals = 0;

  constructor(nodes: readonly NodeId[], supportsDelay = true) {
    this.nodes = nodes;
    this.supportsDelay = supportsDelay;
  }

  cut(from: NodeId, to: NodeId, mode: LinkFaultMode): Promise<void> {
    expect(from).not.toBe(to);
    expect(this.nodes).toContain(from);
    expect(this.nodes).toContain(to);
    this.faults.set(`${from}->${to}`, mode);
    return Promise.resolve();
  }

  delay(from: NodeId, to: NodeId, delay: LinkDelay | null): Promise<void> {
    if (delay === null) this.delays.delete(`${from}->${to}`);
    else this.delays.set(`${from}->${to}`, delay);
    return Promise.resolve();
  }

  healAll(): Promise<void> {
    this.faults.clear();
    this.delays.clear();
    this.heals++;
    return Promise.resolve();
  }

  links(): LinkState[] {
    return this.nodes.flatMap((from) =>
      this.nodes.filter((to) => to !== from).map((to) => ({ from, to, fault: this.faults.get(`${from}->${to}`) ?? null, delay: this.delays.get(`${from}->${to}`) ?? null })),
    );
  }

  addNode(id: NodeId): Promise<void> {
    this.nodes = [...this.nodes, id];
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  cutLinks(): string[] {
    return [...this.faults.keys()].sort();
  }
}

class FakeCluster implements NemesisTarget {
  ids: readonly NodeId[];
  readonly network: FakeNetwork;
  readonly roles = new Map<NodeId, 'voter' | 'learner'>();
  readonly membership;
  readonly state = new Map<NodeId, 'up' | 'dead' | 'paused'>();
  readonly log: string[] = [];
  currentLeader: NodeId | null;
  readonly processes;

  constructor(count: number, options: { processes?: boolean; supportsDelay?: boolean } = {}) {
    this.ids = Array.from({ length: count }, (_, k) => `n${k + 1}`);
    this.network = new FakeNetwork(this.ids, options.supportsDelay ?? true);
    for (const id of this.ids) this.state.set(id, 'up');
    this.currentLeader = this.ids[0]!;
    const expectState = (id: NodeId, state: 'up' | 'dead' | 'paused'): void => expect(this.state.get(id), `${id}`).toBe(state);
    this.processes =
      options.processes === false
        ? undefined
        : {
            kill: (id: NodeId) => {
              expect(this.state.get(id)).not.toBe('dead');
              this.state.set(id, 'dead');
              this.log.push(`kill ${id}`);
              if (this.currentLeader === id) this.currentLeader = null;
              return Promise.resolve();
            },
            restart: (id: NodeId) => {
              expectState(id, 'dead');
              this.state.set(id, 'up');
              this.log.push(`restart ${id}`);
              this.currentLeader ??= id;
              return Promise.resolve();
            },
            pause: (id: NodeId) => {
              expectState(id, 'up');
              this.state.set(id, 'paused');
              this.log.push(`pause ${id}`);
            },
            resume: (id: NodeId) => {
              expectState(id, 'paused');
              this.state.set(id, 'up');
              this.log.push(`resume ${id}`);
            },
            stop: (id: NodeId) => {
              expectState(id, 'up');
              this.state.set(id, 'dead');
              this.log.push(`stop ${id}`);
              if (this.currentLeader === id) this.currentLeader = null;
              return Promise.resolve();
            },
          };
    for (const id of this.ids) this.roles.set(id, 'voter');
    let next = count + 1;
    this.membership =
      options.processes === false
        ? undefined
        : {
            add: async ({ autoPromote }: { autoPromote: boolean }) => {
              const id = `n${next++}`;
              await this.network.addNode(id);
              this.ids = [...this.ids, id];
              this.state.set(id, 'up');
              this.roles.set(id, autoPromote ? 'voter' : 'learner'); // the leader promotes it soon
              this.log.push(`add ${id}${autoPromote ? ' (auto)' : ''}`);
              return id;
            },
            promote: (id: NodeId) => {
              expect(this.roles.get(id)).toBe('learner');
              this.roles.set(id, 'voter');
              this.log.push(`promote ${id}`);
              return Promise.resolve();
            },
            remove: (id: NodeId) => {
              expect(this.ids).toContain(id);
              this.ids = this.ids.filter((m) => m !== id);
              this.state.delete(id);
              this.roles.delete(id);
              this.log.push(`remove ${id}`);
              if (this.currentLeader === id) this.currentLeader = this.ids[0]!;
              return Promise.resolve();
            },
            members: () => Promise.resolve([...this.roles].map(([id, role]) => ({ id, role }))),
          };
  }

  leader(): Promise<NodeId | null> {
    return Promise.resolve(this.currentLeader);
  }

  allUp(): boolean {
    return [...this.state.values()].every((s) => s === 'up');
  }
}

const both = (a: string, b: string): string[] => [`${a}->${b}`, `${b}->${a}`];

describe('Nemesis: building blocks', () => {
  it('isolate cuts every link to and from one node, and only those', async () => {
    const cluster = new FakeCluster(5);
    const nemesis = new Nemesis(cluster);
    await nemesis.isolate('n3', 'reset');
    expect(cluster.network.cutLinks()).toEqual(['n1', 'n2', 'n4', 'n5'].flatMap((x) => both('n3', x)).sort());
    expect(new Set(cluster.network.faults.values())).toEqual(new Set(['reset']));
    await nemesis.healAll();
    expect(cluster.network.cutLinks()).toEqual([]);
  });

  it('partition cuts both directions between the groups and nothing inside them', async () => {
    const cluster = new FakeCluster(5);
    const nemesis = new Nemesis(cluster);
    await nemesis.partition(['n1', 'n2'], ['n3', 'n4', 'n5']);
    const cut = cluster.network.cutLinks();
    expect(cut).toHaveLength(12);
    for (const inside of [...both('n1', 'n2'), ...both('n3', 'n4'), ...both('n4', 'n5'), ...both('n3', 'n5')]) expect(cut).not.toContain(inside);
  });
});

describe('Nemesis: named faults', () => {
  it('isolate-leader hits the leader; stop heals', async () => {
    const cluster = new FakeCluster(3);
    cluster.currentLeader = 'n2';
    const nemesis = new Nemesis(cluster);
    const episode = await nemesis.start('isolate-leader');
    expect(cluster.network.cutLinks()).toEqual([...both('n2', 'n1'), ...both('n2', 'n3')].sort());
    await episode.stop();
    expect(cluster.network.cutLinks()).toEqual([]);
    expect(nemesis.events.map((e) => `${e.kind} ${e.phase}`)).toEqual(['isolate-leader start', 'isolate-leader stop']);
  });

  it("one-way cuts only the leader's outgoing links", async () => {
    const cluster = new FakeCluster(3);
    cluster.currentLeader = 'n3';
    const nemesis = new Nemesis(cluster);
    await nemesis.start('one-way');
    expect(cluster.network.cutLinks()).toEqual(['n3->n1', 'n3->n2']);
  });

  it('split cuts a minority from the majority; bridge keeps one node linked to both halves', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const cluster = new FakeCluster(5);
      const nemesis = new Nemesis(cluster, { seed });
      await nemesis.start('split');
      // A minority of k nodes from a majority of 5-k: 2k(5-k) directed links, k in {1, 2}.
      expect([8, 12]).toContain(cluster.network.cutLinks().length);
      await nemesis.healAll();

      await nemesis.start('bridge');
      const cut = cluster.network.cutLinks();
      const touched = new Set(cut.flatMap((link) => link.split('->')));
      const bridges = cluster.ids.filter((id) => !touched.has(id));
      expect(bridges, `seed ${seed}: one node keeps every link`).toHaveLength(1);
      expect(cut).toHaveLength(8); // 2 | 2 around the bridge: 2 * 2 * 2 directed links
      await nemesis.healAll();
    }
  });

  it('slow-network delays every link; it is unsupported where the network has no delay', async () => {
    const cluster = new FakeCluster(3);
    const nemesis = new Nemesis(cluster);
    await nemesis.start('slow-network');
    expect(cluster.network.delays.size).toBe(6);
    for (const delay of cluster.network.delays.values()) {
      expect(delay.delayMs).toBeGreaterThanOrEqual(20);
      expect(delay.delayMs).toBeLessThanOrEqual(150);
    }
    await nemesis.healAll();
    expect(cluster.network.delays.size).toBe(0);

    const noDelay = new Nemesis(new FakeCluster(3, { supportsDelay: false }));
    expect(noDelay.supports('slow-network')).toBe(false);
    await expect(noDelay.start('slow-network')).rejects.toThrow(/not supported/);
  });

  it('flapping puts partitions up and down while it holds, and leaves every link healed', async () => {
    const cluster = new FakeCluster(3);
    const nemesis = new Nemesis(cluster);
    await nemesis.run('flapping', 2_500);
    expect(cluster.network.heals).toBeGreaterThanOrEqual(2);
    expect(cluster.network.cutLinks()).toEqual([]);
    expect(nemesis.events.some((e) => e.kind === 'flapping' && /[1-9]\d* partitions put up/.test(e.detail))).toBe(true);
  });

  it('kill-leader kills the leader and stop restarts it; kill-minority kills a minority', async () => {
    const cluster = new FakeCluster(5);
    cluster.currentLeader = 'n4';
    const nemesis = new Nemesis(cluster, { seed: 3 });
    const episode = await nemesis.start('kill-leader');
    expect(cluster.state.get('n4')).toBe('dead');
    await episode.stop();
    expect(cluster.log).toEqual(['kill n4', 'restart n4']);
    expect(cluster.allUp()).toBe(true);

    const minority = await nemesis.start('kill-minority');
    const dead = cluster.ids.filter((id) => cluster.state.get(id) === 'dead');
    expect(dead.length).toBeGreaterThanOrEqual(1);
    expect(dead.length).toBeLessThanOrEqual(2);
    await minority.stop();
    expect(cluster.allUp()).toBe(true);
  });

  it('pause-leader stops the leader and stop resumes it', async () => {
    const cluster = new FakeCluster(3);
    cluster.currentLeader = 'n1';
    const nemesis = new Nemesis(cluster);
    const episode = await nemesis.start('pause-leader');
    expect(cluster.state.get('n1')).toBe('paused');
    await episode.stop();
    expect(cluster.log).toEqual(['pause n1', 'resume n1']);
  });

  it('rolling-restart kills and restarts every node in turn, the leader last', async () => {
    const cluster = new FakeCluster(3);
    cluster.currentLeader = 'n2';
    const nemesis = new Nemesis(cluster);
    await nemesis.run('rolling-restart', 10);
    expect(cluster.log).toHaveLength(6);
    expect(cluster.log.slice(-2)).toEqual(['kill n2', 'restart n2']);
    for (let k = 0; k < 6; k += 2) expect(cluster.log[k + 1]).toBe(cluster.log[k]!.replace('kill', 'restart'));
    expect(cluster.allUp()).toBe(true);
  });

  it('stop-leader stops the leader with SIGTERM and restarts it; graceful-rolling-restart stops every node in turn, the leader last', async () => {
    const cluster = new FakeCluster(3);
    cluster.currentLeader = 'n3';
    const nemesis = new Nemesis(cluster);
    await nemesis.run('stop-leader', 10);
    expect(cluster.log).toEqual(['stop n3', 'restart n3']);
    cluster.log.length = 0;
    cluster.currentLeader = 'n1';
    await nemesis.run('graceful-rolling-restart', 10);
    expect(cluster.log).toHaveLength(6);
    expect(cluster.log.slice(-2)).toEqual(['stop n1', 'restart n1']);
    expect(cluster.allUp()).toBe(true);
  });

  it('replace-node kills a member, removes it and adds a new machine under a new id, promoted once caught up', async () => {
    const victims = new Set<NodeId>();
    for (let seed = 1; seed <= 8; seed++) {
      const cluster = new FakeCluster(3);
      cluster.currentLeader = 'n2';
      const nemesis = new Nemesis(cluster, { seed });
      await nemesis.run('replace-node', 10);
      const victim = cluster.log[0]!.split(' ')[1]!;
      victims.add(victim);
      expect(cluster.log).toEqual([`kill ${victim}`, `remove ${victim}`, 'add n4 (auto)']);
      expect(cluster.ids).toHaveLength(3);
      expect(cluster.ids).toContain('n4');
      expect(cluster.ids).not.toContain(victim);
      expect(nemesis.events.some((e) => e.detail === 'n4 promoted')).toBe(true);
    }
    expect(victims, 'the leader and followers are both replaced, over the seeds').toContain('n2');
    expect(victims.size).toBeGreaterThan(1);
  });

  it('grow-shrink adds a learner, promotes it, then removes another member', async () => {
    const cluster = new FakeCluster(3);
    const nemesis = new Nemesis(cluster, { seed: 4 });
    await nemesis.run('grow-shrink', 10);
    expect(cluster.log.slice(0, 2)).toEqual(['add n4', 'promote n4']);
    expect(cluster.log[2]).toMatch(/^remove n[123]$/);
    expect(cluster.ids).toHaveLength(3);
    expect(cluster.roles.get('n4')).toBe('voter');
  });

  it('process faults need process control', async () => {
    const nemesis = new Nemesis(new FakeCluster(3, { processes: false }));
    expect(nemesis.supportedFaults).toEqual(['isolate-leader', 'isolate-node', 'split', 'bridge', 'one-way', 'flapping', 'slow-network']);
    await expect(nemesis.start('kill-leader')).rejects.toThrow(/not supported/);
  });
});

describe('Nemesis: schedules', () => {
  const quick = { durationMs: 400, faultMs: [5, 15] as const, quietMs: [1, 5] as const };

  it('runs episodes of the chosen kinds and leaves nothing cut, dead or paused', async () => {
    const cluster = new FakeCluster(5);
    const nemesis = new Nemesis(cluster, { seed: 9 });
    const faults: FaultKind[] = FAULT_KINDS.filter((k) => k !== 'flapping');
    const episodes = await nemesis.schedule({ ...quick, faults, combineChance: 0.5 });
    expect(episodes).toBeGreaterThan(3);
    const kinds = new Set(nemesis.events.filter((e) => e.phase === 'start').map((e) => e.kind));
    for (const kind of kinds) expect(faults).toContain(kind);
    expect(cluster.network.cutLinks()).toEqual([]);
    expect(cluster.network.delays.size).toBe(0);
    expect(cluster.allUp()).toBe(true);
    // Every start has its stop.
    const starts = nemesis.events.filter((e) => e.phase === 'start').length;
    expect(nemesis.events.filter((e) => e.phase === 'stop').length).toBe(starts);
  });

  it('a seed names the sequence of faults', async () => {
    const kindsOf = async (seed: number): Promise<string[]> => {
      const nemesis = new Nemesis(new FakeCluster(3), { seed });
      // A fixed number of episodes, not a time: hold and quiet times do not matter here.
      const kinds: FaultKind[] = ['isolate-node', 'split', 'bridge', 'kill-node', 'pause-node'];
      for (let k = 0; k < 12; k++) await nemesis.run(kinds[k % kinds.length]!, 0);
      return nemesis.events.filter((e) => e.phase === 'start').map((e) => `${e.kind}: ${e.detail}`);
    };
    expect(await kindsOf(5)).toEqual(await kindsOf(5));
    expect(await kindsOf(5)).not.toEqual(await kindsOf(6));
  });

  it('rejects a schedule with no supported fault', async () => {
    const nemesis = new Nemesis(new FakeCluster(3, { processes: false }));
    await expect(nemesis.schedule({ ...quick, faults: ['kill-leader'] })).rejects.toThrow(/no supported fault/);
  });
});
