// Issue 24: the index under the ordinary events of a laptop and a photo drive, with real processes on
// the tiny fixture checkpoint: a writer suspended past the lock's stale time (fencing), two handles
// committing the same paths at once, duplicates left by older versions, missing / emptied / unreadable
// roots and subfolders (offline, not deleted; the unreadable cases run as `nobody`, since root ignores
// permissions), an unreadable `_versions`, missing arguments, Ctrl-C, versions kept per run, -k above
// the row count with an approximate index, and cache temporaries of a stopped writer.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as lancedb from '@lancedb/lancedb';
import sharp from 'sharp';

import { tempPath } from '../src/fsutil.js';
import { ImageIndex } from '../src/search/index.js';
import { FENCE_PATH, FORMAT, ImageStore, SCHEMA_VERSION, type IndexMetadata, type StoredRow } from '../src/search/store.js';
import { altclip as runAltclip, MAIN, run, type Run, startAltclip, waitFor } from './helpers/cli.js';
import { FIXTURES } from './helpers/goldens.js';

const MODEL = path.join(FIXTURES, 'models', 'tiny-altclip');
const NOBODY = 65534;
// a folder nobody (the unprivileged user of the permission cases) can enter and write
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-index-safety-'));
fs.chmodSync(tmp, 0o777);
after(() => {
  chmodTree(tmp, 0o777);
  fs.rmSync(tmp, { recursive: true, force: true });
});
const cache = path.join(tmp, 'cache');
const STALE_ENV = { ALTCLIP_INDEX_LOCK_STALE_MS: '2000' };

const altclip = (args: string[], env: Record<string, string> = {}) => runAltclip(args, cache, { env });
/** `altclip <args>` as the user nobody. */
const asNobody = (args: string[]) => run('runuser', ['-u', 'nobody', '--', process.execPath, '--import', 'tsx', MAIN, ...args], cache, { limitMs: 300_000 });

function chmodTree(dir: string, mode: number): void {
  try {
    fs.chmodSync(dir, mode);
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) chmodTree(path.join(dir, e.name), mode);
  } catch {
    // already gone
  }
}

function chownTree(p: string): void {
  fs.chownSync(p, NOBODY, NOBODY);
  if (fs.statSync(p).isDirectory()) for (const e of fs.readdirSync(p)) chownTree(path.join(p, e));
}

/** `count` distinct 32x32 PNGs (a colour gradient each) under `dir`. */
async function makeImages(dir: string, count: number, offset = 0): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const out: string[] = [];
  for (let i = offset; i < offset + count; i++) {
    const raw = Buffer.alloc(32 * 32 * 3);
    for (let p = 0; p < 32 * 32; p++) {
      raw[p * 3] = (i * 7 + p) & 255;
      raw[p * 3 + 1] = (i * 13 + (p >> 5) * 8) & 255;
      raw[p * 3 + 2] = (i * 29) & 255;
    }
    const file = path.join(dir, `img${String(i).padStart(4, '0')}.png`);
    await sharp(raw, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(file);
    out.push(file);
  }
  return out;
}

/** Every image row's path (the fence row left out), in order, duplicates kept. */
async function rowPaths(db: string): Promise<string[]> {
  const conn = await lancedb.connect(db);
  const table = await conn.openTable('images');
  const rows = await table.query().select(['path']).toArray();
  table.close();
  return rows.map((r) => r.path as string).filter((p) => p !== FENCE_PATH).sort();
}

function manifests(db: string): number {
  try {
    return fs.readdirSync(path.join(db, 'images.lance', '_versions')).filter((f) => f.endsWith('.manifest')).length;
  } catch {
    return 0;
  }
}

