// altclip embed <images or folders...> [--texts-file F] --out FILE [--format npy|jsonl]
// Output rows follow the inputs (images, then texts). A run can be resumed: inputs already in FILE are
// skipped and the new rows appended.
import * as fs from 'node:fs';
import { Command, Option } from 'commander';
import { embedImageBatches, embedTextBatches } from '../tasks/embeddings.js';
import { CliError, EXIT_OK, EXIT_SKIPPED } from './errors.js';
import { expandImages, readTextsFile } from './inputs.js';
import { NpyAppender } from './npy.js';
import { type ModelFlags, type Skipped, SkippedImages, addModelOptions, loadModel, progressBar } from './shared.js';

interface EmbedFlags extends ModelFlags {
  out: string;
  format?: 'npy' | 'jsonl';
  texts?: string[];
  textsFile?: string;
  normalize: boolean;
  resume?: boolean;
  overwrite?: boolean;
}

/** What one output row is the embedding of. */
export interface RowInput {
  type: 'image' | 'text';
  input: string;
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

Examples:
  $ altclip embed photos/ --out photos.npy
  $ altclip embed --texts-file captions.txt --out captions.jsonl
  $ altclip embed photos/ --out photos.npy --resume     # after an interruption`,
  );
  return cmd.action(async (inputArgs: string[], flags: EmbedFlags) => {
    process.exitCode = await embed(inputArgs, flags);
  });
}

export function rowsFileOf(out: string): string {
  return `${out.replace(/\.npy$/i, '')}.rows.jsonl`;
}

function formatOf(flags: EmbedFlags): 'npy' | 'jsonl' {
  if (flags.format) return flags.format;
  return /\.(jsonl|ndjson|json)$/i.test(flags.out) ? 'jsonl' : 'npy';
}

const keyOf = (r: RowInput) => `${r.type}\n${r.input}`;

