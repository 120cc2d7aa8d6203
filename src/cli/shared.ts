// Options and helpers shared by the commands.
import { Command, InvalidArgumentError, Option } from 'commander';
import { SingleBar } from 'cli-progress';
import type { ModelOptions } from '../models/altclip.js';
import { type AltCLIPParts, DEFAULT_BATCH_SIZE, DEFAULT_MODEL, type InputFailure } from '../tasks/types.js';
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
  /** Inputs finished so far. */
  update(done: number): void;
  /** Prints a warning line without breaking the bar. */
  warn(message: string): void;
  stop(): void;
}

/** A progress bar on stderr when it is a terminal (plain warnings otherwise). */
export function progressBar(total: number, what: string): Progress {
  if (!process.stderr.isTTY || total <= 1) return { update() {}, warn, stop() {} };
  const bar = new SingleBar({
    stream: process.stderr,
    format: `${what} |{bar}| {value}/{total} | {eta_formatted} left`,
    hideCursor: true,
    clearOnComplete: true,
  });
  bar.start(total, 0);
  let active = true;
  return {
    update: (done) => bar.update(done),
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
 * The commands' side of a task's onError / onProgress: each unreadable image becomes a warning
 * ("skipped <path>: <problem>") and an entry of `skipped`. Warnings wait for a first success, so a
 * lone bad image gives a single error line (see finish()).
 */
export class SkippedImages {
  readonly skipped: Skipped[] = [];
  readonly failed = new Set<number>();
  private readonly pending: string[] = [];
  private anyOk = false;

  /** `offset`: inputs before these images on the same progress bar. */
  constructor(private readonly progress: Pick<Progress, 'update' | 'warn'>, private readonly offset = 0) {}

  readonly onError = (f: InputFailure): void => {
    const error = oneLine(f.error);
    this.skipped.push({ input: f.input, error });
    this.failed.add(f.index);
    if (this.anyOk) this.progress.warn(`skipped ${error}`);
    else this.pending.push(`skipped ${error}`);
  };

  readonly onProgress = (done: number): void => {
    if (!this.anyOk && done > this.skipped.length) {
      this.anyOk = true;
      this.pending.splice(0).forEach((m) => this.progress.warn(m));
    }
    this.progress.update(this.offset + done);
  };

  /** The images that were not skipped. */
  kept<T>(images: T[]): T[] {
    return images.filter((_, i) => !this.failed.has(i));
  }

  /**
   * After the task: if every image failed and the command has nothing else to show (`needOne`), an
   * error naming the first failure; otherwise the held-back warnings.
   */
  finish(needOne = true): void {
    if (this.anyOk || this.skipped.length === 0) return;
    if (!needOne) {
      this.pending.splice(0).forEach((m) => this.progress.warn(m));
      return;
    }
    const n = this.skipped.length;
    const more = n > 1 ? ` (and ${n - 1} more unreadable image${n > 2 ? 's' : ''})` : '';
    throw new CliError(`${this.skipped[0]!.error}${more}`);
  }
}

/** Score/number column: fixed decimals, right-aligned. */
export function num(x: number, width = 8, decimals = 4): string {
  return x.toFixed(decimals).padStart(width);
}
