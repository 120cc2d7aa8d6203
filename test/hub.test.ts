// The hub client against a local server speaking the hub's protocol (test/helpers/hub_server.ts):
// the cache must come out exactly as Python's huggingface_hub lays it out, and every request the
// client makes is counted. Each call gets its environment explicitly (no process-wide HF_* leaks).
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { hubDownload, forgetResolvedCommits, type HubDownloadOptions } from '../src/hub/download.js';
import { downloadToFile, PROGRESS_MIN_BYTES } from '../src/hub/http.js';
import { hubSettings } from '../src/hub/settings.js';
import { HubError, resolveFile } from '../src/hub/index.js';
import { gitBlobSha1, sha256, startHubServer, type HubServer } from './helpers/hub_server.js';

const C1 = '1111111111111111111111111111111111111111';
const C2 = '2222222222222222222222222222222222222222';
const CONFIG = '{"model_type": "altclip"}\n';
const CONFIG_V2 = '{"model_type": "altclip", "v": 2}\n';
const TEXT_CONFIG = '{"model_type": "altclip_text_model"}\n';
// 256 KiB of deterministic bytes standing in for an LFS weights file.
const WEIGHTS = Buffer.from(Array.from({ length: 256 * 1024 }, (_, i) => (i * 2654435761) >>> 24));
const WEIGHTS_SHA = sha256(WEIGHTS);
const CONFIG_ETAG = gitBlobSha1(Buffer.from(CONFIG));

let server: HubServer;
let tmp: string;
let cacheDir: string;

before(async () => {
  server = await startHubServer({
    'org/tiny': {
      commits: {
        [C1]: { 'config.json': CONFIG, 'model.safetensors': WEIGHTS, 'text_model/config.json': TEXT_CONFIG },
        [C2]: { 'config.json': CONFIG_V2, 'model.safetensors': WEIGHTS },
      },
      refs: { main: C1, v2: C2 },
    },
    'org/private': { commits: { [C1]: { 'config.json': CONFIG, 'model.safetensors': WEIGHTS } }, refs: { main: C1 }, private: true },
    'org/gated': { commits: { [C1]: { 'config.json': CONFIG } }, refs: { main: C1 }, gated: true },
  });
});

after(async () => {
  await server.close();
});

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-hub-'));
  cacheDir = path.join(tmp, 'hub');
  server.requests.length = 0;
  server.faults.cuts = undefined;
  server.faults.corrupt = false;
  server.faults.stalls = undefined;
  server.faults.hub = undefined;
  server.faults.cdn = undefined;
  forgetResolvedCommits();
});

afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The environment of one call: the local hub, a home folder of its own, short timeouts. */
const env = (extra: Record<string, string> = {}) => ({ HF_ENDPOINT: server.endpoint, HOME: tmp, HF_HUB_DOWNLOAD_TIMEOUT: '3', ...extra });
const download = (repo: string, file: string, options: HubDownloadOptions = {}, extra: Record<string, string> = {}) =>
  hubDownload(repo, file, { cacheDir, ...options }, env(extra));
const repoDir = (repo: string) => path.join(cacheDir, `models--${repo.replace('/', '--')}`);
const requestLines = () => server.requests.map((r) => `${r.server} ${r.method} ${r.path}`);

