// The on-disk cache, laid out exactly as huggingface_hub lays it out (file_download.py), so that
// either tool can use what the other downloaded:
//
//   <cacheDir>/models--<org>--<name>/
//     blobs/<etag>                       file contents (etag = git sha1, or sha256 for LFS files)
//     blobs/<etag>.incomplete            a download in progress (resumed with a Range request)
//     refs/<revision>                    the commit hash a branch/tag pointed to, no newline
//     snapshots/<commit>/<path>          relative symlink to ../../blobs/<etag>
//     .no_exist/<commit>/<path>          empty marker: the file is known not to exist at that commit
//   <cacheDir>/.locks/models--<org>--<name>/   download locks
import * as fs from 'node:fs';
import * as path from 'node:path';
import { replaceAtomically, writeFileAtomic } from '../fsutil.js';

export const COMMIT_HASH = /^[0-9a-f]{40}$/; // constants.REGEX_COMMIT_HASH
export const SHA256 = /^[0-9a-f]{64}$/; // constants.REGEX_SHA256: the etag of an LFS file

/** repo_folder_name(): "models--org--name". */
export function repoFolderName(repoId: string): string {
  return ['models', ...repoId.split('/')].join('--');
}

/**
 * validate_repo_id(): "name" or "namespace/name", letters, digits, "-", "_", ".", no "--" or "..",
 * at most 96 characters. Anything else is neither a repo id nor safe as a cache folder name.
 */
export function isValidRepoId(repoId: string): boolean {
  return (
    repoId.length <= 96 &&
    /^(?:[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?\/)?[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?$/.test(repoId) &&
    !repoId.includes('--') &&
    !repoId.includes('..')
  );
}

/** A relative "/"-separated path that stays inside the folder it is joined to. */
export function isSafeRelativePath(p: string): boolean {
  if (!p || p.includes('\\') || p.includes('\0') || p.startsWith('/')) return false;
  return p.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

/**
 * Longest etag used as a file name: the hub's are 40 (git sha1) or 64 (sha256) characters; with
 * ".incomplete" / ".altclip.lock" appended, 200 stays under every file system's 255-byte limit.
 */
export const MAX_ETAG_LENGTH = 200;

/** Blob names come from the server's etag: they must be a single plain file name. */
export function isSafeBlobName(etag: string): boolean {
  return etag.length <= MAX_ETAG_LENGTH && /^[A-Za-z0-9._-]+$/.test(etag) && etag !== '.' && etag !== '..' && !etag.endsWith('.incomplete');
}

export class RepoCache {
  readonly root: string;

  constructor(cacheDir: string, readonly repoId: string) {
    this.root = path.join(cacheDir, repoFolderName(repoId));
  }

  blobPath(etag: string): string {
    return path.join(this.root, 'blobs', etag);
  }

  /** Our download lock; huggingface_hub keeps its own locks in the same folder. */
  lockPath(etag: string): string {
    return path.join(path.dirname(this.root), '.locks', path.basename(this.root), `${etag}.altclip.lock`);
  }

  pointerPath(commit: string, filename: string): string {
    return path.join(this.root, 'snapshots', commit, ...filename.split('/'));
  }

  noExistPath(commit: string, filename: string): string {
    return path.join(this.root, '.no_exist', commit, ...filename.split('/'));
  }

  /** The commit a revision names: itself if it is a commit hash, else the content of refs/<revision>. */
  commitFor(revision: string): string | null {
    if (COMMIT_HASH.test(revision)) return revision;
    try {
      const commit = fs.readFileSync(path.join(this.root, 'refs', ...revision.split('/')), 'utf8').trim();
      return COMMIT_HASH.test(commit) ? commit : null;
    } catch {
      return null;
    }
  }

  /**
   * try_to_load_from_cache(): the snapshot path if the file is there (a dangling link counts as
   * absent), `missing` if a `.no_exist` marker says it does not exist at that commit.
   */
  lookup(revision: string, filename: string): { commit: string | null; file: string | null; missing: boolean } {
    const commit = this.commitFor(revision);
    if (!commit) return { commit, file: null, missing: false };
    const pointer = this.pointerPath(commit, filename);
    if (fs.existsSync(pointer)) return { commit, file: pointer, missing: false };
    return { commit, file: null, missing: fs.existsSync(this.noExistPath(commit, filename)) };
  }

  /** Whether anything of this commit is in the cache (used to tell "not downloaded" from "unknown repo"). */
  hasSnapshot(commit: string): boolean {
    return fs.existsSync(path.join(this.root, 'snapshots', commit)) || fs.existsSync(path.join(this.root, '.no_exist', commit));
  }

  /** _cache_commit_hash_for_specific_revision(): refs/<revision> = commit, written only when it changes. */
  writeRef(revision: string, commit: string): void {
    if (revision === commit) return;
    const ref = path.join(this.root, 'refs', ...revision.split('/'));
    try {
      if (fs.readFileSync(ref, 'utf8') === commit) return;
    } catch {
      // not there yet
    }
    fs.mkdirSync(path.dirname(ref), { recursive: true });
    writeFileAtomic(ref, commit);
  }

  markMissing(commit: string, filename: string): void {
    const marker = this.noExistPath(commit, filename);
    fs.mkdirSync(path.dirname(marker), { recursive: true });
    fs.closeSync(fs.openSync(marker, 'a'));
  }

  /**
   * _create_symlink(): snapshots/<commit>/<file> -> relative path to blobs/<etag>, so the cache
   * folder can be moved as a whole. Where symlinks are not allowed (Windows without developer
   * mode) the blob is copied, as huggingface_hub does.
   */
  link(etag: string, commit: string, filename: string): string {
    const blob = this.blobPath(etag);
    const pointer = this.pointerPath(commit, filename);
    fs.mkdirSync(path.dirname(pointer), { recursive: true });
    // The rename replaces a dangling link left by a deleted blob.
    replaceAtomically(pointer, (tmp) => {
      try {
        fs.symlinkSync(path.relative(path.dirname(pointer), blob), tmp);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
        fs.copyFileSync(blob, tmp);
      }
    });
    return pointer;
  }
}

