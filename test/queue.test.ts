// `altclip index --queue` + `altclip worker` as real processes on a real redis-server (Debian's,
// started here on a free loopback port with its append-only file on, stopped at the end) and the
// tiny fixture checkpoint. Faults: kill -9 of a worker mid-shard, SIGTERM of a worker mid-shard, an
// undecodable image, a truncated WebDataset tar, Redis restarted mid-run. A worker is held "mid-shard"
// by a loopback HTTP server that keeps one image URL's answer back until the test lets it go.
// The reference for equal embeddings is the single-process `altclip index` of the same folder (rows
// read back from its LanceDB table); a URL's or tar member's row is compared with the row of the file
// whose bytes it carries.
import * as assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import * as lancedb from '@lancedb/lancedb';
import sharp from 'sharp';

import { indexWithQueue } from '../src/queue/index.js';
import { readTar } from '../src/queue/tar.js';
import { FENCE_PATH } from '../src/search/store.js';
import { type Started, startAltclip } from './helpers/cli.js';
import { FIXTURES } from './helpers/goldens.js';
import { requireProgram } from './helpers/system.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = path.join(FIXTURES, 'models', 'tiny-altclip');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-queue-'));
// Short locks so that a dead worker's shard comes back within seconds (defaults: 30 s).
const FAST = ['--lock-duration', '4000', '--stalled-interval', '2000'];
const children = new Set<ChildProcess>();
after(async () => {
  await redis?.down().catch(() => {});
  for (const c of children) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

function start(args: string[]): Started {
  const proc = startAltclip(args, path.join(tmp, 'cache'));
  children.add(proc.child);
  void proc.done.finally(() => children.delete(proc.child)).catch(() => {});
  return proc;
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** redis-server on a loopback port, append-only file fsynced on every write. */
class Redis {
  private proc?: ChildProcess;
  private constructor(readonly port: number, readonly dir: string) {}
  static async start(): Promise<Redis> {
    const r = new Redis(await freePort(), fs.mkdtempSync(path.join(tmp, 'redis-')));
    await r.up();
    return r;
  }
  url(db: number): string {
    return `redis://127.0.0.1:${this.port}/${db}`;
  }
  async up(): Promise<void> {
    const proc = spawn(requireProgram('redis-server'), ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes',
      '--appendfsync', 'always', '--save', '', '--daemonize', 'no', '--protected-mode', 'yes']);
    children.add(proc);
    proc.on('close', () => children.delete(proc));
    let out = '';
    let failed: Error | undefined;
    proc.on('error', (e) => (failed = e));
    proc.stdout!.on('data', (d) => (out += d));
    await until('redis-server to start', () => {
      if (failed) throw new Error(`redis-server did not start: ${failed.message}`);
      if (proc.exitCode !== null) throw new Error(`redis-server exited with code ${proc.exitCode}:\n${out}`);
      return /Ready to accept connections/.test(out);
    }, 30_000);
    this.proc = proc;
  }
  /** SIGTERM: redis-server flushes the append-only file and exits. */
  async down(): Promise<void> {
    const proc = this.proc!;
    if (proc.exitCode !== null || proc.signalCode !== null) return; // already gone (the final cleanup)
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Static files from `dir`; the first `hold` requests for `slow` get no answer until release(). */
class ImageServer {
  readonly held: http.ServerResponse[] = [];
  requests = 0;
  private server!: http.Server;
  port = 0;
  constructor(private readonly dir: string, private readonly slow: string, private hold: number) {}
  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const name = decodeURIComponent((req.url ?? '/').slice(1));
      if (name === this.slow) this.requests++;
      if (name === this.slow && this.hold > 0) {
        this.hold--;
        this.held.push(res);
        return;
      }
      this.send(name, res);
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }
  url(name: string): string {
    return `http://127.0.0.1:${this.port}/${name}`;
  }
  release(): void {
    for (const res of this.held.splice(0)) if (!res.destroyed) this.send(this.slow, res);
  }
  private send(name: string, res: http.ServerResponse): void {
    const file = path.join(this.dir, path.basename(name));
    if (!fs.existsSync(file)) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(fs.readFileSync(file));
  }
  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** Small distinct images: crops of the fixture images, alternately JPEG and PNG. */
async function makeImages(dir: string, count: number, seed = 0): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const sources = ['cat.jpg', 'coffee.png', 'large.jpg', 'wide.png', 'gray_portrait.png'].map((f) => path.join(FIXTURES, 'images', f));
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const src = sharp(sources[(i + seed) % sources.length]!);
    const { width, height } = await src.metadata();
    const left = ((i + seed) * 11) % Math.max(1, width! - 48);
    const top = ((i + seed) * 5) % Math.max(1, height! - 48);
    const crop = src.extract({ left, top, width: 48, height: 48 }).resize(24 + (i % 5) * 4).removeAlpha();
    const file = path.join(dir, `im${String(i).padStart(3, '0')}.${i % 2 ? 'png' : 'jpg'}`);
    await (i % 2 ? crop.png() : crop.jpeg({ quality: 90 })).toFile(file);
    out.push(file);
  }
  return out;
}

interface Row { vector: Float32Array; sha256: string; size: number; mtime: number }

/** Every row of an index: path -> row, failing on a path that is there twice. */
async function tableRows(db: string): Promise<Map<string, Row>> {
  const conn = await lancedb.connect(db);
  const table = await conn.openTable('images');
  const out = new Map<string, Row>();
  for (const r of await table.query().toArray()) {
    if (r.path === FENCE_PATH) continue; // the writers' fence row (src/search/store.ts), not an image
    assert.ok(!out.has(r.path as string), `${r.path} is in the index twice`);
    out.set(r.path as string, {
      vector: Float32Array.from((r.vector as { toArray(): Float32Array }).toArray()),
      sha256: r.sha256 as string, size: Number(r.size), mtime: r.mtime as number,
    });
  }
  table.close();
  return out;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** `rows[path]` must equal the reference row of `file` (same bytes): vector within 1e-6, same sha256. */
function assertSameAs(rows: Map<string, Row>, key: string, ref: Map<string, Row>, file: string): number {
  const got = rows.get(key);
  const want = ref.get(file);
  assert.ok(got, `${key}: no row`);
  assert.ok(want, `${file}: not in the reference`);
  assert.equal(got.sha256, want.sha256, `${key}: sha256`);
  const d = maxDiff(got.vector, want.vector);
  assert.ok(d <= 1e-6, `${key}: embedding differs from the single-process run by ${d}`);
  return d;
}

let redis: Redis;
let images: string[];
let imagesDir: string;
let ref: Map<string, Row>;

before(async () => {
  imagesDir = path.join(tmp, 'images');
  images = await makeImages(imagesDir, 24);
  // The reference: the single-process index of the same folder.
  const run = await start(['index', imagesDir, '--db', path.join(tmp, 'ref.db'), '--model', MODEL]).done;
  assert.equal(run.code, 0, run.stderr);
  ref = await tableRows(path.join(tmp, 'ref.db'));
  assert.equal(ref.size, images.length);
});

describe('altclip index --queue with altclip worker', { timeout: 300_000 }, () => {
  // Redis is started here, not for the whole file: without redis-server only these tests fail (at once).
  before(async () => {
    redis = await Redis.start();
  });
  it('a worker killed -9 mid-shard and one stopped by SIGTERM: the shard is re-delivered, every input lands once, equal to the single-process run', async () => {
    // 24 files + 6 URLs (copies served over HTTP) in shards of 5; the last URL is held twice.
    const urlNames = images.slice(0, 6).map((f) => path.basename(f));
    const server = new ImageServer(imagesDir, urlNames[5]!, 2);
    await server.start();
    const list = path.join(tmp, 'urls.txt');
    fs.writeFileSync(list, `${urlNames.map((n) => server.url(n)).join('\n')}\n`);
    const db = path.join(tmp, 'kill.db');
    const queue = redis.url(1);
    const coordinator = start(['index', imagesDir, list, '--db', db, '--queue', queue, '--model', MODEL, '--shard-size', '5']);
    const workers = [0, 1, 2].map(() => start(['worker', '--queue', queue, ...FAST]));
    // The worker holding the shard: its last "started" line has no "done" after it, once the others are idle.
    const busy = (w: Started) => {
      const lines = w.stderr().split('\n').filter((l) => / shard \w+: (started|done|handed back|failed)/.test(l));
      return lines.length > 0 && / started /.test(lines.at(-1)!);
    };
    const holder = async (n: number): Promise<Started> => {
      await until(`request ${n} for the held URL`, () => server.held.length === n);
      const alive = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
      await until('one busy worker', () => alive.filter(busy).length === 1);
      return alive.find(busy)!;
    };
    const a = await holder(1);
    a.child.kill('SIGKILL');
    assert.equal((await a.done).signal, 'SIGKILL');
    // Another worker gets the shard back once A's lock runs out (stalled-job check) and is held again: SIGTERM.
    const b = await holder(2);
    b.child.kill('SIGTERM');
    const bRun = await b.done;
    assert.equal(bRun.code, 0, `SIGTERM: exit 0 expected\n${bRun.stderr}`);
    assert.match(bRun.stderr, /handed back/);
    // The third finishes it (the URL now answers).
    const run = await coordinator.done;
    const c = workers.find((w) => w !== a && w !== b)!;
    c.child.kill('SIGTERM');
    assert.equal((await c.done).code, 0);
    await server.close();
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /30 rows appended from 6 of 6 shards/);
    assert.ok(server.requests >= 3);

    const rows = await tableRows(db);
    assert.equal(rows.size, 30, 'every input exactly once');
    let worst = 0;
    for (const [file, want] of ref) {
      worst = Math.max(worst, assertSameAs(rows, file, ref, file));
      const got = rows.get(file)!;
      assert.deepEqual([got.size, got.mtime], [want.size, want.mtime], `${file}: size/mtime`);
    }
    urlNames.forEach((n) => (worst = Math.max(worst, assertSameAs(rows, server.url(n), ref, path.join(imagesDir, n)))));
    console.log(`# max |queue - single-process| over ${rows.size} rows: ${worst.toExponential(2)}`);
    // One shard file per shard, nothing half-written left behind.
    const files = fs.readdirSync(path.join(`${path.resolve(db)}.work`, 'shards'));
    assert.equal(files.filter((f) => f.endsWith('.shard')).length, 6);
    assert.deepEqual(files.filter((f) => !f.endsWith('.shard')), []);

    // The folder again (in this process): planned against the db, nothing to embed, nothing duplicated or lost.
    const again = await indexWithQueue([imagesDir], { db, queue, model: MODEL, shardSize: 5, pollMs: 100 });
    assert.deepEqual([again.shards, again.unchanged, again.added, again.appended, again.failed.length, again.total], [0, 24, 0, 0, 0, 30]);
    assert.equal((await tableRows(db)).size, 30);
  });

  it('an undecodable image is skipped and its shard finishes; a truncated tar fails after 3 attempts, shown by the coordinator, and the rest completes', async () => {
    const dir = path.join(tmp, 'mixed');
    fs.mkdirSync(dir);
    for (const f of images.slice(0, 4)) fs.copyFileSync(f, path.join(dir, path.basename(f)));
    fs.writeFileSync(path.join(dir, 'broken.jpg'), Buffer.from('\xff\xd8\xff\xe0 not really a JPEG', 'latin1'));
    // A WebDataset shard as img2dataset lays it out (key.jpg/.png + key.json + key.txt), written by GNU tar
    // in POSIX pax format (pax headers before every member, as Python's tarfile writes when needed).
    const good = path.join(tmp, 'good.tar');
    const members = images.slice(4, 7);
    const wds = path.join(tmp, 'wds');
    fs.mkdirSync(wds);
    const names = members.flatMap((f, i) => {
      const key = String(i).padStart(9, '0');
      fs.copyFileSync(f, path.join(wds, key + path.extname(f)));
      fs.writeFileSync(path.join(wds, `${key}.json`), JSON.stringify({ key, url: `https://example.com/${key}` }));
      fs.writeFileSync(path.join(wds, `${key}.txt`), 'a caption');
      return [key + path.extname(f), `${key}.json`, `${key}.txt`];
    });
    execFileSync('tar', ['--format=pax', '--pax-option=comment:=img2dataset', '--mtime=@1700000000', '-cf', good, '-C', wds, ...names]);
    const truncated = path.join(tmp, 'truncated.tar');
    fs.writeFileSync(truncated, fs.readFileSync(good).subarray(0, 2000));
    const db = path.join(tmp, 'mixed.db');
    const queue = redis.url(2);
    const w = start(['worker', '--queue', queue, ...FAST]);
    const run = await start(['index', dir, good, truncated, '--db', db, '--queue', queue, '--model', MODEL, '--shard-size', '3']).done;
    w.child.kill('SIGTERM');
    assert.equal((await w.done).code, 0);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /error: shard \w+ \(.*truncated\.tar\) failed: .*truncated\.tar: truncated tar .*\(after 3 attempts\)/);
    assert.match(run.stderr, /warning: skipped .*broken\.jpg: /);
    assert.match(run.stderr, /7 rows appended from 3 of 4 shards, 1 skipped/);
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
    const rows = await tableRows(db);
    assert.equal(rows.size, 7);
    for (const f of images.slice(0, 4)) assertSameAs(rows, path.join(dir, path.basename(f)), ref, f);
    members.forEach((f, i) => {
      const key = `${good}#${String(i).padStart(9, '0')}${path.extname(f)}`;
      assertSameAs(rows, key, ref, f);
      assert.equal(rows.get(key)!.mtime, 1700000000 * 1000);
    });
  });

  it('Redis restarted mid-run (append-only file on): workers and coordinator reconnect and finish', async () => {
    const names = images.slice(0, 3).map((f) => path.basename(f));
    const server = new ImageServer(imagesDir, names[2]!, 1);
    await server.start();
    const list = path.join(tmp, 'restart-urls.txt');
    fs.writeFileSync(list, `${names.map((n) => server.url(n)).join('\n')}\n`);
    const db = path.join(tmp, 'restart.db');
    const queue = redis.url(3);
    // The coordinator in this process (the CLI around it is tested above): same code, one start less.
    const coordinator = indexWithQueue([imagesDir, list], { db, queue, model: MODEL, shardSize: 9, pollMs: 200 });
    const w1 = start(['worker', '--queue', queue, ...FAST]);
    const w2 = start(['worker', '--queue', queue, ...FAST]);
    await until('a worker to ask for the held URL', () => server.held.length === 1);
    await redis.down();
    await new Promise((r) => setTimeout(r, 1500));
    await redis.up();
    server.release();
    const result = await coordinator;
    for (const w of [w1, w2]) w.child.kill('SIGTERM');
    const [r1, r2] = await Promise.all([w1.done, w2.done]);
    await server.close();
    assert.deepEqual([result.failed, result.appended, result.total], [[], images.length + names.length, images.length + names.length]);
    assert.deepEqual([r1.code, r2.code], [0, 0], r1.stderr + r2.stderr);
    const rows = await tableRows(db);
    assert.equal(rows.size, images.length + names.length);
    for (const f of images) assertSameAs(rows, f, ref, f);
    names.forEach((n) => assertSameAs(rows, server.url(n), ref, path.join(imagesDir, n)));
  });
});

describe('WebDataset tar reader', () => {
  it('reads GNU tar long names; refuses truncated and foreign files with the file and offset named', async () => {
    const dir = path.join(tmp, 'tarsrc');
    const long = `${'d'.repeat(90)}/${'n'.repeat(80)}.jpg`;
    fs.mkdirSync(path.join(dir, path.dirname(long)), { recursive: true });
    fs.copyFileSync(images[0]!, path.join(dir, long));
    const gnu = path.join(tmp, 'gnu.tar');
    execFileSync('tar', ['--format=gnu', '-cf', gnu, '-C', dir, long]);
    const got = [];
    for await (const m of readTar(gnu)) got.push(m);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.name, long);
    assert.deepEqual(Buffer.from(got[0]!.data), fs.readFileSync(images[0]!));
    const cut = path.join(tmp, 'cut.tar');
    fs.writeFileSync(cut, fs.readFileSync(gnu).subarray(0, 1536));
    await assert.rejects(async () => { for await (const _ of readTar(cut)); }, /cut\.tar: truncated tar/);
    const foreign = path.join(tmp, 'foreign.tar');
    fs.writeFileSync(foreign, Buffer.alloc(4096, 7));
    await assert.rejects(async () => { for await (const _ of readTar(foreign)); }, /foreign\.tar: .*checksum mismatch at byte 0/);
  });
});

