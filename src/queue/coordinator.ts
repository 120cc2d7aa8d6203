// The coordinator (`altclip index … --queue`): plans shards, writes their input lists to the work
// folder, enqueues the shards not done yet, follows them to the end (shard files appearing, failed
// jobs, progress of active ones) and appends the finished shards to the index with ImageIndex — the
// same store and the same upsert-by-path as the single-machine `altclip index`, so appending a shard
// twice (a coordinator killed mid-append and run again) never duplicates a row.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Queue } from 'bullmq';
import { modelKey } from '../search/image_index.js';
import { ImageIndex } from '../search/index.js';
import {
  connectionOptions, DEFAULT_ATTEMPTS, defaultWorkDir, jobId, parseRedisUrl, queueName, RETRY_DELAY_MS, type ShardJob,
} from './contract.js';
import { DEFAULT_SHARD_SIZE, planShards, type PlannedShard } from './plan.js';
import type { StoredRow } from '../search/store.js';
import type { ModelIdentity } from '../tasks/types.js';
import { readShardFile, shardFileName } from './shard_file.js';

/** Rows per commit when appending shards to the index. */
const APPEND_ROWS = 8192;

export interface QueueIndexOptions {
  db: string;
  /** redis://HOST:PORT[/DB] */
  queue: string;
  /** default: the index's model, else BAAI/AltCLIP */
  model?: string;
  dtype?: 'fp32' | 'q8';
  shardSize?: number;
  /** shared folder for input lists and shard files (default: `<db>.work`) */
  workDir?: string;
  /** tries per shard before it counts as failed (default 3) */
  attempts?: number;
  /** how often to look at the queue, ms (default 500) */
  pollMs?: number;
  lockWaitMs?: number;
  /** give up if Redis cannot be reached at the start within this many ms (default 30 s); later outages are waited out */
  connectTimeoutMs?: number;
  onProgress?: (p: QueueProgress) => void;
  /** once: the plan, before anything is enqueued */
  onPlan?: (p: { shards: number; inputs: number; alreadyDone: number; workDir: string }) => void;
  signal?: AbortSignal;
}

export interface QueueProgress {
  shards: number;
  shardsDone: number;
  shardsFailed: number;
  /** inputs finished in done shards + progress of active ones */
  inputsDone: number;
  inputs: number;
  workers: number;
}

export interface FailedShard {
  shard: string;
  label: string;
  error: string;
}

export interface QueueIndexResult {
  shards: number;
  /** shards that were already done when this run started (resume) */
  resumed: number;
  failed: FailedShard[];
  /** rows appended (inserted or replaced) */
  appended: number;
  skipped: { input: string; error: string }[];
  /** rows in the index afterwards */
  total: number;
}

/** Runs an index build on a worker fleet; resolves when every shard is done or failed. */
export async function indexWithQueue(inputs: string[], options: QueueIndexOptions): Promise<QueueIndexResult> {
  parseRedisUrl(options.queue);
  const workDir = path.resolve(options.workDir ?? defaultWorkDir(options.db));
  // The model: asked for, else the existing index's, else the default (ImageIndex.open checks it).
  const index = await ImageIndex.open(options.db, { ...(options.model ? { model: options.model } : {}), ...(options.dtype ? { dtype: options.dtype } : {}), lockWaitMs: options.lockWaitMs });
  try {
    const model = index.metadata?.model ?? modelKey(options.model ?? 'BAAI/AltCLIP');
    const dtype = index.metadata?.dtype ?? options.dtype ?? 'fp32';
    const shards = await planShards(inputs, { shardSize: options.shardSize ?? DEFAULT_SHARD_SIZE, model, dtype });
    const state = await follow(shards, { ...options, workDir, model, dtype });
    // Append every finished shard, in plan order, under the index's writer lock: one commit per
    // APPEND_ROWS rows (LanceDB merge-insert by path), then one optimize.
    const skipped: { input: string; error: string }[] = [];
    const finished = shards.filter((s) => state.done.has(s.id));
    let identity: ModelIdentity | undefined;
    const batches = async function* () {
      const rows: StoredRow[] = [];
      for (const s of finished) {
        const data = await readShardFile(shardFileName(workDir, s.id));
        const dim = data.identity.projectionDim;
        skipped.push(...data.skipped);
        rows.push(...data.rows.map((r, i) => ({ ...r, vector: data.vectors.subarray(i * dim, (i + 1) * dim) })));
        if (rows.length >= APPEND_ROWS) yield rows.splice(0);
      }
      yield rows;
    };
    if (finished.length > 0) identity = (await readShardFile(shardFileName(workDir, finished[0]!.id))).identity;
    const appended = identity ? await index.addEmbedded(batches(), identity) : 0;
    return { shards: shards.length, resumed: state.resumed, failed: state.failed, appended, skipped, total: await index.count() };
  } finally {
    await index.close();
  }
}

