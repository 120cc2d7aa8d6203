// The two requests huggingface_hub makes for a file: a HEAD on /{repo}/resolve/{revision}/{file}
// for its metadata (get_hf_file_metadata) and a GET of the file's location into
// blobs/<etag>.incomplete (http_get), resumed with a Range request and retried when the connection
// drops mid-stream.
import * as fs from 'node:fs';
import { createHash, type Hash } from 'node:crypto';
import cliProgress from 'cli-progress';
import { errorForResponse, HubError, type HubFileRef } from './errors.js';
import type { HubSettings } from './settings.js';

/** The connection failed (refused, reset, timed out): the caller may fall back to the cache. */
export class NetworkError extends Error {
  override name = 'NetworkError';
}

export interface FileMetadata {
  commit: string | null; // X-Repo-Commit
  etag: string | null; // X-Linked-Etag (LFS) or ETag, normalised
  size: number | null; // X-Linked-Size (LFS) or Content-Length
  location: string; // Location of an absolute redirect (the CDN), else the URL that answered
}

const MAX_REDIRECTS = 10;
export const PROGRESS_MIN_BYTES = 10 * 1024 * 1024; // small files (configs, tokenizers) download silently
const GET_RETRIES = 5; // like http_get's _nb_retries: attempts in a row that bring no byte

/** hf_hub_url(): the revision is quoted as one path segment, the file name keeps its slashes. */
export function resolveUrl(endpoint: string, ref: HubFileRef): string {
  const file = ref.filename.split('/').map(encodeURIComponent).join('/');
  return `${endpoint}/${ref.repoId}/resolve/${encodeURIComponent(ref.revision)}/${file}`;
}

export function requestHeaders(settings: HubSettings): Record<string, string> {
  const headers: Record<string, string> = {
    'user-agent': `altclip/0.1.0; node/${process.versions.node}`,
    'accept-encoding': 'identity', // the real size, never a compressed body
  };
  if (settings.token) headers.authorization = `Bearer ${settings.token}`;
  return headers;
}

async function send(url: string, init: RequestInit, what: string): Promise<Response> {
  try {
    return await fetch(url, { ...init, redirect: 'manual' });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const reason = cause?.code ?? cause?.message ?? (error as Error).message;
    throw new NetworkError(`${what} ${url} failed: ${reason}`, { cause: error });
  }
}

// _normalize_etag(): drop the weak marker and the quotes.
const normalizeEtag = (etag: string | null) => (etag ? etag.replace(/^W\//, '').replace(/^"(.*)"$/, '$1') : null);

function intOrNull(value: string | null): number | null {
  return value !== null && /^\d+$/.test(value.trim()) ? Number(value) : null;
}

/**
 * get_hf_file_metadata(): HEAD without following absolute redirects (their Location is where the
 * bytes are, e.g. the CDN), but following relative ones (a renamed repo).
 */
export async function fetchMetadata(url: string, settings: HubSettings, ref: HubFileRef): Promise<FileMetadata> {
  const headers = requestHeaders(settings);
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await send(current, { method: 'HEAD', headers, signal: AbortSignal.timeout(settings.etagTimeoutMs) }, 'HEAD');
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location?.startsWith('/') && !location.startsWith('//')) {
      current = new URL(location, current).href;
      continue;
    }
    if (res.status >= 400) {
      throw errorForResponse(res.status, res.headers, ref, { endpoint: settings.endpoint, sentToken: Boolean(settings.token), url: current });
    }
    return {
      commit: res.headers.get('x-repo-commit'),
      etag: normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag')),
      size: intOrNull(res.headers.get('x-linked-size') ?? res.headers.get('content-length')),
      location: location ? new URL(location, current).href : current,
    };
  }
  throw new HubError('BadResponse', ref, `more than ${MAX_REDIRECTS} redirects from ${url}`);
}

/** A download in progress: the open `.incomplete` file, how much of it is written, its digest so far. */
interface Partial {
  file: fs.promises.FileHandle;
  written: number;
  hash: Hash | null;
}

async function restart(part: Partial): Promise<void> {
  await part.file.truncate(0);
  part.written = 0;
  if (part.hash) part.hash = createHash('sha256');
}

/**
 * GET `url` into `incomplete`, continuing what is already there (Range: bytes=<size>-), and check
 * the result: exactly `size` bytes and, when `sha256` is given, that digest. On a digest mismatch
 * the partial file is deleted (resuming it would only repeat the error); on a dropped connection it
 * is kept for the next attempt. Returns only once the file is complete and verified.
 */
