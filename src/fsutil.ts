// Files that appear whole: the one temp-then-rename of the package (graph cache, q8 cache, hub cache,
// safetensors writer). A reader sees the old file or the new one, never a part, even when a process
// is killed mid-write; a writer killed before the rename leaves only a `*.tmp` name behind.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';

/**
 * This host, as temporary names carry it (a hash: host names may hold any character). Computed on first
 * use, not at import: the browser build imports this module without node:crypto.
 */
let hostTag: string | undefined;
const HOST_TAG = (): string => (hostTag ??= createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8));

/**
 * A temporary name beside `file` (same folder, so the rename is atomic), unique to this call, naming
 * its writer (host and pid) so that a leftover of a stopped writer is known at once (tempWriterGone).
 */
export function tempPath(file: string): string {
  // no longer than the earlier `.<uuid>.tmp` (a name beside a file must stay under 255 bytes)
  return `${file}.h${HOST_TAG()}p${process.pid}-${randomBytes(6).toString('hex')}.tmp`;
}

const TEMP_NAME = /\.h([0-9a-f]{8})p(\d+)-[0-9a-f]{12}\.tmp$/;

/** A leftover of replaceAtomically from a process that was killed before its rename (older versions: `.<uuid>.tmp`). */
export const isTempPath = (name: string): boolean => TEMP_NAME.test(name) || /\.[0-9a-f-]{36}\.tmp$/.test(name);

/**
 * Whether the temporary `name` (from tempPath) was written by a process of this host that no longer
 * runs. False for another host's, a live process's, and names without a writer (older versions).
 */
export function tempWriterGone(name: string): boolean {
  const m = TEMP_NAME.exec(name);
  if (!m || m[1] !== HOST_TAG()) return false;
  const pid = Number(m[2]);
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export interface ReplaceOptions {
  /**
   * Where `file` already exists (another process got there first), keep it and drop ours instead
   * of replacing it: for folders, which rename() cannot replace, and copies that are equally good.
   */
  keepExisting?: boolean;
}

/** Renames the finished temporary into place (see ReplaceOptions.keepExisting). */
function commit(tmp: string, file: string, options: ReplaceOptions): void {
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!(options.keepExisting && (code === 'ENOTEMPTY' || code === 'EEXIST') && fs.existsSync(file))) throw e;
  }
}

/**
 * Makes `file` (a file, link or folder) appear whole: `create(tmp)` makes it under a temporary name
 * beside `file`, which is then renamed into place; on any failure the temporary is removed.
 */
export function replaceAtomically<T>(file: string, create: (tmp: string) => T, options: ReplaceOptions = {}): T {
  const tmp = tempPath(file);
  try {
    const result = create(tmp);
    commit(tmp, file, options);
    return result;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** replaceAtomically for a `create` that works asynchronously. */
export async function replaceAtomicallyAsync<T>(file: string, create: (tmp: string) => Promise<T>,
  options: ReplaceOptions = {}): Promise<T> {
  const tmp = tempPath(file);
  try {
    const result = await create(tmp);
    commit(tmp, file, options);
    return result;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Writes `data` to `file` so that no reader sees half a file. */
export function writeFileAtomic(file: string, data: Uint8Array | string): void {
  replaceAtomically(file, (tmp) => fs.writeFileSync(tmp, data));
}
