// The web page at / in a real browser: Debian's chromium (found on PATH, or $CHROMIUM_PATH / $CHROMIUM) driven by
// playwright-core, which downloads nothing when given executablePath. The server runs in-process on
// the fixture checkpoint over an ImageIndex of the fixture images, on 127.0.0.1 and a free port.
// What the page shows is checked against the API (which test/server*.test.ts checks against the
// goldens): the search grid against GET /v1/search, the classify bars against POST /v1/classify; and
// errors (an undecodable image, a busy server) are shown in the page. Screenshots go to
// .cache/screenshots/ (git-ignored).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { type Browser, type Page, chromium } from 'playwright-core';

import { AltCLIPModel } from '../src/models/altclip.js';
import { AltCLIPProcessor } from '../src/processor.js';
import { ImageIndex } from '../src/search/index.js';
import { createServer, openSearchIndex } from '../src/server/index.js';
import type { AltCLIPParts } from '../src/tasks/index.js';
import { FIXTURES } from './helpers/goldens.js';
import { requireProgram } from './helpers/system.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHOTS = path.join(ROOT, '.cache', 'screenshots');
const MODEL = path.join(FIXTURES, 'models', 'tiny-altclip');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-browser-'));
process.env.ALTCLIP_CACHE ??= path.join(tmp, 'cache');
const images = path.join(tmp, 'images');
const db = path.join(tmp, 'index.db');
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let clip: AltCLIPParts;
let app: FastifyInstance;
let base: string;
let browser: Browser;
let page: Page;

async function listen(server: FastifyInstance): Promise<string> {
  await server.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
}

before(async () => {
  const executablePath = requireProgram('chromium'); // a missing browser fails here, before the setup
  fs.mkdirSync(SHOTS, { recursive: true });
  clip = {
    model: await AltCLIPModel.fromPretrained(MODEL, { graphCacheDir: path.join(tmp, 'graphs'), threads: 1 }),
    processor: await AltCLIPProcessor.fromPretrained(MODEL),
  };
  fs.cpSync(path.join(FIXTURES, 'images'), images, { recursive: true });
  const index = await ImageIndex.open(db, { model: MODEL, threads: 1 });
  await index.sync([images]);
  await index.close();
  app = await createServer({ clip, modelName: 'tiny-altclip', index: await openSearchIndex(db, { model: MODEL }) });
  base = await listen(app);
  browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'], timeout: 30_000 });
  page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  page.setDefaultTimeout(15_000);
});

