// `altclip serve` under load, on the full-size random checkpoint (bench/generate_checkpoint.ts), loopback
// only, bounded durations. One server process loads the model once and serves it through three apps on
// three ports: dynamic batching on (max batch 16, max wait 5 ms), off (max batch 1: every input its own
// model call) and "small queue" (batching on, max queue 32) for the overload run. The load comes from
// this process (autocannon, closed loop, N connections); on and off are measured alternately, cell by
// cell, so a slow phase of the shared machine falls on both.
//
//   node --import tsx bench/serve.ts [--duration 15] [--rss-requests 10000] [--overload-seconds 20] [--json out.json]
//   node --import tsx bench/serve.ts --budget-ab 4 [--duration 10] [--concurrency 8] [--decode-threads N]
//
// --budget-ab R: only the cost of the pixel budget (--max-pixels-in-flight, src/server/budget.ts): image
// requests at the given concurrency against two apps of the same process, batching on, one with the
// default budget and one without (a budget no request reaches), alternating, R rounds each.
// --decode-threads N runs the server with ALTCLIP_DECODE_THREADS=N (0: images prepared on the event
// loop, as before the preparing threads).
//
// Measured: throughput and p50/p99 for text and image embeddings at concurrency 1, 8, 32, batching on
// and off; the server's RSS before and after --rss-requests text requests; an open-loop run at 2x the
// measured image capacity against the small queue (429s, no crash, p99 of the admitted requests).
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Command } from 'commander';
import { defaultCheckpointDir, ensureCheckpoint } from './generate_checkpoint.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

const program = new Command()
  .option('--child', 'internal: be the server process')
  .option('--model <dir>', 'checkpoint folder (default: the generated full-size one)')
  .option('--dtype <dtype>', 'fp32 or q8', 'fp32')
  .option('--duration <s>', 'seconds per throughput cell (0: a fixed number of requests, --per-connection)', '15')
  .option('--per-connection <n>', 'with --duration 0: requests per connection in a cell (at least 8 per cell)', '4')
  .option('--modalities <list>', 'text,image', 'text,image')
  .option('--concurrency <list>', 'connections per cell', '1,8,32')
  .option('--rss-requests <n>', 'text requests between the two RSS readings', '10000')
  .option('--overload-seconds <s>', 'length of the 2x-capacity run', '20')
  .option('--budget-ab <rounds>', 'only the pixel-budget A/B: image cells, budget on vs off, alternating (0: off)', '0')
  .option('--decode-threads <n>', 'ALTCLIP_DECODE_THREADS for the server (default: its own default)')
  .option('--json <file>', 'write the raw results here', join(here, '.cache', 'serve-last.json'))
  .parse();
const opts = program.opts<{ child?: boolean; model?: string; dtype: 'fp32' | 'q8'; duration: string; perConnection: string; modalities: string; concurrency: string;
  rssRequests: string; overloadSeconds: string; json: string; budgetAb: string; decodeThreads?: string }>();

const TEXT = 'a photo of a cat sitting on a sofa';
const IMAGE_URI = `data:image/jpeg;base64,${fs.readFileSync(join(root, 'test', 'fixtures', 'images', 'cat.jpg')).toString('base64')}`;
const body = (modality: 'text' | 'image') => JSON.stringify({ input: [modality === 'text' ? TEXT : IMAGE_URI], modality });

if (opts.child) await child();
else await driver();

// --- the server process ---------------------------------------------------------------------------
async function child(): Promise<void> {
  const { loadAltCLIP } = await import('../src/tasks/index.js');
  const { createServer } = await import('../src/server/index.js');
  const t0 = performance.now();
  const clip = await loadAltCLIP(opts.model!, { dtype: opts.dtype, graphCacheDir: join(here, '.cache', `graphs-serve-${opts.dtype}`) });
  const loadSeconds = (performance.now() - t0) / 1000;
  const apps = {
    on: await createServer({ clip, modelName: 'bench', batching: { maxBatchSize: 16, maxWaitMs: 5, maxQueue: 4096, concurrency: 2 } }),
    off: await createServer({ clip, modelName: 'bench', batching: { maxBatchSize: 1, maxWaitMs: 0, maxQueue: 4096, concurrency: 2 } }),
    small: await createServer({ clip, modelName: 'bench', maxInputs: 32, batching: { maxBatchSize: 16, maxWaitMs: 5, maxQueue: 32, concurrency: 2 } }),
    // batching on, and a pixel budget no request reaches: the budget's cost is `on` against this
    unbudgeted: await createServer({ clip, modelName: 'bench', maxPixelsInFlight: Number.MAX_SAFE_INTEGER, batching: { maxBatchSize: 16, maxWaitMs: 5, maxQueue: 4096, concurrency: 2 } }),
  };
  const urls: Record<string, string> = {};
  for (const [name, app] of Object.entries(apps)) {
    await app.listen({ host: '127.0.0.1', port: 0 });
    urls[name] = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  }
  process.stdout.write(`${JSON.stringify({ urls, loadSeconds })}\n`);
  process.once('SIGTERM', async () => {
    for (const app of Object.values(apps)) await app.close();
    await clip.model.dispose();
    process.exit(0);
  });
}

