// An index knows its model by its weights (src/models/fingerprint.ts), as real `altclip` processes on
// the tiny fixture checkpoint: every kind of change to the files at the recorded path is refused,
// naming what changed, and leaves the db as it was; a change that is no change (a touched file) is
// accepted; the same weights under a new path are accepted with --model by index, search and serve;
// another model's weights under a new path are refused. The hash cache is keyed by device, inode,
// size and mtime (a planted record is believed; a touched file is hashed again; a moved one is not).
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as lancedb from '@lancedb/lancedb';

import { cachedSha256, fingerprintChanges, modelFingerprint, resolveModel } from '../src/models/fingerprint.js';
import { DEFAULT_Q8_SCHEME, q8SchemeName } from '../src/models/quantize.js';
import { indexModel } from '../src/search/index.js';
import { FENCE_PATH } from '../src/search/store.js';
import { type Run, altclip as runAltclip, startAltclip, waitFor } from './helpers/cli.js';
import { FIXTURES } from './helpers/goldens.js';
import { startHubServer } from './helpers/hub_server.js';

const TINY = path.join(FIXTURES, 'models', 'tiny-altclip');
const OTHER = path.join(FIXTURES, 'models', 'tiny-altclip-b');
const TINY_BIN = path.join(FIXTURES, 'models', 'tiny-altclip-bin');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-identity-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const cache = path.join(tmp, 'cache');
const altclip = (args: string[]) => runAltclip(args, cache);

const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

function copyModel(from: string, to: string): string {
  fs.cpSync(from, to, { recursive: true });
  return to;
}

/** The fixture images, copied (the index records absolute paths). */
function images(dir: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  return ['cat.jpg', 'coffee.png', 'wide.png'].map((f) => {
    fs.copyFileSync(path.join(FIXTURES, 'images', f), path.join(dir, f));
    return path.join(dir, f);
  });
}

async function tableState(db: string): Promise<{ meta: Record<string, unknown>; rows: string[]; versions: number }> {
  const conn = await lancedb.connect(db);
  const table = await conn.openTable('images');
  const meta = JSON.parse((await table.schema()).metadata.get('altclip')!) as Record<string, unknown>;
  const rows = (await table.query().select(['path']).toArray()).map((r) => r.path as string).filter((p) => p !== FENCE_PATH).sort();
  const versions = (await table.listVersions()).length;
  table.close();
  return { meta, rows, versions };
}

/** What `altclip index --json` did (the counts and skipped images). */
function counts(r: Run): Record<string, unknown> {
  const { added, updated, removed, unchanged, renamed, skipped } = JSON.parse(r.stdout) as Record<string, unknown>;
  return { added, updated, removed, unchanged, renamed, skipped };
}

