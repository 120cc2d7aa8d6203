// Resolves files of a model given as a local folder or a hub repo id.
// (Interim: local folders only. The hub client and cache replace the body of resolveFile.)
import * as fs from 'node:fs';
import * as path from 'node:path';

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
  const dir = options.subfolder ? path.join(pathOrRepoId, options.subfolder) : pathOrRepoId;
  const file = path.join(dir, filename);
  if (fs.existsSync(file)) return path.resolve(file);
  if (options.optional) return null;
  throw new Error(`${pathOrRepoId}: no file named ${filename}${fs.existsSync(dir) ? '' : ' (the folder does not exist)'}`);
}
