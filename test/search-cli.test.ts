// `altclip index` / `altclip search` as real processes on the tiny fixture checkpoint: `kill -9` at
// random moments, two writers on one db, damaged and foreign --db folders, --json shapes, skipped
// images and exit code 2. The reference for "equal embeddings" is a clean, uninterrupted run of the
// same command on the same folder (embeddings compared read back from the LanceDB table).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as lancedb from '@lancedb/lancedb';
import sharp from 'sharp';

import { WriterLock } from '../src/search/lock.js';
import { FENCE_PATH } from '../src/search/store.js';
import { ROOT, type Run, startAltclip } from './helpers/cli.js';
import { FIXTURES } from './helpers/goldens.js';

const MODEL = path.join(FIXTURES, 'models', 'tiny-altclip');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-search-cli-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const start = (args: string[]) => startAltclip(args, path.join(tmp, 'cache'));
const altclip = (args: string[]) => start(args).done;

/** One line on stderr, no stack trace. */
function assertCleanError(run: Run, pattern: RegExp): void {
  assert.equal(run.code, 1, `exit code 1 expected, got ${run.code}: ${run.stderr}`);
  assert.match(run.stderr, pattern);
  assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
}

/** Every row of the table: path -> vector, failing on a duplicated path. */
async function tableRows(db: string): Promise<Map<string, Float32Array>> {
  const conn = await lancedb.connect(db);
  const table = await conn.openTable('images');
  const out = new Map<string, Float32Array>();
  for (const r of await table.query().select(['path', 'vector']).toArray()) {
    if (r.path === FENCE_PATH) continue;
    assert.ok(!out.has(r.path as string), `${r.path} is in the index twice`);
    out.set(r.path as string, Float32Array.from((r.vector as { toArray(): Float32Array }).toArray()));
  }
  table.close();
  return out;
}

/**
 * `count` small distinct images made from the fixture images (crops at different offsets and sizes,
 * alternately JPEG and PNG), so that every embedding differs.
 */
async function makeImages(dir: string, count: number): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const sources = ['cat.jpg', 'coffee.png', 'large.jpg', 'wide.png', 'gray_portrait.png', 'rgba_transparent.png'].map((f) => path.join(FIXTURES, 'images', f));
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const src = sharp(sources[i % sources.length]!);
    const { width, height } = await src.metadata();
    const size = 24 + (i % 7) * 4;
    const left = (i * 13) % Math.max(1, width! - 64);
    const top = (i * 7) % Math.max(1, height! - 64);
    const crop = src.extract({ left, top, width: 64, height: 64 }).resize(size, size).removeAlpha();
    const file = path.join(dir, `img${String(i).padStart(3, '0')}.${i % 2 ? 'png' : 'jpg'}`);
    await (i % 2 ? crop.png() : crop.jpeg({ quality: 90 })).toFile(file);
    out.push(file);
  }
  return out;
}

function manifests(db: string): number {
  try {
    return fs.readdirSync(path.join(db, 'images.lance', '_versions')).length;
  } catch {
    return 0;
  }
}

