// `altclip serve`'s app (src/server) on the fixture checkpoint, through fastify.inject and over a real
// loopback socket. Embeddings are compared with the Python reference's goldens (text_embeds /
// image_embeds of test/fixtures/goldens/tiny-altclip.safetensors, made by transformers 4.40.2's
// AltCLIPModel, see test/fixtures/README.md), classification with softmax(logits_per_image), similarity
// with logits_per_image / exp(logit_scale). Every error path answers { error: { message, type } }.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';

import { AltCLIPModel } from '../src/models/altclip.js';
import { AltCLIPProcessor } from '../src/processor.js';
import { type ServerOptions, createServer, isPrivateAddress } from '../src/server/index.js';
import { MAX_TEXT_CHARS } from '../src/server/routes.js';
import type { AltCLIPParts } from '../src/tasks/index.js';
import { Tensor } from '../src/tensor.js';
import { FIXTURES, Goldens, maxDiffByFamily, printDiffTable } from './helpers/goldens.js';

const MODEL = path.join(FIXTURES, 'models', 'tiny-altclip');
const graphCacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-server-'));
const index = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', 'tiny-altclip.json'), 'utf8'));
const g = new Goldens(path.join(FIXTURES, 'goldens', 'tiny-altclip.safetensors'));
interface Combo { name: string; texts: string[]; images: string[] }
const combos = index.combos as Combo[];
const scale: number = index.logit_scale_exp;

let clip: AltCLIPParts;
const apps: FastifyInstance[] = [];
before(async () => {
  clip = {
    model: await AltCLIPModel.fromPretrained(MODEL, { graphCacheDir, threads: 1 }),
    processor: await AltCLIPProcessor.fromPretrained(MODEL),
  };
});
after(async () => {
  for (const app of apps) await app.close();
  await clip.model.dispose();
  fs.rmSync(graphCacheDir, { recursive: true, force: true });
  printDiffTable('server: max abs difference vs the reference:');
});

async function server(options: Partial<ServerOptions> = {}): Promise<FastifyInstance> {
  const app = await createServer({ clip, modelName: 'tiny-altclip', ...options });
  apps.push(app);
  return app;
}

function dataUri(file: string): string {
  const type = file.endsWith('.png') ? 'image/png' : 'image/jpeg';
  return `data:${type};base64,${fs.readFileSync(path.join(FIXTURES, file)).toString('base64')}`;
}

function goldenRows(name: string): number[][] {
  const t = g.get(name);
  const [r, c] = t.dims as [number, number];
  return Array.from({ length: r }, (_, i) => [...(t.data as Float32Array).subarray(i * c, (i + 1) * c)]);
}

function maxDiff(a: number[][], b: number[][], family: string): number {
  assert.deepEqual([a.length, a[0]?.length], [b.length, b[0]?.length], `${family}: shape`);
  const d = Math.max(...a.flatMap((r, i) => r.map((x, j) => Math.abs(x - b[i]![j]!))));
  maxDiffByFamily.set(family, Math.max(maxDiffByFamily.get(family) ?? 0, d));
  return d;
}