after(async () => {
  await browser?.close();
  await app?.close();
  await clip?.model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function api(url: string, body?: unknown): Promise<Json> {
  const res = await fetch(`${base}${url}`, body === undefined ? {} : {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  assert.equal(res.status, 200);
  return (await res.json()) as Json;
}

describe('the web page in chromium', () => {
  it('search: the grid shows GET /v1/search\'s results, in order, with their scores and thumbnails', async () => {
    await page.goto(`${base}/`);
    await page.locator('#model').filter({ hasText: 'tiny-altclip' }).waitFor();
    assert.equal(await page.isHidden('#key-form'), true, 'no API key prompt when the server has no key');
    const query = '一只猫 a photo of a cat';
    await page.fill('#query', query);
    await page.fill('#k', '6');
    await page.press('#query', 'Enter');
    await page.locator('#grid li').nth(5).waitFor();
    await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('#grid img')].every((i) => i.complete && i.naturalWidth > 0));
    const shown = await page.$$eval('#grid li', (lis) => lis.map((li) => ({
      path: (li as HTMLElement).dataset.path!,
      score: Number((li as HTMLElement).dataset.score),
      text: li.querySelector('.score')!.textContent!,
      name: li.querySelector('.name')!.textContent!,
    })));
    const expected = (await api(`/v1/search?q=${encodeURIComponent(query)}&k=6`)).results as Json[];
    assert.equal(shown.length, 6);
    assert.deepEqual(shown.map((s) => s.path), expected.map((r) => r.path));
    shown.forEach((s, i) => {
      assert.equal(s.score, expected[i]!.score);
      assert.equal(s.text, expected[i]!.score.toFixed(3));
      assert.equal(s.name, path.basename(expected[i]!.path));
    });
    assert.match(await page.textContent('#search-status') ?? '', /^6 results in \d+ ms$/);
    assert.equal(await page.isHidden('#error'), true);
    await page.screenshot({ path: path.join(SHOTS, 'browser-search.png'), fullPage: true });
  });

  it('classify: the bars show POST /v1/classify\'s probabilities for the picked image', async () => {
    const labels = ['a cat', 'a dog', '一只猫', 'un oiseau'];
    await page.setInputFiles('#file', path.join(FIXTURES, 'images', 'cat.jpg'));
    await page.locator('#preview:not([hidden])').waitFor();
    await page.fill('#labels', labels.join('\n'));
    await page.click('#classify');
    await page.locator('#bars li').nth(labels.length - 1).waitFor();
    const shown = await page.$$eval('#bars li', (lis) => lis.map((li) => ({
      label: (li as HTMLElement).dataset.label!,
      score: Number((li as HTMLElement).dataset.score),
      text: li.querySelector('.value')!.textContent!,
      width: (li.querySelector('.fill') as HTMLElement).style.width,
    })));
    const uri = `data:image/jpeg;base64,${fs.readFileSync(path.join(FIXTURES, 'images', 'cat.jpg')).toString('base64')}`;
    const expected = (await api('/v1/classify', { image: uri, labels })).labels as { label: string; score: number }[];
    assert.deepEqual(shown.map((s) => s.label), expected.map((e) => e.label));
    shown.forEach((s, i) => {
      assert.equal(s.score, expected[i]!.score);
      assert.equal(s.text, `${(expected[i]!.score * 100).toFixed(1)}%`);
      assert.equal(s.width, `${(expected[i]!.score * 100).toFixed(1)}%`);
    });
    const total = expected.reduce((a, e) => a + e.score, 0);
    assert.ok(Math.abs(total - 1) < 1e-9, 'probabilities sum to 1');
    await page.screenshot({ path: path.join(SHOTS, 'browser-classify.png'), fullPage: true });
  });

  it('a JPEG whose file has no extension is classified: the page sniffs the bytes, not the MIME type', async () => {
    const bare = path.join(tmp, 'cat-photo');
    fs.copyFileSync(path.join(FIXTURES, 'images', 'cat.jpg'), bare);
    const labels = ['a cat', 'a dog'];
    await page.goto(`${base}/`);
    await page.setInputFiles('#file', bare);
    await page.locator('#drop-text', { hasText: 'cat-photo' }).waitFor();
    assert.match(await page.getAttribute('#preview', 'src') ?? '', /^data:image\/jpeg;base64,/);
    await page.fill('#labels', labels.join('\n'));
    await page.click('#classify');
    await page.locator('#bars li').nth(labels.length - 1).waitFor();
    assert.equal(await page.isHidden('#error'), true);
    const shown = await page.$$eval('#bars li', (lis) => lis.map((li) => ({ label: (li as HTMLElement).dataset.label!, score: Number((li as HTMLElement).dataset.score) })));
    const uri = `data:image/jpeg;base64,${fs.readFileSync(bare).toString('base64')}`;
    assert.deepEqual(shown, (await api('/v1/classify', { image: uri, labels })).labels);
  });

  it('one indexed file removed since indexing: a broken tile, the other results shown, no error', async () => {
    const all = (await api('/v1/search?q=cat&k=20')).results as Json[];
    const gone = all.find((r) => path.basename(r.path) === 'palette.png')!;
    const saved = fs.readFileSync(gone.path);
    fs.rmSync(gone.path);
    try {
      await page.goto(`${base}/`);
      await page.locator('#model').filter({ hasText: 'tiny-altclip' }).waitFor();
      await page.fill('#query', 'cat');
      await page.fill('#k', String(all.length));
      await page.press('#query', 'Enter');
      await page.locator('#grid li').nth(all.length - 1).waitFor();
      await page.locator('#grid li.missing').waitFor();
      await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('#grid li:not(.missing) img')].every((i) => i.complete && i.naturalWidth > 0));
      const missing = await page.$$eval('#grid li.missing', (lis) => lis.map((li) => (li as HTMLElement).dataset.path));
      assert.deepEqual(missing, [gone.path]);
      assert.equal(await page.locator('#grid li').count(), all.length);
      assert.equal(await page.isHidden('#error'), true, 'no error for the whole search');
      assert.match(await page.textContent('#search-status') ?? '', new RegExp(`^${all.length} results in \\d+ ms$`));
      await page.screenshot({ path: path.join(SHOTS, 'browser-missing-file.png'), fullPage: true });
    } finally {
      fs.writeFileSync(gone.path, saved);
    }
  });

  it('errors are shown in the page: an undecodable image', async () => {
    const bad = path.join(tmp, 'not-an-image.png');
    fs.writeFileSync(bad, 'this is text, not a PNG');
    await page.setInputFiles('#file', bad);
    await page.locator('#drop-text', { hasText: 'not-an-image.png' }).waitFor();
    await page.click('#classify');
    await page.locator('#error:not([hidden])').waitFor();
    assert.match(await page.textContent('#error') ?? '', /^image: cannot use the image: .*not a recognised image/);
    assert.equal(await page.locator('#bars li').count(), 0);
    await page.screenshot({ path: path.join(SHOTS, 'browser-bad-image.png'), fullPage: true });
  });

  it('with --api-key the page asks for the key, then works with it', async () => {
    const secured = await createServer({ clip, modelName: 'tiny-altclip', apiKey: 'page-key' });
    const securedBase = await listen(secured);
    try {
      await page.goto(`${securedBase}/`);
      await page.locator('#key-form:not([hidden])').waitFor();
      assert.match(await page.textContent('#error') ?? '', /missing API key/);
      await page.fill('#key', 'page-key');
      await page.click('#key-form button');
      await page.locator('#model').filter({ hasText: 'tiny-altclip' }).waitFor();
      assert.equal(await page.isHidden('#error'), true);
      await page.screenshot({ path: path.join(SHOTS, 'browser-api-key.png'), fullPage: true });
    } finally {
      await page.evaluate(() => sessionStorage.clear());
      await secured.close();
    }
  });

  it('errors are shown in the page: server busy (429)', async () => {
    // A second server whose text queue (1 input) is already full: a request from the test waits in it
    // (a batch of 64 never fills and the wait is a minute), so the page's classify gets 429.
    const busy = await createServer({ clip, modelName: 'tiny-altclip', maxInputs: 1, batching: { maxQueue: 1, maxBatchSize: 64, maxWaitMs: 60_000 } });
    const busyBase = await listen(busy);
    try {
      const waiting = fetch(`${busyBase}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input: 'wait' }) });
      for (let i = 0; !(await (await fetch(`${busyBase}/metrics`)).text()).includes('altclip_queue_depth{modality="text"} 1\n'); i++) {
        assert.ok(i < 1000, 'the waiting request never got queued');
        await new Promise((r) => setTimeout(r, 10));
      }
      await page.goto(`${busyBase}/`);
      await page.locator('#search-status', { hasText: 'Search is off' }).waitFor();
      await page.setInputFiles('#file', path.join(FIXTURES, 'images', 'cat.jpg'));
      await page.locator('#preview:not([hidden])').waitFor();
      await page.fill('#labels', 'a cat');
      await page.click('#classify');
      await page.locator('#error:not([hidden])').waitFor();
      assert.match(await page.textContent('#error') ?? '', /^Server busy, try again in a moment \(server busy: 1 inputs are queued/);
      await page.screenshot({ path: path.join(SHOTS, 'browser-busy.png'), fullPage: true });
      await busy.close(); // drains: the waiting request is answered
      assert.equal((await waiting).status, 200);
    } finally {
      await busy.close();
    }
  });
});
