// Where the cache lives, which endpoint and token to use, whether the network may be used: the same
// variables and defaults as huggingface_hub's constants.py / utils/_auth.py, read from an explicit
// environment object on every call (so nothing is frozen at import time).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export type Env = Record<string, string | undefined>;

export interface HubSettings {
  cacheDir: string; // absolute
  endpoint: string; // no trailing slash
  token: string | null;
  offline: boolean;
  etagTimeoutMs: number;
  downloadTimeoutMs: number;
  /** Where download progress bars go: stderr when it is a terminal, else none (quiet). */
  progressStream: NodeJS.WritableStream | null;
}

// constants.ENV_VARS_TRUE_VALUES
const isTrue = (value: string | undefined) => ['1', 'ON', 'YES', 'TRUE'].includes((value ?? '').toUpperCase());

function expandUser(p: string, env: Env): string {
  const home = env.HOME || os.homedir();
  return p === '~' ? home : p.startsWith('~/') ? path.join(home, p.slice(2)) : p;
}

/** HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(env: Env): string {
  if (env.HF_HOME) return expandUser(env.HF_HOME, env);
  const xdg = env.XDG_CACHE_HOME || path.join(env.HOME || os.homedir(), '.cache');
  return path.join(expandUser(xdg, env), 'huggingface');
}

/** HF_HUB_CACHE, else the legacy HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub. */
export function defaultCacheDir(env: Env): string {
  const dir = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  return dir ? expandUser(dir, env) : path.join(hfHome(env), 'hub');
}

/**
 * get_token(): HF_TOKEN (or the legacy HUGGING_FACE_HUB_TOKEN), else the token file written by
 * `huggingface-cli login` (HF_TOKEN_PATH, default $HF_HOME/token). Blank values count as none.
 */
export function implicitToken(env: Env): string | null {
  const fromEnv = (env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || '').trim();
  if (fromEnv) return fromEnv;
  const tokenPath = env.HF_TOKEN_PATH ? expandUser(env.HF_TOKEN_PATH, env) : path.join(hfHome(env), 'token');
  try {
    return fs.readFileSync(tokenPath, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

export function hubSettings(
  options: { cacheDir?: string; token?: string | false; localFilesOnly?: boolean },
  env: Env,
): HubSettings {
  let token: string | null;
  if (options.token === false) token = null;
  else if (typeof options.token === 'string' && options.token.trim()) token = options.token.trim();
  else token = isTrue(env.HF_HUB_DISABLE_IMPLICIT_TOKEN) ? null : implicitToken(env);
  const seconds = (value: string | undefined, fallback: number) => {
    const n = Number(value);
    return (value && Number.isFinite(n) && n > 0 ? n : fallback) * 1000;
  };
  return {
    cacheDir: path.resolve(options.cacheDir ? expandUser(options.cacheDir, env) : defaultCacheDir(env)),
    endpoint: (env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, ''),
    token,
    // HF_HUB_OFFLINE; transformers also honours TRANSFORMERS_OFFLINE.
    offline: Boolean(options.localFilesOnly) || isTrue(env.HF_HUB_OFFLINE) || isTrue(env.TRANSFORMERS_OFFLINE),
    etagTimeoutMs: seconds(env.HF_HUB_ETAG_TIMEOUT, 10),
    downloadTimeoutMs: seconds(env.HF_HUB_DOWNLOAD_TIMEOUT, 10),
    progressStream: process.stderr.isTTY && !isTrue(env.HF_HUB_DISABLE_PROGRESS_BARS) ? process.stderr : null,
  };
}