function assertRefused(r: Run, pattern: RegExp): void {
  assert.equal(r.code, 1, `exit code 1 expected, got ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, /^altclip: error: /m);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

describe('model identity by weights (altclip index / search / serve)', () => {
  const model = path.join(tmp, 'models', 'a');
  const db = path.join(tmp, 'pictures.db');
  let files: string[] = [];

  before(async () => {
    copyModel(TINY, model);
    files = images(path.join(tmp, 'pictures'));
    const r = await altclip(['index', path.join(tmp, 'pictures'), '--db', db, '--model', model, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).added, 3);
  });

  it('records the fingerprint: sha256 of config.json and of the weights, by name; dtype; no q8 scheme for fp32', async () => {
    const { meta } = await tableState(db);
    assert.equal(meta.model, fs.realpathSync(model));
    assert.deepEqual(meta.fingerprint, {
      files: { 'config.json': sha256(path.join(TINY, 'config.json')), 'model.safetensors': sha256(path.join(TINY, 'model.safetensors')) },
      dtype: 'fp32',
      q8Scheme: null,
    });
  });

  // Each change is made to the model folder the index records, tried, then undone.
  const changes: { name: string; apply: () => void; refused: RegExp | null; args?: string[] }[] = [
    {
      name: 'weights overwritten (one byte of a tensor)',
      apply: () => {
        const f = path.join(model, 'model.safetensors');
        const bytes = fs.readFileSync(f);
        bytes[bytes.length - 1] ^= 0x01;
        fs.writeFileSync(f, bytes);
      },
      refused: /model\.safetensors changed \(sha256 [0-9a-f]{12}… → [0-9a-f]{12}…\)/,
    },
    {
      name: 'config.json rewritten',
      apply: () => {
        const f = path.join(model, 'config.json');
        fs.writeFileSync(f, JSON.stringify({ ...JSON.parse(fs.readFileSync(f, 'utf8')), logit_scale_init_value: 1.5 }));
      },
      refused: /config\.json changed/,
    },
    {
      name: 'weights replaced by a pytorch_model.bin',
      apply: () => {
        fs.rmSync(path.join(model, 'model.safetensors'));
        fs.copyFileSync(path.join(TINY_BIN, 'pytorch_model.bin'), path.join(model, 'pytorch_model.bin'));
      },
      refused: /model\.safetensors is gone; pytorch_model\.bin is new/,
    },
    {
      name: "another model's config and weights copied over",
      apply: () => {
        for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(OTHER, f), path.join(model, f));
      },
      refused: /config\.json changed \(sha256 .*; model\.safetensors changed/,
    },
    {
      name: 'another dtype asked for',
      apply: () => {},
      args: ['--dtype', 'q8'],
      refused: /built with .* \(fp32\); this run asks for .* \(q8\)/,
    },
    {
      name: 'same bytes written again (new mtime and inode): no change',
      apply: () => {
        for (const f of ['config.json', 'model.safetensors']) {
          const p = path.join(model, f);
          const bytes = fs.readFileSync(p);
          fs.rmSync(p);
          fs.writeFileSync(p, bytes);
          fs.utimesSync(p, new Date(), new Date(Date.now() + 5000));
        }
      },
      refused: null,
    },
  ];

  for (const change of changes) {
    it(`index: ${change.name} → ${change.refused ? 'refused, naming it; the db unchanged' : 'accepted'}`, async () => {
      const before = await tableState(db);
      const saved = path.join(tmp, 'saved');
      fs.rmSync(saved, { recursive: true, force: true });
      copyModel(model, saved);
      change.apply();
      try {
        const r = await altclip(['index', path.join(tmp, 'pictures'), '--db', db, '--json', ...(change.args ?? [])]);
        if (change.refused) {
          assertRefused(r, change.refused);
          assert.match(r.stderr, /not comparable/);
          const now = await tableState(db);
          assert.deepEqual(now, before, 'a refused run changes nothing');
        } else {
          assert.equal(r.code, 0, r.stderr);
          assert.deepEqual(counts(r), { added: 0, updated: 0, removed: 0, unchanged: 3, renamed: 0, skipped: [] });
        }
      } finally {
        fs.rmSync(model, { recursive: true, force: true });
        fs.renameSync(saved, model);
      }
    });
  }

  it('search: overwritten weights are refused too (the query would come from another model)', async () => {
    const f = path.join(model, 'model.safetensors');
    const original = fs.readFileSync(f);
    const bytes = Buffer.from(original);
    bytes[bytes.length - 2] ^= 0x10;
    fs.writeFileSync(f, bytes);
    try {
      assertRefused(await altclip(['search', 'a cat', '--db', db, '--json']), /model\.safetensors changed/);
    } finally {
      fs.writeFileSync(f, original);
    }
  });

  describe('the model folder moved', () => {
    const moved = path.join(tmp, 'models', 'moved');
    const copied = path.join(tmp, 'models', 'copied');
    const other = path.join(tmp, 'models', 'other');
    before(() => {
      fs.renameSync(model, moved);
      copyModel(moved, copied);
      copyModel(OTHER, other);
    });
    after(() => fs.renameSync(moved, model));

    it('without --model: refused, saying to give the new path', async () => {
      assertRefused(await altclip(['search', 'a cat', '--db', db]), new RegExp(`cannot read the index's model ${fs.realpathSync(path.dirname(moved))}/a .*give its new path with --model`));
      assertRefused(await altclip(['index', path.join(tmp, 'pictures'), '--db', db]), /give its new path with --model/);
    });

    it('index --model <moved> (and <a copy>): accepted, nothing re-embedded, a warning names both paths', async () => {
      for (const where of [moved, copied]) {
        const r = await altclip(['index', path.join(tmp, 'pictures'), '--db', db, '--model', where, '--json']);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(counts(r), { added: 0, updated: 0, removed: 0, unchanged: 3, renamed: 0, skipped: [] });
        assert.match(r.stderr, new RegExp(`altclip: warning: .*records its model at .*/a; the same weights are at ${fs.realpathSync(where)}`));
      }
      // a new image is embedded with the moved model into the same index
      fs.copyFileSync(path.join(FIXTURES, 'images', 'large.jpg'), path.join(tmp, 'pictures', 'large.jpg'));
      const r = await altclip(['index', path.join(tmp, 'pictures'), '--db', db, '--model', moved, '--json']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).added, 1);
      files.push(path.join(tmp, 'pictures', 'large.jpg'));
      assert.deepEqual((await tableState(db)).rows, [...files].sort());
    });

    it('search --model <moved>: accepted; the same results as the model found where recorded', async () => {
      const r = await altclip(['search', 'a cat', '--db', db, '--model', moved, '--json', '-k', '10']);
      assert.equal(r.code, 0, r.stderr);
      const results = JSON.parse(r.stdout).results as { path: string; score: number }[];
      assert.deepEqual(results.map((x) => x.path).sort(), [...files].sort());
      fs.renameSync(moved, model);
      try {
        const atRecorded = await altclip(['search', 'a cat', '--db', db, '--json', '-k', '10']);
        assert.equal(atRecorded.code, 0, atRecorded.stderr);
        assert.deepEqual(JSON.parse(atRecorded.stdout).results, results);
        assert.doesNotMatch(atRecorded.stderr, /warning/);
      } finally {
        fs.renameSync(model, moved);
      }
    });

    it('serve --db --model <moved>: accepted, /v1/search answers from the index', async () => {
      const server = startAltclip(['serve', '--db', db, '--model', moved, '--host', '127.0.0.1', '--port', '0'], cache);
      let stdout = '';
      server.child.stdout.on('data', (d) => (stdout += d));
      try {
        await waitFor(() => /listening on/.test(stdout) || server.child.exitCode !== null, 'the server to listen', 300_000);
        const url = /listening on (http:\/\/\S+)/.exec(stdout)?.[1];
        assert.ok(url, `no address: ${server.stderr()}`);
        assert.match(server.stderr(), /the same weights are at/);
        const res = await fetch(`${url}/v1/search?q=${encodeURIComponent('a cat')}&k=10`);
        assert.equal(res.status, 200);
        const body = (await res.json()) as { results: { path: string }[] };
        assert.deepEqual(body.results.map((x) => x.path).sort(), [...files].sort());
      } finally {
        server.child.kill('SIGTERM');
        const end = await server.done;
        assert.equal(end.code, 0, end.stderr);
      }
    });

    it('indexModel (what index, search and serve --db ask): the moved path with --model, refused without; no index is an error', async () => {
      const found = await indexModel(db, { model: moved });
      assert.equal(found.model, fs.realpathSync(moved));
      assert.equal(found.dtype, 'fp32');
      assert.match(found.moved ?? '', /the same weights are at/);
      assert.deepEqual(found.fingerprint, (await tableState(db)).meta.fingerprint);
      await assert.rejects(indexModel(db), /give its new path with --model/);
      await assert.rejects(indexModel(path.join(tmp, 'no.db')), /no such index/);
    });

    it("another model's weights under a new path: refused by index, search and serve, naming what differs", async () => {
      const pattern = new RegExp(`this run asks for ${fs.realpathSync(other)} \\(fp32\\), whose files differ: config\\.json changed .*model\\.safetensors changed`);
      assertRefused(await altclip(['index', path.join(tmp, 'pictures'), '--db', db, '--model', other]), pattern);
      assertRefused(await altclip(['search', 'a cat', '--db', db, '--model', other]), pattern);
      const serve = await altclip(['serve', '--db', db, '--model', other, '--host', '127.0.0.1', '--port', '0']);
      assertRefused(serve, pattern);
    });
  });
});