/** Every file under `dir` with its size and mtime: "nothing changed" means this is equal before and after. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const p = path.join(e.parentPath, e.name);
    const st = fs.lstatSync(p);
    out.push(`${path.relative(dir, p)} ${e.isFile() ? st.size : 'd'} ${st.mtimeMs}`);
  }
  return out.sort();
}

function json(r: Run): Record<string, unknown> & { added: number; unchanged: number; removed: number; offline: { path: string; reason: string }[]; repaired: number } {
  return JSON.parse(r.stdout);
}

function meta(dim: number): IndexMetadata {
  return { format: FORMAT, schemaVersion: SCHEMA_VERSION, model: 'synthetic', revision: null, dtype: 'fp32', projectionDim: dim, createdAt: new Date().toISOString() };
}

/** Unit vectors, a seeded random direction each. */
function syntheticRows(count: number, dim: number, prefix = '/synthetic/img'): StoredRow[] {
  let x = 12345;
  const rand = () => ((x = (x * 1103515245 + 12345) >>> 0) / 4294967296) - 0.5;
  return Array.from({ length: count }, (_, i) => {
    const v = Float32Array.from({ length: dim }, rand);
    const n = Math.hypot(...v);
    return { path: `${prefix}${String(i).padStart(5, '0')}.png`, size: 1, mtime: 1, sha256: `h${i}`, vector: v.map((a) => a / n) };
  });
}

