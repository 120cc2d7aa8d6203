// The writer lock of an index folder: one writer at a time (proper-lockfile's mkdir lock, kept fresh
// by an mtime update). Readers need no lock: every LanceDB read sees one committed version.
//
// A writer killed with `kill -9` leaves its lock behind. proper-lockfile treats it as stale once its
// mtime is `stale` ms old; on the same host we also read the owner's pid and, if that process is gone,
// take the lock over at once (the owner file is claimed with an atomic rename, so two waiters cannot
// both take it over).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import lockfile from 'proper-lockfile';

export const LOCK_NAME = 'writer.lock';
const OWNER_NAME = 'writer.lock.owner';

export interface WriterLockOptions {
  /** How long to wait for another writer, in ms (default 0: refuse at once). */
  waitMs?: number;
}

interface Owner {
  pid: number;
  host: string;
  started: string;
}

/** Thrown when another writer holds the lock. */
export class IndexLockedError extends Error {
  override name = 'IndexLockedError';
}

export class WriterLock {
  /** Set when the lock was lost (its folder removed or not refreshed in time): the writer must stop. */
  private lost?: Error;
  private releaseLock: () => Promise<void> = async () => {};

  private constructor(private readonly dir: string) {}

  /** Throws if the lock was lost; writers call it before each commit. */
  check(): void {
    if (this.lost) throw new Error(`${this.dir}: lost the writer lock (${this.lost.message}); stopped before writing more`);
  }

  static async acquire(dir: string, options: WriterLockOptions = {}): Promise<WriterLock> {
    const lockPath = path.join(dir, LOCK_NAME);
    const ownerPath = path.join(dir, OWNER_NAME);
    const deadline = Date.now() + (options.waitMs ?? 0);
    fs.mkdirSync(dir, { recursive: true });
    for (let attempt = 0; ; attempt++) {
      const lock = new WriterLock(dir);
      try {
        lock.releaseLock = await lockfile.lock(dir, {
          lockfilePath: lockPath,
          realpath: false,
          stale: 10_000,
          update: 2_000,
          onCompromised: (err) => {
            lock.lost = err;
          },
        });
        writeOwner(ownerPath);
        return lock;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
        if (takeOverFromDeadOwner(lockPath, ownerPath)) continue;
        if (Date.now() >= deadline) {
          const owner = readOwner(ownerPath);
          const who = owner ? `process ${owner.pid} on ${owner.host}, since ${owner.started}` : 'another process';
          throw new IndexLockedError(`${dir}: the index is being written by ${who}; wait for it to finish (or give a wait time)`);
        }
        await new Promise((r) => setTimeout(r, Math.min(250 + attempt * 50, 1000)));
      }
    }
  }

  async release(): Promise<void> {
    try {
      fs.rmSync(path.join(this.dir, OWNER_NAME), { force: true });
    } finally {
      await this.releaseLock().catch(() => {});
    }
  }
}

function writeOwner(ownerPath: string): void {
  const owner: Owner = { pid: process.pid, host: os.hostname(), started: new Date().toISOString() };
  const tmp = `${ownerPath}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(owner));
  fs.renameSync(tmp, ownerPath);
}

function readOwner(ownerPath: string): Owner | undefined {
  try {
    const o = JSON.parse(fs.readFileSync(ownerPath, 'utf8')) as Owner;
    return Number.isInteger(o.pid) && typeof o.host === 'string' ? o : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The lock's owner ran on this host and is gone: remove its lock. True if the caller should retry. */
function takeOverFromDeadOwner(lockPath: string, ownerPath: string): boolean {
  let text: string;
  try {
    text = fs.readFileSync(ownerPath, 'utf8');
  } catch {
    return false;
  }
  const owner = readOwner(ownerPath);
  if (!owner || owner.host !== os.hostname() || owner.pid === process.pid || alive(owner.pid)) return false;
  const claim = `${ownerPath}.${process.pid}.claim`;
  try {
    fs.renameSync(ownerPath, claim); // only one waiter wins this rename
  } catch {
    return false;
  }
  if (fs.readFileSync(claim, 'utf8') !== text) {
    // a new owner wrote its file between our read and the rename: put it back
    fs.renameSync(claim, ownerPath);
    return false;
  }
  fs.rmSync(lockPath, { recursive: true, force: true });
  fs.rmSync(claim, { force: true });
  return true;
}
