// The coordinator (`altclip index … --queue`): takes the index's writer lock, plans the update against
// the db as `altclip index` does (ImageIndex.syncRemote), cuts the images to embed into shards, writes
// their input lists to the work folder, enqueues the shards not done yet, follows them to the end
// (shard files appearing, failed jobs, progress of active ones) and commits the plan with the shards'
// vectors — the same store, plan and commits as the single-machine `altclip index`. Workers only embed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Queue } from 'bullmq';
import { fingerprintChanges, type ModelFingerprint, modelKey } from '../models/fingerprint.js';
import { DEFAULT_INDEX_MODEL, ImageIndex, type RemoteEmbed } from '../search/image_index.js';
import {
  connectionOptions, DEFAULT_ATTEMPTS, defaultWorkDir, isListFile, isTar, jobId, parseRedisUrl, queueName, RETRY_DELAY_MS, type ShardJob,
} from './contract.js';
import { DEFAULT_SHARD_SIZE, isUrl, planShards, type PlannedShard } from './plan.js';
import type { ModelIdentity } from '../tasks/types.js';
import { readShardFile, shardFileName } from './shard_file.js';

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
  /** added / updated / removed / unchanged / renamed, as `altclip index` counts them (files and folders) */
  added: number;
  updated: number;
  removed: number;
  unchanged: number;
  renamed: number;
  /** paths whose rows were kept because they could not be read (see `altclip index`) */
  offline: { path: string; reason: string }[];
  shards: number;
  /** shards that were already done when this run started (resume) */
  resumed: number;
  failed: FailedShard[];
  /** rows written from the shards (inserted or replaced) */
  appended: number;
  skipped: { input: string; error: string }[];
  /** rows in the index afterwards */
  total: number;
}

/**
 * Runs an index build on a worker fleet; resolves when every shard is done or failed. Files and folders
 * are planned against the index exactly as `altclip index` plans them (ImageIndex.syncRemote: new and
 * changed files are embedded, renamed ones keep their vector, deleted ones lose their row, unreadable
 * ones stay offline) under the index's writer lock, held from the plan to the last commit, so a second
 * coordinator (or `altclip index`) on the same db is refused or waits (--wait). Only the plan's images
 * go to the workers; list files, URLs and .tar shards are embedded as given and inserted or replaced.
 */
export async function indexWithQueue(inputs: string[], options: QueueIndexOptions): Promise<QueueIndexResult> {
  parseRedisUrl(options.queue);
  if (inputs.length === 0) throw new Error('nothing to index: give image files, folders, list files, URLs or .tar shards');
  const workDir = path.resolve(options.workDir ?? defaultWorkDir(options.db));
  const planned = inputs.filter((i) => !isUrl(i) && !isTar(i) && !isListFile(i));
  const given = inputs.filter((i) => !planned.includes(i));
  // The model: asked for, else the existing index's (found by its weights), else the default.
  // The weights are checked against the index's fingerprint when the shards come back (each carries the
  // fingerprint of the model that embedded it), so the coordinator itself needs no copy of the model.
  const index = await ImageIndex.open(options.db, {
    ...(options.model ? { model: options.model } : {}), ...(options.dtype ? { dtype: options.dtype } : {}),
    lockWaitMs: options.lockWaitMs, checkWeights: 'vectors',
  });
  try {
    const model = index.model?.model ?? modelKey(options.model ?? DEFAULT_INDEX_MODEL);
    const dtype = index.model?.dtype ?? options.dtype ?? 'fp32';
    let state = { shards: 0, resumed: 0, failed: [] as FailedShard[], appended: 0 };
    const shardSkipped: { input: string; error: string }[] = [];
    const remote: RemoteEmbed = async (toEmbed) => {
      if (toEmbed.length === 0 && given.length === 0) return { identity: undefined, embed: async function* () {} };
      const shards = await planShards([...toEmbed, ...given], { shardSize: options.shardSize ?? DEFAULT_SHARD_SIZE, model, dtype });
      const followed = await follow(shards, { ...options, workDir, model, dtype, fingerprint: index.model?.fingerprint ?? undefined });
      state = { shards: shards.length, resumed: followed.resumed, failed: followed.failed, appended: 0 };
      const finished = shards.filter((s) => followed.done.has(s.id)).map((s) => shardFileName(workDir, s.id));
      const identity = finished.length > 0 ? (await readShardFile(finished[0]!)).identity : undefined;
      const position = new Map(toEmbed.map((p, i) => [p, i]));
      // Every shard file read in plan order: rows of the plan's images go to embed(), the others to extra().
      async function* shardRows(planned: boolean) {
        for (const file of finished) {
          const data = await readShardFile(file);
          checkSameModel(file, identity!, data.identity);
          const dim = data.identity.projectionDim;
          const rows = data.rows.map((r, i) => ({ ...r, vector: data.vectors.subarray(i * dim, (i + 1) * dim) }));
          yield { rows: rows.filter((r) => position.has(r.path) === planned), skipped: data.skipped.filter((s) => position.has(s.input) === planned) };
        }
      }
      return {
        identity,
        async* embed(paths, { onError }) {
          for await (const { rows, skipped } of shardRows(true)) {
            for (const s of skipped) onError?.({ index: position.get(s.input)!, input: s.input, error: new Error(s.error) });
            state.appended += rows.length;
            yield { indices: rows.map((r) => position.get(r.path)!), embeddings: rows.map((r) => r.vector) };
          }
        },
        async* extra() {
          for await (const { rows, skipped } of shardRows(false)) {
            shardSkipped.push(...skipped);
            state.appended += rows.length;
            yield rows;
          }
        },
      };
    };
    const update = await index.syncRemote(planned, remote, options.signal ? { signal: options.signal } : {});
    return {
      added: update.added, updated: update.updated, removed: update.removed, unchanged: update.unchanged, renamed: update.renamed, offline: update.offline,
      ...state, skipped: [...update.skipped, ...shardSkipped], total: await index.count(),
    };
  } finally {
    await index.close();
  }
}

/** Every shard of a run must come from one model (a worker started with other weights is refused). */
function checkSameModel(file: string, first: ModelIdentity, id: ModelIdentity): void {
  const changes = first.fingerprint && id.fingerprint ? fingerprintChanges(first.fingerprint, id.fingerprint) : [];
  if (changes.length > 0 || id.projectionDim !== first.projectionDim || id.dtype !== first.dtype) {
    throw new Error(`${file}: embedded by another model than the run's other shards (${id.model}${changes.length ? `: ${changes.join('; ')}` : ''})`);
  }
}

async function follow(
  shards: PlannedShard[], options: QueueIndexOptions & { workDir: string; model: string; dtype: 'fp32' | 'q8'; fingerprint: ModelFingerprint | undefined },
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
  for (const s of shards) {
    if (!(await isDone(initial, s))) continue;
    // A shard file left by an earlier run with other weights (refused then: see checkIdentity) is made again.
    const file = shardFileName(workDir, s.id);
    const { identity } = await readShardFile(file);
    const changes = options.fingerprint && identity.fingerprint ? fingerprintChanges(options.fingerprint, identity.fingerprint) : [];
    if (changes.length > 0) await fs.promises.rm(file, { force: true });
    else done.add(s.id);
  }
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