describe('index safety (issue 24)', () => {
  const big = path.join(tmp, 'big');
  let bigFiles: string[];

  before(async () => {
    bigFiles = await makeImages(big, 1200, 10_000);
  });

  it('a writer suspended past the stale time loses its lock and never commits: every path exactly once', async () => {
    const dir = big;
    const files = bigFiles;
    let fenced = false;
    for (let attempt = 0; attempt < 3 && !fenced; attempt++) {
      const db = path.join(tmp, `fenced-${attempt}.db`);
      const a = startAltclip(['index', dir, '--db', db, '--model', MODEL, '--batch-size', '1', '--json'], cache, { env: STALE_ENV });
      // stop it once it has committed its first group of rows (the table's creation makes two versions)
      await waitFor(() => manifests(db) >= 3 || a.child.exitCode !== null, 'the first group commit', 120_000);
      if (a.child.exitCode !== null) {
        await a.done;
        continue; // it finished first (a fast machine): try again on a new db
      }
      a.child.kill('SIGSTOP');
      try {
        await new Promise((r) => setTimeout(r, 3_000)); // past the 2 s stale time
        const b = await altclip(['index', dir, '--db', db, '--model', MODEL, '--json'], STALE_ENV);
        assert.equal(b.code, 0, b.stderr);
        assert.equal(json(b).added + json(b).unchanged, files.length);
      } finally {
        a.child.kill('SIGCONT');
      }
      const resumed = await a.done;
      assert.deepEqual(await rowPaths(db), [...files].sort(), 'every path exactly once');
      assert.deepEqual(fs.readdirSync(db).filter((f) => f.startsWith('writer.lock')), [], 'no lock files left');
      // exit 0: it was stopped after its last commit (in the final cleanup); the case is not shown, try again
      if (resumed.code === 0) continue;
      assert.equal(resumed.code, 1, resumed.stderr);
      assert.match(resumed.stderr, /lost the writer lock/);
      fenced = true;
      const again = await altclip(['index', dir, '--db', db, '--json']);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(json(again).unchanged, files.length);
      assert.equal(json(again).repaired, 0);
    }
    assert.ok(fenced, 'the first writer was stopped while indexing, and stopped on resuming');
  });

  it('two handles committing the same new paths at once never make two rows for a path (the fence row)', async () => {
    const db = path.join(tmp, 'race.db');
    const a = await ImageStore.open(db, { create: meta(8) });
    const b = await ImageStore.open(db);
    a.fence = { token: 'a', check() {} };
    b.fence = { token: 'b', check() {} };
    const rows = syntheticRows(200, 8);
    for (let round = 0; round < 10; round++) {
      const batch = rows.slice(round * 20, round * 20 + 20);
      await Promise.all([a.upsert(batch), b.upsert(batch), round % 3 === 2 ? b.delete([rows[0]!.path]) : Promise.resolve()]);
      const { duplicates } = await a.scan();
      assert.deepEqual(duplicates, [], `round ${round}`);
    }
    const paths = await rowPaths(db);
    assert.equal(new Set(paths).size, paths.length);
    assert.ok(paths.length >= 199 && paths.length <= 200, `${paths.length}`);
    a.close();
    b.close();
  });

  it('duplicate paths written by an older version are repaired and reported', async () => {
    const dir = path.join(tmp, 'dups');
    const files = await makeImages(dir, 6, 1000);
    const db = path.join(tmp, 'dups.db');
    assert.equal((await altclip(['index', dir, '--db', db, '--model', MODEL])).code, 0);
    const conn = await lancedb.connect(db);
    const table = await conn.openTable('images');
    const copies = await table.query().where(`path IN ('${files[0]}', '${files[3]}')`).toArrow();
    await table.add(copies); // what an unfenced commit of an older altclip left
    table.close();
    assert.equal((await rowPaths(db)).length, 8);
    const plain = await altclip(['index', dir, '--db', db]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stderr, /2 paths were in the index more than once .*: repaired/);
    assert.deepEqual(await rowPaths(db), files.sort());
    const again = await altclip(['index', dir, '--db', db, '--json']);
    assert.equal(json(again).repaired, 0);
  });

  it('missing and emptied roots keep their rows (offline, exit 2); files verifiably gone are removed; --prune-offline removes on purpose', async () => {
    const a = path.join(tmp, 'drive-a');
    const b = path.join(tmp, 'drive-b');
    const filesA = await makeImages(a, 5, 2000);
    const filesB = await makeImages(b, 5, 3000);
    const db = path.join(tmp, 'drives.db');
    assert.equal((await altclip(['index', a, b, '--db', db, '--model', MODEL])).code, 0);

    // unplugged: the mount point is gone
    fs.renameSync(a, `${a}.away`);
    const missing = await altclip(['index', a, b, '--db', db, '--json']);
    assert.equal(missing.code, 2, missing.stderr);
    assert.deepEqual(json(missing).offline, [{ path: a, reason: 'missing' }]);
    assert.equal(json(missing).removed, 0);
    assert.equal((await rowPaths(db)).length, 10);
    const warned = await altclip(['index', a, b, '--db', db]);
    assert.equal(warned.code, 2);
    assert.match(warned.stderr, new RegExp(`warning: ${a.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is offline \\(missing\\): its rows are kept`));

    // unplugged: the mount point is there, empty
    fs.mkdirSync(a);
    const empty = await altclip(['index', a, b, '--db', db, '--json']);
    assert.equal(empty.code, 2);
    assert.deepEqual(json(empty).offline, [{ path: a, reason: 'empty' }]);
    assert.equal((await rowPaths(db)).length, 10);

    // a file deleted under a readable folder is gone; so is a named file whose folder is readable
    fs.rmSync(filesB[0]!);
    fs.rmSync(filesB[1]!);
    const gone = await altclip(['index', a, b, filesB[1]!, '--db', db, '--json']);
    assert.equal(gone.code, 2);
    assert.equal(json(gone).removed, 2);
    assert.deepEqual(await rowPaths(db), [...filesA, ...filesB.slice(2)].sort());

    // on purpose
    const pruned = await altclip(['index', a, b, '--db', db, '--prune-offline', '--json']);
    assert.equal(pruned.code, 2);
    assert.equal(json(pruned).removed, 5);
    assert.deepEqual(await rowPaths(db), filesB.slice(2).sort());
  });

  it('an argument that does not exist (and has no rows) is an error naming it: exit 1, nothing done', async () => {
    const dir = path.join(tmp, 'typo');
    await makeImages(dir, 2, 4000);
    const db = path.join(tmp, 'typo.db');
    const refused = await altclip(['index', path.join(dir, 'img4000.png'), path.join(tmp, 'no-such.jpg'), '--db', db, '--model', MODEL]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /no-such\.jpg: no such file or folder \(nothing was indexed\)/);
    assert.ok(!fs.existsSync(db), 'no index made');
    assert.equal((await altclip(['index', dir, '--db', db, '--model', MODEL])).code, 0);
    const before = snapshot(db);
    const again = await altclip(['index', dir, path.join(tmp, 'nowhere'), path.join(tmp, 'elsewhere'), '--db', db]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /no such files or folders: .*nowhere, .*elsewhere/);
    assert.deepEqual(snapshot(db), before);
  });

  it('unreadable roots and subfolders keep their rows (as nobody)', async () => {
    const root = path.join(tmp, 'perm');
    const sub = path.join(root, 'private');
    const open = await makeImages(root, 3, 5000);
    const hidden = await makeImages(sub, 3, 6000);
    const db = path.join(tmp, 'perm.db');
    chownTree(root);
    fs.mkdirSync(db);
    chownTree(db);
    fs.mkdirSync(cache, { recursive: true });
    chownTree(cache);
    const first = await asNobody(['index', root, '--db', db, '--model', MODEL, '--json']);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(json(first).added, 6);

    fs.chmodSync(sub, 0o000);
    const subDenied = await asNobody(['index', root, '--db', db, '--json']);
    assert.equal(subDenied.code, 2, subDenied.stderr);
    assert.deepEqual(json(subDenied).offline, [{ path: sub, reason: 'unreadable (EACCES)' }]);
    assert.equal(json(subDenied).removed, 0);
    assert.deepEqual(await rowPaths(db), [...open, ...hidden].sort());

    fs.chmodSync(sub, 0o755);
    fs.chmodSync(root, 0o000);
    const rootDenied = await asNobody(['index', root, '--db', db, '--json']);
    assert.equal(rootDenied.code, 2, rootDenied.stderr);
    assert.deepEqual(json(rootDenied).offline, [{ path: root, reason: 'unreadable (EACCES)' }]);
    assert.deepEqual(await rowPaths(db), [...open, ...hidden].sort());
    fs.chmodSync(root, 0o755);

    // an unreadable _versions: an error naming it that changes nothing; search does not advise indexing
    const versions = path.join(db, 'images.lance', '_versions');
    fs.chmodSync(versions, 0o000);
    const before = snapshot(db);
    const index = await asNobody(['index', root, '--db', db]);
    assert.equal(index.code, 1, index.stderr);
    assert.match(index.stderr, new RegExp(`${versions.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read .*EACCES.*nothing was changed`));
    const search = await asNobody(['search', 'a cat', '--db', db]);
    assert.equal(search.code, 1, search.stderr);
    assert.doesNotMatch(search.stderr, /run "altclip index/);
    fs.chmodSync(versions, 0o755);
    assert.deepEqual(snapshot(db), before, 'nothing changed');
    assert.equal((await rowPaths(db)).length, 6);
  });

  it('Ctrl-C commits what was embedded, says so, and removes its lock files', async () => {
    let interrupted = false;
    for (let attempt = 0; attempt < 3 && !interrupted; attempt++) {
      const db = path.join(tmp, `interrupted-${attempt}.db`);
      const run = startAltclip(['index', big, '--db', db, '--model', MODEL, '--batch-size', '1'], cache);
      await waitFor(() => manifests(db) >= 3 || run.child.exitCode !== null, 'the first group commit', 120_000);
      run.child.kill('SIGINT');
      const r = await run.done;
      if (r.code === 0) continue; // it finished before the signal: try again
      interrupted = true;
      assert.equal(r.code, 130, r.stderr);
      const m = /interrupted: .*: kept (\d+) added, 0 updated, 0 renamed \((\d+) images in the index\)/.exec(r.stderr);
      assert.ok(m, r.stderr);
      assert.equal((await rowPaths(db)).length, Number(m[2]));
      assert.ok(Number(m[1]) > 0 && Number(m[1]) < bigFiles.length, m[0]);
      assert.deepEqual(fs.readdirSync(db).filter((f) => f.startsWith('writer.lock')), [], 'no lock files left');
      const rest = await altclip(['index', big, '--db', db, '--json']);
      assert.equal(rest.code, 0, rest.stderr);
      assert.equal(json(rest).added, bigFiles.length - Number(m[1]));
    }
    assert.ok(interrupted, 'a run was interrupted while indexing');
  });

  it('rows committed one group at a time: old versions cleaned at the end of a run, --compact on demand', async () => {
    const db = path.join(tmp, 'versions.db');
    const dir = path.join(tmp, 'versions');
    await makeImages(dir, 150, 7000);
    const index = await ImageIndex.open(db, { model: MODEL, batchSize: 1, commitRows: 1, commitMs: 0 });
    try {
      const result = await index.sync([dir]);
      assert.equal(result.added, 150);
    } finally {
      await index.close();
    }
    const store = await ImageStore.open(db);
    const kept = await store.versionCount();
    store.close();
    assert.ok(kept <= 100, `${kept} versions kept after 150 commits`);
    const compacted = await altclip(['index', '--compact', '--db', db]);
    assert.equal(compacted.code, 0, compacted.stderr);
    assert.match(compacted.stderr, /compacted \(1 version kept\)/);
    assert.equal((await rowPaths(db)).length, 150);
  });

  it('-k above the row count returns every row, with and without the approximate index', async () => {
    const dim = 32;
    const rows = syntheticRows(600, dim);
    const identity = { model: 'synthetic', revision: null, dtype: 'fp32' as const, projectionDim: dim };
    for (const [name, ann] of [['exact', { minRows: 100_000 }], ['ivf_pq', { minRows: 300, nprobes: 1, refineFactor: 1 }]] as const) {
      const db = path.join(tmp, `k-${name}.db`);
      const index = await ImageIndex.open(db, { ann });
      await index.addEmbedded([rows.slice(0, 400), rows.slice(400)], identity);
      const store = await ImageStore.open(db, { ann });
      assert.equal(await store.hasAnnIndex(), name === 'ivf_pq');
      store.close();
      for (const k of [600, 601, 5000]) {
        const hits = await index.searchVector(rows[7]!.vector, { k });
        assert.equal(hits.length, 600, `${name}, k ${k}`);
        assert.equal(new Set(hits.map((h) => h.path)).size, 600);
        assert.equal(hits[0]!.path, rows[7]!.path);
      }
      const top = await index.searchVector(rows[7]!.vector, { k: 5 });
      assert.equal(top.length, 5);
      await index.close();
    }
  });

  it('cache prune removes temporaries whose writer process is gone at once, keeps a live writer\'s', async () => {
    const dir = path.join(tmp, 'prune-cache');
    const graphs = path.join(dir, 'graphs');
    fs.mkdirSync(graphs, { recursive: true });
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const ours = tempPath(path.join(graphs, 'vision-0123'));
    const theirs = ours.replace(/p\d+-/, `p${dead.stdout}-`);
    fs.mkdirSync(ours);
    fs.mkdirSync(theirs);
    fs.writeFileSync(path.join(theirs, 'model.onnx'), Buffer.alloc(1000));
    const pruned = spawnSync(process.execPath, ['--import', 'tsx', MAIN, 'cache', 'prune', '--json', '--cache-dir', dir], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(pruned.status, 0, pruned.stderr);
    assert.deepEqual((JSON.parse(pruned.stdout) as { entries: { path: string }[] }).entries.map((e) => e.path), [theirs]);
    assert.ok(!fs.existsSync(theirs) && fs.existsSync(ours));
  });
});
