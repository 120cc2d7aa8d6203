// The HTTP server: a fastify app over an already loaded model. Routes are in routes.ts, batching in
// batcher.ts / service.ts; this file wires errors, auth, metrics and shutdown around them.
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import type { AltCLIPParts } from '../tasks/types.js';
import { type BatcherOptions, ClosedError, QueueFullError } from './batcher.js';
import { ApiError, errorBody } from './errors.js';
import type { UrlPolicy } from './images.js';
import { createMetrics } from './metrics.js';
import { registerRoutes } from './routes.js';
import type { SearchIndex } from './search.js';
import { DEFAULT_BATCHING, EmbeddingService } from './service.js';
import { DEFAULT_MAX_PIXELS_IN_FLIGHT, PixelBudget } from './budget.js';

export interface ServerOptions {
  /** The loaded model and processor (loadAltCLIP). */
  clip: AltCLIPParts;
  /** The name the model is served under (`model` in responses, /v1/models). */
  modelName: string;
  /** Require `Authorization: Bearer <apiKey>` on /v1/* and /metrics. */
  apiKey?: string;
  /** The --db image index: enables the search routes. */
  index?: SearchIndex;
  /** Dynamic batching, per modality (defaults: DEFAULT_BATCHING). */
  batching?: Partial<BatcherOptions>;
  /** Most inputs in one request (per list): more is a 400 (default 256). */
  maxInputs?: number;
  /** Largest request body in bytes: more is a 413 (default 32 MiB). */
  bodyLimit?: number;
  /** Image URLs (default: refused). */
  urls?: Partial<Pick<UrlPolicy, 'allowUrls' | 'allowPrivateUrls' | 'timeoutMs'>>;
  /** Decoded pixels in flight, all requests together (budget.ts; default DEFAULT_MAX_PIXELS_IN_FLIGHT). */
  maxPixelsInFlight?: number;
}

export const DEFAULT_MAX_INPUTS = 256;
export const DEFAULT_BODY_LIMIT = 32 * 1024 * 1024;

export async function createServer(options: ServerOptions): Promise<FastifyInstance> {
  const bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const maxInputs = options.maxInputs ?? DEFAULT_MAX_INPUTS;
  const batching = { ...DEFAULT_BATCHING, ...options.batching };
  if (batching.maxQueue < maxInputs) {
    throw new RangeError(`the queue (maxQueue ${batching.maxQueue}) must hold at least one full request (maxInputs ${maxInputs})`);
  }
  const metrics = createMetrics();
  const service = new EmbeddingService(options.clip, batching, (modality) => ({
    batch: (size, seconds) => {
      metrics.batchSize.observe({ modality }, size);
      metrics.modelRun.observe({ modality }, seconds);
    },
    queue: (depth) => metrics.queueDepth.set({ modality }, depth),
  }), new PixelBudget(options.maxPixelsInFlight ?? DEFAULT_MAX_PIXELS_IN_FLIGHT, () => metrics.budgetRejected.inc()));
  for (const modality of ['text', 'image']) metrics.queueDepth.set({ modality }, 0);

  // forceCloseConnections 'idle': on close, idle keep-alive sockets are dropped, in-flight requests finish.
  const app = Fastify({ bodyLimit, logger: false, forceCloseConnections: 'idle', return503OnClosing: true });

  app.addHook('onRequest', async (request, reply) => {
    if (!options.apiKey) return;
    const url = request.url;
    if (!url.startsWith('/v1/') && !url.startsWith('/metrics')) return; // the page and /health are public
    const header = request.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(header);
    if (!m || !sameSecret(m[1]!.trim(), options.apiKey)) {
      reply.header('www-authenticate', 'Bearer');
      throw new ApiError(401, m ? 'invalid API key' : 'missing API key: send "Authorization: Bearer <key>"');
    }
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ route, method: request.method, status: String(reply.statusCode) });
    metrics.latency.observe({ route, method: request.method }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err: FastifyError | Error, request, reply) => {
    let status = 500;
    let message = 'internal server error';
    if (err instanceof ApiError) {
      status = err.statusCode;
      message = err.message;
      reply.headers(err.headers);
    } else if (err instanceof QueueFullError) {
      status = 429;
      message = err.message;
      reply.header('retry-after', String(err.retryAfterSeconds));
    } else if (err instanceof ClosedError) {
      status = 503;
      message = err.message;
    } else {
      const code = (err as FastifyError).code;
      const statusCode = (err as FastifyError).statusCode;
      if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        status = 413;
        message = `request body is larger than the limit of ${bodyLimit} bytes`;
      } else if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
        status = 415;
        message = `unsupported Content-Type ${JSON.stringify(request.headers['content-type'] ?? '')}: send application/json`;
      } else if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
        status = 400;
        message = 'malformed JSON body: the body is empty';
      } else if (err instanceof SyntaxError || code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
        status = 400;
        message = `malformed JSON body: ${err.message}`;
      } else if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
        status = statusCode;
        message = err.message;
      } else {
        // A bug or a model failure: logged, answered without internals, the process keeps serving.
        process.stderr.write(`altclip serve: ${request.method} ${request.url}: ${err.stack ?? err.message}\n`);
      }
    }
    reply.code(status).send(errorBody(status, message));
  });

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(errorBody(404, `no route ${request.method} ${request.url.split('?')[0]}`));
  });

  registerRoutes(app, { service, metrics, modelName: options.modelName, index: options.index, maxInputs, urls: {
    allowUrls: options.urls?.allowUrls ?? false,
    allowPrivateUrls: options.urls?.allowPrivateUrls ?? false,
    timeoutMs: options.urls?.timeoutMs ?? 10_000,
    maxBytes: bodyLimit,
  } });

  // On close (SIGTERM): first the batchers stop waiting for fuller batches and refuse new inputs (new
  // requests get 503 from fastify meanwhile), so the requests in flight are answered promptly; the
  // HTTP server closes once they are; then the index is released.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
    void service.close();
  });
  // A keep-alive connection whose request was in flight at close would otherwise stay open (and hold
  // close() up) until its keep-alive timeout: its last response says Connection: close.
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close');
  });
  app.addHook('onClose', async () => {
    await service.close();
    await options.index?.close?.();
  });
  return app;
}

/** Constant-time comparison (of digests, so that the lengths do not leak either). */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