// --- the load generator ---------------------------------------------------------------------------
interface Cell { modality: string; mode: string; connections: number; rps: number; p50: number; p99: number; ok: number; non2xx: number; errors: number }

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function cannon(url: string, modality: 'text' | 'image', connections: number, more: Partial<autocannon.Options>): Promise<autocannon.Result> {
  return autocannon({
    url: `${url}/v1/embeddings`, method: 'POST', headers: { 'content-type': 'application/json' }, body: body(modality),
    connections, timeout: 120, ...more,
  });
}

/** Open loop: `rate` requests/s for `seconds`, each timed on its own; latencies by status. */
async function openLoop(url: string, rate: number, seconds: number): Promise<{ sent: number; byStatus: Record<string, number>; okLatencies: number[]; errors: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const payload = body('image');
  const byStatus: Record<string, number> = {};
  const okLatencies: number[] = [];
  let errors = 0;
  const pending: Promise<void>[] = [];
  const start = performance.now();
  const total = Math.round(rate * seconds);
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pending.push(new Promise<void>((done) => {
      const t = performance.now();
      const req = http.request(`${url}/v1/embeddings`, { method: 'POST', agent, headers: { 'content-type': 'application/json' }, timeout: 120_000 }, (res) => {
        res.resume();
        res.on('end', () => {
          const s = String(res.statusCode);
          byStatus[s] = (byStatus[s] ?? 0) + 1;
          if (res.statusCode === 200) okLatencies.push(performance.now() - t);
          done();
        });
      });
      req.on('error', () => {
        errors++;
        done();
      });
      req.end(payload);
    }));
  }
  await Promise.all(pending);
  agent.destroy();
  return { sent: total, byStatus, okLatencies, errors };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
}

