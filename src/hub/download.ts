// hf_hub_download(): one file of a hub repo, from the cache when it is there, else downloaded into
// it. Follows huggingface_hub's _hf_hub_download_to_cache_dir step by step.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { COMMIT_HASH, MAX_ETAG_LENGTH, SHA256, RepoCache, isSafeBlobName } from './cache.js';
import { HubError, type HubFileRef } from './errors.js';
import { downloadToFile, fetchMetadata, NetworkError, resolveUrl, type FileMetadata } from './http.js';
import { hubSettings, type Env, type HubSettings } from './settings.js';
import { describe } from '../untrusted.js';

export interface HubDownloadOptions {
  revision?: string;
  cacheDir?: string;
  token?: string | false;
  localFilesOnly?: boolean;
  /** Return null instead of throwing when the repo has no such file. */
  optional?: boolean;
}

/**
 * The commit each (endpoint, cache, repo, revision) resolved to in this process, like the
 * `_commit_hash` transformers threads through one from_pretrained: once a revision is resolved, its
 * cached files are used without asking the hub again, and every file of a model comes from the
 * same commit. A new process asks the hub once per revision (a HEAD, no download when unchanged).
 */
const resolvedCommits = new Map<string, string>();

/** Forget the commits resolved so far (what starting a new process does). */
export function forgetResolvedCommits(): void {
  resolvedCommits.clear();
}

/** One download per blob at a time in this process; concurrent callers wait for it. */
const inFlight = new Map<string, Promise<void>>();

/**
 * The absolute `snapshots/<commit>/<filename>` path of `filename` in hub repo `repoId`, or null
 * for an `optional` file the repo does not have. `filename` is a validated "/"-separated path.
 */
export async function hubDownload(repoId: string, filename: string, options: HubDownloadOptions, env: Env): Promise<string | null> {
  const settings = hubSettings(options, env);
  const revision = options.revision ?? 'main';
  const ref: HubFileRef = { repoId, revision, filename };
  const cache = new RepoCache(settings.cacheDir, repoId);
  const memoKey = [settings.endpoint, settings.cacheDir, repoId, revision].join('\0');

  // A commit known without asking: given as the revision, or resolved earlier in this process.
  const known = COMMIT_HASH.test(revision) ? revision : resolvedCommits.get(memoKey);
  if (known) {
    const hit = cache.lookup(known, filename);
    if (hit.file) return hit.file;
    if (hit.missing) return missing(ref, options, 'the cache records that the repo has no such file at this commit');
  }
  if (settings.offline) return fromCache(cache, ref, options, null);

  let meta;
  try {
    meta = await fetchMetadata(resolveUrl(settings.endpoint, ref), settings, ref);
  } catch (error) {
    if (error instanceof HubError && error.code === 'EntryNotFound') {
      // Remember that the file does not exist at this commit (`.no_exist`), as huggingface_hub does.
      const commit = error.commit;
      if (commit && COMMIT_HASH.test(commit)) {
        cache.markMissing(commit, filename);
        cache.writeRef(revision, commit);
        resolvedCommits.set(memoKey, commit);
      }
      if (options.optional) return null;
      throw error;
    }
    if (error instanceof HubError && error.code === 'RevisionNotFound') throw error;
    if (!(error instanceof NetworkError || error instanceof HubError)) throw error;
    // Unreachable hub, 5xx, 401/403: use the cached copy if there is one (huggingface_hub does).
    return fromCache(cache, ref, options, error);
  }

  // FileMetadataError in huggingface_hub (e.g. a proxy answering instead of the hub): use the cache.
  const problem = metadataProblem(meta, settings.endpoint);
  if (problem) return fromCache(cache, ref, options, new HubError('BadResponse', ref, `the server sent ${problem}`));
  const [commit, etag, size] = [meta.commit!, meta.etag!, meta.size!];

  fs.mkdirSync(path.join(cache.root, 'blobs'), { recursive: true });
  cache.writeRef(revision, commit);
  resolvedCommits.set(memoKey, commit);
  const pointer = cache.pointerPath(commit, filename);
  if (fs.existsSync(pointer)) return pointer;

  if (!fs.existsSync(cache.blobPath(etag))) await downloadBlobOnce(cache, etag, meta.location, size, settings, ref);
  return cache.link(etag, commit, filename);
}

