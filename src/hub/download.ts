// hf_hub_download(): one file of a hub repo, from the cache when it is there, else downloaded into
// it. Follows huggingface_hub's _hf_hub_download_to_cache_dir step by step.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { COMMIT_HASH, SHA256, RepoCache, isSafeBlobName } from './cache.js';
import { HubError, type HubFileRef } from './errors.js';
import { downloadToFile, fetchMetadata, NetworkError, resolveUrl } from './http.js';
import { hubSettings, type Env, type HubSettings } from './settings.js';

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

  const { commit, etag, size } = meta;
  if (!commit || !COMMIT_HASH.test(commit)) {
    throw new HubError('BadResponse', ref,
      `the server at ${settings.endpoint} sent no valid X-Repo-Commit header (got ${JSON.stringify(commit)}); is HF_ENDPOINT a hub?`);
  }
  if (!etag || !isSafeBlobName(etag)) {
    throw new HubError('BadResponse', ref, `the server sent no usable ETag (got ${JSON.stringify(etag)})`);
  }
  if (size === null) throw new HubError('BadResponse', ref, 'the server sent no Content-Length / X-Linked-Size');

  fs.mkdirSync(path.join(cache.root, 'blobs'), { recursive: true });
  cache.writeRef(revision, commit);
  resolvedCommits.set(memoKey, commit);
  const pointer = cache.pointerPath(commit, filename);
  if (fs.existsSync(pointer)) return pointer;

  const blob = cache.blobPath(etag);
  if (!fs.existsSync(blob)) await downloadBlobOnce(blob, meta.location, size, SHA256.test(etag) ? etag : null, settings, ref);
  return cache.link(etag, commit, filename);
}

async function downloadBlobOnce(
  blob: string,
  url: string,
  size: number,
  sha256: string | null,
  settings: HubSettings,
  ref: HubFileRef,
): Promise<void> {
  let job = inFlight.get(blob);
  if (!job) {
    job = (async () => {
      const incomplete = `${blob}.incomplete`;
      await downloadToFile(url, incomplete, { size, sha256 }, settings, ref);
      fs.renameSync(incomplete, blob); // verified: only now does the blob exist under its name
    })().finally(() => inFlight.delete(blob));
    inFlight.set(blob, job);
  }
  await job;
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
  throw new HubError('LocalEntryNotFound', ref,
    `the hub could not be reached (${cause.message}) and the file is not ${where}; check your connection or HF_ENDPOINT`, { cause });
}
