// The writer lock of an index folder: one writer at a time (proper-lockfile's mkdir lock, kept fresh
// by an mtime update). Readers need no lock: every LanceDB read sees one committed version.
//
// A writer killed with `kill -9` leaves its lock behind. proper-lockfile treats it as stale once its
// mtime is `stale` ms old; on the same host we also read the owner's pid and, if that process is gone,
// take the lock over at once (the owner file is claimed with an atomic rename, so two waiters cannot
// both take it over).
//
// A lock alone does not fence: a writer suspended (Ctrl-Z, SIGSTOP, a laptop lid) past the stale time
// loses it to the next writer and, on resume, would still commit what it held. So each holder has a
// random token in the owner file, `check()` re-reads it before every commit, and the store makes
// every commit conflict with any concurrent one (store.ts, "fence row"), so that no interleaving of a
// resumed writer's commit with the new holder's gives two rows for one path.
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import lockfile from 'proper-lockfile';

export const LOCK_NAME = 'writer.lock';
const OWNER_NAME = 'writer.lock.owner';

/** Milliseconds after which an unrefreshed lock counts as abandoned (env ALTCLIP_INDEX_LOCK_STALE_MS). */
export const DEFAULT_STALE_MS = 10_000;

export interface WriterLockOptions {
  /** How long to wait for another writer, in ms (default 0: refuse at once). */
  waitMs?: number;
  /**
   * A lock not refreshed for this long is taken over (default: $ALTCLIP_INDEX_LOCK_STALE_MS, else
   * 10 s; proper-lockfile's minimum is 2 s). The holder refreshes it every stale / 5.
   */
  staleMs?: number;
}

interface Owner {
  pid: number;
  host: string;
  started: string;
  /** This holder's fencing token: a holder whose token is no longer in the owner file lost the lock. */
  token?: string;
}

function staleMsFrom(options: WriterLockOptions): number {
  const env = Number(process.env.ALTCLIP_INDEX_LOCK_STALE_MS);
  const ms = options.staleMs ?? (Number.isFinite(env) && env > 0 ? env : DEFAULT_STALE_MS);
  return Math.max(2_000, Math.round(ms));
}

/** Thrown when another writer holds the lock. */
export class IndexLockedError extends Error {
  override name = 'IndexLockedError';
}

/** Thrown by a writer that found its lock taken over (it was suspended past the stale time). */
export class LockLostError extends Error {
  override name = 'LockLostError';
}

export class WriterLock {
  /** Set when the lock was lost (its folder removed or not refreshed in time): the writer must stop. */
  private lost?: Error;
  private releaseLock: () => Promise<void> = async () => {};
  /** Written into the owner file and into the table's fence row by each commit (store.ts). */
  readonly token = randomUUID();

  private constructor(private readonly dir: string) {}

  /**
   * Throws LockLostError if this writer no longer holds the lock: proper-lockfile saw it taken over,
   * or the owner file names another holder. Writers call it right before and after each commit.
   */
  check(): void {
    if (!this.lost) {
      const owner = readOwner(path.join(this.dir, OWNER_NAME));
      if (owner?.token !== this.token) this.lost = new Error(owner ? `now held by process ${owner.pid} on ${owner.host}` : 'its owner file is gone');
    }
    if (this.lost) throw new LockLostError(`${this.dir}: lost the writer lock (${this.lost.message}); stopped before writing more`);
  }

  /** Whether check() would throw. */
  get held(): boolean {
    try {
      this.check();
      return true;
    } catch {
      return false;
    }
  }

  static async acquire(dir: string, options: WriterLockOptions = {}): Promise<WriterLock> {
    const lockPath = path.join(dir, LOCK_NAME);
    const ownerPath = path.join(dir, OWNER_NAME);
    const deadline = Date.now() + (options.waitMs ?? 0);
    const stale = staleMsFrom(options);
    fs.mkdirSync(dir, { recursive: true });
    for (let attempt = 0; ; attempt++) {
      const lock = new WriterLock(dir);
      try {
        lock.releaseLock = await lockfile.lock(dir, {
          lockfilePath: lockPath,
          realpath: false,
          stale,
          update: Math.max(1_000, Math.floor(stale / 5)),
          onCompromised: (err) => {
            lock.lost = err;
          },
        });
        writeOwner(ownerPath, lock.token);
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
      // only our own owner file: after a takeover it is the new holder's
      if (readOwner(path.join(this.dir, OWNER_NAME))?.token === this.token) fs.rmSync(path.join(this.dir, OWNER_NAME), { force: true });
    } finally {
      await this.releaseLock().catch(() => {});
    }
  }
}

function writeOwner(ownerPath: string, token: string): void {
  const owner: Owner = { pid: process.pid, host: os.hostname(), started: new Date().toISOString(), token };
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
