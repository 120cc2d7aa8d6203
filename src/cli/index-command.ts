// altclip index <file|folder...> --db <dir>: brings an image index up to date (src/search/ does the work).
import { Command, InvalidArgumentError, Option } from 'commander';
import { SingleBar } from 'cli-progress';
import { EXIT_OK, EXIT_SKIPPED, warn } from './errors.js';
import { positiveInt } from './shared.js';

interface IndexFlags {
  db: string;
  model?: string;
  dtype?: 'fp32' | 'q8';
  batchSize?: number;
  threads?: number;
  wait?: number;
  json?: boolean;
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
    .argument('<paths...>', 'image files and folders (walked recursively; hidden files and folders are skipped)')
    .requiredOption('--db <dir>', 'index folder (created on first use)')
    .option('-m, --model <id|dir>', 'hub repo id or local model folder (a new index: default BAAI/AltCLIP; an existing one: its own)')
    .addOption(new Option('--dtype <dtype>', 'precision of the Linear layers (a new index: default fp32)').choices(['fp32', 'q8']))
    .option('--batch-size <n>', 'images per model call (default 8)', positiveInt)
    .option('--threads <n>', 'intra-op threads (default: all cores)', positiveInt)
    .option('--wait <seconds>', 'wait this long for another `altclip index` writing the same db (default: refuse at once)', seconds)
    .option('--json', 'print {"added","updated","removed","unchanged","renamed","skipped":[{"input","error"}]}')
    .option('--queue <redis://host:port>', 'embed on `altclip worker`s sharing this Redis; inputs may also be list files (.txt: paths/URLs) and WebDataset .tar shards')
    .option('--shard-size <n>', 'with --queue: inputs per shard (job) (default 1000)', positiveInt)
    .option('--work-dir <dir>', 'with --queue: shared folder for shard files (default: <db>.work)')
    .addHelpText('after', `
Examples:
  $ altclip index ~/Pictures --db pictures.db
  $ altclip index ~/Pictures --db pictures.db --json     # again later: only changes are embedded`)
    .action(async (paths: string[], flags: IndexFlags) => {
      if (flags.queue !== undefined) process.exitCode = await (await import('./worker.js')).runQueueIndex(paths, { ...flags, queue: flags.queue });
      else process.exitCode = await runIndex(paths, flags);
    });
}

async function runIndex(paths: string[], flags: IndexFlags): Promise<number> {
  const { ImageIndex } = await import('../search/index.js');
  const index = await ImageIndex.open(flags.db, {
    ...(flags.model !== undefined ? { model: flags.model } : {}),
    ...(flags.dtype !== undefined ? { dtype: flags.dtype } : {}),
    ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
    ...(flags.batchSize !== undefined ? { batchSize: flags.batchSize } : {}),
    lockWaitMs: (flags.wait ?? 0) * 1000,
  });
  const bar = progressBar();
  try {
    const result = await index.sync(paths, { onPlan: (p) => bar.start(p.toEmbed), onProgress: (done) => bar.update(done) });
    bar.stop();
    if (flags.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      for (const s of result.skipped) warn(`skipped ${s.error}`);
      const parts = [`${result.added} added`, `${result.updated} updated`, `${result.removed} removed`, `${result.unchanged} unchanged`];
      if (result.renamed > 0) parts.push(`${result.renamed} renamed`);
      if (result.skipped.length > 0) parts.push(`${result.skipped.length} skipped`);
      process.stderr.write(`altclip: ${flags.db}: ${parts.join(', ')} (${await index.count()} images in the index)\n`);
    }
    return result.skipped.length > 0 ? EXIT_SKIPPED : EXIT_OK;
  } finally {
    bar.stop();
    await index.close();
  }
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
