// ImageIndex (src/search/) in-process on the fixture checkpoints: every score against the goldens,
// and the index following renamed / modified / deleted / added files.
//
// Goldens: test/fixtures/goldens/<model>.safetensors, written by the Python reference (transformers
// 4.40.2, torch fp32; see test/fixtures/README.md): <combo>/outputs/text_embeds and image_embeds are
// AltCLIPModel.forward's normalised embeddings of the combo's texts and images. The expected score of
// text t and image i is their float64 dot product, i.e. what imageTextSimilarity's cosine is.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ImageIndex } from '../src/search/index.js';
import { FORMAT, ImageStore, type IndexMetadata, SCHEMA_VERSION } from '../src/search/store.js';
import { FIXTURES, Goldens } from './helpers/goldens.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-search-'));
process.env.ALTCLIP_CACHE ??= path.join(tmp, 'cache');
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Combo { name: string; texts: string[]; images: string[] }

function rowsOf(t: { data: unknown; dims: readonly number[] }): Float32Array[] {
  const d = t.data as Float32Array;
  const n = t.dims[0]!;
  const per = d.length / n;
  return Array.from({ length: n }, (_, i) => d.subarray(i * per, (i + 1) * per));
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

for (const name of ['tiny-altclip', 'tiny-altclip-b']) {
  describe(`ImageIndex scores = goldens' cosine (${name})`, () => {
    const meta = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', `${name}.json`), 'utf8')) as { combos: Combo[] };
    const g = new Goldens(path.join(FIXTURES, 'goldens', `${name}.safetensors`));
    const dir = path.join(tmp, `${name}-images`);
    const db = path.join(tmp, `${name}.db`);
    let index: ImageIndex;

    before(async () => {
      fs.cpSync(path.join(FIXTURES, 'images'), dir, { recursive: true });
      index = await ImageIndex.open(db, { model: path.join(FIXTURES, 'models', name), batchSize: 3 });
      const result = await index.sync([dir]);
      assert.equal(result.added, fs.readdirSync(dir).length);
      assert.deepEqual(result.skipped, []);
    });
    after(() => index.close());

    it('every text query scores every golden image as text_embeds . image_embeds (<= 1e-5), best first', async () => {
      let max = 0;
      let checked = 0;
      for (const combo of meta.combos) {
        const texts = rowsOf(g.get(`${combo.name}/outputs/text_embeds`));
        const images = rowsOf(g.get(`${combo.name}/outputs/image_embeds`));
        for (const [t, text] of combo.texts.entries()) {
          const results = await index.search(text, { k: 100 });
          assert.equal(results.length, 10, 'every indexed image comes back');
          for (let r = 1; r < results.length; r++) assert.ok(results[r - 1]!.score >= results[r]!.score, 'sorted by score');
          for (const [i, image] of combo.images.entries()) {
            const hit = results.find((x) => x.path === path.join(dir, path.basename(image)));
            assert.ok(hit, `${image} in the results`);
            const diff = Math.abs(hit.score - dot(texts[t]!, images[i]!));
            max = Math.max(max, diff);
            checked++;
            assert.ok(diff <= 1e-5, `${combo.name} "${text}" vs ${image}: score ${hit.score} vs golden ${dot(texts[t]!, images[i]!)}`);
          }
        }
      }
      console.log(`${name}: ${checked} text-image scores, max |score - golden cosine| = ${max.toExponential(2)}`);
    });

    it('an image query scores the golden images as image_embeds . image_embeds; k limits the results', async () => {
      const combo = meta.combos.find((c) => c.images.length >= 3)!;
      const images = rowsOf(g.get(`${combo.name}/outputs/image_embeds`));
      const results = await index.search({ image: path.join(dir, path.basename(combo.images[0]!)) }, { k: 10 });
      let max = 0;
      for (const [i, image] of combo.images.entries()) {
        const hit = results.find((x) => x.path === path.join(dir, path.basename(image)))!;
        max = Math.max(max, Math.abs(hit.score - dot(images[0]!, images[i]!)));
      }
      console.log(`${name}: image query, max |score - golden cosine| = ${max.toExponential(2)}`);
      assert.ok(max <= 1e-5);
      assert.equal(results[0]!.path, path.join(dir, path.basename(combo.images[0]!)));
      assert.equal((await index.search('a photo', { k: 3 })).length, 3);
    });
  });
}

describe('ImageIndex follows the folder', () => {
  const model = path.join(FIXTURES, 'models', 'tiny-altclip');
  const src = path.join(FIXTURES, 'images');

  it('renamed, modified, deleted and added files are reflected; unchanged ones are not re-embedded', async () => {
    const dir = path.join(tmp, 'follow');
    const db = path.join(tmp, 'follow.db');
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
    for (const f of ['cat.jpg', 'tall.jpg', 'wide.png', 'palette.png']) fs.copyFileSync(path.join(src, f), path.join(dir, f));
    fs.copyFileSync(path.join(src, 'coffee.png'), path.join(dir, 'sub', 'coffee.png'));
    fs.mkdirSync(path.join(dir, '.hidden'));
    fs.copyFileSync(path.join(src, 'large.jpg'), path.join(dir, '.hidden', 'large.jpg'));
    fs.copyFileSync(path.join(src, 'large.jpg'), path.join(dir, '.dot.jpg'));
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not an image');

    const index = await ImageIndex.open(db, { model });
    try {
      assert.deepEqual(await index.sync([dir]), { added: 5, updated: 0, removed: 0, unchanged: 0, renamed: 0, skipped: [], offline: [], repaired: 0 });
      const before = new Map((await index.search({ image: path.join(src, 'cat.jpg') }, { k: 10 })).map((r) => [r.path, r.score]));
      assert.deepEqual([...before.keys()].sort(), ['cat.jpg', 'palette.png', 'sub/coffee.png', 'tall.jpg', 'wide.png'].map((f) => path.join(dir, f)).sort(),
        'hidden files and folders and non-images are skipped');

      fs.renameSync(path.join(dir, 'cat.jpg'), path.join(dir, 'sub', 'kitten.jpg'));        // renamed
      fs.copyFileSync(path.join(src, 'gray_portrait.png'), path.join(dir, 'wide.png'));       // modified
      fs.rmSync(path.join(dir, 'palette.png'));                                               // deleted
      fs.copyFileSync(path.join(src, 'exif_rotated.jpg'), path.join(dir, 'new.jpg'));         // added
      const t = new Date(Date.now() + 5000);
      fs.utimesSync(path.join(dir, 'tall.jpg'), t, t);                                        // touched only
      assert.deepEqual(await index.sync([dir]), { added: 1, updated: 1, removed: 1, unchanged: 2, renamed: 1, skipped: [], offline: [], repaired: 0 });

      const now = await index.search({ image: path.join(src, 'cat.jpg') }, { k: 10 });
      assert.deepEqual(now.map((r) => r.path).sort(), ['new.jpg', 'sub/coffee.png', 'sub/kitten.jpg', 'tall.jpg', 'wide.png'].map((f) => path.join(dir, f)).sort());
      const score = (f: string) => now.find((r) => r.path === path.join(dir, f))!.score;
      assert.equal(score('sub/kitten.jpg'), before.get(path.join(dir, 'cat.jpg')), 'the renamed file kept its vector');
      assert.ok(Math.abs(score('sub/kitten.jpg') - 1) < 1e-6);
      const gray = (await index.search({ image: path.join(src, 'gray_portrait.png') }, { k: 1 }))[0]!;
      assert.equal(gray.path, path.join(dir, 'wide.png'), 'the modified file has the new content\'s vector');
      assert.ok(Math.abs(gray.score - 1) < 1e-6);

      assert.deepEqual(await index.sync([dir]), { added: 0, updated: 0, removed: 0, unchanged: 5, renamed: 0, skipped: [], offline: [], repaired: 0 });
      assert.equal(await index.remove([path.join(dir, 'sub')]), 2);
      assert.equal(await index.count(), 3);
      const added = await index.add([path.join(dir, 'sub', 'coffee.png')]);
      assert.equal(added.added, 1);
      assert.equal(await index.count(), 4);
    } finally {
      await index.close();
    }
  });

  it('an unreadable image is skipped and listed; a changed file that became unreadable loses its row', async () => {
    const dir = path.join(tmp, 'bad');
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(src, 'cat.jpg'), path.join(dir, 'cat.jpg'));
    fs.copyFileSync(path.join(src, 'tall.jpg'), path.join(dir, 'tall.jpg'));
    fs.writeFileSync(path.join(dir, 'broken.png'), 'not a png');
    const index = await ImageIndex.open(path.join(tmp, 'bad.db'), { model, batchSize: 8 });
    try {
      const r1 = await index.sync([dir]);
      assert.equal(r1.added, 2);
      assert.deepEqual(r1.skipped.map((s) => s.input), [path.join(dir, 'broken.png')]);
      assert.match(r1.skipped[0]!.error, /broken\.png/);
      fs.writeFileSync(path.join(dir, 'tall.jpg'), 'truncated');
      const r2 = await index.sync([dir]);
      assert.deepEqual(r2.skipped.map((s) => s.input).sort(), [path.join(dir, 'broken.png'), path.join(dir, 'tall.jpg')]);
      assert.equal(await index.count(), 1);
    } finally {
      await index.close();
    }
  });

  it('refuses another model or dtype than the index was made with, before loading it', async () => {
    const db = path.join(tmp, 'follow.db');
    await assert.rejects(ImageIndex.open(db, { model: path.join(FIXTURES, 'models', 'tiny-altclip-b') }), /built with .*tiny-altclip .*fp32.*tiny-altclip-b/);
    await assert.rejects(ImageIndex.open(db, { dtype: 'q8' }), /built with .*\(fp32\).*\(q8\)/);
  });
});