async function downloadBlobOnce(
  cache: RepoCache,
  etag: string,
  url: string,
  size: number,
  settings: HubSettings,
  ref: HubFileRef,
): Promise<void> {
  const blob = cache.blobPath(etag);
  let job = inFlight.get(blob);
  if (!job) {
    job = (async () => {
      const release = await lockBlob(cache.lockPath(etag), blob);
      if (!release) return; // another process finished it while we waited
      try {
        const incomplete = `${blob}.incomplete`;
        await downloadToFile(url, incomplete, { size, sha256: SHA256.test(etag) ? etag : null }, settings, ref);
        fs.renameSync(incomplete, blob); // verified: only now does the blob exist under its name
      } finally {
        release();
      }
    })().finally(() => inFlight.delete(blob));
    inFlight.set(blob, job);
  }
  await job;
}

/**
 * One writer per blob across processes: `.locks/<repo folder>/<etag>.altclip.lock`, created
 * exclusively and holding the writer's pid; a lock whose process is gone is taken over. (Python
 * holds an flock on `<etag>.lock`, which Node cannot take; the size + sha256 checks still reject a
 * file that two writers mixed up.) Resolves to null when the blob appeared while waiting.
 */
async function lockBlob(lockFile: string, blob: string): Promise<(() => void) | null> {
  fs.mkdirSync(path.dirname(lockFile), { recursive: true });
  const since = Date.now();
  let warned = false;
  for (;;) {
    if (fs.existsSync(blob)) return null;
    if (!warned && Date.now() - since > 10_000) {
      // huggingface_hub logs the same every 10 s: say what we wait for, so it can be undone.
      process.emitWarning(`waiting for another process to finish downloading ${blob} (delete ${lockFile} if none is)`);
      warned = true;
    }
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
      return () => fs.rmSync(lockFile, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    if (lockIsStale(lockFile)) fs.rmSync(lockFile, { force: true });
    else await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function lockIsStale(lockFile: string): boolean {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(lockFile, 'utf8'));
  } catch {
    return false; // just released
  }
  // This process never waits on itself (see inFlight), so its own pid means a leftover.
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) {
    try {
      return pid === process.pid || Date.now() - fs.statSync(lockFile).mtimeMs > 10_000; // a pid not yet written
    } catch {
      return false;
    }
  }
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function metadataProblem(meta: FileMetadata, endpoint: string): string | null {
  if (!meta.commit || !COMMIT_HASH.test(meta.commit)) {
    return `no valid X-Repo-Commit header (got ${describe(meta.commit)}): is ${endpoint} a hub?`;
  }
  if (!meta.etag || !isSafeBlobName(meta.etag)) {
    const got = meta.etag && meta.etag.length > MAX_ETAG_LENGTH ? `${meta.etag.length} characters, over ${MAX_ETAG_LENGTH}` : describe(meta.etag);
    return `no usable ETag (got ${got})`;
  }
  if (meta.size === null) return 'no Content-Length / X-Linked-Size';
  return null;
}

function missing(ref: HubFileRef, options: HubDownloadOptions, why: string): null {
  if (options.optional) return null;
  throw new HubError('EntryNotFound', ref, why);
}

/**
 * No answer from the hub (offline mode, network down, hub error): the file from refs/<revision>'s
 * snapshot if cached. An optional file counts as absent when its commit is cached without it
 * (transformers returns None there too); a repo/revision not cached at all is an error.
 */
function fromCache(cache: RepoCache, ref: HubFileRef, options: HubDownloadOptions, cause: NetworkError | HubError | null): string | null {
  const hit = cache.lookup(ref.revision, ref.filename);
  if (hit.file) return hit.file;
  if (hit.missing) return missing(ref, options, 'the cache records that the repo has no such file at this revision');
  if (cause instanceof HubError && ['RepoNotFound', 'GatedRepo', 'Forbidden'].includes(cause.code)) throw cause;
  if (options.optional && hit.commit && cache.hasSnapshot(hit.commit)) return null;
  const where = `in the cache ${cache.root}`;
  if (!cause) {
    throw new HubError('LocalEntryNotFound', ref,
      `not found ${where}, and network access is disabled (localFilesOnly or HF_HUB_OFFLINE=1); download it once online first`);
  }
  const problem = cause instanceof NetworkError ? `the hub could not be reached (${cause.message})` : `the hub failed (${cause.message})`;
  throw new HubError('LocalEntryNotFound', ref, `${problem} and the file is not ${where}; check your connection or HF_ENDPOINT`, { cause });
}
