/**
 * HTTP benchmark of a real three-process `raftkv cluster`, driven by wrk with the shared bench
 * scripts (/work/shared/bench: put.lua / get.lua with KV_API=rest, preload.mjs), so the figures
 * are comparable to the etcd baseline taken with etcd-put.lua / etcd-get.lua and the same wrk
 * settings (`-t1 --timeout 10s --latency`, 10,000 random keys, 100-byte values).
 *
 * 1. Starts `raftkv cluster` (default timeouts: heartbeat 100 ms, election 1000 ms) on free ports
 *    in a fresh temp dir, waits for "cluster ready", reads every node's PID from its output and
 *    the leader's HTTP address from GET /v1/status.
 * 2. Preloads the 10,000 keys through the leader (preload.mjs, KV_API=rest).
 * 3. Per concurrency level: wrk put.lua, then wrk get.lua (linearizable reads, the default), both
 *    against the leader. During each run it samples every node's VmRSS every 200 ms (and reads
 *    VmHWM at the end), each node's CPU time and the whole machine's CPU busy share.
 * 4. Prints a table and one final line per level; stops the cluster by its PID (SIGINT, waits for
 *    it to exit) and removes the temp dir, also on error or Ctrl-C.
 *
 *   tsx --conditions=@raftkv/source scripts/bench-http.ts [--seconds 15] [--connections 1,16,64,256] [--keep]
 *
 * Exit status: 0 done, 1 failure, 2 bad command line or wrk missing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BENCH_DIR = process.env.BENCH_DIR ?? '/work/shared/bench';
const PUT_LUA = join(BENCH_DIR, 'put.lua');
const GET_LUA = join(BENCH_DIR, 'get.lua');
const PRELOAD = join(BENCH_DIR, 'preload.mjs');
const NODES = 3;
const READY_TIMEOUT_MS = 60_000;
const PRELOAD_TIMEOUT_MS = 300_000;
const STOP_TIMEOUT_MS = 20_000;
const RSS_SAMPLE_MS = 200;
/** Pause between wrk runs so one run's tail (pending fsyncs, GC) does not leak into the next. */
const SETTLE_MS = 1_000;
const CLK_TCK = 100;

interface Options {
  readonly seconds: number;
  readonly connections: readonly number[];
  readonly keep: boolean;
}

interface WrkResult {
  readonly rps: number;
  readonly requests: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly maxUs: number;
  /** wrk's count of responses with status >= 400 (kv.lua err_status). */
  readonly errStatus: number;
  /** "Non-2xx or 3xx responses" from wrk's own summary (0 when the line is absent). */
  readonly non2xx: number;
  /** Socket errors: connect + read + write + timeout. */
  readonly errSocket: number;
}

interface RunResult {
  readonly op: 'put' | 'get';
  readonly connections: number;
  readonly wrk: WrkResult;
  /** Per node id: peak VmRSS sampled during the run, MiB. */
  readonly peakRssMiB: Record<string, number>;
  /** Per node id: VmHWM at the end of the run (peak since process start), MiB. */
  readonly hwmMiB: Record<string, number>;
  /** Per node id: CPU used during the run, % of one core. */
  readonly cpuPct: Record<string, number>;
  /** wrk's own CPU, % of one core. */
  readonly wrkCpuPct: number;
  /** Whole machine busy, % of all cores. */
  readonly machineBusyPct: number;
  readonly termBefore: number | null;
  readonly termAfter: number | null;
  readonly leaderAfter: string | null;
}

interface Cluster {
  readonly child: ChildProcess;
  readonly dir: string;
  readonly pids: Map<string, number>;
  readonly http: Map<string, string>;
  output: string;
  exited: Promise<number | null>;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '15' },
      connections: { type: 'string', default: '1,16,64,256' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log('usage: bench-http.ts [--seconds 15] [--connections 1,16,64,256] [--keep]');
    process.exit(0);
  }
  const seconds = Number(values.seconds);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 600) throw new UsageError(`--seconds: ${values.seconds} must be an integer 1..600`);
  const connections = values.connections.split(',').map((s) => Number(s.trim()));
  if (connections.length === 0 || connections.some((c) => !Number.isInteger(c) || c < 1 || c > 10_000)) {
    throw new UsageError(`--connections: ${values.connections} must be a comma-separated list of integers 1..10000`);
  }
  return { seconds, connections, keep: values.keep };
}

