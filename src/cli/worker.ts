// altclip worker --queue redis://HOST:PORT: embeds shards for `altclip index … --queue` (src/queue/
// does the work) until SIGTERM / SIGINT, then hands back the shard in progress and exits 0.
import { Command, Option } from 'commander';
import type { QueueIndexOptions } from '../queue/index.js';
import { EXIT_ERROR, EXIT_OK, EXIT_SKIPPED } from './errors.js';
import { onInterrupt, positiveInt } from './shared.js';

interface WorkerFlags {
  queue: string;
  dtype: 'fp32' | 'q8';
  threads?: number;
  batchSize?: number;
  lockDuration?: number;
  stalledInterval?: number;
}

export function workerCommand(): Command {
  return new Command('worker')
    .description('embed image shards from a Redis queue for `altclip index --queue` (any number, on any machines)')
    .requiredOption('--queue <redis://host:port>', 'the Redis server the coordinator uses (redis://HOST:PORT[/DB])')
    .addOption(new Option('--dtype <dtype>', 'take the shards of indexes of this precision').choices(['fp32', 'q8']).default('fp32'))
    .option('--threads <n>', 'intra-op threads (default: all cores)', positiveInt)
    .option('--batch-size <n>', 'images per model call (default 8)', positiveInt)
    .option('--lock-duration <ms>', "how long a shard's lock lasts without renewal: a dead worker's shard goes to another after this (default 30000)", positiveInt)
    .option('--stalled-interval <ms>', 'how often to look for shards of dead workers (default 30000)', positiveInt)
    .addHelpText('after', `
Examples:
  $ altclip worker --queue redis://10.0.0.5:6379
  $ altclip worker --queue redis://10.0.0.5:6379 --dtype q8 --threads 4`)
    .action(async (flags: WorkerFlags) => {
      const { runWorker, parseRedisUrl } = await import('../queue/index.js');
      parseRedisUrl(flags.queue);
      const stop = new AbortController();
      process.once('SIGTERM', () => stop.abort());
      onInterrupt(() => stop.abort()); // Ctrl-C through main.ts's one SIGINT listener
      const log = (line: string) => process.stderr.write(`altclip worker: ${line}\n`);
      log(`waiting for ${flags.dtype} shards on ${flags.queue} (pid ${process.pid})`);
      await runWorker(flags.queue, {
        dtype: flags.dtype,
        ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
        ...(flags.batchSize !== undefined ? { batchSize: flags.batchSize } : {}),
        ...(flags.lockDuration !== undefined ? { lockDuration: flags.lockDuration } : {}),
        ...(flags.stalledInterval !== undefined ? { stalledInterval: flags.stalledInterval } : {}),
        signal: stop.signal,
        log,
      });
      log('stopped');
    });
}

export type QueueIndexFlags = Pick<QueueIndexOptions, 'db' | 'queue' | 'model' | 'dtype' | 'shardSize' | 'workDir'> & { wait?: number; json?: boolean };

/** `altclip index <inputs...> --db <dir> --queue redis://…`: coordinate, follow, append, report. */
export async function runQueueIndex(inputs: string[], flags: QueueIndexFlags): Promise<number> {
  const { indexWithQueue, parseRedisUrl } = await import('../queue/index.js');
  parseRedisUrl(flags.queue);
  const say = (line: string) => process.stderr.write(`altclip: ${line}\n`);
  let last = '';
  let lastAt = 0;
  const stop = new AbortController();
  const release = onInterrupt(() => stop.abort());
  const result = await indexWithQueue(inputs, {
    db: flags.db,
    queue: flags.queue,
    ...(flags.model !== undefined ? { model: flags.model } : {}),
    ...(flags.dtype !== undefined ? { dtype: flags.dtype } : {}),
    ...(flags.shardSize !== undefined ? { shardSize: flags.shardSize } : {}),
    ...(flags.workDir !== undefined ? { workDir: flags.workDir } : {}),
    lockWaitMs: (flags.wait ?? 0) * 1000,
    signal: stop.signal,
    onPlan: (p) => say(`${p.shards} shards, ${p.inputs} listed inputs${p.alreadyDone ? `, ${p.alreadyDone} shards already done` : ''} (work folder ${p.workDir})`),
    onProgress: (p) => {
      const line = `shards ${p.shardsDone}/${p.shards} done${p.shardsFailed ? `, ${p.shardsFailed} failed` : ''}, inputs ${p.inputsDone}/${p.inputs}, ${p.workers} worker${p.workers === 1 ? '' : 's'}`;
      // A line when something changed, at most every 2 s (and always the last one).
      if (line !== last && (Date.now() - lastAt > 2000 || p.shardsDone + p.shardsFailed === p.shards)) {
        say(line);
        last = line;
        lastAt = Date.now();
      }
    },
  }).finally(release);
  if (flags.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  for (const s of result.skipped) say(`warning: skipped ${s.error}`);
  for (const f of result.failed) say(`error: shard ${f.shard} (${f.label}) failed: ${f.error}`);
  for (const o of result.offline) say(`warning: ${o.path}: ${o.reason}; its rows are kept (offline)`);
  const counts = [`${result.added} added`, `${result.updated} updated`, `${result.removed} removed`, `${result.unchanged} unchanged`];
  if (result.renamed > 0) counts.push(`${result.renamed} renamed`);
  if (result.offline.length > 0) counts.push(`${result.offline.length} offline`);
  say(`${flags.db}: ${counts.join(', ')}; ${result.appended} rows appended from ${result.shards - result.failed.length} of ${result.shards} shards`
    + `${result.skipped.length ? `, ${result.skipped.length} skipped` : ''} (${result.total} images in the index)`);
  return result.failed.length > 0 ? EXIT_ERROR : result.skipped.length > 0 || result.offline.length > 0 ? EXIT_SKIPPED : EXIT_OK;
}
