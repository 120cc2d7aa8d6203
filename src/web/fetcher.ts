// Where the page's bytes come from: a model's base URL (the HF hub's resolve/<revision>/ URLs, or
// any static server), by whole file or HTTP Range, through the Cache API when the page has it.
// Cached entries are keyed by URL (and range / tensor): a hub URL at a commit never changes; for a
// moving base URL, clearCache() or `cache: false`.

export const CACHE_NAME = 'altclip-v1';

export interface FetcherOptions {
  /** Use the Cache API (default true where the page has it: secure contexts). */
  cache?: boolean;
  /** Headers sent with every request (e.g. an Authorization for private hub repos). */
  headers?: Record<string, string>;
}

/** A file the model does not have (404 / 410). */
export class NotFound extends Error {}

export class Fetcher {
  private cachePromise: Promise<Cache | null>;

  constructor(readonly base: string, private readonly options: FetcherOptions = {}) {
    const useCache = options.cache !== false && typeof caches !== 'undefined';
    this.cachePromise = useCache ? caches.open(CACHE_NAME).catch(() => null) : Promise.resolve(null);
  }

  url(file: string): string {
    return new URL(file, this.base).href;
  }

  private async cached(key: string): Promise<Response | undefined> {
    const cache = await this.cachePromise;
    return cache ? cache.match(key) : undefined;
  }

  private async store(key: string, body: Uint8Array | ArrayBuffer, headers: Record<string, string> = {}): Promise<void> {
    const cache = await this.cachePromise;
    if (!cache) return;
    try {
      await cache.put(key, new Response(body as BodyInit, { headers }));
    } catch {
      // quota exceeded and the like: the page works without the cache
    }
  }

  private async request(file: string, range?: [number, number]): Promise<Response> {
    const url = this.url(file);
    const headers: Record<string, string> = { ...this.options.headers };
    if (range) headers.Range = `bytes=${range[0]}-${range[1] - 1}`;
    let res: Response;
    try {
      res = await fetch(url, { headers });
    } catch (e) {
      throw new Error(`${url}: cannot fetch (${(e as Error).message})`);
    }
    if (res.status === 404 || res.status === 410) throw new NotFound(`${url}: not found (HTTP ${res.status})`);
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
    if (range && res.status !== 206) throw new Error(`${url}: the server ignored the Range request (HTTP ${res.status}); it must support byte ranges`);
    return res;
  }

  /** A whole (small) file, or null when `optional` and the model has no such file. */
  async file(file: string, optional = false): Promise<Uint8Array | null> {
    const key = this.url(file);
    const hit = await this.cached(key);
    if (hit) return new Uint8Array(await hit.arrayBuffer());
    try {
      const bytes = new Uint8Array(await (await this.request(file)).arrayBuffer());
      await this.store(key, bytes);
      return bytes;
    } catch (e) {
      if (optional && e instanceof NotFound) return null;
      throw e;
    }
  }

  /** The size of a (large) file and its first `length` bytes; null when the model has no such file. */
  async head(file: string, length: number): Promise<{ size: number; bytes: Uint8Array } | null> {
    const key = `${this.url(file)}?altclip-head=${length}`;
    const hit = await this.cached(key);
    if (hit) return { size: Number(hit.headers.get('x-altclip-size')), bytes: new Uint8Array(await hit.arrayBuffer()) };
    let res: Response;
    try {
      res = await this.request(file, [0, length]);
    } catch (e) {
      if (e instanceof NotFound) return null;
      throw e;
    }
    // Content-Range: bytes 0-262143/3546892345
    const total = /\/(\d+)\s*$/.exec(res.headers.get('Content-Range') ?? '')?.[1];
    if (!total) throw new Error(`${this.url(file)}: no file size in the Range response (Content-Range: ${res.headers.get('Content-Range')})`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    await this.store(key, bytes, { 'x-altclip-size': total });
    return { size: Number(total), bytes };
  }

  /** Bytes [start, end) of a file (cached by range). */
  async range(file: string, start: number, end: number): Promise<Uint8Array> {
    const key = `${this.url(file)}?altclip-range=${start}-${end}`;
    const hit = await this.cached(key);
    if (hit) return new Uint8Array(await hit.arrayBuffer());
    const bytes = new Uint8Array(await (await this.request(file, [start, end])).arrayBuffer());
    if (bytes.length !== end - start) throw new Error(`${this.url(file)}: asked for bytes ${start}..${end}, got ${bytes.length} bytes`);
    await this.store(key, bytes);
    return bytes;
  }

  /**
   * Bytes [start, end) of a file as a stream of chunks (one Range request); `onChunk` gets each
   * chunk with its offset in the file. Nothing is cached here (the caller caches per tensor).
   */
  async stream(file: string, start: number, end: number, onChunk: (offset: number, chunk: Uint8Array) => void): Promise<void> {
    const res = await this.request(file, [start, end]);
    const reader = res.body!.getReader();
    let pos = start;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (pos + value.length > end) throw new Error(`${this.url(file)}: the server sent more than bytes ${start}..${end}`);
      onChunk(pos, value);
      pos += value.length;
    }
    if (pos !== end) throw new Error(`${this.url(file)}: the response ended at byte ${pos} of ${start}..${end} (connection lost?)`);
  }

  /** A cached tensor's bytes (`kind` tells apart the checkpoint's bytes and derived ones). */
  async cachedTensor(file: string, kind: string, name: string): Promise<Uint8Array | null> {
    const hit = await this.cached(this.tensorKey(file, kind, name));
    return hit ? new Uint8Array(await hit.arrayBuffer()) : null;
  }

  async storeTensor(file: string, kind: string, name: string, bytes: Uint8Array): Promise<void> {
    await this.store(this.tensorKey(file, kind, name), bytes);
  }

  private tensorKey(file: string, kind: string, name: string): string {
    return `${this.url(file)}?altclip-tensor=${encodeURIComponent(name)}&kind=${kind}`;
  }
}

/** Deletes everything altclip cached in this origin. */
export async function clearCache(): Promise<boolean> {
  return typeof caches === 'undefined' ? false : caches.delete(CACHE_NAME);
}