describe('the q8 scheme is part of the identity', () => {
  it('a q8 index made with the default scheme is refused by a process that opts into another (and accepted by a default one)', async () => {
    const db = path.join(tmp, 'q8.db');
    const dir = path.join(tmp, 'q8-pictures');
    images(dir);
    const as = (scheme: string) => ({ env: { ALTCLIP_Q8_SCHEME: scheme } });
    const OTHER = 'altclip-q8-w8a8-row-vnni-v1';
    const made = await runAltclip(['index', dir, '--db', db, '--model', TINY, '--dtype', 'q8'], cache, as(''));
    assert.equal(made.code, 0, made.stderr);
    assert.deepEqual({ ...((await tableState(db)).meta.fingerprint as object), files: undefined }, { files: undefined, dtype: 'q8', q8Scheme: DEFAULT_Q8_SCHEME });
    for (const args of [['search', 'a cat', '--db', db], ['index', dir, '--db', db]]) {
      assertRefused(await runAltclip(args, cache, as(OTHER)), new RegExp(`q8 scheme ${DEFAULT_Q8_SCHEME} → ${OTHER}`));
    }
    const same = await runAltclip(['search', 'a cat', '--db', db, '--json'], cache, as(''));
    assert.equal(same.code, 0, same.stderr);
    assert.equal(JSON.parse(same.stdout).results.length, 3);
  });
});

