// What coordinator and workers agree on: the Redis address, queue names, the job payload and its
// retry policy. See ARCHITECTURE.md ("Many machines").
import * as fs from 'node:fs';
import * as path from 'node:path';

/** One queue per dtype: a worker started with --dtype q8 takes only q8 shards, so an index never mixes them. */
export function queueName(dtype: 'fp32' | 'q8'): string {
  return `altclip-index-${dtype}`;
}

/** Job payload (BullMQ job data). The job id is `shard-<shard>`: adding a shard twice is a no-op. */
export interface ShardJob {
  version: 1;
  /** content id: sha256 of model, dtype and the shard's inputs (first 24 hex digits) */
  shard: string;
  /** hub repo id, or the absolute real path of a model folder the workers also see */
  model: string;
  dtype: 'fp32' | 'q8';
  /** absolute path of the work folder (shared storage): shards/<shard>.shard is written there */
  workDir: string;
  /** a WebDataset .tar (one shard), or a list file under workDir/inputs with one path or URL a line */
  source: { tar: string } | { list: string };
  /** inputs in the shard (for progress) */
  count: number;
}

export function jobId(shard: string): string {
  return `shard-${shard}`;
}

/** Retries: a shard that throws (a truncated tar, an unreadable list) is tried this many times in all. */
export const DEFAULT_ATTEMPTS = 3;
export const RETRY_DELAY_MS = 1000;
/** Stalled-job detection (BullMQ): a worker's lock lasts this long unless renewed. */
export const DEFAULT_LOCK_MS = 30_000;
export const DEFAULT_STALLED_INTERVAL_MS = 30_000;
/** A job whose worker died this many times is failed instead of re-delivered (a poison shard). */
export const MAX_STALLED_COUNT = 3;

export interface RedisAddress {
  host: string;
  port: number;
  db: number;
}

/** redis://HOST:PORT[/DB] -> ioredis options. */
export function parseRedisUrl(url: string): RedisAddress {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--queue ${JSON.stringify(url)}: expected redis://HOST:PORT`);
  }
  if (u.protocol !== 'redis:' || !u.hostname) throw new Error(`--queue ${JSON.stringify(url)}: expected redis://HOST:PORT`);
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new Error(`--queue ${url}: the database number must be a non-negative integer`);
  const port = u.port ? Number(u.port) : 6379;
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port, db };
}

/**
 * Connection options for BullMQ: commands wait while Redis is away (maxRetriesPerRequest null, which
 * BullMQ requires of workers) and ioredis reconnects with a backoff capped at 2 s.
 */
export function connectionOptions(url: string): Record<string, unknown> {
  const { host, port, db } = parseRedisUrl(url);
  return { host, port, db, maxRetriesPerRequest: null, enableOfflineQueue: true, retryStrategy: (n: number) => Math.min(2000, 100 * n) };
}

/** The default work folder: next to the db (the db folder itself must hold only the index). */
export function defaultWorkDir(db: string): string {
  return `${path.resolve(db)}.work`;
}

export function isTar(p: string): boolean {
  return p.toLowerCase().endsWith('.tar');
}

export function isListFile(p: string): boolean {
  return /\.(txt|lst|list)$/i.test(p) && !fs.statSync(p).isDirectory();
}
