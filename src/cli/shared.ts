// Options and helpers shared by the commands.
import { Command, InvalidArgumentError, Option } from 'commander';
import { SingleBar } from 'cli-progress';
import type { ModelOptions } from '../models/altclip.js';
import { type AltCLIPParts, DEFAULT_BATCH_SIZE, DEFAULT_MODEL } from '../tasks/types.js';
import { CliError, oneLine, warn } from './errors.js';

export interface ModelFlags {
  model: string;
  threads?: number;
  dtype?: 'fp32' | 'q8';
  batchSize: number;
  json?: boolean;
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError(`expected a positive integer, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** --model, --threads, --dtype, --batch-size, --json. */
export function addModelOptions(cmd: Command): Command {
  return cmd
    .option('-m, --model <id|dir>', 'hub repo id or local model folder', DEFAULT_MODEL)
    .option('--threads <n>', 'intra-op threads (default: all cores)', positiveInt)
    .addOption(new Option('--dtype <dtype>', 'precision of the Linear layers (default fp32)').choices(['fp32', 'q8']))
    .option('--batch-size <n>', 'inputs per model call', positiveInt, DEFAULT_BATCH_SIZE)
    .option('--json', 'print JSON instead of a table (format in the README)');
}

export async function loadModel(flags: ModelFlags): Promise<AltCLIPParts> {
  const options: ModelOptions = {};
  if (flags.threads !== undefined) options.threads = flags.threads;
  if (flags.dtype !== undefined) options.dtype = flags.dtype;
  try {
    // The model and processor code is loaded only by commands that need a model.
    const { loadAltCLIP } = await import('../tasks/pipeline.js');
    return await loadAltCLIP(flags.model, options);
  } catch (err) {
    const message = oneLine(err);
    throw new CliError(message.includes(flags.model) ? message : `model ${flags.model}: ${message}`);
  }
}

export interface Skipped {
  input: string;
  error: string;
}

export interface Progress {
  advance(n: number): void;
  /** Prints a warning line without breaking the bar. */
  warn(message: string): void;
  stop(): void;
}

/** A progress bar on stderr when it is a terminal (plain warnings otherwise). */
export function progressBar(total: number, what: string): Progress {
  if (!process.stderr.isTTY || total <= 1) return { advance() {}, warn, stop() {} };
  const bar = new SingleBar({
    stream: process.stderr,
    format: `${what} |{bar}| {value}/{total} | {eta_formatted} left`,
    hideCursor: true,
    clearOnComplete: true,
  });
  bar.start(total, 0);
  let active = true;
  return {
    advance: (n) => bar.increment(n),
    warn: (message) => {
      if (!active) return warn(message);
      // Clear the bar's line, print the warning, move the bar's saved position (ESC 7, restored by
      // stop()) to the next line and draw the bar again there.
      process.stderr.write('\r\x1b[2K');
      warn(message);
      process.stderr.write('\x1b7');
      (bar as unknown as { render(force: boolean): void }).render(true);
    },
    stop: () => {
      if (active) bar.stop();
      active = false;
    },
  };
}

/**
 * Runs `run` on the images batch by batch. When a batch fails, its images are retried one by one and
 * those that still fail are skipped with a warning; `done` receives each batch's surviving images and
 * their results. If no image at all succeeds and `needOne` (the command would output nothing), that
 * is an error naming the first failure.
 */
export async function imageBatches<R>(
  images: string[],
  batchSize: number,
  run: (batch: string[]) => Promise<R[]>,
  done: (batch: string[], results: R[]) => void | Promise<void>,
  progress: Pick<Progress, 'advance' | 'warn'> = { advance() {}, warn },
  needOne = true,
): Promise<Skipped[]> {
  const skipped: Skipped[] = [];
  // Warnings wait for a first success, so a lone bad image gives a single error line.
  let anyOk = false;
  const pending: string[] = [];
  const skip = (input: string, err: unknown) => {
    const message = oneLine(err);
    const s = { input, error: message.includes(input) ? message : `${input}: ${message}` };
    skipped.push(s);
    if (anyOk) progress.warn(`skipped ${s.error}`);
    else pending.push(`skipped ${s.error}`);
  };
  for (let start = 0; start < images.length; start += batchSize) {
    const batch = images.slice(start, start + batchSize);
    let kept: string[] = [];
    let results: R[] = [];
    try {
      results = await run(batch);
      kept = batch;
    } catch (err) {
      if (batch.length === 1) skip(batch[0], err);
      else {
        for (const image of batch) {
          try {
            results.push(...(await run([image])));
            kept.push(image);
          } catch (e) {
            skip(image, e);
          }
        }
      }
    }
    if (kept.length > 0) {
      if (!anyOk) pending.splice(0).forEach((m) => progress.warn(m));
      anyOk = true;
      await done(kept, results);
    }
    progress.advance(batch.length);
  }
  if (!anyOk && !needOne) pending.forEach((m) => progress.warn(m));
  else if (!anyOk && skipped.length > 0) {
    const more = skipped.length > 1 ? ` (and ${skipped.length - 1} more unreadable image${skipped.length > 2 ? 's' : ''})` : '';
    throw new CliError(`${skipped[0].error}${more}`);
  }
  return skipped;
}

/** Score/number column: fixed decimals, right-aligned. */
export function num(x: number, width = 8, decimals = 4): string {
  return x.toFixed(decimals).padStart(width);
}
