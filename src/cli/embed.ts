// altclip embed <images or folders...> [--texts-file F] --out FILE [--format npy|jsonl]
// Output rows follow the inputs (images, then texts). A run can be resumed: inputs already in FILE are
// skipped and the new rows appended. The files, the lock and the --resume checks: embed-output.ts.
import * as fs from 'node:fs';
import { Command, Option } from 'commander';
import { q8SchemeOf } from '../models/quantize.js';
import { embedImageBatches, embedTextBatches } from '../tasks/embeddings.js';
import { CliError, EXIT_INTERRUPTED, EXIT_OK, EXIT_SKIPPED } from './errors.js';
import {
  type EmbedSink, JsonlSink, NpySink, type RowInput, imageRow, keyOf, lockOutput, metaFileOf, metaOf, rowsFileOf,
} from './embed-output.js';
import { expandImages, isUrl, readTextsFile } from './inputs.js';
import { type ModelFlags, type Skipped, SkippedImages, addModelOptions, loadModel, onInterrupt, progressBar } from './shared.js';

export { rowsFileOf };

interface EmbedFlags extends ModelFlags {
  out: string;
  format?: 'npy' | 'jsonl';
  texts?: string[];
  textsFile?: string;
  normalize: boolean;
  resume?: boolean;
  overwrite?: boolean;
}

export function embedCommand(): Command {
  const cmd = new Command('embed')
    .description('write embeddings of many images and/or texts to a .npy or JSON-lines file')
    .argument('[inputs...]', 'image files, folders of images (searched recursively), or http(s) URLs')
    .requiredOption('-o, --out <file>', 'output file')
    .addOption(new Option('-f, --format <format>', 'output format (default: from the extension, .npy otherwise)').choices(['npy', 'jsonl']))
    .option('-t, --texts <text...>', 'texts to embed')
    .option('--texts-file <file>', 'texts to embed, one per line')
    .option('--no-normalize', 'keep the raw projections (get_image_features / get_text_features) instead of unit vectors')
    .option('--resume', 'continue an existing output file: skip the inputs it already holds')
    .option('--overwrite', 'replace an existing output file');
  addModelOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Output:
  npy    a float32 [rows, dim] matrix; row i is the input on line i of <out without .npy>.rows.jsonl
         ({"type":"image"|"text","input":...} per line)
  jsonl  one {"type":"image"|"text","input":...,"embedding":[...]} object per line
  <out>.meta.json records the model, revision, dtype and normalisation; --resume refuses a mismatch.
  A second altclip writing the same <out> at the same time is refused (lock: <out>.lock).

Examples:
  $ altclip embed photos/ --out photos.npy
  $ altclip embed --texts-file captions.txt --out captions.jsonl
  $ altclip embed photos/ --out photos.npy --resume     # after an interruption`,
  );
  return cmd.action(async (inputArgs: string[], flags: EmbedFlags) => {
    process.exitCode = await embed(inputArgs, flags);
  });
}

function formatOf(flags: EmbedFlags): 'npy' | 'jsonl' {
  if (flags.format) return flags.format;
  return /\.(jsonl|ndjson|json)$/i.test(flags.out) ? 'jsonl' : 'npy';
}

/** Ctrl-C (SIGINT) during a run: stop after the batch in flight, keep every row written. */
class Interrupted extends Error {}

async function embed(inputArgs: string[], flags: EmbedFlags): Promise<number> {
  const images = inputArgs.length > 0 ? expandImages(inputArgs) : [];
  const texts = [...new Set([...(flags.texts ?? []), ...(flags.textsFile ? readTextsFile(flags.textsFile) : [])])];
  if (images.length === 0 && texts.length === 0) throw new CliError('nothing to embed: give images or folders, --texts or --texts-file');
  const format = formatOf(flags);
  if (flags.resume && flags.overwrite) throw new CliError('--resume and --overwrite exclude each other');
  const controller = new AbortController();
  const release = await lockOutput(flags.out, (err) => controller.abort(new CliError(`lost the lock on ${flags.out} (${err.message}); stopped writing`)));
  try {
    if (fs.existsSync(flags.out) && !flags.resume && !flags.overwrite) {
      throw new CliError(`${flags.out} exists: use --resume to continue it or --overwrite to replace it`);
    }
    const sink = format === 'npy' ? new NpySink(flags.out, Boolean(flags.resume)) : new JsonlSink(flags.out, Boolean(flags.resume));
    try {
      return await embedInto(sink, images, texts, format, flags, controller);
    } finally {
      sink.close();
    }
  } finally {
    await release().catch(() => {}); // a lock taken over by another process is not ours to remove
  }
}

