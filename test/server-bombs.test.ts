// Decompression bombs against a real `altclip serve` (tiny fixture model, loopback, ephemeral port):
// RLE-delta BMPs declaring 9400 x 9400 in 342 bytes and flat 9400 x 9400 PNGs (~260 KB), several per
// request, several requests at once, while /health is polled. Every request gets an answer (2xx, or a
// JSON 4xx: 413 for the one whose images alone exceed --max-pixels-in-flight), /health keeps
// answering throughout (its latency is printed, not bounded: the machine is shared), and the server's
// peak RSS (VmHWM) stays under a bound derived from the budget.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';

import { dataUri, flatPng, rleDeltaBmp } from './helpers/bombs.js';
import { type Served, startServe } from './helpers/cli.js';
import { FIXTURES } from './helpers/goldens.js';

const MODEL = path.join(FIXTURES, 'models', 'tiny-altclip');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-bombs-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const SIDE = 9400; // the issue's bombs: 88.36 M pixels each, under the decoder's 89.48 M limit
const BOMB_PIXELS = SIDE * SIDE;
const BUDGET = 2 * BOMB_PIXELS; // two bombs in flight at a time, all requests together
// What preparing one declared pixel takes at most is ~4 bytes (an RLE BMP: 1-byte index plane + RGB);
// the bound allows twice that (garbage not yet collected, allocator slack): generous, not a tight fit.
const BYTES_PER_PIXEL = 8;
const SLACK = 256 * 2 ** 20;

function vm(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

function serve(args: string[]): Promise<Served> {
  return startServe(['--model', MODEL, '--host', '127.0.0.1', '--port', '0', '--threads', '1', ...args], path.join(tmp, 'cache'));
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function post(url: string, body: unknown): Promise<{ status: number; json: Json }> {
  // the hang guard: an answer must come (a bounded wait, not a speed bound)
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(300_000) });
  return { status: res.status, json: (await res.json()) as Json };
}

test('bombs: every request answered, /health answers throughout, peak RSS bounded by the pixel budget', { timeout: 600_000 }, async () => {
  const rle8 = dataUri(rleDeltaBmp(SIDE, SIDE), 'image/bmp');
  const rle4 = dataUri(rleDeltaBmp(SIDE, SIDE, true), 'image/bmp');
  const png = dataUri(flatPng(SIDE, SIDE), 'image/png');
  const pngA = dataUri(flatPng(SIDE, SIDE, true), 'image/png');
  const cat = dataUri(fs.readFileSync(path.join(FIXTURES, 'images', 'cat.jpg')), 'image/jpeg');

  const s = await serve(['--max-pixels-in-flight', String(BUDGET)]);
  try {
    const pid = s.child.pid!;
    // warm: the image graph and the preparing threads exist before the baseline is read
    assert.equal((await post(`${s.url}/v1/embeddings`, { input: [cat, cat], modality: 'image' })).status, 200);
    const baseline = vm(pid, 'VmHWM');

    // /health, polled every 100 ms while the bombs are in flight
    const health: number[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const t = performance.now();
        const res = await fetch(`${s.url}/health`, { signal: AbortSignal.timeout(60_000) });
        await res.arrayBuffer();
        assert.equal(res.status, 200);
        health.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    const requests: [string, string, unknown][] = [
      ['2 RLE8 BMPs', '/v1/embeddings', { input: [rle8, rle8], modality: 'image' }],
      ['2 flat PNGs', '/v1/embeddings', { input: [png, png], modality: 'image' }],
      ['RLE4 BMP + flat RGBA PNG', '/v1/embeddings', { input: [rle4, pngA], modality: 'image' }],
      ['5 bombs (over the budget)', '/v1/embeddings', { input: [rle8, png, rle4, pngA, rle8], modality: 'image' }],
      ['classify an RLE8 BMP', '/v1/classify', { image: rle8, labels: ['a cat', 'a dog'] }],
      ['similarity, flat PNG + cat', '/v1/similarity', { images: [png, cat], texts: ['a cat'] }],
    ];
    const t0 = performance.now();
    const answers = await Promise.all(requests.map(async ([name, route, body]) => ({ name, ...(await post(`${s.url}${route}`, body)), ms: performance.now() - t0 })));
    polling = false;
    await poller;
    const peak = vm(pid, 'VmHWM');

    for (const a of answers) {
      console.log(`# ${a.name}: ${a.status} after ${a.ms.toFixed(0)} ms${a.status >= 400 ? ` (${a.json.error?.message?.slice(0, 90)})` : ''}`);
      if (a.status >= 400) {
        assert.ok(a.status < 500, `${a.name}: ${a.status}`);
        assert.equal(typeof a.json.error?.message, 'string', `${a.name}: JSON error`);
        assert.equal(typeof a.json.error?.type, 'string', `${a.name}: JSON error`);
      }
    }
    const status = Object.fromEntries(answers.map((a) => [a.name, a.status]));
    assert.equal(status['5 bombs (over the budget)'], 413, 'a request over the whole budget is refused');
    assert.equal(answers.find((a) => a.status === 413)!.json.error.type, 'payload_too_large');
    for (const name of ['2 RLE8 BMPs', '2 flat PNGs', 'RLE4 BMP + flat RGBA PNG', 'classify an RLE8 BMP', 'similarity, flat PNG + cat']) {
      assert.equal(status[name], 200, `${name} fits the budget: it waits its turn and is answered`);
    }
    const embedded = answers.find((a) => a.name === '2 flat PNGs')!.json;
    assert.equal(embedded.data.length, 2);

    const sorted = [...health].sort((a, b) => a - b);
    const bound = baseline + BUDGET * BYTES_PER_PIXEL + SLACK;
    console.log(`# /health: ${health.length} answers during the bombs, all 200; latency p50 ${sorted[sorted.length >> 1]!.toFixed(0)} ms, p90 ${sorted[Math.floor(sorted.length * 0.9)]!.toFixed(0)} ms, max ${sorted.at(-1)!.toFixed(0)} ms (load average ${os.loadavg()[0]!.toFixed(1)})`);
    console.log(`# VmHWM: ${(baseline / 2 ** 20).toFixed(0)} MiB warm, ${(peak / 2 ** 20).toFixed(0)} MiB after the bombs; bound ${(bound / 2 ** 20).toFixed(0)} MiB (warm + ${BUDGET} pixels x ${BYTES_PER_PIXEL} B + ${SLACK / 2 ** 20} MiB)`);
    assert.ok(health.length >= 2, `/health answered ${health.length} times`);
    assert.ok(peak < bound, `VmHWM ${peak} >= ${bound}`);

    // the rejection is counted, and the server still serves ordinary images
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert.match(metrics, /^altclip_pixel_budget_rejected_total 1$/m);
    assert.equal((await post(`${s.url}/v1/embeddings`, { input: [cat], modality: 'image' })).status, 200);
  } finally {
    s.child.kill('SIGTERM');
    const timer = setTimeout(() => s.child.kill('SIGKILL'), 30_000);
    await s.exit;
    clearTimeout(timer);
  }
});
