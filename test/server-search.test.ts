// The --db routes (GET/POST /v1/search, GET /v1/images/<id>) over a real ImageIndex (src/search) of the
// fixture images, built with the fixture checkpoint. Scores are checked against the Python reference's
// goldens (test/fixtures/goldens/tiny-altclip.safetensors, transformers 4.40.2; see
// test/fixtures/README.md): the score of text t and image i is text_embeds[t] . image_embeds[i], of
// image j and image i image_embeds[j] . image_embeds[i].
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';

import { AltCLIPModel } from '../src/models/altclip.js';
import { AltCLIPProcessor } from '../src/processor.js';
import { ImageIndex } from '../src/search/index.js';
import { createServer, openSearchIndex } from '../src/server/index.js';
import type { AltCLIPParts } from '../src/tasks/index.js';
import { FIXTURES, Goldens, maxDiffByFamily, printDiffTable } from './helpers/goldens.js';

const MODEL = path.join(FIXTURES, 'models', 'tiny-altclip');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-server-search-'));
const images = path.join(tmp, 'images');
const db = path.join(tmp, 'index.db');
process.env.ALTCLIP_CACHE ??= path.join(tmp, 'cache');
const meta = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', 'tiny-altclip.json'), 'utf8')) as { combos: Combo[] };
const g = new Goldens(path.join(FIXTURES, 'goldens', 'tiny-altclip.safetensors'));
interface Combo { name: string; texts: string[]; images: string[] }
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let clip: AltCLIPParts;
let app: FastifyInstance;
before(async () => {
  clip = {
    model: await AltCLIPModel.fromPretrained(MODEL, { graphCacheDir: path.join(tmp, 'graphs'), threads: 1 }),
    processor: await AltCLIPProcessor.fromPretrained(MODEL),
  };
  fs.cpSync(path.join(FIXTURES, 'images'), images, { recursive: true });
  const index = await ImageIndex.open(db, { model: MODEL, threads: 1 });
  const update = await index.sync([images]);
  assert.deepEqual(update.skipped, []);
  await index.close();
  app = await createServer({ clip, modelName: 'tiny-altclip', index: await openSearchIndex(db, { model: MODEL }) });
});
after(async () => {
  await app.close();
  await clip.model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
  printDiffTable('server search: max abs difference vs the reference:');
});

