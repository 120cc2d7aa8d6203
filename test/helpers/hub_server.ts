// A local stand-in for huggingface.co speaking the part of its protocol that file downloads use:
//   HEAD/GET /{repo}/resolve/{revision}/{file}
//     regular file: 200, ETag = git blob sha1, X-Repo-Commit, Content-Length (+ body on GET)
//     LFS file:     302 to the "CDN" (a second server, so another host), X-Linked-Etag = sha256,
//                   X-Linked-Size, X-Repo-Commit, and an ETag/Content-Length of the redirect itself
//     errors:       X-Error-Code RepoNotFound (401 anonymous / 404), GatedRepo (401/403),
//                   RevisionNotFound (404), EntryNotFound (404, with X-Repo-Commit)
//     renamed repo: 307 with a relative Location
//   GET {cdn}/lfs/{sha256}?X-Amz-Signature=...  with Range support
// plus fault injection (a body cut or stalled mid-stream, corrupted bytes, a failing or silent hub)
// and a log of every request.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';

export type FileSpec = string | Buffer | { content: string | Buffer; lfs: boolean };

export interface RepoSpec {
  /** commit hash -> files (path -> content). Files ending in .safetensors/.bin/.model are LFS by default. */
  commits: Record<string, Record<string, FileSpec>>;
  /** branch/tag -> commit hash */
  refs: Record<string, string>;
  private?: boolean; // 401 RepoNotFound without the valid token
  gated?: boolean; // 401 GatedRepo without a token, 403 with a wrong one
}

export interface LoggedRequest {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  range?: string;
  authorization?: string;
}

export interface Faults {
  /** Each of the next file bodies stops after cuts.shift() bytes and the connection is dropped. */
  cuts?: number[];
  /** Each of the next file bodies sends stalls.shift() bytes, then nothing more (connection kept open). */
  stalls?: number[];
  /** Bodies are sent with their first byte changed (same length). */
  corrupt?: boolean;
  /** The hub answers every request with this HTTP status (e.g. 500), or never answers ('hang'). */
  hub?: number | 'hang';
  /** The next CDN requests are answered with these HTTP statuses, one each. */
  cdn?: number[];
}

export interface HubServer {
  endpoint: string;
  cdnOrigin: string;
  token: string;
  requests: LoggedRequest[];
  faults: Faults;
  /** Repo ids answered with a relative redirect to another id (a renamed repo). */
  renamed: Record<string, string>;
  close(): Promise<void>;
}

interface StoredFile {
  content: Buffer;
  lfs: boolean;
  etag: string; // git sha1 or sha256
}

export const gitBlobSha1 = (content: Buffer) =>
  createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
export const sha256 = (content: Buffer) => createHash('sha256').update(content).digest('hex');

function store(spec: FileSpec, name: string): StoredFile {
  const { content, lfs } =
    typeof spec === 'string' || Buffer.isBuffer(spec)
      ? { content: Buffer.from(spec), lfs: /\.(safetensors|bin|model)$/.test(name) }
      : { content: Buffer.from(spec.content), lfs: spec.lfs };
  return { content, lfs, etag: lfs ? sha256(content) : gitBlobSha1(content) };
}