async function rejectsWith(promise: Promise<unknown>, code: string, ...mentions: string[]): Promise<HubError> {
  const error = await promise.then(
    () => assert.fail(`expected a ${code} error`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof HubError, `not a HubError: ${error}`);
  assert.equal(error.code, code, error.message);
  for (const word of mentions) assert.ok(error.message.includes(word), `"${error.message}" should mention ${word}`);
  return error;
}

describe('first download', () => {
  it('lays out blobs, relative snapshot symlinks and refs like huggingface_hub', async () => {
    const weights = await download('org/tiny', 'model.safetensors');
    const config = await download('org/tiny', 'config.json');
    const text = await download('org/tiny', 'text_model/config.json');

    const root = repoDir('org/tiny');
    assert.equal(weights, path.join(root, 'snapshots', C1, 'model.safetensors'));
    assert.equal(fs.readlinkSync(weights!), `../../blobs/${WEIGHTS_SHA}`);
    assert.equal(fs.readlinkSync(config!), `../../blobs/${CONFIG_ETAG}`);
    assert.equal(fs.readlinkSync(text!), `../../../blobs/${gitBlobSha1(Buffer.from(TEXT_CONFIG))}`);
    assert.equal(fs.readFileSync(path.join(root, 'refs', 'main'), 'utf8'), C1); // no newline, as Python writes it
    assert.deepEqual(fs.readdirSync(path.join(root, 'blobs')).sort(),
      [WEIGHTS_SHA, CONFIG_ETAG, gitBlobSha1(Buffer.from(TEXT_CONFIG))].sort()); // no .incomplete left

    // Readable through the symlink, and the real file is the blob.
    assert.ok(fs.readFileSync(weights!).equals(WEIGHTS));
    assert.equal(fs.readFileSync(config!, 'utf8'), CONFIG);
    assert.equal(fs.realpathSync(weights!), fs.realpathSync(path.join(root, 'blobs', WEIGHTS_SHA)));

    // HEAD on the hub, then the LFS file straight from the CDN location, the regular file from the hub.
    assert.deepEqual(requestLines(), [
      'hub HEAD /org/tiny/resolve/main/model.safetensors',
      `cdn GET /lfs/${WEIGHTS_SHA}?X-Amz-Signature=sig`,
      'hub HEAD /org/tiny/resolve/main/config.json',
      'hub GET /org/tiny/resolve/main/config.json',
      'hub HEAD /org/tiny/resolve/main/text_model/config.json',
      'hub GET /org/tiny/resolve/main/text_model/config.json',
    ]);
  });

  it('shares blobs between commits and keeps a ref per revision', async () => {
    const main = await download('org/tiny', 'model.safetensors');
    const v2 = await download('org/tiny', 'model.safetensors', { revision: 'v2' });
    assert.equal(v2, path.join(repoDir('org/tiny'), 'snapshots', C2, 'model.safetensors'));
    assert.equal(fs.realpathSync(v2!), fs.realpathSync(main!));
    assert.equal(fs.readFileSync(path.join(repoDir('org/tiny'), 'refs', 'v2'), 'utf8'), C2);
    assert.equal(server.requests.filter((r) => r.server === 'cdn').length, 1, 'the blob is downloaded once');
    assert.equal(fs.readFileSync((await download('org/tiny', 'config.json', { revision: 'v2' }))!, 'utf8'), CONFIG_V2);
  });

  it('downloads a file once when asked for it twice at the same time', async () => {
    const [a, b] = await Promise.all([download('org/tiny', 'model.safetensors'), download('org/tiny', 'model.safetensors')]);
    assert.equal(a, b);
    assert.equal(server.requests.filter((r) => r.server === 'cdn').length, 1);
    assert.ok(fs.readFileSync(a!).equals(WEIGHTS));
  });

  it('follows a relative redirect (renamed repo) on HEAD and caches under the requested id', async () => {
    server.renamed['org/old-name'] = 'org/tiny';
    try {
      const file = await download('org/old-name', 'config.json');
      assert.equal(file, path.join(repoDir('org/old-name'), 'snapshots', C1, 'config.json'));
      assert.equal(fs.readFileSync(file!, 'utf8'), CONFIG);
    } finally {
      delete server.renamed['org/old-name'];
    }
  });
});

describe('loading again', () => {
  it('makes no request in the same process, nor for a cached commit hash; a new process only HEADs', async () => {
    const first = await download('org/tiny', 'model.safetensors');
    server.requests.length = 0;
    assert.equal(await download('org/tiny', 'model.safetensors'), first);
    assert.deepEqual(requestLines(), []);

    forgetResolvedCommits(); // as in a new process
    assert.equal(await download('org/tiny', 'model.safetensors', { revision: C1 }), first);
    assert.deepEqual(requestLines(), []);

    assert.equal(await download('org/tiny', 'model.safetensors'), first);
    assert.deepEqual(requestLines(), ['hub HEAD /org/tiny/resolve/main/model.safetensors']);
  });
});

describe('offline', () => {
  it('resolves refs/<revision> to the snapshot without any request (localFilesOnly, HF_HUB_OFFLINE)', async () => {
    const file = await download('org/tiny', 'config.json');
    forgetResolvedCommits();
    server.requests.length = 0;
    assert.equal(await download('org/tiny', 'config.json', { localFilesOnly: true }), file);
    assert.equal(await download('org/tiny', 'config.json', {}, { HF_HUB_OFFLINE: '1' }), file);
    assert.equal(await download('org/tiny', 'config.json', { revision: C1, localFilesOnly: true }), file);
    // A file of a cached commit that was never downloaded: an optional one is absent, a required one an error.
    assert.equal(await download('org/tiny', 'tokenizer.json', { localFilesOnly: true, optional: true }), null);
    await rejectsWith(download('org/tiny', 'model.safetensors', { localFilesOnly: true }), 'LocalEntryNotFound',
      'org/tiny', 'model.safetensors', 'main', 'HF_HUB_OFFLINE');
    await rejectsWith(download('org/other', 'config.json', {}, { HF_HUB_OFFLINE: 'true' }), 'LocalEntryNotFound', 'org/other');
    await rejectsWith(download('org/tiny', 'config.json', { revision: 'v2', localFilesOnly: true }), 'LocalEntryNotFound', 'v2');
    assert.deepEqual(requestLines(), []);
  });

  it('falls back to the cache when the hub cannot be reached, and says so when nothing is cached', async () => {
    const file = await download('org/tiny', 'config.json');
    forgetResolvedCommits();
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadEndpoint = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise<void>((resolve) => closed.close(() => resolve()));

    assert.equal(await download('org/tiny', 'config.json', {}, { HF_ENDPOINT: deadEndpoint }), file);
    const error = await rejectsWith(download('org/tiny', 'model.safetensors', {}, { HF_ENDPOINT: deadEndpoint }),
      'LocalEntryNotFound', 'org/tiny', 'model.safetensors', 'could not be reached', 'ECONNREFUSED');
    assert.ok(!fs.existsSync(path.join(repoDir('org/tiny'), 'snapshots', C1, 'model.safetensors')), error.message);
  });
});

describe('interrupted and corrupted downloads', () => {
  it('abandons a body that stalls after HF_HUB_DOWNLOAD_TIMEOUT and resumes it', async () => {
    server.faults.stalls = [50_000];
    const file = await download('org/tiny', 'model.safetensors', {}, { HF_HUB_DOWNLOAD_TIMEOUT: '0.3' });
    assert.ok(fs.readFileSync(file!).equals(WEIGHTS));
    assert.deepEqual(server.requests.filter((r) => r.server === 'cdn').map((r) => r.range), [undefined, 'bytes=50000-']);
  });

  it('resumes a body cut mid-stream with a Range request', async () => {
    server.faults.cuts = [100_000];
    const file = await download('org/tiny', 'model.safetensors');
    assert.ok(fs.readFileSync(file!).equals(WEIGHTS));
    const gets = server.requests.filter((r) => r.server === 'cdn');
    assert.deepEqual(gets.map((r) => r.range), [undefined, 'bytes=100000-']);
  });

  it('gives up after repeated failures leaving only the .incomplete file, which the next call resumes', async () => {
    server.faults.cuts = [30_000, 0, 0, 0, 0, 0];
    await rejectsWith(download('org/tiny', 'model.safetensors'), 'DownloadFailed', 'org/tiny', 'model.safetensors', 'interrupted at 30000');
    const blob = path.join(repoDir('org/tiny'), 'blobs', WEIGHTS_SHA);
    assert.equal(fs.statSync(`${blob}.incomplete`).size, 30_000);
    assert.ok(!fs.existsSync(blob));
    assert.ok(!fs.existsSync(path.join(repoDir('org/tiny'), 'snapshots', C1, 'model.safetensors')));
    await rejectsWith(download('org/tiny', 'model.safetensors', { localFilesOnly: true }), 'LocalEntryNotFound');

    server.requests.length = 0;
    const file = await download('org/tiny', 'model.safetensors');
    assert.ok(fs.readFileSync(file!).equals(WEIGHTS));
    assert.deepEqual(server.requests.filter((r) => r.server === 'cdn').map((r) => r.range), ['bytes=30000-']);
    assert.ok(!fs.existsSync(`${blob}.incomplete`));
  });

  it('resumes an .incomplete file left by another process (huggingface_hub names it the same)', async () => {
    const blobs = path.join(repoDir('org/tiny'), 'blobs');
    fs.mkdirSync(blobs, { recursive: true });
    fs.writeFileSync(path.join(blobs, `${WEIGHTS_SHA}.incomplete`), WEIGHTS.subarray(0, 12345));
    const file = await download('org/tiny', 'model.safetensors');
    assert.ok(fs.readFileSync(file!).equals(WEIGHTS));
    assert.deepEqual(server.requests.filter((r) => r.server === 'cdn').map((r) => r.range), ['bytes=12345-']);
  });

  it('retries a CDN 503; a CDN 403 fails without caching anything', async () => {
    server.faults.cdn = [503];
    assert.ok(fs.readFileSync((await download('org/tiny', 'model.safetensors'))!).equals(WEIGHTS));
    assert.equal(server.requests.filter((r) => r.server === 'cdn').length, 2);

    fs.rmSync(cacheDir, { recursive: true });
    forgetResolvedCommits();
    server.faults.cdn = [403];
    await rejectsWith(download('org/tiny', 'model.safetensors'), 'Forbidden', 'org/tiny', 'model.safetensors', 'HTTP 403');
    assert.ok(!fs.existsSync(path.join(repoDir('org/tiny'), 'snapshots', C1, 'model.safetensors')));
    assert.ok(!fs.existsSync(path.join(repoDir('org/tiny'), 'blobs', WEIGHTS_SHA)));
  });

  it('detects a corrupted blob by its sha256 and keeps nothing', async () => {
    server.faults.corrupt = true;
    await rejectsWith(download('org/tiny', 'model.safetensors'), 'DownloadFailed', 'org/tiny', 'model.safetensors', 'sha256', WEIGHTS_SHA);
    const root = repoDir('org/tiny');
    assert.deepEqual(fs.readdirSync(path.join(root, 'blobs')), []);
    assert.ok(!fs.existsSync(path.join(root, 'snapshots', C1, 'model.safetensors')));

    server.faults.corrupt = false;
  server.faults.stalls = undefined;
  server.faults.hub = undefined;
  server.faults.cdn = undefined;
    assert.ok(fs.readFileSync((await download('org/tiny', 'model.safetensors'))!).equals(WEIGHTS));
  });

  it('rejects a corrupted .incomplete prefix once the whole file is hashed', async () => {
    const blobs = path.join(repoDir('org/tiny'), 'blobs');
    fs.mkdirSync(blobs, { recursive: true });
    const bad = Buffer.from(WEIGHTS.subarray(0, 5000));
    bad[10] ^= 1;
    fs.writeFileSync(path.join(blobs, `${WEIGHTS_SHA}.incomplete`), bad);
    await rejectsWith(download('org/tiny', 'model.safetensors'), 'DownloadFailed', 'sha256');
    assert.deepEqual(fs.readdirSync(blobs), []);
    assert.ok(fs.readFileSync((await download('org/tiny', 'model.safetensors'))!).equals(WEIGHTS));
  });
});

describe('errors and tokens', () => {
  it('a hub answering 500, or not at all, falls back to the cache, else says what happened', async () => {
    const file = await download('org/tiny', 'config.json');
    forgetResolvedCommits();
    server.faults.hub = 500;
    assert.equal(await download('org/tiny', 'config.json'), file);
    await rejectsWith(download('org/tiny', 'model.safetensors'), 'LocalEntryNotFound', 'org/tiny', 'model.safetensors', 'HTTP 500');
    server.faults.hub = 'hang';
    const quick = { HF_HUB_ETAG_TIMEOUT: '0.3' };
    assert.equal(await download('org/tiny', 'config.json', {}, quick), file);
    await rejectsWith(download('org/tiny', 'model.safetensors', {}, quick), 'LocalEntryNotFound', 'could not be reached', 'timeout');
  });

  it('404: repo, revision and file not found, each naming repo, revision and file', async () => {
    await rejectsWith(download('org/nope', 'config.json'), 'RepoNotFound', 'org/nope', 'config.json', 'HF_TOKEN');
    await rejectsWith(download('org/tiny', 'config.json', { revision: 'v9' }), 'RevisionNotFound', 'org/tiny', 'v9', 'config.json');
    await rejectsWith(download('org/tiny', 'pytorch_model.bin'), 'EntryNotFound', 'org/tiny', 'main', 'pytorch_model.bin');
  });

  it('an optional missing file gives null and a .no_exist marker, remembered without a request', async () => {
    assert.equal(await download('org/tiny', 'tokenizer.json', { optional: true }), null);
    const root = repoDir('org/tiny');
    assert.ok(fs.statSync(path.join(root, '.no_exist', C1, 'tokenizer.json')).isFile());
    assert.equal(fs.readFileSync(path.join(root, 'refs', 'main'), 'utf8'), C1);
    server.requests.length = 0;
    assert.equal(await download('org/tiny', 'tokenizer.json', { optional: true }), null);
    forgetResolvedCommits();
    assert.equal(await download('org/tiny', 'tokenizer.json', { optional: true, localFilesOnly: true }), null);
    await rejectsWith(download('org/tiny', 'tokenizer.json', { localFilesOnly: true }), 'EntryNotFound', 'tokenizer.json');
    assert.deepEqual(requestLines(), []);
  });

  it('401 on a private repo without a token says to pass one; the token is sent to the hub only', async () => {
    const error = await rejectsWith(download('org/private', 'config.json'), 'RepoNotFound', 'org/private', 'config.json', 'token', 'HF_TOKEN');
    assert.equal(error.status, 401);

    const file = await download('org/private', 'model.safetensors', { token: server.token });
    assert.ok(fs.readFileSync(file!).equals(WEIGHTS));
    const sent = server.requests.filter((r) => r.path.includes('model.safetensors') || r.server === 'cdn');
    assert.deepEqual(sent.map((r) => [r.server, r.authorization]), [['hub', `Bearer ${server.token}`], ['cdn', undefined]]);
  });

  it('reads the token from HF_TOKEN, then from $HF_HOME/token; token:false sends none', async () => {
    assert.ok(await download('org/private', 'config.json', {}, { HF_TOKEN: server.token }));
    forgetResolvedCommits();
    fs.rmSync(cacheDir, { recursive: true });
    const home = path.join(tmp, 'hf-home');
    fs.mkdirSync(home);
    fs.writeFileSync(path.join(home, 'token'), `${server.token}\n`);
    assert.ok(await download('org/private', 'config.json', {}, { HF_HOME: home }));
    fs.rmSync(cacheDir, { recursive: true });
    forgetResolvedCommits();
    await rejectsWith(download('org/private', 'config.json', { token: false }, { HF_TOKEN: server.token }), 'RepoNotFound', 'token');
    assert.equal(server.requests.at(-1)!.authorization, undefined);
  });

  it('401/403 on a gated repo names the gate and the token', async () => {
    const anonymous = await rejectsWith(download('org/gated', 'config.json'), 'GatedRepo', 'org/gated', 'gated', 'no token was sent', 'HF_TOKEN');
    assert.equal(anonymous.status, 401);
    const wrong = await rejectsWith(download('org/gated', 'config.json', { token: 'hf_wrong' }), 'GatedRepo', 'no access');
    assert.equal(wrong.status, 403);
    assert.ok(await download('org/gated', 'config.json', { token: server.token }));
  });

  it('uses the cached copy of a repo that later answers 401 (huggingface_hub does too)', async () => {
    const file = await download('org/private', 'config.json', { token: server.token });
    forgetResolvedCommits();
    assert.equal(await download('org/private', 'config.json', { token: false }), file);
  });
});

describe('a cache laid out by Python', () => {
  // The layout huggingface_hub documents (file_download.py, hf_hub_download's docstring), built by hand.
  function pythonCache(): { commit: string; file: string } {
    const commit = 'bbc77c8132af1cc5cf678da3f1ddf2de43606d48';
    const root = path.join(cacheDir, 'models--BAAI--AltCLIP');
    const blob = gitBlobSha1(Buffer.from(CONFIG));
    fs.mkdirSync(path.join(root, 'blobs'), { recursive: true });
    fs.mkdirSync(path.join(root, 'refs'), { recursive: true });
    fs.mkdirSync(path.join(root, 'snapshots', commit), { recursive: true });
    fs.mkdirSync(path.join(root, '.no_exist', commit), { recursive: true });
    fs.writeFileSync(path.join(root, 'blobs', blob), CONFIG);
    fs.writeFileSync(path.join(root, 'refs', 'main'), commit);
    fs.symlinkSync(`../../blobs/${blob}`, path.join(root, 'snapshots', commit, 'config.json'));
    fs.writeFileSync(path.join(root, '.no_exist', commit, 'tokenizer.json'), '');
    return { commit, file: path.join(root, 'snapshots', commit, 'config.json') };
  }

  it('is used as is, offline or with the commit as revision, without any request', async () => {
    const { commit, file } = pythonCache();
    assert.equal(await download('BAAI/AltCLIP', 'config.json', { localFilesOnly: true }), file);
    assert.equal(await download('BAAI/AltCLIP', 'config.json', { revision: commit }), file);
    assert.equal(await download('BAAI/AltCLIP', 'tokenizer.json', { localFilesOnly: true, optional: true }), null);
    assert.equal(fs.readFileSync(file, 'utf8'), CONFIG);
    assert.deepEqual(requestLines(), []);
  });

  it('is found through resolveFile with HF_HUB_CACHE or HF_HOME from the environment', async () => {
    const { file } = pythonCache();
    const saved = { ...process.env };
    try {
      process.env.HF_HUB_OFFLINE = '1';
      process.env.HF_HUB_CACHE = cacheDir;
      assert.equal(await resolveFile('BAAI/AltCLIP', 'config.json'), file);
      delete process.env.HF_HUB_CACHE;
      process.env.HF_HOME = tmp; // $HF_HOME/hub is cacheDir
      assert.equal(await resolveFile('BAAI/AltCLIP', 'config.json'), file);
      assert.equal(await resolveFile('BAAI/AltCLIP', 'config.json', { cacheDir }), file);
    } finally {
      for (const key of ['HF_HUB_OFFLINE', 'HF_HUB_CACHE', 'HF_HOME']) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    }
    assert.deepEqual(requestLines(), []);
  });
});

describe('resolveFile', () => {
  const folder = path.resolve('test/fixtures/models/tiny-altclip');

  it('uses an existing folder as is, with subfolder and optional files', async () => {
    assert.equal(await resolveFile(folder, 'config.json'), path.join(folder, 'config.json'));
    assert.equal(await resolveFile('test/fixtures/models/tiny-altclip', 'config.json', { subfolder: 'text_model' }),
      path.join(folder, 'text_model', 'config.json'));
    assert.equal(await resolveFile(folder, 'tokenizer.json', { optional: true }), null);
    await assert.rejects(resolveFile(folder, 'pytorch_model.bin'), /tiny-altclip: the folder has no file named pytorch_model\.bin/);
  });

  it('refuses file names and revisions that leave the model folder, and ids that are neither', async () => {
    await assert.rejects(resolveFile(folder, '../tiny-altclip-b/config.json'), /relative path inside the model/);
    await assert.rejects(resolveFile('org/tiny', '/etc/passwd', { localFilesOnly: true }), /relative path inside the model/);
    await assert.rejects(resolveFile('org/tiny', 'config.json', { revision: '../../x', localFilesOnly: true }), /revision must be/);
    await assert.rejects(resolveFile('./no/such/folder', 'config.json'), /neither an existing folder nor a hub repo id/);
    await assert.rejects(resolveFile('org--x/y', 'config.json'), /neither an existing folder nor a hub repo id/);
  });
});

describe('progress and concurrency', () => {
  it('draws a progress bar for a large download on a terminal only', async () => {
    const big = Buffer.alloc(PROGRESS_MIN_BYTES + 1, 7);
    const small = await startHubServer({ 'org/big': { commits: { [C1]: { 'big.safetensors': big } }, refs: { main: C1 } } });
    try {
      const output: string[] = [];
      const terminal = Object.assign(new Writable({ write: (chunk, _enc, done) => (output.push(String(chunk)), done()) }), { isTTY: true, columns: 120 });
      const settings = { ...hubSettings({ cacheDir }, env({ HF_ENDPOINT: small.endpoint })), progressStream: terminal };
      const target = path.join(tmp, 'big.incomplete');
      const ref = { repoId: 'org/big', revision: 'main', filename: 'big.safetensors' };
      await downloadToFile(`${small.cdnOrigin}/lfs/${sha256(big)}?X-Amz-Signature=sig`, target, { size: big.length, sha256: sha256(big) }, settings, ref);
      const drawn = output.join('');
      assert.ok(drawn.includes('big.safetensors') && drawn.includes('100%'), drawn.slice(-300));
      assert.equal(fs.statSync(target).size, big.length);
    } finally {
      await small.close();
    }
    // Quiet when stderr is not a terminal (as under the test runner) or when disabled.
    assert.equal(hubSettings({}, {}).progressStream, process.stderr.isTTY ? process.stderr : null);
    assert.equal(hubSettings({}, { HF_HUB_DISABLE_PROGRESS_BARS: '1' }).progressStream, null);
  });

  it('waits for another process holding the download lock, and takes over a dead one\'s', async () => {
    const lock = path.join(cacheDir, '.locks', 'models--org--tiny', `${WEIGHTS_SHA}.altclip.lock`);
    fs.mkdirSync(path.dirname(lock), { recursive: true });
    fs.writeFileSync(lock, String(process.ppid)); // a live process that is not us
    const pending = download('org/tiny', 'model.safetensors');
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(server.requests.filter((r) => r.server === 'cdn').length, 0, 'must not download while locked');
    fs.rmSync(lock);
    assert.ok(fs.readFileSync((await pending)!).equals(WEIGHTS));
    assert.ok(!fs.existsSync(lock), 'the lock is released');

    fs.rmSync(cacheDir, { recursive: true });
    forgetResolvedCommits();
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    fs.mkdirSync(path.dirname(lock), { recursive: true });
    fs.writeFileSync(lock, String(dead));
    assert.ok(fs.readFileSync((await download('org/tiny', 'model.safetensors'))!).equals(WEIGHTS));
  });

  it('treats a server that is not a hub like an unreachable hub', async () => {
    const plain = http.createServer((_req, res) => res.end('<html>portal</html>'));
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    try {
      const endpoint = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
      await rejectsWith(download('org/tiny', 'config.json', {}, { HF_ENDPOINT: endpoint }), 'LocalEntryNotFound', 'X-Repo-Commit', 'org/tiny');
      const file = await download('org/tiny', 'config.json');
      forgetResolvedCommits();
      assert.equal(await download('org/tiny', 'config.json', {}, { HF_ENDPOINT: endpoint }), file);
    } finally {
      plain.closeAllConnections();
      await new Promise<void>((resolve) => plain.close(() => resolve()));
    }
  });

  it('an ETag too long for a file name (300 characters) is refused with the hub context, not ENAMETOOLONG', async () => {
    const etag = 'a'.repeat(300);
    const longEtag = http.createServer((_req, res) => {
      res.writeHead(200, { 'X-Repo-Commit': C1, ETag: `"${etag}"`, 'Content-Length': '2' });
      res.end(_req.method === 'HEAD' ? undefined : '{}');
    });
    await new Promise<void>((resolve) => longEtag.listen(0, '127.0.0.1', resolve));
    try {
      const endpoint = `http://127.0.0.1:${(longEtag.address() as AddressInfo).port}`;
      const error = await rejectsWith(download('org/tiny', 'config.json', {}, { HF_ENDPOINT: endpoint }), 'LocalEntryNotFound', 'org/tiny', 'config.json', 'ETag');
      assert.doesNotMatch(error.message, /ENAMETOOLONG/);
      assert.ok(error.message.length < 1000, 'the ETag is not quoted in full');
    } finally {
      longEtag.closeAllConnections();
      await new Promise<void>((resolve) => longEtag.close(() => resolve()));
    }
  });
});

describe('the token and redirects', () => {
  it('a redirect to another origin (the CDN) drops Authorization; a same-origin (relative) redirect keeps it', async () => {
    // huggingface_hub's http_get: the token goes to the hub only, never to a signed CDN URL
    await download('org/private', 'model.safetensors', { token: server.token });
    const sent = server.requests.filter((r) => r.path.includes('model.safetensors') || r.server === 'cdn');
    assert.ok(sent.some((r) => r.server === 'cdn'), 'the LFS file came from the other origin');
    for (const r of sent) assert.equal(r.authorization, r.server === 'hub' ? `Bearer ${server.token}` : undefined, `${r.server} ${r.method} ${r.path}`);
    assert.notEqual(new URL(server.cdnOrigin).origin, new URL(server.endpoint).origin);
  });
});

