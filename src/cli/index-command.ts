// altclip index <file|folder...> --db <dir>: brings an image index up to date (src/search/ does the work).
import { Command, InvalidArgumentError, Option } from 'commander';
import { SingleBar } from 'cli-progress';
import { CliError, EXIT_INTERRUPTED, EXIT_OK, EXIT_SKIPPED, warn } from './errors.js';
import type { IndexUpdate } from '../search/index.js';
import { onInterrupt, positiveInt } from './shared.js';

interface IndexFlags {
  db: string;
  model?: string;
  dtype?: 'fp32' | 'q8';
  batchSize?: number;
  threads?: number;
  wait?: number;
  json?: boolean;
  pruneOffline?: boolean;
  compact?: boolean;
  queue?: string;
  shardSize?: number;
  workDir?: string;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+(\.\d+)?\s*$/.test(value) || !Number.isFinite(n)) throw new InvalidArgumentError(`expected seconds, got ${JSON.stringify(value)}`);
  return n;
}

export function indexCommand(): Command {
  return new Command('index')
    .description('index images for search: embeds new and changed images, removes rows of deleted ones')
    .argument('[paths...]', 'image files and folders (walked recursively; hidden files and folders are skipped); '
      + 'a path that does not exist and has no rows is an error (exit 1, nothing done)')
    .requiredOption('--db <dir>', 'index folder (created on first use)')
    .option('-m, --model <id|dir>', 'hub repo id or local model folder (a new index: default BAAI/AltCLIP; an existing one: its own)')
    .addOption(new Option('--dtype <dtype>', 'precision of the Linear layers (a new index: default fp32)').choices(['fp32', 'q8']))
    .option('--batch-size <n>', 'images per model call (default 8)', positiveInt)
    .option('--threads <n>', 'intra-op threads (default: all cores)', positiveInt)
    .option('--wait <seconds>', 'wait this long for another `altclip index` writing the same db (default: refuse at once)', seconds)
    .option('--json', 'print {"added","updated","removed","unchanged","renamed","skipped":[{"input","error"}],"offline":[{"path","reason"}],"repaired"}')
    .option('--prune-offline', 'also remove the rows of offline paths (missing, emptied or unreadable folders; default: keep them, exit 2)')
    .option('--compact', 'remove every old version of the table (after indexing the paths, if any are given; alone with --json: {"versions"})')
    .option('--queue <redis://host:port>', 'embed on `altclip worker`s sharing this Redis; inputs may also be list files (.txt: paths/URLs) and WebDataset .tar shards')
    .option('--shard-size <n>', 'with --queue: inputs per shard (job) (default 1000)', positiveInt)
    .option('--work-dir <dir>', 'with --queue: shared folder for shard files (default: <db>.work)')
    .addHelpText('after', `
Examples:
  $ altclip index ~/Pictures --db pictures.db
  $ altclip index ~/Pictures --db pictures.db --json     # again later: only changes are embedded
  $ altclip index /media/photos --db photos.db           # drive unplugged: its rows are kept (offline, exit 2)
  $ altclip index /media/photos --db photos.db --prune-offline   # ...or removed, on purpose
  $ altclip index --compact --db photos.db               # remove every old table version now`)
    .action(async (paths: string[], flags: IndexFlags) => {
      if (paths.length === 0 && !flags.compact) throw new CliError('nothing to index: give image files or folders (or --compact)');
      if (flags.queue !== undefined) process.exitCode = await (await import('./worker.js')).runQueueIndex(paths, { ...flags, queue: flags.queue });
      else process.exitCode = await runIndex(paths, flags);
    });
}

