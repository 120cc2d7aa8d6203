// altclip serve: the HTTP server (src/server) over a loaded model. Prints "listening on http://HOST:PORT"
// once the model is loaded and requests can be answered; SIGTERM / SIGINT stop taking connections,
// answer the requests in flight, release the model and exit 0.
import { Command, InvalidArgumentError, Option } from 'commander';
import { CliError, oneLine } from './errors.js';
import { loadModel, onInterrupt, positiveInt } from './shared.js';
import { DEFAULT_MODEL } from '../tasks/types.js';

interface ServeFlags {
  model?: string;
  dtype?: 'fp32' | 'q8';
  threads?: number;
  host: string;
  port: number;
  db?: string;
  apiKey?: string;
  allowUrls?: boolean;
  allowPrivateUrls?: boolean;
  maxBatchSize: number;
  maxWaitMs: number;
  maxQueue: number;
  batchConcurrency: number;
  maxInputs: number;
  bodyLimit: number;
  allowedHost?: string[];
  corsOrigin?: string[];
  requestTimeout: number;
  headersTimeout: number;
  keepAliveTimeout: number;
  maxConnections: number;
  urlTimeout: number;
  maxPixelsInFlight?: number;
}

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new InvalidArgumentError(`expected a port number 0-65535, got ${JSON.stringify(value)}`);
  return n;
}

/** A duration: "30s", "500ms", "2m", or a number of seconds. In milliseconds. */
function duration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`expected a duration such as 30s, 500ms or 2m, got ${JSON.stringify(value)}`);
  const ms = Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000);
  if (!Number.isFinite(ms) || ms > 2 ** 31 - 1) throw new InvalidArgumentError(`duration ${JSON.stringify(value)} is too long`);
  return Math.round(ms);
}

function origin(value: string, previous: string[] | undefined): string[] {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(`expected an origin such as https://app.example.com, got ${JSON.stringify(value)}`);
  }
  if (!/^https?:$/.test(url.protocol) || url.origin !== value.replace(/\/$/, '').toLowerCase()) {
    throw new InvalidArgumentError(`expected an origin (scheme://host[:port], no path), got ${JSON.stringify(value)}`);
  }
  return [...(previous ?? []), url.origin];
}

function nonNegative(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value)) throw new InvalidArgumentError(`expected a number >= 0, got ${JSON.stringify(value)}`);
  return n;
}

export function serveCommand(): Command {
  const cmd = new Command('serve')
    .description('HTTP server: /v1/embeddings (texts and images), /v1/classify, /v1/similarity, /v1/search (--db), /metrics, and a web page at /')
    .option('-m, --model <id|dir>', `hub repo id or local model folder (default: the --db index's model, else ${DEFAULT_MODEL})`)
    .addOption(new Option('--dtype <dtype>', 'precision of the Linear layers (default fp32)').choices(['fp32', 'q8']))
    .option('--threads <n>', 'intra-op threads per session (default: all cores)', positiveInt)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free port)', port, 8080)
    .option('--db <dir>', 'image index (altclip index) to serve /v1/search and /v1/images from')
    .option('--api-key <key>', 'require "Authorization: Bearer <key>" on every route but the page and /health (or set ALTCLIP_API_KEY)')
    .option('--allowed-host <name...>', 'also answer requests whose Host is one of these names (default: loopback names and --host only, unless --api-key)')
    .option('--cors-origin <origin...>', 'let web pages of these origins call the API from a browser (default: none)', origin)
    .option('--allow-urls', 'fetch http(s) image URLs given in requests (off: only data: URIs)')
    .option('--allow-private-urls', 'with --allow-urls, also fetch from loopback / private network addresses')
    .option('--max-batch-size <n>', 'inputs per model batch (dynamic batching merges requests up to this)', positiveInt, 16)
    .option('--max-wait-ms <ms>', 'how long a partial batch waits for more inputs', nonNegative, 5)
    .option('--max-queue <n>', 'inputs that may wait per modality; more get 429 + Retry-After', positiveInt, 512)
    .option('--batch-concurrency <n>', 'model batches in flight per modality', positiveInt, 2)
    .option('--max-inputs <n>', 'most inputs in one request', positiveInt, 256)
    .option('--body-limit <bytes>', 'largest request body (413 above)', positiveInt, 32 * 1024 * 1024)
    .option('--request-timeout <duration>', 'time to receive a whole request, body included (408 after; 0: none)', duration, 30_000)
    .option('--headers-timeout <duration>', "time to receive a request's headers (408 after)", duration, 10_000)
    .option('--keep-alive-timeout <duration>', 'idle keep-alive connections are closed after this', duration, 5_000)
    .option('--max-connections <n>', 'most open connections; more are closed at once', positiveInt, 1024)
    .option('--url-timeout <duration>', 'with --allow-urls: total time for one image URL, redirects included', duration, 10_000)
    .option('--max-pixels-in-flight <n>', 'decoded image pixels (width x height) in flight, all requests together; a request over it waits, one alone over it gets 413 (default 268435455: 3 x the per-image limit)', positiveInt);
  cmd.addHelpText(
    'after',
    `
Examples:
  $ altclip serve --model BAAI/AltCLIP --port 8080
  $ curl -s localhost:8080/v1/embeddings -H 'content-type: application/json' \\
      -d '{"input": ["a photo of a cat", "一只猫"], "modality": "text"}'
  $ altclip serve --db photos.db --host 0.0.0.0 --allowed-host photos.lan --api-key "$KEY"   # on the network`,
  );
  return cmd.action(async (flags: ServeFlags) => {
    await serve(flags);
  });
}