function rowsOf(name: string): Float32Array[] {
  const t = g.get(name);
  const per = t.data.length / t.dims[0]!;
  return Array.from({ length: t.dims[0]! }, (_, i) => (t.data as Float32Array).subarray(i * per, (i + 1) * per));
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

const indexed = (fixture: string) => fs.realpathSync(path.join(images, path.basename(fixture)));

function record(family: string, d: number): void {
  maxDiffByFamily.set(family, Math.max(maxDiffByFamily.get(family) ?? 0, d));
}

async function get(url: string) {
  const res = await app.inject(url);
  return { status: res.statusCode, body: res.json() as Json };
}

describe('search routes', () => {
  it('GET /v1/search?q= scores every golden image as text_embeds . image_embeds (<= 1e-5), best first', async () => {
    let checked = 0;
    for (const combo of meta.combos) {
      const texts = rowsOf(`${combo.name}/outputs/text_embeds`);
      const imgs = rowsOf(`${combo.name}/outputs/image_embeds`);
      for (const [t, text] of combo.texts.entries()) {
        const res = await get(`/v1/search?q=${encodeURIComponent(text)}&k=100`);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        const results = res.body.results as { id: string; path: string; score: number }[];
        assert.equal(results.length, fs.readdirSync(images).length);
        for (let i = 1; i < results.length; i++) assert.ok(results[i - 1]!.score >= results[i]!.score, 'best first');
        for (const [i, image] of combo.images.entries()) {
          const hit = results.find((r) => r.path === indexed(image));
          assert.ok(hit, `${image} in the results`);
          const d = Math.abs(hit.score - dot(texts[t]!, imgs[i]!));
          record('search text score', d);
          assert.ok(d <= 1e-5, `${text} / ${image}: diff ${d}`);
          checked++;
        }
      }
    }
    assert.ok(checked >= 20);
  });

  it('the same results as ImageIndex.search; k limits them (default 10)', async () => {
    const index = await ImageIndex.open(db, { model: MODEL, threads: 1 });
    try {
      const q = '一只猫';
      const direct = await index.search(q, { k: 3 });
      const res = await get(`/v1/search?q=${encodeURIComponent(q)}&k=3`);
      assert.deepEqual(res.body.results.map((r: Json) => r.path), direct.map((r) => r.path));
      res.body.results.forEach((r: Json, i: number) => assert.ok(Math.abs(r.score - direct[i]!.score) <= 1e-6));
      assert.equal((await get('/v1/search?q=cat')).body.results.length, 10);
    } finally {
      await index.close();
    }
  });

  it('POST /v1/search with an image scores image_embeds . image_embeds (itself: 1)', async () => {
    const imgs = rowsOf('batch3/outputs/image_embeds');
    const combo = meta.combos.find((c) => c.name === 'batch3')!;
    const uri = `data:image/jpeg;base64,${fs.readFileSync(path.join(FIXTURES, combo.images[0]!)).toString('base64')}`;
    const res = await app.inject({ method: 'POST', url: '/v1/search', payload: { image: uri, k: 100 } });
    assert.equal(res.statusCode, 200, res.body);
    const results = res.json().results as Json[];
    assert.equal(results[0]!.path, indexed(combo.images[0]!));
    for (const [i, image] of combo.images.entries()) {
      const hit = results.find((r) => r.path === indexed(image))!;
      const d = Math.abs(hit.score - dot(imgs[0]!, imgs[i]!));
      record('search image score', d);
      assert.ok(d <= 1e-5, `${image}: diff ${d}`);
    }
  });

  it('GET /v1/images/<id> serves the indexed file; nothing else on disk', async () => {
    const { results } = (await get('/v1/search?q=cat&k=10')).body as { results: Json[] };
    for (const r of results) {
      const res = await app.inject(`/v1/images/${r.id}`);
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.rawPayload, fs.readFileSync(r.path), r.path);
      assert.match(res.headers['content-type'] as string, /^image\/(jpeg|png)$/);
      assert.equal(res.headers['x-content-type-options'], 'nosniff');
    }
    for (const id of ['nope', Buffer.from('/etc/passwd').toString('base64url'), '..%2F..%2F..%2Fetc%2Fpasswd', '%2Fetc%2Fpasswd']) {
      const res = await app.inject(`/v1/images/${id}`);
      assert.equal(res.statusCode, 404, id);
      assert.equal(res.json().error.type, 'not_found_error');
    }
  });

  it('bad queries: 400 naming the parameter', async () => {
    for (const [url, pattern] of [
      ['/v1/search', /^q must be a non-empty text/],
      ['/v1/search?q=%20', /^q must be a non-empty text/],
      ['/v1/search?q=cat&k=0', /^k must be an integer from 1 to 1000, got "0"/],
      ['/v1/search?q=cat&k=abc', /^k must be an integer from 1 to 1000/],
      ['/v1/search?q=cat&k=1001', /^k must be an integer from 1 to 1000/],
    ] as const) {
      const res = await get(url);
      assert.equal(res.status, 400, url);
      assert.match(res.body.error.message, pattern);
    }
    const post = await app.inject({ method: 'POST', url: '/v1/search', payload: { image: 3 } });
    assert.equal(post.statusCode, 400);
    assert.match(post.json().error.message, /^image must be a data:image/);
  });

  it('openSearchIndex: a missing index and one built with another model are refused', async () => {
    await assert.rejects(openSearchIndex(path.join(tmp, 'missing.db'), { model: MODEL }), /no such index/);
    await assert.rejects(openSearchIndex(db, { model: path.join(FIXTURES, 'models', 'tiny-altclip-b') }), /Embeddings of different models are not comparable/);
  });
});