async function runIndex(paths: string[], flags: IndexFlags): Promise<number> {
  const { ImageIndex, IndexInterruptedError } = await import('../search/index.js');
  const index = await ImageIndex.open(flags.db, {
    ...(flags.model !== undefined ? { model: flags.model } : {}),
    ...(flags.dtype !== undefined ? { dtype: flags.dtype } : {}),
    ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
    ...(flags.batchSize !== undefined ? { batchSize: flags.batchSize } : {}),
    lockWaitMs: (flags.wait ?? 0) * 1000,
  });
  const bar = progressBar();
  // Ctrl-C: stop embedding, commit what was embedded, say what was kept, release the lock (exit 130).
  const controller = new AbortController();
  const stopInterrupts = onInterrupt(() => controller.abort());
  try {
    let code = EXIT_OK;
    if (paths.length > 0) {
      let result: IndexUpdate;
      try {
        result = await index.sync(paths, {
          onPlan: (p) => bar.start(p.toEmbed), onProgress: (done) => bar.update(done), signal: controller.signal, pruneOffline: flags.pruneOffline,
        });
      } catch (err) {
        if (!(err instanceof IndexInterruptedError)) throw err;
        bar.stop();
        const r = err.result;
        process.stderr.write(`altclip: interrupted: ${flags.db}: kept ${r.added} added, ${r.updated} updated, ${r.renamed} renamed `
          + `(${await index.count()} images in the index); run the same command again to finish\n`);
        return EXIT_INTERRUPTED;
      }
      bar.stop();
      report(result, flags, await index.count());
      if (result.skipped.length > 0 || result.offline.length > 0) code = EXIT_SKIPPED;
    }
    if (flags.compact) {
      const { versions } = await index.compact();
      if (!flags.json) process.stderr.write(`altclip: ${flags.db}: compacted (${versions} version${versions === 1 ? '' : 's'} kept)\n`);
      else if (paths.length === 0) process.stdout.write(`${JSON.stringify({ versions })}\n`);
    }
    return code;
  } finally {
    stopInterrupts();
    bar.stop();
    await index.close();
  }
}

function report(result: IndexUpdate, flags: IndexFlags, total: number): void {
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return;
  }
  for (const s of result.skipped) warn(`skipped ${s.error}`);
  for (const o of result.offline) {
    warn(flags.pruneOffline ? `${o.path} is offline (${o.reason}): its rows were removed (--prune-offline)`
      : `${o.path} is offline (${o.reason}): its rows are kept (--prune-offline removes them)`);
  }
  if (result.repaired > 0) warn(`${result.repaired} path${result.repaired === 1 ? ' was' : 's were'} in the index more than once (written by an older altclip): repaired`);
  const parts = [`${result.added} added`, `${result.updated} updated`, `${result.removed} removed`, `${result.unchanged} unchanged`];
  if (result.renamed > 0) parts.push(`${result.renamed} renamed`);
  if (result.skipped.length > 0) parts.push(`${result.skipped.length} skipped`);
  if (result.offline.length > 0) parts.push(`${result.offline.length} offline`);
  process.stderr.write(`altclip: ${flags.db}: ${parts.join(', ')} (${total} images in the index)\n`);
}

/** Images embedded, rate and time left, on stderr when it is a terminal. */
function progressBar(): { start(total: number): void; update(done: number): void; stop(): void } {
  if (!process.stderr.isTTY) return { start() {}, update() {}, stop() {} };
  const bar = new SingleBar({
    stream: process.stderr,
    format: 'indexing |{bar}| {value}/{total} | {rate} images/s | {eta_formatted} left',
    hideCursor: true,
    clearOnComplete: true,
  });
  let started = 0;
  let active = false;
  return {
    start(total) {
      if (total < 1) return;
      started = performance.now();
      bar.start(total, 0, { rate: '-' });
      active = true;
    },
    update(done) {
      if (!active) return;
      const rate = done / ((performance.now() - started) / 1000);
      bar.update(done, { rate: rate >= 10 ? rate.toFixed(0) : rate.toFixed(2) });
    },
    stop() {
      if (active) bar.stop();
      active = false;
    },
  };
}
