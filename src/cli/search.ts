// altclip search <text> --db <dir> (or --image <file>): the best images of an index, best first.
// The model comes from the index; a one-shot search loads only the tower the query needs, from the
// graph cache with its packed weights (cachePrepacked) unless --no-cache-prepacked.
import { Command } from 'commander';
import { CliError, EXIT_OK } from './errors.js';
import { num, positiveInt } from './shared.js';

interface SearchFlags {
  db: string;
  model?: string;
  k: number;
  image?: string;
  template?: string;
  threads?: number;
  json?: boolean;
  cachePrepacked: boolean;
}

export function searchCommand(): Command {
  return new Command('search')
    .description('search an image index (made by "altclip index") by text, in any language, or by image')
    .argument('[text]', 'what to look for')
    .requiredOption('--db <dir>', 'index folder')
    .option('-m, --model <id|dir>', "the index's model under another path (default: the one the index records; other weights are refused)")
    .option('--image <file>', 'search by this image instead of a text')
    .option('-k, --k <n>', 'how many results (above the row count: every row)', positiveInt, 10)
    .option('--template <template>', 'put the text into this template, "{}" standing for the text (default: the text as is)')
    .option('--threads <n>', 'intra-op threads (default: all cores)', positiveInt)
    .option('--json', 'print {"results":[{"path","score"}]}, best first')
    .option('--no-cache-prepacked', "do not keep the tower's packed weights in the graph cache (default: keep them, so that "
      + 'a search loads in ~1.5 s instead of ~6 s on the full-size model, for 1.5x the text tower\'s weights on disk)')
    .addHelpText('after', `
Examples:
  $ altclip search "一只在沙发上睡觉的猫" --db pictures.db
  $ altclip search "Strand bei Sonnenuntergang" --db pictures.db -k 3 --json
  $ altclip search --image query.jpg --db pictures.db`)
    .action(async (text: string | undefined, flags: SearchFlags) => {
      process.exitCode = await runSearch(text, flags);
    });
}

async function runSearch(text: string | undefined, flags: SearchFlags): Promise<number> {
  if ((text === undefined) === (flags.image === undefined)) throw new CliError('give a text to search for, or --image <file> (not both)');
  if (flags.image !== undefined && flags.template !== undefined) throw new CliError('--template applies to a text query, not to --image');
  const { ImageIndex } = await import('../search/index.js');
  // A one-shot search is all load: with the packed weights cached, the full-size text tower loads
  // ~4x faster (BENCHMARKS.md, "Search"); the first search writes them.
  const index = await ImageIndex.open(flags.db, {
    cachePrepacked: flags.cachePrepacked,
    ...(flags.model !== undefined ? { model: flags.model } : {}),
    ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
  });
  try {
    const results = await index.search(text ?? { image: flags.image! }, { k: flags.k, template: flags.template });
    if (flags.json) process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
    else if (results.length === 0) process.stderr.write(`altclip: ${flags.db}: the index is empty\n`);
    else process.stdout.write(results.map((r) => `${num(r.score)}  ${r.path}\n`).join(''));
    return EXIT_OK;
  } finally {
    await index.close();
  }
}
