// Running the `altclip` command (src/cli/main.ts through tsx) as a child process in tests.
import * as assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MAIN = path.join(ROOT, 'src', 'cli', 'main.ts');

export interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Called with the child once it is started (to signal it). */
  started?: (child: ChildProcessWithoutNullStreams) => void;
  /** The hang guard: the child is killed after this long (default 5 min). */
  limitMs?: number;
}

// At most as many commands at once as there are cores: the cases run side by side, and on a busy
// machine a crowd of model-loading processes would only wait on each other.
const slots = { free: Math.max(2, os.availableParallelism()), waiting: [] as (() => void)[] };
async function limited<T>(run: () => Promise<T>): Promise<T> {
  if (slots.free === 0) await new Promise<void>((resolve) => slots.waiting.push(resolve));
  else slots.free--;
  try {
    return await run();
  } finally {
    const next = slots.waiting.shift();
    if (next) next();
    else slots.free++;
  }
}

/** `altclip <args>`; `cacheDir` is its ALTCLIP_CACHE; offline (HF_HUB_OFFLINE=1). */
export function altclip(args: string[], cacheDir: string, options: RunOptions = {}): Promise<Run> {
  return limited(() => run(process.execPath, ['--import', 'tsx', MAIN, ...args], cacheDir, options));
}

/** Any command with the same environment as altclip() (not counted against the slots). */
export function run(command: string, args: string[], cacheDir: string, options: RunOptions = {}): Promise<Run> {
  const { child, done } = start(command, args, cacheDir, options);
  const timer = setTimeout(() => child.kill('SIGKILL'), options.limitMs ?? 300_000);
  return done.finally(() => clearTimeout(timer));
}

export interface Started {
  child: ChildProcessWithoutNullStreams;
  /** Resolves when the child has exited and its output is closed. */
  done: Promise<Run>;
  /** What it has written to stderr so far. */
  stderr(): string;
}

/** Starts a command with altclip()'s environment and returns at once (for tests that signal or watch it). */
export function start(command: string, args: string[], cacheDir: string, options: Omit<RunOptions, 'limitMs'> = {}): Started {
  const child = spawn(command, args, {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ALTCLIP_CACHE: cacheDir, HF_HUB_OFFLINE: '1', ALTCLIP_DEBUG: '', ...options.env },
  });
  options.started?.(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done, stderr: () => stderr };
}

/** `altclip <args>` started (not counted against the slots), for tests that kill or watch it. */
export function startAltclip(args: string[], cacheDir: string, options: Omit<RunOptions, 'limitMs'> = {}): Started {
  return start(process.execPath, ['--import', 'tsx', MAIN, ...args], cacheDir, options);
}

/** Exit code 1 and exactly one line on stderr, `altclip: error: ...`, matching `pattern`. */
export function assertOneLineError(r: Run, pattern: RegExp): void {
  assert.equal(r.code, 1, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^altclip: error: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

/** Polls `check` every 50 ms until it is true; fails after `limitMs` (a hang guard, not a timing test). */
export async function waitFor(check: () => boolean, what: string, limitMs = 600_000): Promise<void> {
  for (const start = Date.now(); !check(); ) {
    if (Date.now() - start > limitMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Served {
  child: ChildProcessWithoutNullStreams;
  /** http://127.0.0.1:<port>, from its "listening on" line */
  url: string;
  port: number;
  stderr: () => string;
  exit: Promise<number | null>;
}

/**
 * `altclip serve <args>` (give it `--port 0`) with altclip()'s environment and no API key from the
 * environment; resolves once it prints "listening on", rejects if it exits first or is silent for `limitMs`.
 */
export function startServe(args: string[], cacheDir: string, options: { env?: Record<string, string>; limitMs?: number } = {}): Promise<Served> {
  const { child, stderr } = start(process.execPath, ['--import', 'tsx', MAIN, 'serve', ...args], cacheDir, { env: { ALTCLIP_API_KEY: '', ...options.env } });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const limitMs = options.limitMs ?? 120_000;
  let stdout = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no "listening on" line within ${limitMs / 1000} s; stderr: ${stderr()}`));
    }, limitMs);
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /^listening on (http:\/\/127\.0\.0\.1:(\d+))\n/m.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]!, port: Number(m[2]), stderr, exit });
      }
    });
    void exit.then((code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before listening; stderr: ${stderr()}`));
    });
  });
}