async function follow(
  shards: PlannedShard[], options: QueueIndexOptions & { workDir: string; model: string; dtype: 'fp32' | 'q8' },
): Promise<{ done: Set<string>; failed: FailedShard[]; resumed: number }> {
  const { workDir } = options;
  const doneFiles = async () => {
    try {
      return new Set((await fs.promises.readdir(path.join(workDir, 'shards'))).filter((f) => f.endsWith('.shard')).map((f) => f.slice(0, -'.shard'.length)));
    } catch {
      return new Set<string>();
    }
  };
  const isDone = async (files: Set<string>, s: PlannedShard) => {
    if (!files.has(s.id)) return false;
    try {
      await readShardFile(shardFileName(workDir, s.id));
      return true;
    } catch {
      return false; // damaged: a worker does it again
    }
  };
  const done = new Set<string>();
  const initial = await doneFiles();
  for (const s of shards) if (await isDone(initial, s)) done.add(s.id);
  const resumed = done.size;
  const inputs = shards.reduce((n, s) => n + s.count, 0);
  options.onPlan?.({ shards: shards.length, inputs, alreadyDone: resumed, workDir });
  const failed = new Map<string, FailedShard>();
  const pending = () => shards.filter((s) => !done.has(s.id) && !failed.has(s.id));
  if (pending().length === 0) return { done, failed: [], resumed };

  // Input lists on the shared folder (written once; a re-run finds them there).
  await fs.promises.mkdir(path.join(workDir, 'inputs'), { recursive: true });
  const listFile = (s: PlannedShard) => path.join(workDir, 'inputs', `${s.id}.txt`);
  for (const s of pending()) {
    if ('items' in s.source && !fs.existsSync(listFile(s))) await writeAtomic(listFile(s), `${s.source.items.join('\n')}\n`);
  }
  const jobOf = (s: PlannedShard): ShardJob => ({
    version: 1, shard: s.id, model: options.model, dtype: options.dtype, workDir, count: s.count,
    source: 'tar' in s.source ? { tar: s.source.tar } : { list: listFile(s) },
  });

  const queue = new Queue<ShardJob>(queueName(options.dtype), { connection: connectionOptions(options.queue) });
  queue.on('error', () => {}); // reconnects by itself; calls below wait for it
  const timeoutMs = options.connectTimeoutMs ?? 30_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      queue.waitUntilReady(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`cannot reach Redis at ${options.queue} (no connection within ${timeoutMs / 1000} s)`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    await queue.close().catch(() => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
  try {
    const attempts = options.attempts ?? DEFAULT_ATTEMPTS;
    const enqueue = async (list: PlannedShard[]) => {
      // A failed job left by an earlier run gets fresh attempts; a waiting or active one is kept
      // (same job id: adding it again is a no-op).
      for (const s of list) {
        const job = await queue.getJob(jobId(s.id));
        if (job && (await job.getState()) === 'failed') await job.remove();
      }
      for (let i = 0; i < list.length; i += 1000) {
        await queue.addBulk(list.slice(i, i + 1000).map((s) => ({
          name: 'shard',
          data: jobOf(s),
          opts: { jobId: jobId(s.id), attempts, backoff: { type: 'fixed', delay: RETRY_DELAY_MS }, removeOnComplete: true, removeOnFail: false },
        })));
      }
    };
    await enqueue(pending());

    const pollMs = options.pollMs ?? 500;
    let round = 0;
    while (pending().length > 0) {
      options.signal?.throwIfAborted();
      await sleep(pollMs);
      round++;
      const files = await doneFiles();
      for (const s of pending()) if (await isDone(files, s)) done.add(s.id);
      try {
        await pollQueue(queue, shards, done, failed, options, inputs, round, enqueue);
      } catch {
        // Redis away (restarting): the shard files still count; ask again next round
      }
    }
  } finally {
    await queue.close().catch(() => {});
  }
  return { done, failed: [...failed.values()], resumed };
}

async function pollQueue(
  queue: Queue<ShardJob>, shards: PlannedShard[], done: Set<string>, failed: Map<string, FailedShard>,
  options: QueueIndexOptions, inputs: number, round: number, enqueue: (list: PlannedShard[]) => Promise<void>,
): Promise<void> {
  const byJob = new Map(shards.map((s) => [jobId(s.id), s]));
  for (const job of await queue.getJobs(['failed'])) {
    const s = job.id ? byJob.get(job.id) : undefined;
    if (s && !done.has(s.id) && !failed.has(s.id)) {
      failed.set(s.id, { shard: s.id, label: s.label, error: `${job.failedReason ?? 'failed'} (after ${job.attemptsMade} attempt${job.attemptsMade === 1 ? '' : 's'})` });
    }
  }
  let active = 0;
  for (const job of await queue.getJobs(['active'])) {
    const s = job.id ? byJob.get(job.id) : undefined;
    if (s && !done.has(s.id) && typeof job.progress === 'number') active += Math.min(job.progress, s.count || job.progress);
  }
  // Every ~10 s: a pending shard with neither a job nor a file (Redis lost it) is enqueued again.
  if (round % 20 === 0) {
    const lost: PlannedShard[] = [];
    for (const s of shards) {
      if (!done.has(s.id) && !failed.has(s.id) && !(await queue.getJob(jobId(s.id)))) lost.push(s);
    }
    if (lost.length > 0) await enqueue(lost);
  }
  const workers = (await queue.getWorkers()).length;
  const inputsDone = shards.filter((s) => done.has(s.id)).reduce((n, s) => n + s.count, 0) + active;
  options.onProgress?.({ shards: shards.length, shardsDone: done.size, shardsFailed: failed.size, inputsDone, inputs, workers });
}

async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.promises.writeFile(tmp, text);
  await fs.promises.rename(tmp, file);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

