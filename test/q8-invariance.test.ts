// Batch invariance (issue 25): an embedding is a function of its input and the model, never of what
// else is in its batch. For q8 (the default scheme, quantize.ts) and fp32, on the fixture models:
// every input alone vs in batches of other sizes and orders (model calls), a request alone vs merged
// with concurrent ones by a real `altclip serve`, `altclip embed` at batch sizes 1, 3 and 8, and a
// worker fleet (`altclip index --queue` on a real redis-server) at shard sizes 3 and 8. The
// opt-in per-tensor scheme is run through the same check to show that the check catches a scheme
// that is not invariant. Differences are printed per case ("identical" where they are 0).
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

import * as lancedb from '@lancedb/lancedb';

import { readNpyHeader } from '../src/cli/npy.js';
import { AltCLIPModel } from '../src/models/altclip.js';
import { DEFAULT_Q8_SCHEME } from '../src/models/quantize.js';
import { AltCLIPProcessor } from '../src/processor.js';
import { Tensor } from '../src/tensor.js';
import { FENCE_PATH } from '../src/search/store.js';
import { altclip, start, startAltclip } from './helpers/cli.js';
import { FIXTURES } from './helpers/goldens.js';
import { withEnv } from './helpers/env.js';
import { requireProgram } from './helpers/system.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-q8-inv-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const cache = path.join(tmp, 'cache');
const IMAGES = fs.readdirSync(path.join(FIXTURES, 'images')).sort().map((f) => path.join(FIXTURES, 'images', f));
// lengths from 1 to ~30 tokens: batches mix paddings and length groups (towers.ts' pooled)
const TEXTS = ['a photo of a cat', 'x', '一只猫的照片', 'une tasse de café sur une table en bois, le matin, près de la fenêtre',
  'ein Porträt in Graustufen', 'палитра', 'a tall building at night with many lit windows and a red light on the roof', '🙂 ok'];
const TOL = 1e-6;