class UsageError extends Error {}

// ---------------------------------------------------------------------------------------------
// ports, processes

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => res(true)));
  });
}

/** A base port p such that p .. p+count-1 are free and not in `avoid`. */
async function freePortRange(count: number, avoid: ReadonlySet<number>): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if (ports.some((p) => avoid.has(p))) continue;
    let ok = true;
    for (const p of ports) if (!(await portFree(p))) { ok = false; break; }
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

function waitExit(child: ChildProcess): Promise<number | null> {
  return new Promise((res) => {
    if (child.exitCode !== null || child.signalCode !== null) res(child.exitCode);
    else child.once('exit', (code) => res(code));
  });
}

async function startCluster(dir: string): Promise<Cluster> {
  const basePort = await freePortRange(NODES, new Set());
  const avoid = new Set(Array.from({ length: NODES + 2 }, (_, i) => basePort - 1 + i));
  const httpBasePort = await freePortRange(NODES, avoid);
  const args = ['--import', 'tsx', '--conditions=@raftkv/source', 'packages/cli/src/main.ts', 'cluster',
    '--dir', dir, '--base-port', String(basePort), '--http-base-port', String(httpBasePort)];
  console.log(`starting: node ${args.join(' ')}  (cwd ${ROOT})`);
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const cluster: Cluster = { child, dir, pids: new Map(), http: new Map(), output: '', exited: waitExit(child) };
  let ready!: () => void;
  const readyP = new Promise<void>((r) => { ready = r; });
  const onLine = (line: string): void => {
    cluster.output += line + '\n';
    // node n1: pid 123, peers on 127.0.0.1:7001, HTTP on http://127.0.0.1:8001, ...
    const m = /^node (\S+): pid (\d+), peers on \S+, HTTP on (\S+?),/.exec(line);
    if (m) { cluster.pids.set(m[1]!, Number(m[2])); cluster.http.set(m[1]!, m[3]!); }
    // node n2: restarted, pid 456 (run 2)
    const r = /^node (\S+): restarted, pid (\d+)/.exec(line);
    if (r) { cluster.pids.set(r[1]!, Number(r[2])); console.log(`  !! cluster: ${line}`); }
    if (/exited .*restarting|did not stop|left down/.test(line)) console.log(`  !! cluster: ${line}`);
    if (line.startsWith('cluster ready')) { console.log(line); ready(); }
  };
  for (const stream of [child.stdout!, child.stderr!]) {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) { onLine(buf.slice(0, i)); buf = buf.slice(i + 1); }
    });
  }
  const timeout = sleep(READY_TIMEOUT_MS).then(() => 'timeout' as const);
  const outcome = await Promise.race([readyP.then(() => 'ready' as const), cluster.exited.then(() => 'exited' as const), timeout]);
  if (outcome !== 'ready') {
    throw Object.assign(new Error(`cluster ${outcome === 'exited' ? 'exited' : `not ready after ${READY_TIMEOUT_MS} ms`}; its output:\n${cluster.output}`), { cluster });
  }
  if (cluster.pids.size !== NODES) throw Object.assign(new Error(`expected ${NODES} node PIDs in the output, got ${cluster.pids.size}:\n${cluster.output}`), { cluster });
  return cluster;
}

