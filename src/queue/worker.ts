// A worker: takes shards from the queue of its dtype, embeds them with the tasks API and writes each
// as a shard file to the work folder. BullMQ holds a lock on the job while it runs (renewed every
// lockDuration / 2); a worker that dies stops renewing it, the stalled-job check puts the job back
// and another worker takes it. Processing is idempotent: an existing shard file ends the job at once,
// and writing one again replaces it with the same rows.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { type Job, WaitingError, Worker } from 'bullmq';
import type { ImageInput } from '../image/index.js';
import { embedImageBatches } from '../tasks/embeddings.js';
import { modelFingerprint } from '../models/fingerprint.js';
import { loadAltCLIP } from '../tasks/pipeline.js';
import type { AltCLIPParts } from '../tasks/types.js';
import { connectionOptions, DEFAULT_LOCK_MS, DEFAULT_STALLED_INTERVAL_MS, MAX_STALLED_COUNT, queueName, type ShardJob } from './contract.js';
import { isUrl } from './plan.js';
import { type ShardRow, shardFileDone, shardFileName, writeShardFile } from './shard_file.js';
import { readTar } from './tar.js';

export interface WorkerOptions {
  dtype?: 'fp32' | 'q8';
  threads?: number;
  batchSize?: number;
  /** BullMQ lock duration, ms (default 30 s): how soon a dead worker's shard is re-delivered. */
  lockDuration?: number;
  /** BullMQ stalled-job check interval, ms (default 30 s). */
  stalledInterval?: number;
  /** Stop: the current shard is handed back to the queue (not counted as an attempt). */
  signal?: AbortSignal;
  /** One line per event (shard started / done / failed, connection trouble). */
  log?: (line: string) => void;
}

export interface ShardResult {
  shard: string;
  rows: number;
  skipped: number;
  /** the shard file was already there (a re-delivered job) */
  existed: boolean;
}

const IMAGE_MEMBER = /\.(jpe?g|png|webp|gif|bmp)$/i;
const FETCH_TIMEOUT_MS = 60_000;
const FETCH_CONCURRENCY = 8;

