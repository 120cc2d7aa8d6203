// altclip cache list | prune: the graph cache (graphs, hard links to the weights, q8 weights) — a thin
// layer over listCache / pruneCache (models/graph_cache.ts, which also documents the layout).
import { Command } from 'commander';
import { type CacheEntry, defaultGraphCacheDir, freedBytes, listCache, pruneCache } from '../models/graph_cache.js';

interface CacheFlags { cacheDir: string; json?: boolean; dryRun?: boolean }

function size(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${i ? bytes.toFixed(1) : bytes} ${units[i]}`;
}

function print(entries: CacheEntry[], flags: CacheFlags, verb: string): void {
  if (flags.json) {
    const staleBytes = freedBytes(entries.filter((e) => e.stale));
    process.stdout.write(`${JSON.stringify({ cacheDir: flags.cacheDir, entries, staleBytes }, null, 2)}\n`);
    return;
  }
  for (const e of entries) {
    process.stdout.write(`${e.stale ? 'stale' : 'ok   '}  ${size(e.bytes).padStart(9)}  ${e.kind.padEnd(9)}  ${e.path}`
      + `${e.stale ? `  (${e.stale})` : e.sources.length ? `  <- ${e.sources.join(', ')}` : ''}\n`);
  }
  const freed = freedBytes(entries.filter((e) => e.stale));
  const stale = entries.filter((e) => e.stale).length;
  process.stdout.write(verb === 'list'
    ? `${entries.length} entries in ${flags.cacheDir}; ${stale} stale (${size(freed)} freed by "altclip cache prune")\n`
    : `${verb} ${entries.length} stale entries from ${flags.cacheDir} (${size(freed)})\n`);
}

export function cacheCommand(): Command {
  const cmd = new Command('cache')
    .description('the graph cache: built graphs, hard links to the weights, q8 weights (see the README, "Cache")');
  const dirOption = ['--cache-dir <dir>', 'cache folder (default: $ALTCLIP_CACHE, else $XDG_CACHE_HOME/altclip, else ~/.cache/altclip)'] as const;
  cmd.command('list')
    .description('every entry, its size (what deleting it frees) and source; "stale": its source model is gone or changed')
    .option(...dirOption, defaultGraphCacheDir())
    .option('--json', 'print JSON')
    .action((flags: CacheFlags) => print(listCache(flags.cacheDir), flags, 'list'));
  cmd.command('prune')
    .description('delete the stale entries (source model deleted or replaced; temporaries of stopped writers)')
    .option(...dirOption, defaultGraphCacheDir())
    .option('--dry-run', 'only say what would be deleted')
    .option('--json', 'print JSON')
    .action((flags: CacheFlags) => print(pruneCache(flags.cacheDir, { dryRun: flags.dryRun }), flags, flags.dryRun ? 'would remove' : 'removed'));
  // main.ts sets these on the top-level commands; the subcommands here need them too
  for (const sub of cmd.commands) {
    sub.configureOutput({ outputError: (str, write) => write(`altclip: ${str}`) }).exitOverride();
  }
  return cmd;
}
