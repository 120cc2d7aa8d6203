// One request of N flat 9400 x 9400 PNGs (test/helpers/bombs.ts) against a real `altclip serve` (tiny
// fixture model by default, loopback, ephemeral port): its answer, the server's peak RSS (VmHWM) before
// and after, and /health latency polled every 100 ms meanwhile. Bounded: one request, then SIGTERM.
//
//   node --import tsx bench/serve_bombs.ts [--images 8] [--max-pixels-in-flight N] [--model dir]
//   ALTCLIP_DECODE_THREADS=0 node --import tsx bench/serve_bombs.ts ...   # images prepared on the event loop
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { dataUri, flatPng } from '../test/helpers/bombs.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const opts = new Command()
  .option('--images <n>', 'flat PNGs in the request', '8')
  .option('--max-pixels-in-flight <n>', 'the server budget (default: none a request reaches)', String(Number.MAX_SAFE_INTEGER))
  .option('--model <dir>', 'model folder', join(root, 'test', 'fixtures', 'models', 'tiny-altclip'))
  .parse()
  .opts<{ images: string; maxPixelsInFlight: string; model: string }>();

const png = dataUri(flatPng(9400, 9400), 'image/png');
const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src', 'cli', 'main.ts'), 'serve', '--model', opts.model, '--host', '127.0.0.1', '--port', '0',
  '--threads', '1', '--max-pixels-in-flight', opts.maxPixelsInFlight], { cwd: root, env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['ignore', 'pipe', 'inherit'] });
const hwm = () => Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024;
try {
  const url = await new Promise<string>((ok, fail) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error('no "listening on" within 120 s')), 120_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) (clearTimeout(timer), ok(m[1]!));
    });
    child.on('exit', (code) => fail(new Error(`server exited with ${code}`)));
  });
  const warm = hwm();
  const health: number[] = [];
  let polling = true;
  const poll = (async () => {
    while (polling) {
      const t = performance.now();
      await fetch(`${url}/health`, { signal: AbortSignal.timeout(120_000) }).then((r) => r.arrayBuffer());
      health.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const t = performance.now();
  const res = await fetch(`${url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(600_000),
    body: JSON.stringify({ input: Array(Number(opts.images)).fill(png), modality: 'image' }) });
  await res.arrayBuffer();
  const ms = performance.now() - t;
  polling = false;
  await poll;
  console.log(`${opts.images} flat 9400x9400 PNGs, decode threads ${process.env.ALTCLIP_DECODE_THREADS ?? 'default'}, --max-pixels-in-flight ${opts.maxPixelsInFlight}: ` +
    `${res.status} in ${ms.toFixed(0)} ms; VmHWM ${warm.toFixed(0)} -> ${hwm().toFixed(0)} MiB; /health max ${Math.max(...health).toFixed(0)} ms over ${health.length} polls ` +
    `(load average ${loadavg()[0]!.toFixed(1)})`);
} finally {
  child.kill('SIGTERM');
}