async function driver(): Promise<void> {
  const model = opts.model ?? ensureCheckpoint(defaultCheckpointDir());
  const log = (m: string) => process.stderr.write(`${m}\n`);
  log(`bench/serve: ${cpus()[0]?.model} x${availableParallelism()}, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const server: ChildProcess = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', '--model', model, '--dtype', opts.dtype], {
    cwd: root, stdio: ['ignore', 'pipe', 'inherit'],
    env: opts.decodeThreads === undefined ? process.env : { ...process.env, ALTCLIP_DECODE_THREADS: opts.decodeThreads },
  });
  const ready = await new Promise<{ urls: Record<string, string>; loadSeconds: number }>((resolveReady, reject) => {
    let out = '';
    server.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolveReady(JSON.parse(line));
    });
    server.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  const { urls } = ready;
  const pid = server.pid!;
  log(`server up (model loaded in ${ready.loadSeconds.toFixed(1)} s), RSS ${(rssBytes(pid) / 2 ** 20).toFixed(0)} MiB`);
  const results: { cells: Cell[]; rss?: unknown; overload?: unknown; budget?: unknown; peakRssMiB?: number; loadSeconds: number; started: string; loadavg: number[]; cpu: string } = {
    cells: [], loadSeconds: ready.loadSeconds, started: new Date().toISOString(), loadavg: loadavg(), cpu: cpus()[0]?.model ?? '',
  };
  try {
    if (Number(opts.budgetAb) > 0) {
      results.budget = await budgetAb(urls, Number(opts.budgetAb), log);
    } else {
      // Warm-up: every graph shape the cells use.
      for (const modality of opts.modalities.split(',') as ('text' | 'image')[]) {
        for (const mode of ['on', 'off']) await cannon(urls[mode]!, modality, 8, { amount: 8 });
      }
      const duration = Number(opts.duration);
      for (const connections of opts.concurrency.split(',').map(Number)) {
        for (const modality of opts.modalities.split(',') as ('text' | 'image')[]) {
          // Alternate which mode goes first, so neither always gets the machine's "first" phase.
          const order = (connections + (modality === 'image' ? 1 : 0)) % 2 ? ['on', 'off'] : ['off', 'on'];
          for (const mode of order) {
            // A fixed duration counts only the answers inside it; with slow answers (a loaded machine) a fixed
            // number of requests, timed from first sent to last answered, is the meaningful measure.
            const t0 = performance.now();
            const r = await cannon(urls[mode]!, modality, connections, duration > 0 ? { duration } : { amount: Math.max(8, connections * Number(opts.perConnection)) });
            const seconds = (performance.now() - t0) / 1000;
            const cell: Cell = { modality, mode, connections, rps: duration > 0 ? r.requests.average : r['2xx'] / seconds, p50: r.latency.p50, p99: r.latency.p99, ok: r['2xx'], non2xx: r.non2xx, errors: r.errors + r.timeouts };
            results.cells.push(cell);
            log(`${modality.padEnd(5)} c=${String(connections).padEnd(2)} batching ${mode.padEnd(3)}: ${cell.rps.toFixed(2)} req/s, p50 ${cell.p50} ms, p99 ${cell.p99} ms, non-2xx ${cell.non2xx}, errors ${cell.errors}  (load avg ${loadavg()[0]!.toFixed(1)})`);
          }
        }
      }

      // RSS before/after many requests (text, batching on, 32 connections).
      const n = Number(opts.rssRequests);
      if (n > 0) {
        const before = rssBytes(pid);
        const t0 = performance.now();
        const r = await cannon(urls.on!, 'text', 32, { amount: n });
        const after = rssBytes(pid);
        results.rss = { requests: n, ok: r['2xx'], non2xx: r.non2xx, errors: r.errors + r.timeouts, before, after, growthMiB: (after - before) / 2 ** 20, seconds: (performance.now() - t0) / 1000 };
        log(`RSS over ${n} text requests: ${(before / 2 ** 20).toFixed(0)} -> ${(after / 2 ** 20).toFixed(0)} MiB (${((after - before) / 2 ** 20).toFixed(1)} MiB), ${r['2xx']} ok, ${r.non2xx} non-2xx, ${(performance.now() - t0) / 1000 | 0} s`);
      }

      // 2x capacity, open loop, against the small queue.
      const capacity = Math.max(...results.cells.filter((c) => c.modality === 'image' && c.mode === 'on').map((c) => c.rps));
      const seconds = Number(opts.overloadSeconds);
      if (seconds > 0 && capacity > 0) {
        const rate = 2 * capacity;
        const o = await openLoop(urls.small!, rate, seconds);
        const health = await fetch(`${urls.small}/health`).then((r) => r.status).catch(() => 0);
        results.overload = { capacity, rate, seconds, ...o, okLatencies: undefined, okP50: pct(o.okLatencies, 50), okP99: pct(o.okLatencies, 99), okMax: Math.max(...o.okLatencies), healthAfter: health, serverAlive: server.exitCode === null };
        log(`2x capacity (${rate.toFixed(1)} req/s for ${seconds} s, queue 32): ${JSON.stringify(o.byStatus)}, errors ${o.errors}, admitted p50 ${pct(o.okLatencies, 50).toFixed(0)} ms p99 ${pct(o.okLatencies, 99).toFixed(0)} ms, /health after: ${health}, server alive: ${server.exitCode === null}`);
      }
    }
  } finally {
    results.peakRssMiB = vmHwm(pid) / 2 ** 20;
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  fs.mkdirSync(dirname(opts.json), { recursive: true });
  fs.writeFileSync(opts.json, JSON.stringify(results, null, 1));
  log(`raw results: ${opts.json}`);
  process.stdout.write(`${table(results.cells)}\n`);
}

function vmHwm(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Image req/s with the default pixel budget (`on`) and without (`unbudgeted`), alternating, `rounds` each. */
async function budgetAb(urls: Record<string, string>, rounds: number, log: (m: string) => void): Promise<unknown> {
  const connections = Number(opts.concurrency.split(',')[0]);
  const duration = Number(opts.duration);
  for (const mode of ['on', 'unbudgeted']) await cannon(urls[mode]!, 'image', connections, { amount: 2 * connections });
  const rps: Record<string, number[]> = { on: [], unbudgeted: [] };
  for (let r = 0; r < rounds; r++) {
    for (const mode of r % 2 ? ['unbudgeted', 'on'] : ['on', 'unbudgeted']) {
      const res = await cannon(urls[mode]!, 'image', connections, { duration });
      rps[mode]!.push(res.requests.average);
      log(`image c=${connections} ${mode === 'on' ? 'budget   ' : 'no budget'}: ${res.requests.average.toFixed(2)} req/s, p50 ${res.latency.p50} ms, p99 ${res.latency.p99} ms, non-2xx ${res.non2xx}  (load avg ${loadavg()[0]!.toFixed(1)})`);
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const ratios = rps.on!.map((x, i) => x / rps.unbudgeted![i]!);
  log(`budget / no budget: mean ${mean(rps.on!).toFixed(2)} / ${mean(rps.unbudgeted!).toFixed(2)} req/s = ${(mean(rps.on!) / mean(rps.unbudgeted!)).toFixed(3)}x (per round: ${ratios.map((x) => x.toFixed(3)).join(', ')})`);
  return { connections, duration, rounds, rps, decodeThreads: opts.decodeThreads ?? 'default' };
}

function table(cells: Cell[]): string {
  const lines = ['| input | connections | batching | req/s | p50 ms | p99 ms | on/off req/s |', '|---|---|---|---|---|---|---|'];
  for (const c of cells) {
    const other = cells.find((x) => x.modality === c.modality && x.connections === c.connections && x.mode !== c.mode);
    const ratio = c.mode === 'on' && other ? `${(c.rps / other.rps).toFixed(2)}×` : '';
    lines.push(`| ${c.modality} | ${c.connections} | ${c.mode} | ${c.rps.toFixed(2)} | ${c.p50} | ${c.p99} | ${ratio} |`);
  }
  return lines.join('\n');
}