describe('fingerprint and its hash cache', () => {
  it('resolveModel: an index without a fingerprint (older altclip) is used at its recorded path only', async () => {
    const recorded = { model: fs.realpathSync(TINY), revision: null, dtype: 'fp32' as const };
    const found = await resolveModel('old.db', recorded, {}, { cacheDir: path.join(tmp, 'hash-cache-3') });
    assert.deepEqual(found, { model: recorded.model, revision: null, dtype: 'fp32', fingerprint: null });
    await assert.rejects(resolveModel('old.db', recorded, { model: TINY_BIN }), /old\.db: .*records no fingerprint of its model's weights/);
  });


  it('cachedSha256: a record per (device, inode, size, mtime); believed while they hold, not after a touch; kept across a rename', async () => {
    const dir = path.join(tmp, 'hash-cache');
    const file = path.join(tmp, 'weights.bin');
    fs.writeFileSync(file, 'weights, version 1');
    const real = sha256(file);
    assert.equal(await cachedSha256(file, dir), real);
    const records = fs.readdirSync(path.join(dir, 'hashes'));
    assert.equal(records.length, 1);
    // a planted answer is believed: the file was not read again
    const record = path.join(dir, 'hashes', records[0]!);
    const planted = 'f'.repeat(64);
    fs.writeFileSync(record, JSON.stringify({ ...JSON.parse(fs.readFileSync(record, 'utf8')), sha256: planted }));
    assert.equal(await cachedSha256(file, dir), planted);
    // a rename keeps device, inode, size and mtime: the record still applies
    const renamed = path.join(tmp, 'weights-renamed.bin');
    fs.renameSync(file, renamed);
    assert.equal(await cachedSha256(renamed, dir), planted);
    assert.equal(fs.readdirSync(path.join(dir, 'hashes')).length, 1);
    // a new mtime (same bytes) is hashed again; a damaged record is ignored
    fs.utimesSync(renamed, new Date(), new Date(Date.now() + 10_000));
    assert.equal(await cachedSha256(renamed, dir), real);
    for (const r of fs.readdirSync(path.join(dir, 'hashes'))) fs.writeFileSync(path.join(dir, 'hashes', r), '{"sha256": 1');
    assert.equal(await cachedSha256(renamed, dir), real);
  });

  it('modelFingerprint: names relative to the folder; q8 carries the scheme; changes listed one by one', async () => {
    const dir = path.join(tmp, 'hash-cache-2');
    const a = await modelFingerprint(TINY, { cacheDir: dir });
    const q8 = await modelFingerprint(TINY, { cacheDir: dir, dtype: 'q8' });
    const b = await modelFingerprint(TINY_BIN, { cacheDir: dir });
    assert.deepEqual(Object.keys(a.files), ['config.json', 'model.safetensors']);
    assert.equal(q8.q8Scheme, q8SchemeName());
    assert.equal(q8SchemeName(), DEFAULT_Q8_SCHEME);
    assert.deepEqual(fingerprintChanges(a, a), []);
    assert.deepEqual(fingerprintChanges(a, q8), ['dtype fp32 → q8']);
    assert.deepEqual(fingerprintChanges(q8, { ...q8, q8Scheme: 'q8w0' }), [`q8 scheme ${q8SchemeName()} → q8w0`]);
    const changes = fingerprintChanges(a, b);
    assert.equal(changes.length, 3);
    assert.match(changes[0]!, /^config\.json changed/);
    assert.equal(changes[1], 'model.safetensors is gone');
    assert.equal(changes[2], 'pytorch_model.bin is new');
  });
});

describe('a hub model', () => {
  it('is fingerprinted from its snapshot (the same as the same files in a folder), offline once cached, at the recorded commit', async () => {
    const COMMIT = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
    const files: Record<string, Buffer> = {};
    for (const f of ['config.json', 'model.safetensors']) files[f] = fs.readFileSync(path.join(TINY, f));
    const server = await startHubServer({ 'BAAI/tiny-altclip': { commits: { [COMMIT]: files }, refs: { main: COMMIT } } });
    const saved = { ...process.env };
    Object.assign(process.env, { HF_ENDPOINT: server.endpoint, HF_HUB_CACHE: path.join(tmp, 'hub'), HF_TOKEN: '', HF_HUB_OFFLINE: '' });
    try {
      const hashes = path.join(tmp, 'hash-cache-hub');
      const local = await modelFingerprint(TINY, { cacheDir: hashes });
      assert.deepEqual(await modelFingerprint('BAAI/tiny-altclip', { cacheDir: hashes }), local);
      await server.close();
      process.env.HF_HUB_OFFLINE = '1';
      const recorded = { model: 'BAAI/tiny-altclip', revision: COMMIT, dtype: 'fp32' as const, fingerprint: local };
      const found = await resolveModel('hub.db', recorded, {}, { cacheDir: hashes });
      assert.deepEqual([found.model, found.revision, found.fingerprint], ['BAAI/tiny-altclip', COMMIT, local]);
    } finally {
      for (const k of ['HF_ENDPOINT', 'HF_HUB_CACHE', 'HF_TOKEN', 'HF_HUB_OFFLINE']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
      await server.close().catch(() => {});
    }
  });
});