describe('ImageStore past ann.minRows', () => {
  it('builds IVF_PQ on its own; search re-ranks with the full vectors, so scores stay exact dot products', async () => {
    const dim = 32;
    const meta: IndexMetadata = { format: FORMAT, schemaVersion: SCHEMA_VERSION, model: 'synthetic', revision: null, dtype: 'fp32', projectionDim: dim, createdAt: '' };
    const store = await ImageStore.open(path.join(tmp, 'ann.db'), { create: meta, ann: { minRows: 600, nprobes: 8, refineFactor: 10 } });
    try {
      let seed = 7;
      const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) - 0.5;
      const rows = Array.from({ length: 700 }, (_, i) => {
        const v = Float32Array.from({ length: dim }, rnd);
        const n = Math.hypot(...v);
        return { path: `/x/${i}.jpg`, size: i, mtime: i, sha256: String(i), vector: v.map((x) => x / n) };
      });
      await store.upsert(rows.slice(0, 500));
      await store.maintain();
      assert.equal(await store.hasAnnIndex(), false, 'below minRows: exact scan');
      await store.upsert(rows.slice(500));
      await store.maintain();
      assert.equal(await store.hasAnnIndex(), true, 'at minRows: IVF_PQ');
      for (const probe of [3, 250, 699]) {
        const hits = await store.nearest(rows[probe]!.vector, 5);
        assert.equal(hits[0]!.path, `/x/${probe}.jpg`, 'a stored vector finds itself first');
        for (const h of hits) assert.deepEqual(h.vector, rows[Number(/\d+/.exec(h.path)![0])]!.vector, 'full vectors come back');
      }
    } finally {
      store.close();
    }
  });
});
