// The routes: parse and check the request, call the service (the tasks, batched), shape the answer.
// Request and response shapes are the contract of issue 15 (OpenAI's /v1/embeddings plus Infinity's
// `modality`); see ARCHITECTURE.md "Server".
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { DEFAULT_HYPOTHESIS_TEMPLATE } from '../tasks/zero-shot.js';
import { ApiError, echo } from './errors.js';
import { type UrlPolicy, imageBytes } from './images.js';
import type { ServerMetrics } from './metrics.js';
import { type SearchIndex, readIndexedFile } from './search.js';
import type { EmbeddingService } from './service.js';

export interface RouteContext {
  service: EmbeddingService;
  metrics: ServerMetrics;
  modelName: string;
  index?: SearchIndex;
  maxInputs: number;
  urls: UrlPolicy;
}

export const DEFAULT_K = 10;
/** Longest text accepted (the model reads at most 512 tokens; this bounds the tokenizer's work). */
export const MAX_TEXT_CHARS = 100_000;
export const MAX_K = 1000;

export function registerRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { service, modelName } = ctx;
  const page = pageFiles();
  const started = Math.floor(Date.now() / 1000);

  for (const [file, type] of [['index.html', 'text/html'], ['app.js', 'text/javascript'], ['style.css', 'text/css']] as const) {
    const body = page.get(file)!;
    app.get(file === 'index.html' ? '/' : `/${file}`, async (_req, reply) => reply.type(`${type}; charset=utf-8`).send(body));
  }

  app.get('/health', async () => ({ status: 'ok' }));

  app.get('/v1/models', async () => ({
    object: 'list',
    data: [{
      id: modelName, object: 'model', created: started, owned_by: 'altclip',
      modalities: ['text', 'image'], search: Boolean(ctx.index),
    }],
  }));

  app.get('/metrics', async (_req, reply) => reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics()));

  app.post('/v1/embeddings', async (request, reply) => {
    const body = jsonObject(request.body);
    const input = body.input;
    const inputs = typeof input === 'string' ? [input] : stringList(input, 'input', ctx.maxInputs);
    const modality = body.modality ?? 'text';
    if (modality !== 'text' && modality !== 'image') throw bad(`modality must be "text" or "image", got ${show(modality)}`);
    const format = body.encoding_format ?? 'float';
    if (format !== 'float' && format !== 'base64') throw bad(`encoding_format must be "float" or "base64", got ${show(format)}`);
    checkModel(body.model, modelName);
    let rows: Float32Array[];
    let tokens = 0;
    if (modality === 'text') {
      checkTexts(inputs, typeof input === 'string' ? () => 'input' : (i) => `input[${i}]`);
      tokens = service.countTokens(inputs);
      rows = await service.embedTexts(inputs);
    } else {
      const images = await Promise.all(inputs.map((s, i) => imageBytes(s, `input[${i}]`, ctx.urls)));
      rows = await service.embedImages(images);
    }
    const data = rows.map((row, index) => ({
      object: 'embedding',
      index,
      embedding: format === 'base64' ? Buffer.from(row.buffer, row.byteOffset, row.byteLength).toString('base64') : Array.from(row),
    }));
    return reply.send({ object: 'list', data, model: modelName, usage: { prompt_tokens: tokens, total_tokens: tokens } });
  });

  app.post('/v1/classify', async (request) => {
    const body = jsonObject(request.body);
    if (typeof body.image !== 'string') throw bad(`image must be a data:image/...;base64, URI string, got ${show(body.image)}`);
    const labels = stringList(body.labels, 'labels', ctx.maxInputs);
    if (labels.length === 0) throw bad('labels must not be empty: give at least one label');
    checkTexts(labels, (i) => `labels[${i}]`);
    labels.forEach((l, i) => {
      if (l.trim() === '') throw bad(`labels[${i}] is empty`);
    });
    const template = body.template ?? DEFAULT_HYPOTHESIS_TEMPLATE;
    if (typeof template !== 'string' || !template.includes('{}')) throw bad(`template must be a string with {} where the label goes, got ${show(template)}`);
    checkModel(body.model, modelName);
    const image = await imageBytes(body.image, 'image', ctx.urls);
    return { labels: await service.classify(image, labels, template) };
  });

  app.post('/v1/similarity', async (request) => {
    const body = jsonObject(request.body);
    const images = stringList(body.images, 'images', ctx.maxInputs);
    const texts = stringList(body.texts, 'texts', ctx.maxInputs);
    if (images.length === 0 || texts.length === 0) throw bad('images and texts must each hold at least one item');
    checkTexts(texts, (i) => `texts[${i}]`);
    checkModel(body.model, modelName);
    const bytes = await Promise.all(images.map((s, i) => imageBytes(s, `images[${i}]`, ctx.urls)));
    return { similarity: await service.similarity(bytes, texts) };
  });

  const index = (): SearchIndex => {
    if (!ctx.index) throw new ApiError(404, 'search is not enabled: start the server with --db <index folder>');
    return ctx.index;
  };

  app.get('/v1/search', async (request) => {
    const db = index();
    const query = request.query as Record<string, unknown>;
    const q = query.q;
    if (typeof q !== 'string' || q.trim() === '') throw bad('q must be a non-empty text: GET /v1/search?q=<text>&k=10');
    checkTexts([q], () => 'q');
    const k = topK(query.k);
    const [embedding] = await service.embedTexts([q], () => 'q');
    return { results: await db.search(embedding!, k) };
  });

  app.post('/v1/search', async (request) => {
    const db = index();
    const body = jsonObject(request.body);
    if (typeof body.image !== 'string') throw bad(`image must be a data:image/...;base64, URI string, got ${show(body.image)}`);
    const k = topK(body.k);
    const image = await imageBytes(body.image, 'image', ctx.urls);
    const [embedding] = await service.embedImages([image], () => 'image');
    return { results: await db.search(embedding!, k) };
  });

  app.get('/v1/images/:id', async (request, reply) => {
    const db = index();
    const { id } = request.params as { id: string };
    const file = await db.fileOf(id);
    if (!file) throw new ApiError(404, `no indexed image has id ${show(id)}`);
    const data = await readIndexedFile(file);
    if (!data) throw new ApiError(404, `the indexed image ${show(id)} is no longer on disk as it was indexed`);
    // Revalidated on every use (a file removed or changed since indexing must not live on in a cache);
    // the ETag is the indexed content's sha256, so an unchanged file costs a 304.
    const etag = `"${file.sha256}"`;
    reply.header('x-content-type-options', 'nosniff').header('cache-control', 'private, no-cache').header('etag', etag);
    if (request.headers['if-none-match'] === etag) return reply.code(304).send();
    return reply.type(imageType(data)).send(data);
  });
}