describe('coordinator errors', () => {
  it('an unreachable Redis, a missing input and a malformed --queue are one clear error each, not a hang', async () => {
    const port = await freePort(); // nothing listens there
    const db = path.join(tmp, 'unreachable.db');
    await assert.rejects(indexWithQueue([imagesDir], { db, queue: `redis://127.0.0.1:${port}`, model: MODEL, connectTimeoutMs: 1500 }),
      new RegExp(`cannot reach Redis at redis://127\\.0\\.0\\.1:${port} \\(no connection within 1\\.5 s\\)`));
    await assert.rejects(indexWithQueue([path.join(tmp, 'nope')], { db, queue: `redis://127.0.0.1:${port}`, model: MODEL, connectTimeoutMs: 1500 }), /nope: no such file or folder/);
    await assert.rejects(indexWithQueue([imagesDir], { db, queue: 'http://127.0.0.1:1', model: MODEL }), /--queue "http:\/\/127\.0\.0\.1:1": expected redis:\/\/HOST:PORT/);
  });
});

describe('the fleet path is the same index', { timeout: 300_000 }, () => {
  const dir = path.join(tmp, 'fleet');
  const db = path.join(tmp, 'fleet.db');
  const coordinator = (queue: string, extra: string[] = []) =>
    start(['index', dir, '--db', db, '--queue', queue, '--model', MODEL, '--json', ...extra]);
  const json = (stdout: string) => JSON.parse(stdout) as Record<string, unknown>;
  before(() => {
    fs.mkdirSync(dir);
    for (const f of images.slice(0, 4)) fs.copyFileSync(f, path.join(dir, path.basename(f)));
  });

  it('4 files, then one deleted and one renamed: 3 rows with the right paths, none stale; the rename keeps its vector; only new files reach the workers', async () => {
    const queue = redis.url(6);
    const w = start(['worker', '--queue', queue, ...FAST]);
    try {
      const first = await coordinator(queue).done;
      assert.equal(first.code, 0, first.stderr);
      assert.deepEqual([json(first.stdout).added, json(first.stdout).shards, json(first.stdout).total], [4, 1, 4]);
      const [a, b, c, d] = images.slice(0, 4).map((f) => path.join(dir, path.basename(f)));
      fs.rmSync(a!);
      const renamed = path.join(dir, `renamed-${path.basename(b!)}`);
      fs.renameSync(b!, renamed);
      const second = await coordinator(queue).done;
      assert.equal(second.code, 0, second.stderr);
      const r = json(second.stdout);
      assert.deepEqual([r.added, r.updated, r.removed, r.renamed, r.unchanged, r.shards, r.appended, r.total], [0, 0, 1, 1, 2, 0, 0, 3]);
      assert.match(second.stderr, /0 added, 0 updated, 1 removed, 2 unchanged, 1 renamed/);
      const rows = await tableRows(db);
      assert.deepEqual([...rows.keys()].sort(), [c!, d!, renamed].sort());
      assertSameAs(rows, renamed, ref, images[1]!);
      assertSameAs(rows, c!, ref, images[2]!);
      assertSameAs(rows, d!, ref, images[3]!);
      // and what the single-machine path makes of the same folder: the same rows
      const single = path.join(tmp, 'fleet-single.db');
      const run = await start(['index', dir, '--db', single, '--model', MODEL]).done;
      assert.equal(run.code, 0, run.stderr);
      assert.deepEqual([...(await tableRows(single)).keys()].sort(), [...rows.keys()].sort());
    } finally {
      w.child.kill('SIGTERM');
      await w.done;
    }
  });

  it('a second coordinator (or altclip index) on the same db is refused while one runs; with --wait it waits, then finds nothing left to do', async () => {
    const queue = redis.url(7);
    fs.copyFileSync(images[5]!, path.join(dir, path.basename(images[5]!)));
    // no worker yet: the first coordinator holds the lock while its shard waits
    const first = coordinator(queue);
    await until('the first coordinator to plan', () => /1 shards, 1 listed inputs/.test(first.stderr()));
    const second = await coordinator(queue).done;
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, /altclip: error: .*fleet\.db: the index is being written by process \d+/);
    const single = await start(['index', dir, '--db', db, '--model', MODEL]).done;
    assert.equal(single.code, 1, single.stderr);
    assert.match(single.stderr, /the index is being written by process/);
    const waiting = coordinator(queue, ['--wait', '300']);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(waiting.child.exitCode, null, 'the --wait coordinator waits for the lock');
    const w = start(['worker', '--queue', queue, ...FAST]);
    try {
      const done = await first.done;
      assert.equal(done.code, 0, done.stderr);
      assert.deepEqual([json(done.stdout).added, json(done.stdout).total], [1, 4]);
      const after = await waiting.done;
      assert.equal(after.code, 0, after.stderr);
      assert.deepEqual([json(after.stdout).added, json(after.stdout).unchanged, json(after.stdout).shards, json(after.stdout).total], [0, 4, 0, 4]);
      assert.equal((await tableRows(db)).size, 4);
    } finally {
      w.child.kill('SIGTERM');
      await w.done;
    }
  });

  it('identity by weights: overwritten weights are refused when the shards come back (nothing committed); a moved model is accepted with --model', async () => {
    const queue = redis.url(8);
    const model = path.join(tmp, 'fleet-model');
    fs.cpSync(MODEL, model, { recursive: true });
    const pics = path.join(tmp, 'fleet-identity');
    fs.mkdirSync(pics);
    for (const f of images.slice(8, 10)) fs.copyFileSync(f, path.join(pics, path.basename(f)));
    const idDb = path.join(tmp, 'fleet-identity.db');
    const run = (extra: string[]) => start(['index', pics, '--db', idDb, '--queue', queue, '--json', ...extra]).done;
    let w = start(['worker', '--queue', queue, ...FAST]);
    const restart = async () => {
      w.child.kill('SIGTERM');
      await w.done;
      w = start(['worker', '--queue', queue, ...FAST]);
    };
    try {
      const first = await run(['--model', model]);
      assert.equal(first.code, 0, first.stderr);
      assert.equal(json(first.stdout).added, 2);
      const weights = path.join(model, 'model.safetensors');
      const original = fs.readFileSync(weights);
      const changed = Buffer.from(original);
      changed[changed.length - 1] ^= 0x01;
      fs.writeFileSync(weights, changed);
      await restart(); // a running worker keeps the model it loaded (and that model's fingerprint); a new one reads the files
      fs.copyFileSync(images[10]!, path.join(pics, path.basename(images[10]!)));
      const refused = await run([]);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /altclip: error: .*model\.safetensors changed \(sha256 [0-9a-f]{12}… → [0-9a-f]{12}…\)/);
      assert.equal((await tableRows(idDb)).size, 2, 'nothing committed');
      // the weights put back: the shard embedded with the other weights is made again, not refused forever
      fs.writeFileSync(weights, original);
      await restart();
      const restored = await run([]);
      assert.equal(restored.code, 0, restored.stderr);
      assert.deepEqual([json(restored.stdout).added, json(restored.stdout).shards, json(restored.stdout).resumed], [1, 1, 0]);
      fs.rmSync(path.join(pics, path.basename(images[10]!)));
      assert.equal(json((await run([])).stdout).removed, 1);
      const moved = path.join(tmp, 'fleet-model-moved');
      fs.renameSync(model, moved);
      await restart();
      fs.copyFileSync(images[11]!, path.join(pics, path.basename(images[11]!)));
      const accepted = await run(['--model', moved]);
      assert.equal(accepted.code, 0, accepted.stderr);
      assert.deepEqual([json(accepted.stdout).added, json(accepted.stdout).unchanged], [1, 2]);
      const rows = await tableRows(idDb);
      assert.equal(rows.size, 3);
      assertSameAs(rows, path.join(pics, path.basename(images[11]!)), ref, images[11]!);
    } finally {
      w.child.kill('SIGTERM');
      await w.done;
    }
  });
});