function softmax(row: number[]): number[] {
  const m = Math.max(...row);
  const e = row.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function post(app: FastifyInstance, url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await app.inject({ method: 'POST', url, payload: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });
  return { status: res.statusCode, headers: res.headers, body: res.json() as Json };
}

function assertError(res: { status: number; body: Json }, status: number, type: string, pattern: RegExp): void {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.deepEqual(Object.keys(res.body), ['error']);
  assert.equal(res.body.error.type, type);
  assert.match(res.body.error.message, pattern);
}

describe('routes against the goldens', () => {
  let app: FastifyInstance;
  before(async () => (app = await server()));

  for (const combo of combos) {
    it(`POST /v1/embeddings text = text_embeds (${combo.name}), usage counts tokens`, async () => {
      const res = await post(app, '/v1/embeddings', { input: combo.texts, modality: 'text', model: 'tiny-altclip' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.object, 'list');
      assert.equal(res.body.model, 'tiny-altclip');
      res.body.data.forEach((d: Json, i: number) => {
        assert.equal(d.object, 'embedding');
        assert.equal(d.index, i);
      });
      const d = maxDiff(res.body.data.map((x: Json) => x.embedding), goldenRows(`${combo.name}/outputs/text_embeds`), 'embeddings text');
      assert.ok(d <= 1e-5, `max diff ${d}`);
      // prompt_tokens = the reference's attention-mask sum (tokens with specials; maxlen pads are not counted).
      const mask = g.get(`${combo.name}/inputs/attention_mask`).data as BigInt64Array;
      const tokens = Number(mask.reduce((a, b) => a + b, 0n));
      assert.deepEqual(res.body.usage, { prompt_tokens: tokens, total_tokens: tokens });
    });

    it(`POST /v1/embeddings image = image_embeds (${combo.name})`, async () => {
      const res = await post(app, '/v1/embeddings', { input: combo.images.map(dataUri), modality: 'image' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const d = maxDiff(res.body.data.map((x: Json) => x.embedding), goldenRows(`${combo.name}/outputs/image_embeds`), 'embeddings image');
      assert.ok(d <= 1e-5, `max diff ${d}`);
    });

    it(`POST /v1/classify = softmax(logits_per_image) (${combo.name})`, async () => {
      const logits = goldenRows(`${combo.name}/outputs/logits_per_image`);
      for (const [i, image] of combo.images.entries()) {
        const res = await post(app, '/v1/classify', { image: dataUri(image), labels: combo.texts, template: '{}' });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        const scores: Json[] = res.body.labels;
        for (let j = 1; j < scores.length; j++) assert.ok(scores[j - 1]!.score >= scores[j]!.score, 'sorted best first');
        const got = combo.texts.map((t) => scores.find((s) => s.label === t)!.score);
        const d = maxDiff([got], [softmax(logits[i]!)], 'classify scores');
        assert.ok(d <= 1e-5, `max diff ${d}`);
      }
    });

    it(`POST /v1/similarity = logits_per_image / exp(logit_scale) (${combo.name})`, async () => {
      const res = await post(app, '/v1/similarity', { images: combo.images.map(dataUri), texts: combo.texts });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const expected = goldenRows(`${combo.name}/outputs/logits_per_image`).map((r) => r.map((x) => x / scale));
      const d = maxDiff(res.body.similarity, expected, 'similarity cosine');
      assert.ok(d <= 1e-5, `max diff ${d}`);
    });
  }

  it('a single string input and encoding_format base64 (little-endian float32, as OpenAI)', async () => {
    const text = combos[0]!.texts[0]!;
    const res = await post(app, '/v1/embeddings', { input: text, encoding_format: 'base64' });
    assert.equal(res.status, 200);
    const bytes = Buffer.from(res.body.data[0].embedding, 'base64');
    const row = [...new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)];
    const d = maxDiff([row], goldenRows(`${combos[0]!.name}/outputs/text_embeds`), 'embeddings text');
    assert.ok(d <= 1e-5, `max diff ${d}`);
  });

  it('classify with the default template gives zeroShotImageClassification\'s numbers', async () => {
    const { zeroShotImageClassification } = await import('../src/tasks/index.js');
    const labels = ['a cat', 'a dog', '一只猫'];
    const expected = await zeroShotImageClassification(clip, path.join(FIXTURES, 'images/cat.jpg'), labels);
    const res = await post(app, '/v1/classify', { image: dataUri('images/cat.jpg'), labels });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.labels.map((l: Json) => l.label), expected.map((l) => l.label));
    const d = maxDiff([res.body.labels.map((l: Json) => l.score)], [expected.map((l) => l.score)], 'classify scores');
    assert.ok(d <= 1e-6, `max diff ${d}`);
  });

  it('GET /health, GET /v1/models, the page at /', async () => {
    assert.deepEqual((await app.inject('/health')).json(), { status: 'ok' });
    const models = (await app.inject('/v1/models')).json();
    assert.equal(models.object, 'list');
    assert.equal(models.data[0].id, 'tiny-altclip');
    assert.equal(models.data[0].search, false);
    const page = await app.inject('/');
    assert.equal(page.statusCode, 200);
    assert.match(page.headers['content-type'] as string, /^text\/html/);
    assert.match(page.body, /<script type="module" src="\/app.js">/);
    assert.match((await app.inject('/app.js')).headers['content-type'] as string, /javascript/);
    assert.match((await app.inject('/style.css')).headers['content-type'] as string, /text\/css/);
  });

  it('GET /metrics: requests by route and status, latency, batch sizes, queue depth, model run time', async () => {
    await post(app, '/v1/embeddings', { input: 'x', modality: 'text' });
    await post(app, '/v1/embeddings', { input: 7 });
    const res = await app.inject('/metrics');
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'] as string, /^text\/plain; version=0.0.4/);
    const text = res.body;
    assert.match(text, /altclip_http_requests_total\{route="\/v1\/embeddings",method="POST",status="200"\} \d+/);
    assert.match(text, /altclip_http_requests_total\{route="\/v1\/embeddings",method="POST",status="400"\} 1/);
    assert.match(text, /altclip_http_request_duration_seconds_bucket\{le="0.005",route="\/v1\/embeddings",method="POST"\}/);
    assert.match(text, /altclip_batch_size_count\{modality="text"\} [1-9]/);
    assert.match(text, /altclip_batch_size_count\{modality="image"\} [1-9]/);
    assert.match(text, /altclip_queue_depth\{modality="text"\} 0/);
    assert.match(text, /altclip_model_run_seconds_count\{modality="image"\} [1-9]/);
  });
});

/** Polls /metrics (bounded) until `n` inputs of `modality` are queued; returns the metrics text. */
async function queued(app: FastifyInstance, modality: string, n: number): Promise<string> {
  for (let i = 0; i < 1000; i++) {
    const text = (await app.inject('/metrics')).body;
    if (text.includes(`altclip_queue_depth{modality="${modality}"} ${n}\n`)) return text;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${n} ${modality} inputs never got queued`);
}

describe('dynamic batching', () => {
  it('concurrent requests are merged into one model batch; a bad image fails only its own request', async () => {
    // maxBatchSize 4 and a wait longer than any test: the batch runs exactly when the 4 inputs are queued.
    const app = await server({ batching: { maxBatchSize: 4, maxWaitMs: 60_000 } });
    const [cat, gray] = ['images/cat.jpg', 'images/gray_portrait.png'];
    const notAnImage = `data:image/png;base64,${Buffer.from('this is not a png file').toString('base64')}`;
    const [a, b, c] = await Promise.all([
      post(app, '/v1/embeddings', { input: [dataUri(cat)], modality: 'image' }),
      post(app, '/v1/embeddings', { input: [dataUri(gray), notAnImage], modality: 'image' }),
      post(app, '/v1/embeddings', { input: [dataUri(cat)], modality: 'image' }),
    ]);
    const catGolden = goldenRows('single/outputs/image_embeds');
    for (const ok of [a, c]) {
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      const d = maxDiff([ok.body.data[0].embedding], catGolden, 'embeddings image');
      assert.ok(d <= 1e-5, `max diff ${d}`);
    }
    assertError(b, 400, 'invalid_request_error', /^input\[1\]: cannot use the image: .*not a recognised image/);
    const metrics = (await app.inject('/metrics')).body;
    assert.match(metrics, /altclip_batch_size_count\{modality="image"\} 1\n/);
    assert.match(metrics, /altclip_batch_size_sum\{modality="image"\} 4\n/);
  });

  it('a full queue answers 429 with Retry-After and queues nothing of the refused request', async () => {
    const app = await server({ maxInputs: 3, batching: { maxBatchSize: 64, maxWaitMs: 60_000, maxQueue: 3 } });
    const first = post(app, '/v1/embeddings', { input: ['one', 'two'] });
    await queued(app, 'text', 2);
    const refused = await post(app, '/v1/embeddings', { input: ['three', 'four'] });
    assertError(refused, 429, 'server_busy', /^server busy: 2 inputs are queued and 2 more do not fit/);
    assert.match(String(refused.headers['retry-after']), /^[1-9]\d*$/);
    // One more input still fits; then the queue is full at 3 (maxBatchSize 64 never fills), so closing
    // the app runs the waiting batch: both requests are answered.
    const third = post(app, '/v1/embeddings', { input: 'five' });
    const metrics = await queued(app, 'text', 3);
    assert.match(metrics, /altclip_http_requests_total\{route="\/v1\/embeddings",method="POST",status="429"\} 1/);
    await app.close();
    assert.equal((await first).status, 200);
    assert.equal((await third).status, 200);
  });
});

describe('errors', () => {
  let app: FastifyInstance;
  before(async () => (app = await server({ maxInputs: 4, bodyLimit: 64 * 1024 })));
  const cat = () => dataUri('images/cat.jpg');

  it('malformed JSON, empty body, a non-object body, wrong content type', async () => {
    const raw = (payload: string, type = 'application/json') =>
      app.inject({ method: 'POST', url: '/v1/embeddings', payload, headers: { 'content-type': type } }).then((r) => ({ status: r.statusCode, body: r.json() }));
    assertError(await raw('{"input": "x",'), 400, 'invalid_request_error', /^malformed JSON body/);
    assertError(await raw(''), 400, 'invalid_request_error', /^malformed JSON body: the body is empty/);
    assertError(await raw('[1, 2]'), 400, 'invalid_request_error', /request body must be a JSON object/);
    assertError(await raw('input=x', 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type', /application\/x-www-form-urlencoded.*send application\/json/);
  });

  it('wrong types name the field', async () => {
    assertError(await post(app, '/v1/embeddings', {}), 400, 'invalid_request_error', /^input must be an array of strings, got nothing/);
    assertError(await post(app, '/v1/embeddings', { input: ['a', 3] }), 400, 'invalid_request_error', /^input\[1\] must be a string, got 3/);
    assertError(await post(app, '/v1/embeddings', { input: 'a', modality: 'audio' }), 400, 'invalid_request_error', /^modality must be "text" or "image", got "audio"/);
    assertError(await post(app, '/v1/embeddings', { input: 'a', encoding_format: 'int8' }), 400, 'invalid_request_error', /^encoding_format must be/);
    assertError(await post(app, '/v1/embeddings', { input: 'a', model: 'gpt' }), 400, 'invalid_request_error', /^model "gpt" is not served here; this server serves "tiny-altclip"/);
    assertError(await post(app, '/v1/classify', { image: 5, labels: ['a'] }), 400, 'invalid_request_error', /^image must be a data:image/);
    assertError(await post(app, '/v1/classify', { image: cat(), labels: [] }), 400, 'invalid_request_error', /^labels must not be empty/);
    assertError(await post(app, '/v1/classify', { image: cat(), labels: ['a', ' '] }), 400, 'invalid_request_error', /^labels\[1\] is empty/);
    assertError(await post(app, '/v1/classify', { image: cat(), labels: ['a'], template: 'no slot' }), 400, 'invalid_request_error', /^template must be a string with \{\}/);
    assertError(await post(app, '/v1/similarity', { images: [cat()], texts: 'a' }), 400, 'invalid_request_error', /^texts must be an array of strings/);
    assertError(await post(app, '/v1/similarity', { images: [], texts: ['a'] }), 400, 'invalid_request_error', /at least one item/);
  });

  it('too many inputs', async () => {
    assertError(await post(app, '/v1/embeddings', { input: ['a', 'b', 'c', 'd', 'e'] }), 400, 'invalid_request_error', /^too many inputs: input has 5 items, at most 4 per request/);
    assertError(await post(app, '/v1/classify', { image: cat(), labels: ['a', 'b', 'c', 'd', 'e'] }), 400, 'invalid_request_error', /^too many inputs: labels has 5/);
  });

  it('texts over MAX_TEXT_CHARS', async () => {
    const long = 'a'.repeat(MAX_TEXT_CHARS + 1);
    const app = await server(); // the default body limit (32 MiB)
    assertError(await post(app, '/v1/embeddings', { input: ['ok', long] }), 400, 'invalid_request_error', /^input\[1\] is 100001 characters long; at most 100000 per text/);
    assertError(await post(app, '/v1/embeddings', { input: long }), 400, 'invalid_request_error', /^input is 100001 characters long/);
  });

  it('undecodable images and non-data-URI strings (never read as file paths)', async () => {
    const bogus = `data:image/jpeg;base64,${Buffer.from('GIF89a but not really').toString('base64')}`;
    assertError(await post(app, '/v1/embeddings', { input: [cat(), bogus], modality: 'image' }), 400, 'invalid_request_error', /^input\[1\]: cannot use the image: cannot decode GIF image/);
    assertError(await post(app, '/v1/embeddings', { input: ['data:image/png;base64,@@@@'], modality: 'image' }), 400, 'invalid_request_error', /^input\[0\]: the data URI's base64 payload is malformed/);
    const file = path.join(FIXTURES, 'images', 'cat.jpg');
    assertError(await post(app, '/v1/embeddings', { input: [file], modality: 'image' }), 400, 'invalid_request_error', /^input\[0\]: expected a data:image\/\.\.\.;base64, URI, got "\//);
    assertError(await post(app, '/v1/classify', { image: 'data:image/png;base64,', labels: ['a'] }), 400, 'invalid_request_error', /^image: the data URI is empty/);
    assertError(await post(app, '/v1/similarity', { images: [cat(), 'data:image/png;base64,AAAA'], texts: ['a'] }), 400, 'invalid_request_error', /^images\[1\]: cannot use the image: .*not a recognised image/);
  });

  it('URLs: refused without --allow-urls; with it, loopback and private addresses are still refused', async () => {
    assertError(await post(app, '/v1/embeddings', { input: ['http://example.com/cat.jpg'], modality: 'image' }), 400, 'invalid_request_error', /^input\[0\]: image URLs are not fetched by this server \(start it with --allow-urls\)/);
    // A real image server on loopback: it must never be asked.
    let hits = 0;
    const images = http.createServer((_req, res) => {
      hits++;
      res.end(fs.readFileSync(path.join(FIXTURES, 'images', 'cat.jpg')));
    });
    await new Promise<void>((r) => images.listen(0, '127.0.0.1', r));
    const port = (images.address() as AddressInfo).port;
    try {
      const withUrls = await server({ urls: { allowUrls: true } });
      for (const url of [`http://127.0.0.1:${port}/cat.jpg`, `http://localhost:${port}/cat.jpg`, `http://[::1]:${port}/cat.jpg`, `http://0.0.0.0:${port}/`]) {
        assertError(await post(withUrls, '/v1/embeddings', { input: [url], modality: 'image' }), 400, 'invalid_request_error', /loopback\/private address; such URLs are refused/);
      }
      assert.equal(hits, 0, 'the loopback server was never contacted');
      // Explicitly allowed: fetched, and the embedding is the golden one.
      const allowed = await server({ urls: { allowUrls: true, allowPrivateUrls: true } });
      const res = await post(allowed, '/v1/embeddings', { input: [`http://127.0.0.1:${port}/cat.jpg`], modality: 'image' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(hits, 1);
      const d = maxDiff([res.body.data[0].embedding], goldenRows('single/outputs/image_embeds'), 'embeddings image');
      assert.ok(d <= 1e-5, `max diff ${d}`);
    } finally {
      images.close();
    }
  });

  it('isPrivateAddress covers loopback, private, link-local, CGNAT, mapped IPv6', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1']) {
      assert.equal(isPrivateAddress(a), true, a);
    }
    for (const a of ['93.184.216.34', '8.8.8.8', '2606:4700::1111', '::ffff:8.8.8.8']) assert.equal(isPrivateAddress(a), false, a);
  });

  it('body over the limit: 413', async () => {
    const big = 'x'.repeat(70 * 1024);
    assertError(await post(app, '/v1/embeddings', { input: [big] }), 413, 'payload_too_large', /request body is larger than the limit of 65536 bytes/);
  });

  it('unknown routes: 404; search without --db: 404 naming --db', async () => {
    const r = await app.inject('/v1/nothing');
    assert.equal(r.statusCode, 404);
    assert.deepEqual(r.json(), { error: { message: 'no route GET /v1/nothing', type: 'not_found_error' } });
    assertError({ status: (await app.inject('/v1/search?q=cat')).statusCode, body: (await app.inject('/v1/search?q=cat')).json() }, 404, 'not_found_error', /start the server with --db/);
  });

  it('--api-key: 401 without or with a wrong key, 200 with it; / and /health stay public', async () => {
    const secured = await server({ apiKey: 's3cret' });
    assertError(await post(secured, '/v1/embeddings', { input: 'a' }), 401, 'authentication_error', /^missing API key/);
    assertError(await post(secured, '/v1/embeddings', { input: 'a' }, { authorization: 'Bearer nope' }), 401, 'authentication_error', /^invalid API key/);
    const m = await secured.inject('/metrics');
    assert.equal(m.statusCode, 401);
    assert.equal(m.headers['www-authenticate'], 'Bearer');
    assert.equal((await post(secured, '/v1/embeddings', { input: 'a' }, { authorization: 'Bearer s3cret' })).status, 200);
    assert.equal((await secured.inject('/')).statusCode, 200);
    assert.equal((await secured.inject('/health')).statusCode, 200);
  });

  it('a model failure is a 500 without internals, and the server keeps serving', async () => {
    let fail = true;
    const flaky: AltCLIPParts = {
      processor: clip.processor,
      model: Object.create(clip.model, {
        getTextFeatures: {
          value: (inputs: { inputIds: Tensor; attentionMask?: Tensor }) => {
            if (fail) return Promise.reject(new Error('session exploded'));
            return clip.model.getTextFeatures(inputs);
          },
        },
      }),
    };
    const app2 = await createServer({ clip: flaky, modelName: 'flaky' });
    apps.push(app2);
    const stderr = process.stderr.write;
    process.stderr.write = () => true; // the error is logged on stderr: keep the test output clean
    try {
      assertError(await post(app2, '/v1/embeddings', { input: 'a' }), 500, 'server_error', /^internal server error$/);
    } finally {
      process.stderr.write = stderr;
    }
    fail = false;
    assert.equal((await post(app2, '/v1/embeddings', { input: 'a' })).status, 200);
  });
});

describe('over a loopback socket', () => {
  it('answers on 127.0.0.1 with the same numbers, keep-alive and concurrent clients', async () => {
    const app = await server();
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const combo = combos.find((c) => c.name === 'batch3')!;
    const responses = await Promise.all(combo.texts.map((text) =>
      fetch(`http://127.0.0.1:${port}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input: text }) })
        .then(async (r) => ({ status: r.status, body: (await r.json()) as Json }))));
    for (const r of responses) assert.equal(r.status, 200);
    const d = maxDiff(responses.map((r) => r.body.data[0].embedding), goldenRows('batch3/outputs/text_embeds'), 'embeddings text');
    assert.ok(d <= 1e-5, `max diff ${d}`);
    const health = await fetch(`http://127.0.0.1:${port}/health`);
    assert.deepEqual(await health.json(), { status: 'ok' });
  });
});