function bad(message: string): ApiError {
  return new ApiError(400, message);
}

function show(value: unknown): string {
  return echo(value, 60);
}

function jsonObject(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw bad('the request body must be a JSON object (Content-Type: application/json)');
  }
  return body as Record<string, unknown>;
}

function stringList(value: unknown, name: string, max: number): string[] {
  if (!Array.isArray(value)) throw bad(`${name} must be an array of strings, got ${show(value)}`);
  if (value.length > max) throw bad(`too many inputs: ${name} has ${value.length} items, at most ${max} per request`);
  value.forEach((v, i) => {
    if (typeof v !== 'string') throw bad(`${name}[${i}] must be a string, got ${show(v)}`);
  });
  return value as string[];
}

function checkTexts(texts: string[], name: (i: number) => string): void {
  texts.forEach((t, i) => {
    if (t.length > MAX_TEXT_CHARS) throw bad(`${name(i)} is ${t.length} characters long; at most ${MAX_TEXT_CHARS} per text`);
  });
}

function checkModel(model: unknown, served: string): void {
  if (model === undefined || model === null) return;
  if (typeof model !== 'string') throw bad(`model must be a string, got ${show(model)}`);
  if (model !== served) throw bad(`model ${show(model)} is not served here; this server serves ${show(served)} (GET /v1/models)`);
}

function topK(value: unknown): number {
  if (value === undefined) return DEFAULT_K;
  const k = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || k > MAX_K) throw bad(`k must be an integer from 1 to ${MAX_K}, got ${show(value)}`);
  return k;
}

/** The content type from the magic bytes (the indexed files are images the index could decode). */
function imageType(b: Uint8Array): string {
  if (b[0] === 0xff && b[1] === 0xd8) return 'image/jpeg';
  if (b[0] === 0x89 && b[1] === 0x50) return 'image/png';
  if (b[0] === 0x47 && b[1] === 0x49) return 'image/gif';
  if (b[0] === 0x42 && b[1] === 0x4d) return 'image/bmp';
  if (b[8] === 0x57 && b[9] === 0x45) return 'image/webp';
  return 'application/octet-stream';
}

/** The web page's files (src/server/page), read once. dist/src/server/ looks for them in src/server/page. */
function pageFiles(): Map<string, string> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, 'page'), path.join(here, '..', '..', '..', 'src', 'server', 'page')];
  const dir = candidates.find((d) => fs.existsSync(path.join(d, 'index.html')));
  if (!dir) throw new Error(`the web page's files are missing (looked in ${candidates.join(', ')})`);
  return new Map(['index.html', 'app.js', 'style.css'].map((f) => [f, fs.readFileSync(path.join(dir, f), 'utf8')]));
}