type Rows = Float32Array[];
const rowsOf = (t: Tensor): Rows => {
  const [r, c] = t.dims as [number, number];
  return Array.from({ length: r }, (_, i) => (t.data as Float32Array).slice(i * c, (i + 1) * c));
};
const maxDiff = (a: Float32Array, b: Float32Array) => {
  assert.equal(a.length, b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
};

/** The largest difference between each row and the same input's row in `alone`. */
function worstVsAlone(rows: Rows, order: number[], alone: Rows): number {
  return Math.max(...rows.map((r, k) => maxDiff(r, alone[order[k]!]!)));
}

function take<T extends BigInt64Array | Float32Array>(t: Tensor, order: number[]): Tensor {
  const [n, ...rest] = t.dims as number[];
  const size = t.data.length / n!;
  const src = t.data as T;
  const out = new (src.constructor as new (n: number) => T)(order.length * size);
  order.forEach((i, k) => out.set(src.subarray(i * size, (i + 1) * size) as never, k * size));
  return new Tensor(t.type, out, [order.length, ...rest]);
}

/** Sub-batches of 0..n-1: one of each size that fits, in shuffled orders. */
function batchings(n: number): number[][] {
  const all = Array.from({ length: n }, (_, i) => i);
  return [all, [...all].reverse(), [3, 0, 5], [7, 1], all.filter((i) => i % 2), [n - 1, 2, 4, 6, 0, 1]].map((o) => o.filter((i) => i < n));
}

const withScheme = <T>(scheme: string | undefined, fn: () => Promise<T>): Promise<T> => withEnv({ ALTCLIP_Q8_SCHEME: scheme }, fn);

/** Image and text features of every fixture input, alone and in each batching: the worst differences. */
async function modelCallDiffs(name: string, dtype: 'fp32' | 'q8', scheme?: string) {
  const ckpt = path.join(FIXTURES, 'models', name);
  const processor = await AltCLIPProcessor.fromPretrained(ckpt);
  const model = await withScheme(scheme, () => AltCLIPModel.fromPretrained(ckpt, { dtype, graphCacheDir: cache, threads: 1 }));
  try {
    const pixels = (await processor.process({ images: IMAGES.slice(0, 8) })).pixelValues!;
    const text = await processor.process({ text: TEXTS, padding: true });
    const ids = text.inputIds!, mask = text.attentionMask!;
    const n = 8;
    const aloneImg: Rows = [];
    const aloneTxt: Rows = [];
    for (let i = 0; i < n; i++) {
      aloneImg.push(rowsOf(await model.getImageFeatures({ pixelValues: take(pixels, [i]) }))[0]!);
      // alone and unpadded: cut to its own length
      const len = (mask.data as BigInt64Array).subarray(i * mask.dims[1]!, (i + 1) * mask.dims[1]!).reduce((s, v) => s + Number(v), 0);
      const one = (t: Tensor) => new Tensor('int64', (t.data as BigInt64Array).slice(i * t.dims[1]!, i * t.dims[1]! + len), [1, len]);
      aloneTxt.push(rowsOf(await model.getTextFeatures({ inputIds: one(ids), attentionMask: one(mask) }))[0]!);
    }
    let image = 0;
    let textDiff = 0;
    for (const order of batchings(n)) {
      image = Math.max(image, worstVsAlone(rowsOf(await model.getImageFeatures({ pixelValues: take(pixels, order) })), order, aloneImg));
      const t = await model.getTextFeatures({ inputIds: take(ids, order), attentionMask: take(mask, order) });
      textDiff = Math.max(textDiff, worstVsAlone(rowsOf(t), order, aloneTxt));
    }
    return { image, text: textDiff, aloneImg, aloneTxt };
  } finally {
    await model.dispose();
  }
}

const show = (d: number) => (d === 0 ? 'identical' : d.toExponential(2));

describe('batch invariance', () => {
  for (const name of ['tiny-altclip', 'tiny-altclip-b']) {
    for (const dtype of ['q8', 'fp32'] as const) {
      it(`${name} ${dtype}: each input alone = in batches of 2-8 in any order (images; texts of other lengths)`, async () => {
        const d = await modelCallDiffs(name, dtype);
        console.log(`${name} ${dtype}${dtype === 'q8' ? ` (${DEFAULT_Q8_SCHEME})` : ''}: images ${show(d.image)}, texts ${show(d.text)}`);
        assert.ok(d.image <= TOL, `images: ${d.image}`);
        assert.ok(d.text <= TOL, `texts: ${d.text}`);
      });
    }
  }

  it('the same check catches a scheme that is not invariant (opt-in per-tensor ort-dynamic-w7)', async () => {
    const d = await modelCallDiffs('tiny-altclip', 'q8', 'ort-dynamic-w7');
    console.log(`tiny-altclip q8 (ort-dynamic-w7): images ${show(d.image)}, texts ${show(d.text)}`);
    assert.ok(d.image > 1e-4 && d.text > 1e-4, JSON.stringify({ image: d.image, text: d.text }));
  });

  it('altclip serve --dtype q8 / fp32: a request alone = the same input merged with concurrent requests', async () => {
    const dataUri = (f: string) => `data:image/${f.endsWith('.png') ? 'png' : 'jpeg'};base64,${fs.readFileSync(f).toString('base64')}`;
    const images = IMAGES.slice(0, 6);
    for (const dtype of ['q8', 'fp32']) {
      // a partial batch waits up to 2 s for more: the concurrent requests below are merged into one model call
      const s = start(process.execPath, ['--import', 'tsx', path.join('src', 'cli', 'main.ts'), 'serve', '--model',
        path.join(FIXTURES, 'models', 'tiny-altclip'), '--port', '0', '--host', '127.0.0.1', '--threads', '1', '--dtype', dtype,
        '--max-wait-ms', '2000', '--max-batch-size', '16'], cache, { env: { ALTCLIP_API_KEY: '' } });
      try {
        let url = '';
        let stdout = '';
        s.child.stdout.on('data', (d) => (stdout += d));
        for (let i = 0; i < 600 && !url; i++) {
          url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)?.[1] ?? '';
          if (!url) await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(url, `no "listening on" within 60 s: ${s.stderr()}`);
        const embed = async (input: string | string[], modality: string) => {
          const res = await fetch(`${url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input, modality }) });
          assert.equal(res.status, 200, await res.clone().text());
          return ((await res.json()) as { data: { embedding: number[] }[] }).data.map((d) => Float32Array.from(d.embedding));
        };
        /** Model calls so far, per modality (the batch-size histogram's count). */
        const calls = async () => {
          const text = await (await fetch(`${url}/metrics`)).text();
          return Object.fromEntries([...text.matchAll(/^altclip_batch_size_count\{modality="(image|text)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
        };
        const alone: Rows = [];
        for (const f of images) alone.push((await embed(dataUri(f), 'image'))[0]!);
        const aloneText: Rows = [];
        for (const t of TEXTS) aloneText.push((await embed(t, 'text'))[0]!);
        const before = await calls();
        // concurrent: one request per image (and a two-image one), and the texts, all at once
        const merged = await Promise.all([...images.map((f) => embed(dataUri(f), 'image')), embed([dataUri(images[4]!), dataUri(images[1]!)], 'image')]);
        const mergedText = await Promise.all(TEXTS.map((t) => embed(t, 'text')));
        let image = Math.max(...merged.slice(0, images.length).map((r, i) => maxDiff(r[0]!, alone[i]!)));
        image = Math.max(image, maxDiff(merged.at(-1)![0]!, alone[4]!), maxDiff(merged.at(-1)![1]!, alone[1]!));
        const text = Math.max(...mergedText.map((r, i) => maxDiff(r[0]!, aloneText[i]!)));
        const after = await calls();
        const imageCalls = after.image! - before.image!, textCalls = after.text! - before.text!;
        console.log(`serve ${dtype}: merged vs alone: images ${show(image)}, texts ${show(text)} (${images.length + 1} image requests in ${imageCalls} model calls, ${TEXTS.length} text requests in ${textCalls})`);
        assert.ok(imageCalls < images.length + 1 && textCalls < TEXTS.length, 'the concurrent requests were merged');
        assert.ok(image <= TOL, `images ${image}`);
        assert.ok(text <= TOL, `texts ${text}`);
      } finally {
        s.child.kill('SIGTERM');
        await s.done;
      }
    }
  });

  it('altclip embed --dtype q8 / fp32: the same rows at --batch-size 1, 3 and 8', async () => {
    const npyRows = (file: string): Rows => {
      const h = readNpyHeader(file);
      const bytes = fs.readFileSync(file).subarray(h.dataOffset);
      const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
      return Array.from({ length: h.rows }, (_, i) => data.slice(i * h.cols, (i + 1) * h.cols));
    };
    for (const dtype of ['q8', 'fp32']) {
      const outs: Rows[] = [];
      for (const bs of [1, 3, 8]) {
        const out = path.join(tmp, `embed-${dtype}-${bs}.npy`);
        const r = await altclip(['embed', ...IMAGES.slice(0, 8), '--texts', ...TEXTS, '--out', out, '--model',
          path.join(FIXTURES, 'models', 'tiny-altclip'), '--dtype', dtype, '--batch-size', String(bs), '--threads', '1'], cache);
        assert.equal(r.code, 0, r.stderr);
        outs.push(npyRows(out));
      }
      assert.equal(outs[0]!.length, 8 + TEXTS.length);
      const d = Math.max(...outs.slice(1).flatMap((rows) => rows.map((row, i) => maxDiff(row, outs[0]![i]!))));
      console.log(`embed ${dtype}: batch sizes 3, 8 vs 1: ${show(d)}`);
      assert.ok(d <= TOL, `${dtype}: ${d}`);
    }
  });

  it('a worker fleet (altclip index --queue, redis-server on loopback): shard sizes 3 and 8 = the single-process index, q8 and fp32', async () => {
    const dir = path.join(tmp, 'fleet-images');
    fs.mkdirSync(dir, { recursive: true });
    for (const f of IMAGES.slice(0, 8)) fs.copyFileSync(f, path.join(dir, path.basename(f)));
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
      srv.on('error', reject);
    });
    const redisDir = fs.mkdtempSync(path.join(tmp, 'redis-'));
    const redis = spawn(requireProgram('redis-server'), ['--port', String(port), '--bind', '127.0.0.1', '--dir', redisDir, '--save', '', '--appendonly', 'no', '--protected-mode', 'yes']);
    let redisOut = '';
    redis.stdout.on('data', (d) => (redisOut += d));
    const rowsOf = async (db: string) => {
      const conn = await lancedb.connect(db);
      const table = await conn.openTable('images');
      const out = new Map<string, Float32Array>();
      for (const r of await table.query().toArray()) {
        if (r.path === FENCE_PATH) continue; // the writers' fence row (src/search/store.ts), not an image
        out.set(r.path as string, Float32Array.from((r.vector as { toArray(): Float32Array }).toArray()));
      }
      table.close();
      return out;
    };
    const model = path.join(FIXTURES, 'models', 'tiny-altclip');
    try {
      for (let i = 0; i < 300 && !/Ready to accept connections/.test(redisOut); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(redisOut, /Ready to accept connections/);
      for (const [k, dtype] of (['q8', 'fp32'] as const).entries()) {
        const single = await altclip(['index', dir, '--db', path.join(tmp, `fleet-ref-${dtype}.db`), '--model', model, '--dtype', dtype, '--threads', '1'], cache);
        assert.equal(single.code, 0, single.stderr);
        const ref = await rowsOf(path.join(tmp, `fleet-ref-${dtype}.db`));
        assert.equal(ref.size, 8);
        for (const [j, shard] of [3, 8].entries()) {
          const queue = `redis://127.0.0.1:${port}/${2 * k + j}`;
          const db = path.join(tmp, `fleet-${dtype}-${shard}.db`);
          const worker = startAltclip(['worker', '--queue', queue, '--dtype', dtype, '--threads', '1'], cache);
          try {
            const run = await startAltclip(['index', dir, '--db', db, '--queue', queue, '--model', model, '--dtype', dtype, '--shard-size', String(shard)], cache).done;
            assert.equal(run.code, 0, run.stderr);
          } finally {
            worker.child.kill('SIGTERM');
            await worker.done;
          }
          const rows = await rowsOf(db);
          assert.equal(rows.size, 8);
          const d = Math.max(...[...ref].map(([p, v]) => maxDiff(rows.get(p)!, v)));
          console.log(`fleet ${dtype}, shard size ${shard} vs single process: ${show(d)}`);
          assert.ok(d <= TOL, `${dtype} shard size ${shard}: ${d}`);
        }
      }
    } finally {
      redis.kill('SIGTERM');
      await new Promise((r) => (redis.exitCode !== null ? r(null) : redis.once('exit', r)));
    }
  });
});
