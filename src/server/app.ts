// The HTTP server: a fastify app over an already loaded model. Routes are in routes.ts, batching in
// batcher.ts / service.ts, who may call what in access.ts; this file wires errors, limits, metrics and
// shutdown around them.
import type { Socket } from 'node:net';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import type { AltCLIPParts } from '../tasks/types.js';
import { type AccessOptions, registerAccess } from './access.js';
import { type BatcherOptions, ClosedError, QueueFullError } from './batcher.js';
import { ApiError, ECHO_CHARS, clip, echo, errorBody } from './errors.js';
import type { UrlPolicy } from './images.js';
import { createMetrics } from './metrics.js';
import { registerRoutes } from './routes.js';
import type { SearchIndex } from './search.js';
import { DEFAULT_BATCHING, EmbeddingService } from './service.js';
import { DEFAULT_MAX_PIXELS_IN_FLIGHT, PixelBudget } from './budget.js';

export interface ServerOptions extends AccessOptions {
  /** The loaded model and processor (loadAltCLIP). */
  clip: AltCLIPParts;
  /** The name the model is served under (`model` in responses, /v1/models). */
  modelName: string;
  /** The --db image index: enables the search routes. */
  index?: SearchIndex;
  /** Dynamic batching, per modality (defaults: DEFAULT_BATCHING). */
  batching?: Partial<BatcherOptions>;
  /** Most inputs in one request (per list): more is a 400 (default 256). */
  maxInputs?: number;
  /** Largest request body in bytes: more is a 413 (default 32 MiB). */
  bodyLimit?: number;
  /** Deepest JSON nesting of a body: deeper is a 400 (default 32). */
  maxJsonDepth?: number;
  /** Time limits (defaults: DEFAULT_TIMEOUTS). */
  timeouts?: Partial<Timeouts>;
  /** Most open connections; more are closed at once (default 1024). */
  maxConnections?: number;
  /** Image URLs (default: refused; timeoutMs: the total deadline of one fetch, redirects included). */
  urls?: Partial<Pick<UrlPolicy, 'allowUrls' | 'allowPrivateUrls' | 'timeoutMs'>>;
  /** Decoded pixels in flight, all requests together (budget.ts; default DEFAULT_MAX_PIXELS_IN_FLIGHT). */
  maxPixelsInFlight?: number;
}

export interface Timeouts {
  /** Receiving a whole request, body included (node's requestTimeout): 408 after. */
  requestMs: number;
  /** Receiving a request's headers (node's headersTimeout): 408 after; at most requestMs. */
  headersMs: number;
  /** An idle keep-alive connection is closed after this long. */
  keepAliveMs: number;
}

export const DEFAULT_MAX_INPUTS = 256;
export const DEFAULT_BODY_LIMIT = 32 * 1024 * 1024;
export const DEFAULT_MAX_JSON_DEPTH = 32;
export const DEFAULT_MAX_CONNECTIONS = 1024;
export const DEFAULT_TIMEOUTS: Timeouts = { requestMs: 30_000, headersMs: 10_000, keepAliveMs: 5_000 };
export const DEFAULT_URL_TIMEOUT_MS = 10_000;
/**
 * On close, how long connections already open may still deliver the requests their clients sent before
 * the signal (at least this long, and at least DRAIN_TURNS event-loop turns): bytes a client sent are
 * only read and parsed in a later turn of the loop.
 */
export const DRAIN_GRACE_MS = 250;
const DRAIN_TURNS = 3;