async function serve(flags: ServeFlags): Promise<void> {
  const apiKey = flags.apiKey ?? (process.env.ALTCLIP_API_KEY || undefined);
  if (flags.allowPrivateUrls && !flags.allowUrls) throw new CliError('--allow-private-urls needs --allow-urls');
  if (flags.maxQueue < flags.maxInputs) throw new CliError(`--max-queue (${flags.maxQueue}) must be at least --max-inputs (${flags.maxInputs})`);
  if (flags.requestTimeout > 0 && flags.headersTimeout > flags.requestTimeout) {
    throw new CliError(`--headers-timeout (${flags.headersTimeout} ms) must not exceed --request-timeout (${flags.requestTimeout} ms)`);
  }
  const { createServer } = await import('../server/index.js');
  const index = flags.db === undefined ? undefined : await openIndex(flags.db, flags);
  // Without --model, the index's own model (as `altclip search` does).
  const model = flags.model ?? index?.model?.model ?? DEFAULT_MODEL;
  const dtype = flags.dtype ?? index?.model?.dtype;
  const clip = await loadModel({ model, dtype, threads: flags.threads, batchSize: flags.maxBatchSize });
  const app = await createServer({
    clip,
    modelName: model,
    apiKey,
    allowedHosts: flags.allowedHost,
    boundHost: flags.host,
    corsOrigins: flags.corsOrigin,
    index,
    batching: { maxBatchSize: flags.maxBatchSize, maxWaitMs: flags.maxWaitMs, maxQueue: flags.maxQueue, concurrency: flags.batchConcurrency },
    maxInputs: flags.maxInputs,
    bodyLimit: flags.bodyLimit,
    timeouts: { requestMs: flags.requestTimeout, headersMs: flags.headersTimeout, keepAliveMs: flags.keepAliveTimeout },
    maxConnections: flags.maxConnections,
    urls: { allowUrls: Boolean(flags.allowUrls), allowPrivateUrls: Boolean(flags.allowPrivateUrls), timeoutMs: flags.urlTimeout },
    maxPixelsInFlight: flags.maxPixelsInFlight,
  });
  let stopped: () => void = () => {};
  const done = new Promise<void>((resolve) => (stopped = resolve));
  const stop = (signal: string) => {
    process.stderr.write(`altclip serve: ${signal}: finishing the requests in flight\n`);
    app
      .close()
      .then(() => clip.model.dispose())
      .catch((err) => process.stderr.write(`altclip serve: while stopping: ${oneLine(err)}\n`))
      .finally(stopped);
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  onInterrupt(() => stop('SIGINT')); // main.ts's SIGINT listener hands Ctrl-C here (a second one ends the process)
  let address: string;
  try {
    await app.listen({ host: flags.host, port: flags.port });
    const info = app.server.address();
    const where = typeof info === 'object' && info ? info : { address: flags.host, port: flags.port, family: 'IPv4' };
    const host = where.family === 'IPv6' || where.address.includes(':') ? `[${where.address}]` : where.address;
    address = `http://${host}:${where.port}`;
  } catch (err) {
    await clip.model.dispose();
    throw new CliError(`cannot listen on ${flags.host}:${flags.port}: ${oneLine(err)}`);
  }
  process.stdout.write(`listening on ${address}\n`);
  await done;
}

async function openIndex(dir: string, flags: ServeFlags): Promise<import('../server/index.js').SearchIndex> {
  const { openSearchIndex } = await import('../server/search.js');
  try {
    return await openSearchIndex(dir, { model: flags.model, dtype: flags.dtype });
  } catch (err) {
    throw new CliError(`--db ${dir}: ${oneLine(err)}`);
  }
}
