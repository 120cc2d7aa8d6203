// Resolves files of a model given as a local folder or a hub repo id (transformers' cached_file):
// a folder that exists is used as is; anything else is a repo on the hub, downloaded into (or read
// from) the same cache as Python's huggingface_hub.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isSafeRelativePath, isValidRepoId } from './cache.js';
import { hubDownload } from './download.js';
import { HubError } from './errors.js';

export { HubError, type HubErrorCode } from './errors.js';

export interface PretrainedOptions {
  /** Branch, tag or commit on the hub (default "main"). */
  revision?: string;
  /** Cache folder (default: HF_HUB_CACHE / HF_HOME/hub / ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Hub token (default: HF_TOKEN / the token file of huggingface_hub); false sends none. */
  token?: string | false;
  /** Never touch the network (also HF_HUB_OFFLINE=1). */
  localFilesOnly?: boolean;
  /** A folder inside the repo / directory. */
  subfolder?: string;
}

/**
 * The local path of `filename` in the model `pathOrRepoId` (a folder, or a hub repo id downloaded
 * into the cache). With `optional`, a file the model does not have gives null; otherwise an error
 * that names the model and the file.
 */
export async function resolveFile(
  pathOrRepoId: string,
  filename: string,
  options: PretrainedOptions & { optional?: boolean } = {},
): Promise<string | null> {
  // hf_hub_download joins the subfolder with "/" (it is part of the URL as well as the path).
  const relative = options.subfolder ? `${options.subfolder.replace(/\/+$/, '')}/${filename}` : filename;
  const revision = options.revision ?? 'main';
  if (!isSafeRelativePath(relative)) {
    throw new HubError('InvalidArgument', { repoId: pathOrRepoId, revision, filename: relative },
      'a file name must be a relative path inside the model, without ".." or empty parts');
  }

  if (isDirectory(pathOrRepoId)) {
    const file = path.resolve(pathOrRepoId, ...relative.split('/'));
    if (fs.existsSync(file)) return file;
    if (options.optional) return null;
    throw new Error(`${pathOrRepoId}: the folder has no file named ${relative}`);
  }

  if (!isValidRepoId(pathOrRepoId)) {
    throw new Error(
      `${pathOrRepoId} is neither an existing folder nor a hub repo id ("name" or "org/name": letters, digits, "-", "_", "."; ` +
        `looking for ${relative})`,
    );
  }
  if (!isSafeRelativePath(revision)) {
    throw new HubError('InvalidArgument', { repoId: pathOrRepoId, revision, filename: relative },
      'a revision must be a branch, tag or commit name');
  }
  return hubDownload(pathOrRepoId, relative, { ...options, revision }, process.env);
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