/** SIGINT to the supervisor, wait; a second signal makes it SIGKILL its nodes; then any node PID still alive is killed. */
async function stopCluster(cluster: Cluster): Promise<void> {
  const pid = cluster.child.pid;
  if (pid !== undefined && cluster.child.exitCode === null && cluster.child.signalCode === null) {
    console.log(`stopping cluster: SIGINT to pid ${pid}`);
    cluster.child.kill('SIGINT');
    const first = await Promise.race([cluster.exited.then(() => true), sleep(STOP_TIMEOUT_MS).then(() => false)]);
    if (!first) {
      console.log(`cluster pid ${pid} still running after ${STOP_TIMEOUT_MS} ms: second SIGINT (its nodes get SIGKILL)`);
      cluster.child.kill('SIGINT');
      const second = await Promise.race([cluster.exited.then(() => true), sleep(5_000).then(() => false)]);
      if (!second) { cluster.child.kill('SIGKILL'); await cluster.exited; }
    }
  }
  await sleep(200);
  for (const [id, nodePid] of cluster.pids) {
    if (alive(nodePid)) {
      console.log(`node ${id} (pid ${nodePid}) still alive after the supervisor exited: SIGKILL`);
      try { process.kill(nodePid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
  console.log(`cluster stopped (supervisor exit code ${cluster.child.exitCode ?? cluster.child.signalCode})`);
}

// ---------------------------------------------------------------------------------------------
// cluster status

interface Status { readonly id: string; readonly role: string; readonly term: number; readonly leader: string | null }

async function status(url: string): Promise<Status | null> {
  try {
    const res = await fetch(`${url}/v1/status`, { signal: AbortSignal.timeout(2_000) });
    if (!res.ok) return null;
    return (await res.json()) as Status;
  } catch {
    return null;
  }
}

async function findLeader(cluster: Cluster): Promise<{ id: string; url: string; term: number }> {
  for (let i = 0; i < 50; i++) {
    for (const url of cluster.http.values()) {
      const s = await status(url);
      if (s?.leader != null) {
        const leaderUrl = cluster.http.get(s.leader);
        const ls = leaderUrl === undefined ? null : await status(leaderUrl);
        if (leaderUrl !== undefined && ls?.role === 'leader') return { id: s.leader, url: leaderUrl, term: ls.term };
      }
    }
    await sleep(100);
  }
  throw new Error('no leader found via GET /v1/status');
}

// ---------------------------------------------------------------------------------------------
// /proc sampling

function procStatusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** utime + stime of one process, clock ticks. */
function procTicks(pid: number): number | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return null;
  }
}

/** [busy, total] jiffies of the whole machine. */
function machineTicks(): [number, number] {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return [total - idle, total];
}

const mib = (kib: number): number => kib / 1024;

// ---------------------------------------------------------------------------------------------
// wrk

let currentWrk: ChildProcess | null = null;

async function runWrk(script: string, url: string, connections: number, seconds: number): Promise<{ out: string; cpuPct: number }> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '--latency', '-s', script, url];
  const child = spawn('wrk', args, { env: { ...process.env, KV_API: 'rest', KV_OUT: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  currentWrk = child;
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const pid = child.pid!;
  let lastTicks = 0;
  const t0 = Date.now();
  const poll = setInterval(() => { lastTicks = procTicks(pid) ?? lastTicks; }, RSS_SAMPLE_MS);
  const killer = setTimeout(() => child.kill('SIGKILL'), (seconds + 60) * 1000);
  const code = await waitExit(child);
  clearInterval(poll);
  clearTimeout(killer);
  currentWrk = null;
  if (code !== 0) throw new Error(`wrk ${args.join(' ')} exited ${code}:\n${out}`);
  return { out, cpuPct: (lastTicks / CLK_TCK) / ((Date.now() - t0) / 1000) * 100 };
}

function parseWrk(out: string): WrkResult {
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  if (line === undefined) throw new Error(`no RESULT line in wrk output:\n${out}`);
  const r = JSON.parse(line.slice('RESULT '.length)) as Record<string, number>;
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  return {
    rps: r.rps!, requests: r.requests!, p50Us: r.p50_us!, p99Us: r.p99_us!, maxUs: r.max_us!,
    errStatus: r.err_status!, non2xx: non2xx ? Number(non2xx[1]) : 0,
    errSocket: r.err_connect! + r.err_read! + r.err_write! + r.err_timeout!,
  };
}

async function measure(cluster: Cluster, op: 'put' | 'get', leaderUrl: string, connections: number, seconds: number): Promise<RunResult> {
  const before = await status(leaderUrl);
  const ids = [...cluster.pids.keys()];
  const peak: Record<string, number> = Object.fromEntries(ids.map((id) => [id, 0]));
  const ticks0 = new Map(ids.map((id) => [id, procTicks(cluster.pids.get(id)!) ?? 0]));
  const m0 = machineTicks();
  const t0 = Date.now();
  const sample = (): void => {
    for (const id of ids) {
      const kib = procStatusKiB(cluster.pids.get(id)!, 'VmRSS');
      if (kib !== null && kib > peak[id]!) peak[id] = kib;
    }
  };
  sample();
  const timer = setInterval(sample, RSS_SAMPLE_MS);
  let wrk: { out: string; cpuPct: number };
  try {
    wrk = await runWrk(op === 'put' ? PUT_LUA : GET_LUA, leaderUrl, connections, seconds);
  } finally {
    clearInterval(timer);
  }
  sample();
  const wall = (Date.now() - t0) / 1000;
  const m1 = machineTicks();
  const cpuPct = Object.fromEntries(ids.map((id) => [id, (((procTicks(cluster.pids.get(id)!) ?? 0) - ticks0.get(id)!) / CLK_TCK / wall) * 100]));
  const hwm = Object.fromEntries(ids.map((id) => [id, mib(procStatusKiB(cluster.pids.get(id)!, 'VmHWM') ?? 0)]));
  const after = await status(leaderUrl);
  return {
    op, connections, wrk: parseWrk(wrk.out),
    peakRssMiB: Object.fromEntries(ids.map((id) => [id, mib(peak[id]!)])), hwmMiB: hwm, cpuPct,
    wrkCpuPct: wrk.cpuPct,
    machineBusyPct: ((m1[0] - m0[0]) / Math.max(1, m1[1] - m0[1])) * 100,
    termBefore: before?.term ?? null, termAfter: after?.term ?? null, leaderAfter: after?.leader ?? null,
  };
}

// ---------------------------------------------------------------------------------------------
// output

const ms = (us: number): string => (us / 1000).toFixed(2);
const f0 = (n: number): string => n.toFixed(0);

function printTable(rows: readonly RunResult[], ids: readonly string[]): void {
  const header = ['op', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'non-2xx', 'sock err',
    ...ids.map((id) => `${id} peak RSS MiB`), ...ids.map((id) => `${id} CPU%`), 'wrk CPU%', 'machine busy%', 'term'];
  const cells = rows.map((r) => [
    r.op, String(r.connections), f0(r.wrk.rps), ms(r.wrk.p50Us), ms(r.wrk.p99Us), ms(r.wrk.maxUs),
    String(Math.max(r.wrk.non2xx, r.wrk.errStatus)), String(r.wrk.errSocket),
    ...ids.map((id) => f0(r.peakRssMiB[id]!)), ...ids.map((id) => f0(r.cpuPct[id]!)), f0(r.wrkCpuPct), f0(r.machineBusyPct),
    r.termBefore === r.termAfter ? String(r.termAfter) : `${r.termBefore}->${r.termAfter} CHANGED`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]): string => `| ${c.map((x, i) => (i < 1 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w, i) => (i < 1 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  for (const c of cells) console.log(line(c));
}

function finalLine(c: number, put: RunResult | undefined, get: RunResult | undefined, ids: readonly string[]): string {
  const part = (r: RunResult | undefined, what: string): string =>
    r === undefined ? `${what}/s -` : `${what}/s ${f0(r.wrk.rps)} p50 ${ms(r.wrk.p50Us)} ms p99 ${ms(r.wrk.p99Us)} ms non2xx ${Math.max(r.wrk.non2xx, r.wrk.errStatus)} errors ${r.wrk.errSocket}`;
  const rss = ids.map((id) => `${id} ${f0(Math.max(put?.peakRssMiB[id] ?? 0, get?.peakRssMiB[id] ?? 0))}`).join(' ');
  return `RESULT c=${c}: ${part(put, 'writes')} | ${part(get, 'reads')} | peak RSS MiB ${rss}`;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions();
  } catch (e) {
    console.error(`bench-http: ${(e as Error).message}`);
    return 2;
  }
  const which = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  if (which.error !== undefined) {
    console.error('bench-http: wrk not found on PATH. Install it: apt-get install -y wrk   (Debian/Ubuntu, as root)');
    return 2;
  }
  for (const f of [PUT_LUA, GET_LUA, PRELOAD]) {
    if (!existsSync(f)) { console.error(`bench-http: ${f} missing (set BENCH_DIR to the shared bench directory)`); return 2; }
  }

  const dir = await mkdtemp(join(tmpdir(), 'raftkv-bench-http-'));
  let cluster: Cluster | null = null;
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    console.log(`received ${sig}: stopping wrk and the cluster`);
    currentWrk?.kill('SIGINT');
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  const rows: RunResult[] = [];
  const started = new Date();
  try {
    try {
      cluster = await startCluster(dir);
    } catch (e) {
      cluster = (e as { cluster?: Cluster }).cluster ?? null;
      throw e;
    }
    const ids = [...cluster.pids.keys()].sort();
    console.log(`node PIDs: ${ids.map((id) => `${id}=${cluster!.pids.get(id)}`).join(' ')}; HTTP ${ids.map((id) => `${id}=${cluster!.http.get(id)}`).join(' ')}`);
    const leader = await findLeader(cluster);
    console.log(`leader ${leader.id} at ${leader.url} (pid ${cluster.pids.get(leader.id)}), term ${leader.term}`);

    console.log(`preloading 10,000 keys x 100 B via ${PRELOAD} (KV_API=rest) ...`);
    const pre = spawn(process.execPath, [PRELOAD, leader.url, '32'], { env: { ...process.env, KV_API: 'rest' }, stdio: ['ignore', 'inherit', 'inherit'] });
    const preKill = setTimeout(() => pre.kill('SIGKILL'), PRELOAD_TIMEOUT_MS);
    const preCode = await waitExit(pre);
    clearTimeout(preKill);
    if (preCode !== 0) throw new Error(`preload exited ${preCode}`);

    console.log(`wrk -t1 --timeout 10s --latency, ${opts.seconds} s per run, connections ${opts.connections.join(',')}, target ${leader.url}`);
    for (const c of opts.connections) {
      for (const op of ['put', 'get'] as const) {
        if (interrupted) break;
        await sleep(SETTLE_MS);
        const t = new Date().toISOString().slice(11, 19);
        const r = await measure(cluster, op, leader.url, c, opts.seconds);
        rows.push(r);
        console.log(`  ${t} ${op} c=${c}: ${f0(r.wrk.rps)} req/s p50 ${ms(r.wrk.p50Us)} ms p99 ${ms(r.wrk.p99Us)} ms, non-2xx ${Math.max(r.wrk.non2xx, r.wrk.errStatus)}, socket errors ${r.wrk.errSocket}, ` +
          `CPU ${ids.map((id) => `${id} ${f0(r.cpuPct[id]!)}%`).join(' ')} wrk ${f0(r.wrkCpuPct)}%, machine ${f0(r.machineBusyPct)}% busy` +
          (r.termBefore !== r.termAfter || r.leaderAfter !== leader.id ? `  !! term ${r.termBefore}->${r.termAfter}, leader now ${r.leaderAfter}` : ''));
      }
      if (interrupted) break;
    }

    console.log('');
    console.log(`raftkv HTTP, 3 processes, leader ${leader.id}; started ${started.toISOString()}, ${opts.seconds} s per run`);
    printTable(rows, ids);
    console.log('peak RSS = max VmRSS sampled every 200 ms during the run; VmHWM at the end (peak since start), MiB: ' +
      ids.map((id) => `${id} ${f0(Math.max(...rows.map((r) => r.hwmMiB[id]!)))}`).join(' '));
    console.log('');
    for (const c of opts.connections) {
      const put = rows.find((r) => r.op === 'put' && r.connections === c);
      const get = rows.find((r) => r.op === 'get' && r.connections === c);
      if (put !== undefined || get !== undefined) console.log(finalLine(c, put, get, ids));
    }
    return interrupted ? 1 : 0;
  } catch (e) {
    console.error(`bench-http: ${(e as Error).stack ?? String(e)}`);
    return 1;
  } finally {
    if (cluster !== null) await stopCluster(cluster);
    else if (existsSync(dir)) { /* nothing started */ }
    if (opts.keep) console.log(`data kept in ${dir}`);
    else { await rm(dir, { recursive: true, force: true }); console.log(`removed ${dir}`); }
  }
}

process.exitCode = await main();