/** A seeded PRNG (xorshift32), so a failing sequence of kill moments can be replayed. */
function random(seed: number): () => number {
  let x = (seed >>> 0) || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

describe('altclip index / search (CLI)', () => {
  const images = path.join(tmp, 'images');
  let files: string[];
  let clean: Map<string, Float32Array>;
  const cleanDb = path.join(tmp, 'clean.db');

  before(async () => {
    files = await makeImages(images, 120);
    const run = await altclip(['index', images, '--db', cleanDb, '--model', MODEL, '--batch-size', '4', '--json']);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout), { added: 120, updated: 0, removed: 0, unchanged: 0, renamed: 0, skipped: [], offline: [], repaired: 0 });
    clean = await tableRows(cleanDb);
  });

  it('kill -9 at random moments: the re-run completes, every image once, embeddings = a clean run\'s', async () => {
    const db = path.join(tmp, 'killed.db');
    const seed = Number(process.env.SEARCH_KILL_SEED ?? Date.now() % 100000);
    const rand = random(seed);
    const moments: string[] = [];
    let kills = 0;
    for (let attempt = 0; kills < 10 && attempt < 40; attempt++) {
      const before = manifests(db);
      const { child, done } = start(['index', images, '--db', db, '--model', MODEL, '--batch-size', '2', '--json']);
      // Alternately: a random time after the start (often while loading, taking the lock, planning),
      // or a random number of commits into the indexing, plus a random delay.
      let moment: string;
      if (attempt % 3 === 0) {
        const ms = Math.floor(rand() * 2500);
        moment = `${ms} ms after start`;
        await Promise.race([new Promise((r) => setTimeout(r, ms)), done]);
      } else {
        // rows are committed in groups (every 2 s): a few commits after the table's creation
        const commits = 1 + Math.floor(rand() * 3);
        const ms = Math.floor(rand() * 40);
        moment = `${commits} commits + ${ms} ms`;
        const deadline = Date.now() + 30_000;
        while (manifests(db) < before + commits && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 3));
        await new Promise((r) => setTimeout(r, ms));
      }
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      const run = await done;
      if (run.signal === 'SIGKILL') {
        kills++;
        moments.push(moment);
      } else {
        assert.equal(run.code, 0, run.stderr);
        // It finished before the kill: start over so that later kills land inside an indexing run.
        fs.rmSync(db, { recursive: true, force: true });
      }
    }
    console.log(`seed ${seed}: ${kills} kills at ${moments.join('; ')}`);
    assert.ok(kills >= 10, `only ${kills} runs were killed (seed ${seed})`);

    const last = await altclip(['index', images, '--db', db, '--model', MODEL, '--batch-size', '2', '--json']);
    assert.equal(last.code, 0, last.stderr);
    const summary = JSON.parse(last.stdout) as { added: number; unchanged: number; removed: number };
    assert.equal(summary.added + summary.unchanged, files.length, `seed ${seed}`);
    const rows = await tableRows(db);
    assert.deepEqual([...rows.keys()].sort(), [...clean.keys()].sort(), `every image exactly once (seed ${seed})`);
    let max = 0;
    for (const [p, v] of rows) {
      const c = clean.get(p)!;
      for (let i = 0; i < v.length; i++) max = Math.max(max, Math.abs(v[i]! - c[i]!));
    }
    console.log(`max |embedding - clean run's| = ${max.toExponential(2)}`);
    assert.ok(max <= 1e-6, `seed ${seed}`);
  });

  it('a second writer is refused while the lock is held, waits with --wait, and two at once never duplicate', async () => {
    const db = path.join(tmp, 'two.db');
    const lock = await WriterLock.acquire(db);
    try {
      const refused = await altclip(['index', images, '--db', db, '--model', MODEL]);
      assertCleanError(refused, new RegExp(`being written by process ${process.pid}`));
    } finally {
      await lock.release();
    }
    const [a, b] = await Promise.all([
      altclip(['index', images, '--db', db, '--model', MODEL, '--wait', '120', '--json']),
      altclip(['index', images, '--db', db, '--model', MODEL, '--wait', '120', '--json']),
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const counts = [JSON.parse(a.stdout), JSON.parse(b.stdout)].map((r) => [r.added, r.unchanged]).sort();
    assert.deepEqual(counts, [[0, 120], [120, 0]], 'one writer embedded everything, the other found it done');
    assert.equal((await tableRows(db)).size, 120);
  });

  it('--json shapes; search results best first with absolute paths; unreadable images listed, exit 2', async () => {
    const dir = path.join(tmp, 'some');
    fs.mkdirSync(dir);
    for (const f of files.slice(0, 5)) fs.copyFileSync(f, path.join(dir, path.basename(f)));
    fs.writeFileSync(path.join(dir, 'zz-broken.jpg'), 'not a jpeg');
    const db = path.join(tmp, 'some.db');
    const rel = path.relative(ROOT, dir);
    const indexed = await altclip(['index', rel, '--db', db, '--model', MODEL, '--json']);
    assert.equal(indexed.code, 2, indexed.stderr);
    const summary = JSON.parse(indexed.stdout);
    assert.deepEqual(Object.keys(summary).sort(), ['added', 'offline', 'removed', 'renamed', 'repaired', 'skipped', 'unchanged', 'updated']);
    assert.equal(summary.added, 5);
    assert.deepEqual(summary.skipped.map((s: { input: string }) => s.input), [path.join(dir, 'zz-broken.jpg')]);
    assert.match(summary.skipped[0].error, /zz-broken\.jpg/);

    const plain = await altclip(['index', dir, '--db', db]);
    assert.equal(plain.code, 2);
    assert.match(plain.stderr, /warning: skipped .*zz-broken\.jpg/);
    assert.match(plain.stderr, /0 added, 0 updated, 0 removed, 5 unchanged, 1 skipped/);

    const found = await altclip(['search', '一只猫', '--db', db, '-k', '3', '--json']);
    assert.equal(found.code, 0, found.stderr);
    const { results } = JSON.parse(found.stdout) as { results: { path: string; score: number }[] };
    assert.deepEqual(Object.keys(JSON.parse(found.stdout)), ['results']);
    assert.equal(results.length, 3);
    for (const r of results) {
      assert.deepEqual(Object.keys(r), ['path', 'score']);
      assert.ok(path.isAbsolute(r.path) && r.path.startsWith(dir));
      assert.ok(r.score >= -1 && r.score <= 1);
    }
    assert.ok(results[0]!.score >= results[1]!.score && results[1]!.score >= results[2]!.score);

    const templated = await altclip(['search', 'cat', '--template', 'a photo of a {}', '--db', db, '-k', '5', '--json']);
    const direct = await altclip(['search', 'a photo of a cat', '--db', db, '-k', '5', '--json']);
    assert.deepEqual(JSON.parse(templated.stdout), JSON.parse(direct.stdout), '--template puts the text into the template');

    const byImage = await altclip(['search', '--image', path.join(dir, path.basename(files[0]!)), '--db', db, '-k', '1']);
    assert.equal(byImage.code, 0, byImage.stderr);
    assert.match(byImage.stdout, new RegExp(`^\\s*1\\.0000  ${path.join(dir, path.basename(files[0]!)).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\n$`));
  });

  it('damaged, foreign and missing --db folders, another model: one clear line, exit 1', async () => {
    const foreign = path.join(tmp, 'foreign');
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, 'thesis.docx'), 'mine');
    assertCleanError(await altclip(['index', images, '--db', foreign, '--model', MODEL]), /foreign: not an altclip image index \(it holds thesis\.docx\)/);
    assert.deepEqual(fs.readdirSync(foreign), ['thesis.docx'], 'nothing written into a foreign folder');
    assertCleanError(await altclip(['search', 'x', '--db', foreign]), /not an altclip image index/);
    assertCleanError(await altclip(['search', 'x', '--db', path.join(tmp, 'nowhere')]), /nowhere: no such index/);
    assertCleanError(await altclip(['search', 'x', '--db', files[0]!]), /is a file, not an index folder/);

    // Another LanceDB table with a table called images: not ours.
    const otherLance = path.join(tmp, 'other-lance');
    const conn = await lancedb.connect(otherLance);
    (await conn.createTable('images', [{ id: 1, vector: [1, 2] }])).close();
    assertCleanError(await altclip(['search', 'x', '--db', otherLance]), /not an altclip image index \(no "altclip" schema metadata\)/);

    const damaged = path.join(tmp, 'damaged.db');
    fs.cpSync(cleanDb, damaged, { recursive: true });
    const versions = path.join(damaged, 'images.lance', '_versions');
    const latest = fs.readdirSync(versions).sort().at(0)!; // Lance names manifests so that the newest sorts first
    fs.writeFileSync(path.join(versions, latest), 'garbage');
    assertCleanError(await altclip(['search', 'x', '--db', damaged]), /damaged\.db: the index is damaged or unreadable/);

    const lost = path.join(tmp, 'lost-data.db');
    fs.cpSync(cleanDb, lost, { recursive: true });
    fs.rmSync(path.join(lost, 'images.lance', 'data'), { recursive: true });
    assertCleanError(await altclip(['search', 'x', '--db', lost]), /lost-data\.db: the index is damaged or unreadable/);

    assertCleanError(await altclip(['index', images, '--db', cleanDb, '--model', path.join(FIXTURES, 'models', 'tiny-altclip-b')]),
      /the index was built with .*tiny-altclip \(fp32\); this run asks for .*tiny-altclip-b \(fp32\)/);
    assertCleanError(await altclip(['index', images, '--db', cleanDb, '--dtype', 'q8']), /\(fp32\); this run asks for .*\(q8\)/);
  });

  it('a one-shot search keeps the text tower\'s packed weights in the graph cache; --no-cache-prepacked does not; same results', async () => {
    const dir = path.join(tmp, 'prepacked');
    fs.mkdirSync(dir);
    for (const f of files.slice(10, 14)) fs.copyFileSync(f, path.join(dir, path.basename(f)));
    const db = path.join(tmp, 'prepacked.db');
    assert.equal((await altclip(['index', dir, '--db', db, '--model', MODEL])).code, 0);
    /** The prepacked-<cpu> folders under each graph folder of a cache (graph_cache.ts's layout). */
    const packed = (cache: string) => {
      const graphs = path.join(cache, 'graphs');
      return fs.existsSync(graphs) ? fs.readdirSync(graphs).flatMap((g) => fs.readdirSync(path.join(graphs, g))
        .filter((f) => f.startsWith('prepacked-')).map((f) => `${g}/${f}`)) : [];
    };
    const runIn = async (cache: string, extra: string[]) => {
      const r = await startAltclip(['search', 'a photo of a cat', '--db', db, '-k', '4', '--json', ...extra], cache).done;
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as { results: { path: string; score: number }[] };
    };
    const withCache = path.join(tmp, 'cache-packed');
    const first = await runIn(withCache, []);
    const again = await runIn(withCache, []); // loads the packed weights written by the first
    const kept = packed(withCache);
    assert.equal(kept.length, 1, kept.join(', '));
    assert.match(kept[0]!, /^text-[0-9a-f]+\/prepacked-/, 'only the text tower is loaded, and its packed weights kept');
    const without = path.join(tmp, 'cache-unpacked');
    const plain = await runIn(without, ['--no-cache-prepacked']);
    assert.deepEqual(packed(without), []);
    assert.ok(fs.readdirSync(path.join(without, 'graphs')).some((g) => g.startsWith('text-')));
    assert.equal(first.results.length, 4);
    for (const other of [again, plain]) {
      assert.deepEqual(other.results.map((r) => r.path), first.results.map((r) => r.path));
      other.results.forEach((r, i) => assert.ok(Math.abs(r.score - first.results[i]!.score) <= 1e-6, `${r.score} vs ${first.results[i]!.score}`));
    }
  });
});