export async function createServer(options: ServerOptions): Promise<FastifyInstance> {
  const bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const maxInputs = options.maxInputs ?? DEFAULT_MAX_INPUTS;
  const maxDepth = options.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH;
  const timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  if (timeouts.requestMs > 0 && timeouts.headersMs > timeouts.requestMs) {
    throw new RangeError(`the headers timeout (${timeouts.headersMs} ms) must not exceed the request timeout (${timeouts.requestMs} ms)`);
  }
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
    rejected: () => metrics.rejected.inc({ modality }),
  }), new PixelBudget(options.maxPixelsInFlight ?? DEFAULT_MAX_PIXELS_IN_FLIGHT, () => {
    metrics.budgetRejected.inc();
    metrics.rejectedRequests.inc({ reason: 'pixel_budget' });
  }));
  for (const modality of ['text', 'image']) metrics.queueDepth.set({ modality }, 0);

  const shortest = Math.min(...[timeouts.requestMs, timeouts.headersMs].filter((t) => t > 0));
  const app = Fastify({
    bodyLimit,
    logger: false,
    // Closing is drained by the preClose hook below: requests that reach fastify while it closes are
    // answered (with Connection: close), not refused with fastify's own 503.
    forceCloseConnections: false,
    return503OnClosing: false,
    requestTimeout: timeouts.requestMs,
    keepAliveTimeout: timeouts.keepAliveMs,
    // node checks the request and headers timeouts every connectionsCheckingInterval (30 s by default).
    http: {
      headersTimeout: timeouts.headersMs,
      requestTimeout: timeouts.requestMs,
      connectionsCheckingInterval: Number.isFinite(shortest) ? Math.max(10, Math.min(1000, Math.floor(shortest / 4))) : 1000,
    },
    // Bad URL encodings and over-long route parameters: answered in our error shape, not fastify's.
    frameworkErrors: (err, request, reply) => {
      const status = (err as FastifyError).statusCode === 414 ? 414 : 400;
      metrics.rejectedRequests.inc({ reason: status === 414 ? 'uri_too_long' : 'bad_request' });
      void (reply as FastifyReply).code(status).send(errorBody(status, status === 414
        ? `a path segment is longer than ${MAX_PARAM_LENGTH} characters`
        : `the request target is not valid URL encoding: ${echo(request.raw.url ?? '')}`));
    },
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Errors before a request reaches fastify (node's 408 timeouts, 431, malformed HTTP): our shape too.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket: Socket) => {
      const reply = clientErrorReply(err);
      if (reply === undefined || socket.destroyed) return;
      metrics.rejectedRequests.inc({ reason: reply.reason });
      const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
      if (socket.writable && !inFlight?.headersSent) {
        const body = JSON.stringify(errorBody(reply.status, reply.message));
        socket.write(`HTTP/1.1 ${reply.status} ${reply.statusText}\r\nContent-Type: application/json; charset=utf-8\r\n`
          + `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      }
      socket.destroy();
    },
  });
  app.server.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  app.server.on('drop', () => metrics.rejectedRequests.inc({ reason: 'connection_limit' }));

  // JSON bodies: depth checked on the text before JSON.parse (a 100k-deep array is refused, not parsed).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = body as string;
    if (text.trim() === '') return done(new ApiError(400, 'malformed JSON body: the body is empty'), undefined);
    if (jsonDepthOver(text, maxDepth)) return done(new ApiError(400, `malformed JSON body: nested deeper than ${maxDepth} levels (the limit on JSON nesting)`), undefined);
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(new ApiError(400, `malformed JSON body: ${clip((err as Error).message, ECHO_CHARS)}`), undefined);
    }
  });

  // After the drain's grace (below), a request that still arrives on an open connection came after the signal.
  let phase: 'open' | 'draining' | 'closed' = 'open';
  app.addHook('onRequest', async () => {
    if (phase === 'closed') {
      metrics.rejectedRequests.inc({ reason: 'shutting_down' });
      throw new ApiError(503, 'the server is shutting down', { connection: 'close' });
    }
  });
  registerAccess(app, options, (reason) => metrics.rejectedRequests.inc({ reason }));

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
      metrics.rejectedRequests.inc({ reason: 'queue_full' });
    } else if (err instanceof ClosedError) {
      status = 503;
      message = err.message;
    } else {
      const code = (err as FastifyError).code;
      const statusCode = (err as FastifyError).statusCode;
      if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        status = 413;
        message = `request body is larger than the limit of ${bodyLimit} bytes`;
        metrics.rejectedRequests.inc({ reason: 'body_too_large' });
      } else if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
        status = 415;
        message = `unsupported Content-Type ${echo(request.headers['content-type'] ?? '')}: send application/json`;
      } else if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
        status = 400;
        message = 'malformed JSON body: the body is empty';
      } else if (err instanceof SyntaxError || code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
        status = 400;
        message = `malformed JSON body: ${clip(err.message, ECHO_CHARS)}`;
      } else if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
        status = statusCode;
        message = clip(err.message);
      } else {
        // A bug or a model failure: logged, answered without internals, the process keeps serving.
        process.stderr.write(`altclip serve: ${request.method} ${echo(request.url)}: ${err.stack ?? err.message}\n`);
      }
    }
    reply.code(status).send(errorBody(status, message));
  });

  app.setNotFoundHandler((request, reply) => {
    const target = request.url.split('?')[0]!;
    reply.code(404).send(errorBody(404, `no route ${request.method} ${target.length > ECHO_CHARS ? `${target.slice(0, ECHO_CHARS)}...` : target}`));
  });

  registerRoutes(app, { service, metrics, modelName: options.modelName, index: options.index, maxInputs, urls: {
    allowUrls: options.urls?.allowUrls ?? false,
    allowPrivateUrls: options.urls?.allowPrivateUrls ?? false,
    timeoutMs: options.urls?.timeoutMs ?? DEFAULT_URL_TIMEOUT_MS,
    maxBytes: bodyLimit,
  } });

  // Honest drain (app.close(), on SIGTERM / SIGINT): every request a client sent before the signal gets
  // its normal answer. The batchers stop waiting for fuller batches (still taking inputs); the kernel's
  // backlog of connections is accepted, later connections are closed at once; connections already open
  // get DRAIN_GRACE_MS to deliver what their clients sent; then fastify closes the listener and the
  // connections without a request (node's server.close), answers the rest with Connection: close, and
  // refuses (503) what still arrives. Connections still open a request timeout later are cut.
  const sockets = new Set<Socket>();
  let refuseNew = false;
  app.server.on('connection', (socket: Socket) => {
    if (phase !== 'open' && refuseNew) {
      metrics.rejectedRequests.inc({ reason: 'shutting_down' });
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  app.addHook('preClose', async () => {
    phase = 'draining';
    service.flush();
    for (let turn = 0; turn < DRAIN_TURNS; turn++) await new Promise((resolve) => setImmediate(resolve));
    refuseNew = true;
    const start = performance.now();
    for (let turn = 0; turn < DRAIN_TURNS || performance.now() - start < DRAIN_GRACE_MS; turn++) {
      await new Promise((resolve) => setTimeout(resolve, turn < DRAIN_TURNS ? 0 : 20));
    }
    phase = 'closed';
    const cut = setTimeout(() => {
      for (const socket of sockets) socket.destroy();
    }, timeouts.requestMs > 0 ? timeouts.requestMs : DEFAULT_TIMEOUTS.requestMs);
    cut.unref();
    app.server.once('close', () => clearTimeout(cut));
  });
  // A keep-alive connection whose request was in flight at close would otherwise stay open (and hold
  // close() up) until its keep-alive timeout: its last response says Connection: close.
  app.addHook('onSend', async (_request, reply) => {
    if (phase !== 'open') reply.header('connection', 'close');
  });
  app.addHook('onClose', async () => {
    await service.close();
    await options.index?.close?.();
  });
  return app;
}

/** Longest route parameter (an image id is 22 characters): longer is a 414. */
const MAX_PARAM_LENGTH = 100;

/** True when `text` nests arrays / objects deeper than `max` (brackets inside strings do not count). */
export function jsonDepthOver(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** The answer to an error node reports before fastify sees a request; undefined: just close. */
function clientErrorReply(err: NodeJS.ErrnoException): { status: number; statusText: string; message: string; reason: string } | undefined {
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return undefined;
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return { status: 408, statusText: 'Request Timeout', message: 'the request (headers and body) did not arrive within the request timeout', reason: 'timeout' };
  }
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    return { status: 431, statusText: 'Request Header Fields Too Large', message: 'the request headers are larger than the limit', reason: 'bad_request' };
  }
  return { status: 400, statusText: 'Bad Request', message: `malformed HTTP request${err.code ? ` (${err.code})` : ''}`, reason: 'bad_request' };
}