export async function startHubServer(repos: Record<string, RepoSpec>): Promise<HubServer> {
  const files = new Map<string, Map<string, Map<string, StoredFile>>>(); // repo -> commit -> path -> file
  const blobs = new Map<string, StoredFile>(); // sha256 -> LFS file
  for (const [repo, spec] of Object.entries(repos)) {
    const commits = new Map<string, Map<string, StoredFile>>();
    for (const [commit, entries] of Object.entries(spec.commits)) {
      const byPath = new Map<string, StoredFile>();
      for (const [name, fileSpec] of Object.entries(entries)) {
        const stored = store(fileSpec, name);
        byPath.set(name, stored);
        if (stored.lfs) blobs.set(stored.etag, stored);
      }
      commits.set(commit, byPath);
    }
    files.set(repo, commits);
  }

  const requests: LoggedRequest[] = [];
  const faults: Faults = {};
  const renamed: Record<string, string> = {};
  const token = 'hf_test_token';
  let cdnOrigin = '';

  const log = (server: 'hub' | 'cdn', req: http.IncomingMessage) =>
    requests.push({ server, method: req.method ?? '', path: req.url ?? '', range: req.headers.range, authorization: req.headers.authorization });

  function sendBody(req: http.IncomingMessage, res: http.ServerResponse, file: StoredFile, headers: Record<string, string>) {
    let body = file.content;
    if (faults.corrupt && body.length > 0) {
      body = Buffer.from(body);
      body[0] ^= 0xff;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    let status = 200;
    if (range) {
      const start = Number(range[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'Content-Range': `bytes */${body.length}` }).end();
        return;
      }
      headers['Content-Range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
      body = body.subarray(start);
      status = 206;
    }
    res.writeHead(status, { ...headers, 'Content-Length': String(body.length), 'Accept-Ranges': 'bytes' });
    if (req.method === 'HEAD') return void res.end();
    const cut = faults.cuts?.shift();
    if (cut !== undefined) {
      res.write(body.subarray(0, Math.min(cut, body.length)), () => res.socket?.destroy());
      return;
    }
    const stall = faults.stalls?.shift();
    if (stall !== undefined) return void res.write(body.subarray(0, Math.min(stall, body.length)));
    res.end(body);
  }

  function error(res: http.ServerResponse, status: number, code: string, message: string, extra: Record<string, string> = {}) {
    res.writeHead(status, { 'X-Error-Code': code, 'X-Error-Message': message, 'Content-Type': 'application/json', ...extra });
    res.end(JSON.stringify({ error: message }));
  }

  const hub = http.createServer((req, res) => {
    log('hub', req);
    if (faults.hub === 'hang') return;
    if (faults.hub) return error(res, faults.hub, 'ServerError', 'Internal Error');
    const url = new URL(req.url ?? '/', 'http://hub');
    const match = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!match || (req.method !== 'GET' && req.method !== 'HEAD')) return error(res, 404, 'NotFound', 'no such route');
    const repo = match[1];
    const revision = decodeURIComponent(match[2]);
    const name = match[3].split('/').map(decodeURIComponent).join('/');
    if (renamed[repo]) {
      res.writeHead(307, { Location: `/${renamed[repo]}/resolve/${match[2]}/${match[3]}` }).end();
      return;
    }
    const spec = repos[repo];
    const auth = req.headers.authorization;
    if (!spec) return auth ? error(res, 404, 'RepoNotFound', 'Repository not found') : error(res, 401, 'RepoNotFound', 'Invalid username or password.');
    if (spec.private && auth !== `Bearer ${token}`) return error(res, 401, 'RepoNotFound', 'Invalid username or password.');
    if (spec.gated && auth !== `Bearer ${token}`) {
      return auth ? error(res, 403, 'GatedRepo', 'Access to this model is restricted.') : error(res, 401, 'GatedRepo', 'Access to this model is restricted. You must be authenticated.');
    }
    const commit = spec.refs[revision] ?? (spec.commits[revision] ? revision : undefined);
    if (!commit) return error(res, 404, 'RevisionNotFound', 'Invalid rev id: ' + revision);
    const file = files.get(repo)!.get(commit)!.get(name);
    if (!file) return error(res, 404, 'EntryNotFound', 'Entry not found', { 'X-Repo-Commit': commit });
    if (file.lfs) {
      const redirect = Buffer.from(`Found. Redirecting to ${cdnOrigin}/lfs/${file.etag}`);
      res.writeHead(302, {
        Location: `${cdnOrigin}/lfs/${file.etag}?X-Amz-Signature=sig`,
        'X-Repo-Commit': commit,
        'X-Linked-Etag': `"${file.etag}"`,
        'X-Linked-Size': String(file.content.length),
        ETag: `"${gitBlobSha1(redirect)}"`,
        'Content-Length': String(redirect.length),
      });
      return void res.end(req.method === 'HEAD' ? undefined : redirect);
    }
    sendBody(req, res, file, { 'X-Repo-Commit': commit, ETag: `"${file.etag}"`, 'Content-Type': 'text/plain' });
  });

  const cdn = http.createServer((req, res) => {
    log('cdn', req);
    const status = faults.cdn?.shift();
    if (status) return error(res, status, 'CdnError', `status ${status}`);
    const url = new URL(req.url ?? '/', 'http://cdn');
    const blob = blobs.get(url.pathname.replace(/^\/lfs\//, ''));
    if (!blob || url.searchParams.get('X-Amz-Signature') !== 'sig') return error(res, 403, 'AccessDenied', 'bad signature');
    sendBody(req, res, blob, { 'Content-Type': 'application/octet-stream', ETag: `"${blob.etag}"` });
  });

  for (const server of [hub, cdn]) {
    server.requestTimeout = 5000;
    server.headersTimeout = 5000;
    server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  }
  const origin = (server: http.Server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  cdnOrigin = origin(cdn);

  return {
    endpoint: origin(hub),
    cdnOrigin,
    token,
    requests,
    faults,
    renamed,
    async close() {
      for (const server of [hub, cdn]) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  };
}