/** Runs until `signal` aborts; then hands back the shard in progress, closes and resolves. */
export async function runWorker(url: string, options: WorkerOptions = {}): Promise<void> {
  const dtype = options.dtype ?? 'fp32';
  const log = options.log ?? (() => {});
  const me = `${os.hostname()}:${process.pid}`;
  let loaded: { key: string; clip: Promise<AltCLIPParts> } | undefined;
  const clipFor = (job: ShardJob): Promise<AltCLIPParts> => {
    const key = `${job.model}\n${job.dtype}`;
    if (loaded?.key !== key) {
      const old = loaded;
      // the shard files carry the weights' fingerprint: the coordinator checks it against the index's
      const loading = loadAltCLIP(job.model, { dtype: job.dtype, parts: 'vision', ...(options.threads ? { threads: options.threads } : {}) });
      loaded = {
        key,
        clip: loading.then(async (clip) => ({
          ...clip,
          identity: clip.identity && { ...clip.identity, fingerprint: await modelFingerprint(job.model, { dtype: job.dtype, revision: clip.identity.revision }) },
        })),
      };
      void old?.clip.then((c) => c.model.dispose()).catch(() => {});
    }
    return loaded.clip;
  };
  const stop = new AbortController();
  options.signal?.addEventListener('abort', () => stop.abort(), { once: true });

  const worker = new Worker<ShardJob, ShardResult>(
    queueName(dtype),
    async (job: Job<ShardJob, ShardResult>, token?: string) => {
      const data = job.data;
      if (data?.version !== 1 || data.dtype !== dtype) throw new Error(`job ${job.id}: not an altclip ${dtype} shard job`);
      log(`shard ${data.shard}: started (${data.count || '?'} inputs, attempt ${job.attemptsMade + 1})`);
      try {
        const result = await processShard(data, await clipFor(data), {
          batchSize: options.batchSize,
          signal: stop.signal,
          worker: me,
          onProgress: (done) => void job.updateProgress(done).catch(() => {}),
        });
        log(`shard ${data.shard}: done (${result.rows} rows, ${result.skipped} skipped${result.existed ? ', file already there' : ''})`);
        return result;
      } catch (err) {
        if (stop.signal.aborted) {
          // Hand the shard back: to the wait list, not counted as a failed attempt.
          await job.moveToWait(token);
          log(`shard ${data.shard}: handed back`);
          throw new WaitingError();
        }
        log(`shard ${data.shard}: failed: ${(err as Error).message.split('\n')[0]}`);
        throw err;
      }
    },
    {
      connection: connectionOptions(url),
      concurrency: 1,
      name: me,
      lockDuration: options.lockDuration ?? DEFAULT_LOCK_MS,
      stalledInterval: options.stalledInterval ?? DEFAULT_STALLED_INTERVAL_MS,
      maxStalledCount: MAX_STALLED_COUNT,
    },
  );
  let lastError = '';
  worker.on('error', (err) => {
    // Redis away, a lost lock: BullMQ keeps going (ioredis reconnects); say it once per kind.
    const message = err.message.split('\n')[0] ?? '';
    if (message !== lastError) log(`queue: ${message}`);
    lastError = message;
  });
  worker.on('ready', () => {
    if (lastError) log('queue: connected');
    lastError = '';
  });
  await new Promise<void>((resolve) => {
    if (stop.signal.aborted) resolve();
    stop.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await worker.close();
  const clip = await loaded?.clip.catch(() => undefined);
  await clip?.model.dispose();
}

/** Embeds one shard and writes its file (nothing to do if the file is already there). */
export async function processShard(
  job: ShardJob, clip: AltCLIPParts,
  options: { batchSize?: number; signal?: AbortSignal; worker?: string; onProgress?: (done: number) => void } = {},
): Promise<ShardResult> {
  const file = shardFileName(job.workDir, job.shard);
  if (await shardFileDone(file)) return { shard: job.shard, rows: 0, skipped: 0, existed: true };
  if (!clip.identity) throw new Error('the model has no identity (load it with loadAltCLIP)');
  const skipped: { input: string; error: string }[] = [];
  const skip = (input: string, err: unknown) => {
    const message = ((err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '').trim();
    skipped.push({ input, error: message.includes(input) ? message : `${input}: ${message}` });
  };
  const { rows, images } = await readInputs(job, skip, options.signal);
  const unread = skipped.length; // the tasks' onProgress counts decode failures itself
  const dim = clip.identity.projectionDim;
  const kept: ShardRow[] = [];
  const vectors: Float32Array[] = [];
  const batches = embedImageBatches(clip, images, {
    batchSize: options.batchSize,
    signal: options.signal,
    onProgress: (done) => options.onProgress?.(done + unread),
    onError: (f) => skip(rows[f.index]!.path, f.error),
  });
  for await (const batch of batches) {
    batch.indices.forEach((i, j) => {
      kept.push(rows[i]!);
      vectors.push(batch.embeddings[j]!);
    });
  }
  const flat = new Float32Array(kept.length * dim);
  vectors.forEach((v, i) => flat.set(v, i * dim));
  options.signal?.throwIfAborted();
  await writeShardFile(file, { format: 'altclip-shard', version: 1, shard: job.shard, identity: clip.identity, rows: kept, skipped, worker: options.worker ?? '', vectors: flat });
  return { shard: job.shard, rows: kept.length, skipped: skipped.length, existed: false };
}

/**
 * The shard's images with their row fields. A file: its path (decoded by the tasks), size, mtime and
 * sha256 as `altclip index` records them. A URL: its bytes (mtime 0). A tar member: its bytes, key
 * `<tar>#<member>`, mtime from the header. An input that cannot be read is skipped; a tar that
 * cannot be read fails the shard.
 */
async function readInputs(job: ShardJob, skip: (input: string, err: unknown) => void, signal?: AbortSignal): Promise<{ rows: ShardRow[]; images: ImageInput[] }> {
  const rows: ShardRow[] = [];
  const images: ImageInput[] = [];
  if ('tar' in job.source) {
    const tar = job.source.tar;
    for await (const m of readTar(tar)) {
      if (!IMAGE_MEMBER.test(m.name)) continue; // key.json / key.txt: img2dataset's metadata
      rows.push({ path: `${tar}#${m.name}`, size: m.data.length, mtime: m.mtime * 1000, sha256: sha256(m.data) });
      images.push(m.data);
    }
    return { rows, images };
  }
  const list = await fs.promises.readFile(job.source.list, 'utf8');
  const items = list.split('\n').filter((l) => l !== '');
  const read = new Array<{ row: ShardRow; image: ImageInput } | undefined>(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(FETCH_CONCURRENCY, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      const item = items[i]!;
      signal?.throwIfAborted();
      try {
        read[i] = isUrl(item) ? await fetchInput(item, signal) : await fileInput(item);
      } catch (err) {
        if (signal?.aborted) throw err;
        skip(item, err);
      }
    }
  }));
  for (const r of read) {
    if (!r) continue;
    rows.push(r.row);
    images.push(r.image);
  }
  return { rows, images };
}

async function fileInput(file: string): Promise<{ row: ShardRow; image: ImageInput }> {
  const bytes = await fs.promises.readFile(file).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`${file}: cannot be read (${err.code ?? err.message})`);
  });
  const st = await fs.promises.stat(file);
  return { row: { path: file, size: st.size, mtime: st.mtimeMs, sha256: sha256(bytes) }, image: file };
}

async function fetchInput(url: string, signal?: AbortSignal): Promise<{ row: ShardRow; image: ImageInput }> {
  const timeout = AbortSignal.timeout(FETCH_TIMEOUT_MS);
  let bytes: Uint8Array;
  try {
    const res = await fetch(url, { signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`);
    bytes = new Uint8Array(await res.arrayBuffer());
  } catch (err) {
    if (signal?.aborted) throw err;
    const why = (err as Error).name === 'TimeoutError' ? `no complete answer within ${FETCH_TIMEOUT_MS / 1000} s` : (err as Error).message;
    throw new Error(`${url}: cannot download image: ${why}`);
  }
  return { row: { path: url, size: bytes.length, mtime: 0, sha256: sha256(bytes) }, image: bytes };
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