export async function downloadToFile(
  url: string,
  incomplete: string,
  expected: { size: number; sha256: string | null },
  settings: HubSettings,
  ref: HubFileRef,
): Promise<void> {
  const part: Partial = {
    file: await fs.promises.open(incomplete, fs.constants.O_RDWR | fs.constants.O_CREAT),
    written: 0,
    hash: expected.sha256 ? createHash('sha256') : null,
  };
  let bar: cliProgress.SingleBar | null = null;
  let failure: string | null = null;
  try {
    part.written = (await part.file.stat()).size;
    if (part.written > expected.size) await restart(part);
    if (part.hash && part.written > 0) await hashPrefix(part.file, part.written, part.hash);
    if (settings.progressStream && expected.size >= PROGRESS_MIN_BYTES) {
      bar = new cliProgress.SingleBar(
        { format: `${ref.filename} [{bar}] {percentage}% | {value}/{total} bytes | ETA {eta_formatted}`, stream: settings.progressStream, hideCursor: true },
        cliProgress.Presets.shades_classic,
      );
      bar.start(expected.size, part.written);
    }
    // Like http_get, retry a dropped connection from where it stopped; a connection that made
    // progress resets the count, so only GET_RETRIES failures in a row give up.
    for (let failures = 0; part.written < expected.size; ) {
      const before = part.written;
      try {
        await getOnce(url, part, expected.size, settings, ref, bar);
        if (part.written < expected.size) {
          throw new NetworkError(`the server ended the body after ${part.written} of ${expected.size} bytes`);
        }
      } catch (error) {
        if (!(error instanceof NetworkError)) throw error;
        failures = part.written > before ? 0 : failures + 1;
        if (failures >= GET_RETRIES) {
          throw new HubError('DownloadFailed', ref,
            `download interrupted at ${part.written} of ${expected.size} bytes (${error.message}); run again to resume`, { cause: error });
        }
        if (failures > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(25 * 2 ** failures, 2000)));
      }
    }
    const size = (await part.file.stat()).size;
    const actual = part.hash?.digest('hex');
    if (size !== expected.size) {
      failure = `consistency check failed: the file should be ${expected.size} bytes but is ${size}`;
    } else if (actual !== undefined && actual !== expected.sha256) {
      failure = `corrupted download: its sha256 is ${actual} but the hub announced ${expected.sha256}`;
    }
  } finally {
    bar?.stop();
    await part.file.close();
  }
  if (failure) {
    fs.rmSync(incomplete, { force: true });
    throw new HubError('DownloadFailed', ref, `${failure}; the download was deleted and nothing was cached`);
  }
}

async function hashPrefix(file: fs.promises.FileHandle, length: number, hash: Hash): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(length, 1 << 22));
  for (let pos = 0; pos < length; ) {
    const { bytesRead } = await file.read(buf, 0, Math.min(buf.length, length - pos), pos);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
}

const originOf = (url: string) => new URL(url).origin;

/**
 * One GET from where `part` stops, following redirects (the CDN). The token goes only to the
 * endpoint's own host: a signed CDN URL must not receive it (huggingface_hub drops it likewise).
 */
async function getOnce(
  url: string,
  part: Partial,
  size: number,
  settings: HubSettings,
  ref: HubFileRef,
  bar: cliProgress.SingleBar | null,
): Promise<void> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), settings.downloadTimeoutMs); // refreshed by each chunk
  let current = url;
  let res: Response | null = null;
  try {
    for (let hop = 0; hop <= MAX_REDIRECTS && !res; hop++) {
      const headers = requestHeaders(settings);
      if (originOf(current) !== originOf(settings.endpoint)) delete headers.authorization;
      if (part.written > 0) headers.range = `bytes=${part.written}-`;
      const answer = await send(current, { headers, signal: controller.signal }, 'GET');
      const location = answer.headers.get('location');
      if (answer.status >= 300 && answer.status < 400 && location) {
        await answer.body?.cancel();
        current = new URL(location, current).href;
      } else {
        res = answer;
      }
    }
    if (!res) throw new HubError('BadResponse', ref, `more than ${MAX_REDIRECTS} redirects from ${url}`);
    if (res.status === 416 && part.written > 0) {
      // Range not satisfiable: the partial file cannot belong to this blob; start over.
      await res.body?.cancel();
      await restart(part);
      throw new NetworkError(`the server refused to resume (HTTP 416) at ${current}`);
    }
    if (res.status >= 400) {
      await res.body?.cancel();
      // A 5xx from the CDN is usually transient: retried like a dropped connection.
      if (res.status >= 500) throw new NetworkError(`HTTP ${res.status} from ${current}`);
      throw errorForResponse(res.status, res.headers, ref, { endpoint: settings.endpoint, sentToken: Boolean(settings.token), url: current });
    }
    if (res.status === 206) {
      const start = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1];
      if (Number(start) !== part.written) {
        await res.body?.cancel();
        throw new HubError('BadResponse', ref, `asked for bytes ${part.written}- but got "${res.headers.get('content-range')}" from ${current}`);
      }
    } else if (part.written > 0) {
      await restart(part); // the server ignored the Range header and sends the whole file
      bar?.update(0);
    }
    if (!res.body) return;
    // One write is in flight while the next chunk is read (a blocking write per chunk halves the
    // throughput); all that was received is on disk before returning or throwing, so a resume
    // starts exactly where this stopped.
    const reader = res.body.getReader();
    let pending: Promise<unknown> = Promise.resolve();
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (error) {
          const reason = controller.signal.aborted ? `no data for ${settings.downloadTimeoutMs / 1000}s` : (error as Error).message;
          throw new NetworkError(`connection lost while downloading ${current}: ${reason}`, { cause: error });
        }
        if (chunk.done) return;
        timer.refresh();
        const data = chunk.value;
        await pending;
        if (part.written + data.length > size) {
          await reader.cancel();
          await restart(part);
          throw new HubError('DownloadFailed', ref, `the server sent more than the announced ${size} bytes`);
        }
        pending = part.file.write(data, 0, data.length, part.written);
        part.hash?.update(data);
        part.written += data.length;
        bar?.update(part.written);
      }
    } finally {
      await pending;
    }
  } finally {
    clearTimeout(timer);
  }
}
