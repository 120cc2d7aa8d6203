// Queue benchmarks (SCALING.md): per-job overhead of BullMQ round trips, the coordinator's enqueue rate
// and Redis memory for 1M inputs in shards of 1000, and throughput with 1, 2 and 3 worker processes
// against the same images embedded in one process without the queue.
//   node --import tsx bench/queue.ts [--images 96] [--model test/fixtures/models/tiny-altclip]
// Starts its own redis-server on a free loopback port (append-only file on, as in production).
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import { Redis as IORedis } from 'ioredis';
import sharp from 'sharp';
import { connectionOptions, indexWithQueue } from '../src/queue/index.js';
import { embedImageBatches } from '../src/tasks/embeddings.js';
import { loadAltCLIP } from '../src/tasks/pipeline.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
};
const MODEL = path.resolve(arg('model', path.join(ROOT, 'test/fixtures/models/tiny-altclip')));
const IMAGES = Number(arg('images', '96'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-bench-queue-'));
const kids: ChildProcess[] = [];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(check: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main(): Promise<void> {
  const port = await freePort();
  const redisProc = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', tmp, '--appendonly', 'yes', '--save', '', '--daemonize', 'no']);
  kids.push(redisProc);
  let out = '';
  redisProc.stdout!.on('data', (d) => (out += d));
  await waitFor(() => /Ready to accept/.test(out), 20_000);
  const url = (db: number) => `redis://127.0.0.1:${port}/${db}`;
  const redis = new IORedis({ host: '127.0.0.1', port });
  console.log(`# altclip queue bench — ${os.cpus()[0]?.model} x${os.cpus().length}, load average ${os.loadavg()[0]!.toFixed(0)} (shared machine), redis ${(await redis.info('server')).match(/redis_version:(\S+)/)?.[1]}`);

  // 1. Per-job overhead: N jobs through a no-op worker, one at a time (add -> completed).
  {
    const N = 300;
    const q = new Queue('bench-overhead', { connection: connectionOptions(url(1)) });
    const w = new Worker('bench-overhead', async () => 'ok', { connection: connectionOptions(url(1)), concurrency: 1 });
    await w.waitUntilReady();
    const t0 = performance.now();
    const ev = new Map<string, () => void>();
    w.on('completed', (job) => ev.get(job.id!)?.());
    for (let i = 0; i < N; i++) {
      const done = new Promise<void>((r) => ev.set(`j${i}`, r));
      await q.add('j', { shard: i }, { jobId: `j${i}`, removeOnComplete: true });
      await done;
    }
    const ms = (performance.now() - t0) / N;
    console.log(`per-job queue overhead (add -> worker -> completed, sequential, ${N} jobs): ${ms.toFixed(2)} ms`);
    await w.close();
    await q.close();
  }

  // 2. Coordinator: plan + input lists + enqueue for 1M inputs (a list file), shards of 1000.
  {
    const list = path.join(tmp, 'million.txt');
    const lines: string[] = [];
    for (let i = 0; i < 1_000_000; i++) lines.push(`/mnt/shared/images/${String(Math.floor(i / 10_000)).padStart(3, '0')}/${String(i).padStart(9, '0')}.jpg`);
    fs.writeFileSync(list, `${lines.join('\n')}\n`);
    await redis.select(2);
    const before = Number((await redis.info('memory')).match(/used_memory:(\d+)/)![1]);
    const stop = new AbortController();
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    let enqueued = 0;
    let cpu = 0;
    await indexWithQueue([list], {
      db: path.join(tmp, 'million.db'), queue: url(2), model: MODEL, shardSize: 1000, pollMs: 1, signal: stop.signal,
      onProgress: () => {
        if (!enqueued) {
          enqueued = performance.now() - t0;
          const c = process.cpuUsage(cpu0);
          cpu = (c.user + c.system) / 1e6;
        }
        stop.abort();
      },
    }).catch((e: Error) => {
      if (e.name !== 'AbortError') throw e;
    });
    const after = Number((await redis.info('memory')).match(/used_memory:(\d+)/)![1]);
    const jobs = await redis.zcard('bull:altclip-index-fp32:prioritized').then(async (p) => p + (await redis.llen('bull:altclip-index-fp32:wait')));
    const listBytes = fs.readdirSync(path.join(tmp, 'million.db.work', 'inputs')).reduce((n, f) => n + fs.statSync(path.join(tmp, 'million.db.work', 'inputs', f)).size, 0);
    console.log(`coordinator, 1M inputs from a list file in shards of 1000: plan + 1000 input lists + enqueue ${(enqueued / 1000).toFixed(2)} s `
      + `(${Math.round(1e6 / (enqueued / 1000)).toLocaleString('en')} inputs/s wall; ${cpu.toFixed(2)} s CPU of the coordinator = ${Math.round(1e6 / cpu).toLocaleString('en')} inputs per CPU-second); ${jobs} jobs waiting`);
    console.log(`redis used_memory for them: ${((after - before) / 1024 / 1024).toFixed(2)} MiB (${((after - before) / jobs).toFixed(0)} B/job); input lists on the work folder: ${(listBytes / 1024 / 1024).toFixed(1)} MiB`);
  }

  // 3. Throughput: the same images embedded in one process (no queue), then by 1, 2, 3 worker processes.
  {
    const dir = path.join(tmp, 'images');
    fs.mkdirSync(dir);
    const src = ['cat.jpg', 'coffee.png', 'large.jpg', 'wide.png'].map((f) => sharp(path.join(ROOT, 'test/fixtures/images', f)));
    for (let i = 0; i < IMAGES; i++) {
      await src[i % 4]!.clone().resize(160 + (i % 9) * 8, 140 + (i % 5) * 8).jpeg().toFile(path.join(dir, `b${String(i).padStart(4, '0')}.jpg`));
    }
    const files = fs.readdirSync(dir).map((f) => path.join(dir, f)).sort();
    const clip = await loadAltCLIP(MODEL, { parts: 'vision', threads: 1 });
    const t0 = performance.now();
    for await (const _ of embedImageBatches(clip, files)) void _;
    const single = files.length / ((performance.now() - t0) / 1000);
    await clip.model.dispose();
    console.log(`one process, no queue (threads 1): ${single.toFixed(1)} images/s over ${files.length} images`);
    for (const n of [1, 2, 3]) {
      const db = url(3 + n);
      const logs: string[] = [];
      const ws = Array.from({ length: n }, () => {
        const c = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'worker', '--queue', db, '--threads', '1'], { cwd: ROOT });
        let e = '';
        c.stderr!.on('data', (d) => (e += d));
        logs.push('');
        kids.push(c);
        return { c, ready: () => /waiting for/.test(e), warm: () => /: done \(/.test(e) };
      });
      await waitFor(() => ws.every((w) => w.ready()), 120_000);
      // Warm-up (each worker loads the model on its first shard) until every worker has done a shard,
      // so that the measured run compares steady states.
      for (let round = 0; round < 10 && !ws.every((w) => w.warm()); round++) {
        await indexWithQueue(files.slice(round * 3 * n, (round + 1) * 3 * n), { db: path.join(tmp, `warm${n}.db`), queue: db, model: MODEL, shardSize: 1, pollMs: 50 });
      }
      const t1 = performance.now();
      let embedded = 0;
      const r = await indexWithQueue([dir], {
        db: path.join(tmp, `t${n}.db`), queue: db, model: MODEL, shardSize: 8, pollMs: 50,
        onProgress: (p) => {
          if (p.shardsDone === p.shards && !embedded) embedded = (performance.now() - t1) / 1000;
        },
      });
      const s = (performance.now() - t1) / 1000;
      console.log(`${n} worker process${n > 1 ? 'es' : ''} (threads 1 each), shards of 8: ${(r.appended / embedded).toFixed(1)} images/s until every shard file is written, `
        + `${(r.appended / s).toFixed(1)} images/s incl. the append (${r.appended} images, ${embedded.toFixed(1)} s + ${(s - embedded).toFixed(1)} s append); load average ${os.loadavg()[0]!.toFixed(0)}`);
      for (const w of ws) w.c.kill('SIGTERM');
      await Promise.all(ws.map((w) => new Promise((res) => w.c.once('close', res))));
    }
  }
  redis.disconnect();
}

try {
  await main();
} finally {
  for (const k of kids) k.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.exit(0);