async function embed(inputArgs: string[], flags: EmbedFlags): Promise<number> {
  const images = inputArgs.length > 0 ? expandImages(inputArgs) : [];
  const texts = [...new Set([...(flags.texts ?? []), ...(flags.textsFile ? readTextsFile(flags.textsFile) : [])])];
  if (images.length === 0 && texts.length === 0) throw new CliError('nothing to embed: give images or folders, --texts or --texts-file');
  const format = formatOf(flags);
  if (fs.existsSync(flags.out) && !flags.resume && !flags.overwrite) {
    throw new CliError(`${flags.out} exists: use --resume to continue it or --overwrite to replace it`);
  }
  if (flags.resume && flags.overwrite) throw new CliError('--resume and --overwrite exclude each other');
  const sink = format === 'npy' ? new NpySink(flags.out, Boolean(flags.resume)) : new JsonlSink(flags.out, Boolean(flags.resume));
  const todoImages = images.filter((input) => !sink.done.has(keyOf({ type: 'image', input })));
  const todoTexts = texts.filter((input) => !sink.done.has(keyOf({ type: 'text', input })));
  const already = images.length + texts.length - todoImages.length - todoTexts.length;

  let skipped: Skipped[] = [];
  if (todoImages.length + todoTexts.length > 0) {
    const clip = await loadModel(flags);
    const progress = progressBar(todoImages.length + todoTexts.length, 'embedding');
    const options = { normalize: flags.normalize, batchSize: flags.batchSize };
    try {
      const skips = new SkippedImages(progress);
      for await (const b of embedImageBatches(clip, todoImages, { ...options, onError: skips.onError, onProgress: skips.onProgress })) {
        sink.write(b.indices.map((i) => ({ type: 'image', input: todoImages[i]! })), b.embeddings);
      }
      skips.finish(already === 0 && todoTexts.length === 0); // otherwise there is output even if every image fails
      skipped = skips.skipped;
      const onProgress = (done: number) => progress.update(todoImages.length + done);
      for await (const b of embedTextBatches(clip, todoTexts, { ...options, onProgress })) {
        sink.write(b.indices.map((i) => ({ type: 'text', input: todoTexts[i]! })), b.embeddings);
      }
    } finally {
      progress.stop();
      sink.close();
      await clip.model.dispose();
    }
  } else {
    sink.close();
  }

  const written = todoImages.length + todoTexts.length - skipped.length;
  const summary = {
    out: flags.out,
    format,
    ...(format === 'npy' ? { rowsFile: rowsFileOf(flags.out) } : {}),
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

interface Sink {
  done: Set<string>;
  rows: number;
  cols?: number;
  /** `rows[k]` is the embedding of `inputs[k]`. */
  write(inputs: RowInput[], rows: Float32Array[]): void;
  close(): void;
}

/** `out` = the .npy matrix, `rowsFileOf(out)` = which input each row is. */
class NpySink implements Sink {
  done = new Set<string>();
  rows = 0;
  cols?: number;
  private npy?: NpyAppender;
  private readonly rowsFile: string;

  constructor(private readonly out: string, resume: boolean) {
    this.rowsFile = rowsFileOf(out);
    if (!resume || !fs.existsSync(out)) return;
    if (!fs.existsSync(this.rowsFile)) throw new CliError(`cannot resume ${out}: ${this.rowsFile}, which names its rows, is missing`);
    const listed = readJsonLines<RowInput>(this.rowsFile).items.filter(isRowInput);
    try {
      this.npy = NpyAppender.open(out, listed.length);
    } catch (err) {
      throw new CliError(`cannot resume ${out}: ${(err as Error).message}`);
    }
    // A run stopped mid-batch leaves at most one of the two files longer: keep what both hold.
    const kept = listed.slice(0, this.npy.rows);
    fs.writeFileSync(this.rowsFile, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
    for (const r of kept) this.done.add(keyOf(r));
    this.rows = this.npy.rows;
    this.cols = this.npy.cols;
  }

  write(inputs: RowInput[], rows: Float32Array[]): void {
    const cols = rows[0]!.length;
    if (!this.npy) {
      this.npy = NpyAppender.create(this.out, cols);
      fs.writeFileSync(this.rowsFile, '');
      this.cols = cols;
    }
    checkDim(this.out, this.npy.cols, cols);
    const data = new Float32Array(rows.length * cols);
    rows.forEach((r, i) => data.set(r, i * cols));
    this.npy.append(data);
    fs.appendFileSync(this.rowsFile, inputs.map((r) => `${JSON.stringify(r)}\n`).join(''));
    this.rows = this.npy.rows;
  }

  close(): void {
    this.npy?.close();
  }
}

/** One {"type","input","embedding"} object per line. */
class JsonlSink implements Sink {
  done = new Set<string>();
  rows = 0;
  cols?: number;
  private started = false;

  constructor(private readonly out: string, resume: boolean) {
    if (!resume || !fs.existsSync(out)) return;
    const { items, validBytes } = readJsonLines<RowInput & { embedding: number[] }>(out);
    if (!items.every((r) => isRowInput(r) && Array.isArray(r.embedding))) {
      throw new CliError(`cannot resume ${out}: it is not a JSON-lines file written by altclip embed`);
    }
    fs.truncateSync(out, validBytes); // drop a line cut short by an interruption
    for (const r of items) this.done.add(keyOf(r));
    this.rows = items.length;
    this.cols = items[0]?.embedding?.length;
    this.started = true;
  }

  write(inputs: RowInput[], rows: Float32Array[]): void {
    if (!this.started) {
      fs.writeFileSync(this.out, '');
      this.started = true;
    }
    const cols = rows[0]!.length;
    if (this.cols !== undefined) checkDim(this.out, this.cols, cols);
    this.cols = cols;
    const lines = inputs.map((r, i) => {
      // 9 significant digits give back the exact float32 value.
      const embedding = Array.from(rows[i]!, (x) => Number(x.toPrecision(9)));
      return `${JSON.stringify({ ...r, embedding })}\n`;
    });
    fs.appendFileSync(this.out, lines.join(''));
    this.rows += inputs.length;
  }

  close(): void {}
}

function isRowInput(r: unknown): r is RowInput {
  const x = r as RowInput;
  return typeof x === 'object' && x !== null && (x.type === 'image' || x.type === 'text') && typeof x.input === 'string';
}

function checkDim(out: string, have: number, got: number): void {
  if (have !== got) throw new CliError(`${out} holds ${have}-dim embeddings but this model gives ${got}-dim ones`);
}

/** The complete, parseable lines at the start of a JSON-lines file. */
function readJsonLines<T>(file: string): { items: T[]; validBytes: number } {
  const buf = fs.readFileSync(file);
  const items: T[] = [];
  let start = 0;
  for (let nl = buf.indexOf(0x0a, start); nl !== -1; nl = buf.indexOf(0x0a, start)) {
    try {
      items.push(JSON.parse(buf.subarray(start, nl).toString('utf8')) as T);
    } catch {
      break;
    }
    start = nl + 1;
  }
  return { items, validBytes: start };
}