async function embedInto(
  sink: EmbedSink,
  images: string[],
  texts: string[],
  format: 'npy' | 'jsonl',
  flags: EmbedFlags,
  controller: AbortController,
): Promise<number> {
  // Each input once (`a.jpg` and `./a.jpg` are one image), and not again if the output has it.
  const inputs = [...images.map((input) => imageRow(input, isUrl(input))), ...texts.map((input): RowInput => ({ type: 'text', input }))];
  const seen = new Set<string>();
  const unique = inputs.filter((r) => !seen.has(keyOf(r)) && Boolean(seen.add(keyOf(r))));
  const todo = unique.filter((r) => !sink.done.has(keyOf(r)));
  const todoImages = todo.filter((r) => r.type === 'image');
  const todoTexts = todo.filter((r) => r.type === 'text');
  const already = unique.length - todo.length;
  const rowsBefore = sink.rows;

  let skipped: Skipped[] = [];
  if (todoImages.length + todoTexts.length > 0) {
    const clip = await loadModel(flags);
    const progress = progressBar(todoImages.length + todoTexts.length, 'embedding');
    const stopInterrupts = onInterrupt(() => controller.abort(new Interrupted('interrupted')));
    const options = { normalize: flags.normalize, batchSize: flags.batchSize, signal: controller.signal };
    try {
      const meta = metaOf(clip.identity, flags.model, flags.normalize, flags.dtype);
      // a q8 checkpoint (altclip convert) runs in its own scheme, whatever ALTCLIP_Q8_SCHEME says
      if (meta.dtype === 'q8') meta.q8Scheme = (await q8SchemeOf(meta.model, meta.revision ? { revision: meta.revision } : {})).name;
      sink.use(meta);
      const skips = new SkippedImages(progress);
      const imageInputs = todoImages.map((r) => r.input);
      for await (const b of embedImageBatches(clip, imageInputs, { ...options, onError: skips.onError, onProgress: skips.onProgress })) {
        sink.write(b.indices.map((i) => todoImages[i]!), b.embeddings);
      }
      skips.finish(already === 0 && todoTexts.length === 0); // otherwise there is output even if every image fails
      skipped = skips.skipped;
      const onProgress = (done: number) => progress.update(todoImages.length + done);
      for await (const b of embedTextBatches(clip, todoTexts.map((r) => r.input), { ...options, onProgress })) {
        sink.write(b.indices.map((i) => todoTexts[i]!), b.embeddings);
      }
    } catch (err) {
      const reason = controller.signal.reason;
      if (!controller.signal.aborted || err !== reason) throw err;
      if (!(reason instanceof Interrupted)) throw reason;
      progress.stop();
      const kept = sink.rows - rowsBefore;
      process.stderr.write(
        `altclip: interrupted: ${sink.rows} row${sink.rows === 1 ? '' : 's'} kept in ${flags.out} (${kept} from this run); ` +
          'run the same command with --resume to continue\n',
      );
      return EXIT_INTERRUPTED;
    } finally {
      stopInterrupts();
      progress.stop();
      await clip.model.dispose();
    }
  }

  const written = todoImages.length + todoTexts.length - skipped.length;
  const summary = {
    out: flags.out,
    format,
    ...(format === 'npy' ? { rowsFile: rowsFileOf(flags.out) } : {}),
    metaFile: metaFileOf(flags.out),
    rows: sink.rows,
    dim: sink.cols ?? null,
    written,
    alreadyThere: already,
    skipped,
  };
  if (flags.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else {
    const parts = [`wrote ${written} embedding${written === 1 ? '' : 's'} to ${flags.out} (${sink.rows} row${sink.rows === 1 ? '' : 's'}, dim ${sink.cols ?? '?'})`];
    if (already > 0) parts.push(`${already} already there`);
    if (skipped.length > 0) parts.push(`${skipped.length} image${skipped.length === 1 ? '' : 's'} skipped`);
    process.stderr.write(`altclip: ${parts.join('; ')}\n`);
  }
  return skipped.length > 0 ? EXIT_SKIPPED : EXIT_OK;
}
