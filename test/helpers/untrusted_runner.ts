// Runs loads of untrusted files in child processes with a time and memory cap, many cases per
// child (starting one costs ~1 s), attributing a hang or a crash to the case that was running: the
// child is killed (SIGKILL) and a new one continues with the next case. Memory: V8's heap is capped
// by --max-old-space-size, and the whole process (ArrayBuffers, native memory) by polling its
// resident size (/proc/<pid>/status) and killing it past the cap.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export type Kind = 'safetensors' | 'bin' | 'spm' | 'tokenizer.json' | 'config' | 'model' | 'image'
  /** Probes of the runner itself: a case that never ends, one that allocates without bound, one that exits. */
  | 'probe:hang' | 'probe:memory' | 'probe:exit';
/** A file (weights, image) or a folder (tokenizer, config, model) to load as `kind`. */
export interface Case { kind: Kind; file: string }
export interface Outcome {
  /** ok: loaded; error: the library threw; hang: over the time cap; crash: the process died or the output was not clean. */
  status: 'ok' | 'error' | 'hang' | 'crash';
  message?: string;
  name?: string;
  /** The child's peak resident memory so far (MB). */
  maxRssMb?: number;
}

/** Starting a child (node + tsx compiling the library) takes seconds on a busy machine. */
const STARTUP_MS = 120_000;
const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'untrusted_child.ts');

export interface RunOptions {
  /** Per case (the child's start-up has its own, longer limit). */
  timeoutMs: number;
  maxOldSpaceMb: number;
  /** Resident memory of the whole child (default 2048 MB). */
  maxRssMb?: number;
}

export async function runUntrusted(cases: Case[], opts: RunOptions): Promise<Outcome[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-untrusted-'));
  const casesFile = path.join(dir, 'cases.json');
  fs.writeFileSync(casesFile, JSON.stringify(cases));
  const results: Outcome[] = new Array(cases.length);
  try {
    let next = 0;
    while (next < cases.length) next = await runChild(casesFile, next, results, opts);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

/** One child from case `start`; returns the index to continue from. */
function residentMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0; // gone, or no /proc (then only the heap cap applies)
  }
}

function runChild(casesFile: string, start: number, results: Outcome[], opts: RunOptions): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [`--max-old-space-size=${opts.maxOldSpaceMb}`, '--import', 'tsx', CHILD, casesFile, String(start)],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let current = -1;
    let timedOut = false;
    let overMemory = 0;
    const maxRss = opts.maxRssMb ?? 2048;
    const poll = setInterval(() => {
      const rss = residentMb(child.pid!);
      if (rss > maxRss) {
        overMemory = Math.round(rss);
        child.kill('SIGKILL');
      }
    }, 50);
    let buffered = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    const arm = (ms: number) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, ms);
    };
    arm(STARTUP_MS);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.startsWith('S ')) {
          current = Number(line.slice(2));
          arm(opts.timeoutMs);
        } else if (line.startsWith('R ')) {
          const sp = line.indexOf(' ', 2);
          results[Number(line.slice(2, sp))] = JSON.parse(line.slice(sp + 1));
          current = -1;
        }
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearInterval(poll);
      if (current >= 0) {
        results[current] = timedOut
          ? { status: 'hang', message: `no result within ${opts.timeoutMs} ms` }
          : overMemory
            ? { status: 'crash', message: `killed at ${overMemory} MB resident, over the ${maxRss} MB cap`, maxRssMb: overMemory }
            : { status: 'crash', message: `process died (exit ${code}, signal ${signal}): ${stderr.slice(-1500)}` };
        resolve(current + 1);
      } else {
        const done = results.findIndex((r, i) => i >= start && r === undefined);
        if (done >= 0 && (code !== 0 || timedOut)) {
          // died before starting a case (start-up failure): report it on that case rather than loop
          results[done] = { status: 'crash', message: `process died before the case (exit ${code}, signal ${signal}): ${stderr.slice(-1500)}` };
          resolve(done + 1);
        } else resolve(done >= 0 ? done : results.length);
      }
    });
  });
}
