// A static file server on 127.0.0.1 for the browser tests and bench/web.ts: GET / HEAD with single
// byte ranges, COOP/COEP headers (cross-origin isolation: WASM threads), no HTTP caching (so the
// request log shows what the page really fetched). Serves files under `root` only.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
  '.json': 'application/json', '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.css': 'text/css',
  '.map': 'application/json',
};

export interface LoggedRequest { method: string; path: string; range: string | null; status: number; bytes: number }

export interface StaticServer {
  url: string;
  requests: LoggedRequest[];
  close(): Promise<void>;
}

/** `mounts` serve other folders at URL prefixes (e.g. {"/dist/web/": a build folder}). */
export async function startStaticServer(root: string, mounts: Record<string, string> = {}): Promise<StaticServer> {
  const requests: LoggedRequest[] = [];
  const server = http.createServer((req, res) => {
    const log: LoggedRequest = { method: req.method ?? '', path: '', range: req.headers.range ?? null, status: 200, bytes: 0 };
    requests.push(log);
    const send = (status: number, headers: Record<string, string | number>, body?: fs.ReadStream | string) => {
      log.status = status;
      res.writeHead(status, {
        'Cross-Origin-Opener-Policy': 'same-origin',
        'Cross-Origin-Embedder-Policy': 'require-corp',
        'Cross-Origin-Resource-Policy': 'same-origin',
        'Cache-Control': 'no-store',
        ...headers,
      });
      if (req.method === 'HEAD' || body === undefined) res.end();
      else if (typeof body === 'string') res.end(body);
      else body.pipe(res);
    };
    let rel: string;
    try {
      rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      return send(400, {}, 'bad path');
    }
    log.path = rel;
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, {}, 'method not allowed');
    const mount = Object.keys(mounts).find((prefix) => rel.startsWith(prefix));
    const base = mount ? path.resolve(mounts[mount]!) : root;
    const file = path.resolve(base, `.${mount ? rel.slice(mount.length - 1) : rel}`);
    if (file !== base && !file.startsWith(base + path.sep)) return send(403, {}, 'forbidden');
    let stat: fs.Stats;
    try {
      stat = fs.statSync(file);
    } catch {
      return send(404, {}, 'not found');
    }
    if (!stat.isFile()) return send(404, {}, 'not found');
    const type = MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
    const m = log.range ? /^bytes=(\d+)-(\d*)$/.exec(log.range) : null;
    if (log.range && !m) return send(416, { 'Content-Range': `bytes */${stat.size}` });
    if (m) {
      const start = Number(m[1]);
      const end = m[2] ? Math.min(Number(m[2]), stat.size - 1) : stat.size - 1;
      if (start > end || start >= stat.size) return send(416, { 'Content-Range': `bytes */${stat.size}` });
      log.bytes = end - start + 1;
      return send(206, { 'Content-Type': type, 'Content-Length': log.bytes, 'Content-Range': `bytes ${start}-${end}/${stat.size}`, 'Accept-Ranges': 'bytes' },
        fs.createReadStream(file, { start, end }));
    }
    log.bytes = stat.size;
    return send(200, { 'Content-Type': type, 'Content-Length': stat.size, 'Accept-Ranges': 'bytes' }, fs.createReadStream(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
