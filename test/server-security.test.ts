// `altclip serve` as an adversarial client meets it (issue 23): real server processes on loopback with
// the fixture checkpoint, driven over raw sockets (hand-written request lines, so that no client library
// normalises a target). Classes covered, each as a table:
// - authorization on the routed request: every spelling of a protected target (%xx in any segment, //,
//   /./, /../, trailing /, ;params, queries, absolute-form targets with any host, upper case) is never
//   2xx without the key, and the spellings the router does route are 200 with it;
// - Host allowlist (loopback names, --host, --allowed-host served; others 421) and CORS (--cors-origin);
// - /v1/images/<id> serves the indexed file or nothing (symlink, FIFO, other content, removed);
// - errors: JSON depth, fastify's and node's own errors in the JSON shape with bounded echoes;
// - time bounds (request, headers, keep-alive, --max-connections, --url-timeout) with real slow peers;
// - honest drain: 16 requests sent before SIGTERM all get 200, exit 0, several runs and signal delays;
// - serve --db without --model serves the index's model; metrics count rejections.
// Embeddings are compared with the Python reference's goldens (tiny-altclip.safetensors, transformers
// 4.40.2; see test/fixtures/README.md).
import * as assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ImageIndex } from '../src/search/index.js';
import { isPrivateAddress } from '../src/server/index.js';
import { MAIN, ROOT, type Served, startServe } from './helpers/cli.js';
import { FIXTURES, Goldens } from './helpers/goldens.js';

const MODEL = path.join(FIXTURES, 'models', 'tiny-altclip');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-security-'));
const images = path.join(tmp, 'images');
const db = path.join(tmp, 'index.db');
const g = new Goldens(path.join(FIXTURES, 'goldens', 'tiny-altclip.safetensors'));
const KEY = 's3cret';
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const children: ChildProcessWithoutNullStreams[] = [];

async function serve(args: string[]): Promise<Served> {
  const served = await startServe(['--port', '0', '--threads', '1', ...args], path.join(tmp, 'cache'));
  children.push(served.child);
  return served;
}

interface Answer { status: number; headers: Record<string, string>; body: string; raw: string }

function parse(raw: string): Answer {
  const end = raw.indexOf('\r\n\r\n');
  const head = (end < 0 ? raw : raw.slice(0, end)).split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status, headers, body: end < 0 ? '' : raw.slice(end + 4), raw };
}

/** Writes `text` on a fresh connection and reads until the server closes it (at most `limitMs`). */
function raw(port: number, text: string | Buffer, limitMs = 20_000): Promise<Answer> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), limitMs);
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(parse(Buffer.concat(chunks).toString('utf8')));
    });
    socket.write(text);
  });
}

function request(method: string, target: string, opts: { host?: string; key?: string; body?: string; headers?: string[] } = {}): string {
  const lines = [`${method} ${target} HTTP/1.1`];
  if (opts.host !== undefined) lines.push(`Host: ${opts.host}`);
  if (opts.key) lines.push(`Authorization: Bearer ${opts.key}`);
  if (opts.body !== undefined) lines.push('Content-Type: application/json', `Content-Length: ${Buffer.byteLength(opts.body)}`);
  lines.push(...(opts.headers ?? []), 'Connection: close');
  return `${lines.join('\r\n')}\r\n\r\n${opts.body ?? ''}`;
}

/** The JSON error shape, and no more than ~100 characters of anything the client sent. */
function assertErrorShape(a: Answer, status: number, what: string): Json {
  assert.equal(a.status, status, `${what}: status (${a.raw.slice(0, 300)})`);
  assert.match(a.headers['content-type'] ?? '', /^application\/json/, `${what}: content-type`);
  const body = JSON.parse(a.body) as Json;
  assert.deepEqual(Object.keys(body), ['error'], what);
  assert.equal(typeof body.error.message, 'string', what);
  assert.equal(typeof body.error.type, 'string', what);
  assert.ok(body.error.message.length < 400, `${what}: message of ${body.error.message.length} characters`);
  return body;
}

function textGolden(): Float32Array {
  return g.get('single/outputs/text_embeds').data as Float32Array;
}

function assertGoldenEmbedding(body: string, what: string): void {
  const row = (JSON.parse(body) as Json).data[0].embedding as number[];
  const golden = textGolden();
  const d = Math.max(...row.map((x, j) => Math.abs(x - golden[j]!)));
  assert.ok(d <= 1e-5, `${what}: max diff ${d}`);
}

const CAT = JSON.stringify({ input: 'a photo of a cat', modality: 'text' });

before(async () => {
  fs.cpSync(path.join(FIXTURES, 'images'), images, { recursive: true });
  const index = await ImageIndex.open(db, { model: MODEL, threads: 1 });
  await index.sync([images]);
  await index.close();
});
after(() => {
  for (const c of children) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('serve --db (no --model), with --api-key', () => {
  let s: Served;
  before(async () => {
    s = await serve(['--db', db, '--api-key', KEY, '--body-limit', '300000']);
  });
  after(() => s.child.kill('SIGKILL'));

  it('serves the model recorded in the index, not BAAI/AltCLIP', async () => {
    const a = await raw(s.port, request('GET', '/v1/models', { host: '127.0.0.1', key: KEY }));
    assert.equal(a.status, 200, a.raw);
    assert.equal((JSON.parse(a.body) as Json).data[0].id, fs.realpathSync(MODEL));
    const e = await raw(s.port, request('POST', '/v1/embeddings', { host: 'localhost', key: KEY, body: CAT }));
    assert.equal(e.status, 200, e.raw);
    assertGoldenEmbedding(e.body, 'embedding from the index model');
  });

  it('spelling table: never 2xx without the key; every spelling the router runs is 200 with it', async () => {
    const search = await raw(s.port, request('GET', '/v1/search?q=cat&k=1', { host: '127.0.0.1', key: KEY }));
    assert.equal(search.status, 200, search.raw);
    const id = (JSON.parse(search.body) as Json).results[0].id as string;
    const routes: { method: string; path: string; body?: string }[] = [
      { method: 'GET', path: '/v1/models' },
      { method: 'GET', path: '/metrics' },
      { method: 'GET', path: '/v1/search', body: undefined },
      { method: 'GET', path: `/v1/images/${id}` },
      { method: 'POST', path: '/v1/embeddings', body: CAT },
    ];
    const hex = (c: string) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
    const HEX = (c: string) => hex(c).toUpperCase();
    let routed = 0;
    let cases = 0;
    for (const route of routes) {
      const query = route.path === '/v1/search' ? 'q=cat&k=1' : '';
      const segments = route.path.split('/').slice(1);
      const spellings = new Set<string>([route.path]);
      // %xx of each character in each segment, lower- and upper-case hex; the whole segment encoded
      segments.forEach((seg, i) => {
        for (let j = 0; j < seg.length; j++) {
          for (const enc of [hex, HEX]) {
            const s2 = [...segments];
            s2[i] = seg.slice(0, j) + enc(seg[j]!) + seg.slice(j + 1);
            spellings.add(`/${s2.join('/')}`);
          }
        }
        const s3 = [...segments];
        s3[i] = [...seg].map(hex).join('');
        spellings.add(`/${s3.join('/')}`);
      });
      for (const p of [...spellings].slice(0, 4)) {
        spellings.add(`/${p}`); // //v1/...
        spellings.add(p.replace(/^\/([^/]+)/, '/$1/')); // /v1//...
        spellings.add(`/.${p}`); // /./v1/...
        spellings.add(`/x/..${p}`); // /x/../v1/...
        spellings.add(`${p}/`); // trailing /
        spellings.add(`${p};a=b`);
        spellings.add(p.toUpperCase());
        spellings.add(p.replace(/\//g, '%2f').replace(/^%2f/, '/'));
        spellings.add(`/%2e${p}`);
      }
      const targets: string[] = [];
      const schemes = ['http', 'HTTP', 'https', 'ws', 'Http'];
      const authorities = ['x', 'evil.example:1', '127.0.0.1', '[::1]:9', `user:${KEY}@127.0.0.1`];
      [...spellings].forEach((p, n) => {
        const withQuery = query ? `${p}?${query}` : p;
        targets.push(withQuery);
        if (n % 4 !== 0) return; // the other forms on every 4th spelling (the table stays ~1000 requests)
        targets.push(`${p}?${query ? `${query}&` : ''}x=%zz`, `${p}?${query ? `${query}&` : ''}authorization=Bearer%20${KEY}`);
        if (query) targets.push(`${p}?k=1&q=cat#frag`);
        authorities.forEach((authority, i) => targets.push(`${schemes[(i + n) % schemes.length]}://${authority}${withQuery}`));
      });
      for (const target of targets) {
        cases++;
        const opts = { host: '127.0.0.1', body: route.body };
        const without = await raw(s.port, request(route.method, target, opts));
        const withKey = await raw(s.port, request(route.method, target, { ...opts, key: KEY }));
        const what = `${route.method} ${target}`;
        assert.ok(without.status >= 400 && without.status < 500, `${what} without the key: ${without.status}`);
        assert.ok([400, 401, 404, 414].includes(without.status), `${what} without the key: ${without.status}`);
        assertErrorShape(without, without.status, `${what} without the key`);
        assert.ok([200, 400, 404, 414].includes(withKey.status), `${what} with the key: ${withKey.status} ${withKey.body.slice(0, 200)}`);
        if (withKey.status === 200) {
          routed++;
          assert.equal(without.status, 401, `${what} runs a handler with the key, so without it: 401`);
        } else assertErrorShape(withKey, withKey.status, `${what} with the key`);
      }
      // The spellings that bypassed the string check of issue 23 do reach the handler here.
      for (const target of [route.path.replace('/v', '/%76'), `http://x${route.path}`, `HTTP://EVIL:1${route.path}`]) {
        const t = query ? `${target}?${query}` : target;
        const a = await raw(s.port, request(route.method, t, { host: '127.0.0.1', body: route.body, key: KEY }));
        assert.equal(a.status, 200, `${route.method} ${t} with the key: ${a.raw.slice(0, 200)}`);
      }
    }
    console.log(`spelling table: ${cases} targets x (without, with) the key; ${routed} reached a handler with the key`);
    assert.ok(routed > 50);
  });

  it('the page and /health stay open; unknown routes need the key too', async () => {
    for (const target of ['/', '/app.js', '/style.css', '/health', '/health?x=1', 'http://x/health']) {
      const a = await raw(s.port, request('GET', target, { host: '127.0.0.1' }));
      assert.equal(a.status, 200, `${target}: ${a.raw.slice(0, 200)}`);
    }
    assertErrorShape(await raw(s.port, request('GET', '/nope', { host: '127.0.0.1' })), 401, 'unknown route without the key');
    assertErrorShape(await raw(s.port, request('GET', '/nope', { host: '127.0.0.1', key: KEY })), 404, 'unknown route with the key');
  });

  it('/v1/images/<id> serves the indexed file or nothing: symlink, FIFO, other content, removed', async () => {
    const search = await raw(s.port, request('GET', '/v1/search?q=cat&k=20', { host: '127.0.0.1', key: KEY }));
    const results = (JSON.parse(search.body) as Json).results as { id: string; path: string }[];
    const byName = new Map(results.map((r) => [path.basename(r.path), r]));
    const get = (name: string) => raw(s.port, request('GET', `/v1/images/${byName.get(name)!.id}`, { host: '127.0.0.1', key: KEY }));
    const file = (name: string) => path.join(images, name);
    const original = fs.readFileSync(file('cat.jpg'));

    let a = await get('cat.jpg');
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-type'], 'image/jpeg');
    assert.equal(Number(a.headers['content-length']), original.length);

    // A symlink swapped in for the indexed file (to /etc/passwd; to a file of the same size and mtime).
    fs.rmSync(file('cat.jpg'));
    fs.symlinkSync('/etc/passwd', file('cat.jpg'));
    assertErrorShape(await get('cat.jpg'), 404, 'symlink to /etc/passwd');
    fs.rmSync(file('cat.jpg'));
    const decoy = path.join(tmp, 'decoy.bin');
    const other = Buffer.from(original);
    other[other.length - 10] ^= 0xff;
    fs.writeFileSync(decoy, other);
    const st = fs.statSync(path.join(FIXTURES, 'images', 'cat.jpg'));
    fs.symlinkSync(decoy, file('cat.jpg'));
    // The row's mtime is the original's; give the decoy that mtime.
    const row = await (async () => {
      const idx = await ImageIndex.open(db);
      try {
        return (await idx.file(file('cat.jpg')))!;
      } finally {
        await idx.close();
      }
    })();
    assert.ok(row, 'the row of cat.jpg');
    fs.utimesSync(decoy, st.atime, new Date(row.mtime));
    assertErrorShape(await get('cat.jpg'), 404, 'symlink to a same-size, same-mtime file of other content');
    // A FIFO (opening it must not hang the server), a folder, nothing.
    fs.rmSync(file('cat.jpg'));
    execFileSync('mkfifo', [file('cat.jpg')]);
    assertErrorShape(await get('cat.jpg'), 404, 'FIFO');
    fs.rmSync(file('cat.jpg'));
    fs.mkdirSync(file('cat.jpg'));
    assertErrorShape(await get('cat.jpg'), 404, 'folder');
    fs.rmSync(file('cat.jpg'), { recursive: true });
    assertErrorShape(await get('cat.jpg'), 404, 'removed');
    // Same size, same mtime, other bytes in place: mtime+size is the cheap proof, so this is served;
    // other bytes with a new mtime are not; the original bytes with a new mtime are (sha256 matches).
    fs.writeFileSync(file('cat.jpg'), other);
    fs.utimesSync(file('cat.jpg'), st.atime, new Date(Date.now() + 5000));
    assertErrorShape(await get('cat.jpg'), 404, 'other content, new mtime');
    fs.writeFileSync(file('cat.jpg'), original);
    a = await get('cat.jpg');
    assert.equal(a.status, 200, 'the original content again (new mtime, same sha256)');
    assert.equal(Number(a.headers['content-length']), original.length);
    // A symlinked folder on the way is not the indexed path: content decides (served: same bytes).
    const alt = path.join(tmp, 'images-alt');
    fs.renameSync(images, alt);
    fs.symlinkSync(alt, images);
    assert.equal((await get('coffee.png')).status, 200, 'same bytes through a symlinked folder');
    fs.writeFileSync(path.join(alt, 'coffee.png'), Buffer.alloc(fs.statSync(path.join(alt, 'coffee.png')).size));
    assertErrorShape(await get('coffee.png'), 404, 'other bytes through a symlinked folder');
    fs.rmSync(images);
    fs.renameSync(alt, images);
    fs.copyFileSync(path.join(FIXTURES, 'images', 'coffee.png'), file('coffee.png'));
  });

  it('errors: deep JSON is a 400 naming the limit; fastify and node errors in the JSON shape, echoes bounded', async () => {
    const long = 'Z'.repeat(5000);
    for (const depth of [33, 1000, 100_000]) {
      const body = `{"input": ${'['.repeat(depth)}${']'.repeat(depth)}}`;
      const a = await raw(s.port, request('POST', '/v1/embeddings', { host: '127.0.0.1', key: KEY, body }));
      const e = assertErrorShape(a, 400, `JSON nested ${depth} deep`);
      assert.match(e.error.message, /nested deeper than 32 levels/);
    }
    const ok32 = `{"input": ${'['.repeat(31)}"a"${']'.repeat(31)}}`; // 32 levels: parsed, then a type error
    assert.match(assertErrorShape(await raw(s.port, request('POST', '/v1/embeddings', { host: '127.0.0.1', key: KEY, body: ok32 })), 400, '32 deep').error.message, /input\[0\] must be a string/);
    const cases: [string, string | Buffer, number][] = [
      ['404 unknown route', request('GET', `/${long}`, { host: '127.0.0.1', key: KEY }), 404],
      ['404 unknown id', request('GET', `/v1/images/${'i'.repeat(99)}`, { host: '127.0.0.1', key: KEY }), 404],
      ['414 long id', request('GET', `/v1/images/${long}`, { host: '127.0.0.1', key: KEY }), 414],
      ['400 bad %', request('GET', `/v1/images/%zz${long}`, { host: '127.0.0.1', key: KEY }), 400],
      ['413 body', request('POST', '/v1/embeddings', { host: '127.0.0.1', key: KEY, body: JSON.stringify({ input: 'x'.repeat(400_000) }) }), 413],
      ['415 type', request('POST', '/v1/embeddings', { host: '127.0.0.1', key: KEY, headers: [`Content-Type: text/${long}`, 'Content-Length: 2'] }).replace(/\r\n\r\n$/, '\r\n\r\n{}'), 415],
      ['400 malformed JSON', request('POST', '/v1/embeddings', { host: '127.0.0.1', key: KEY, body: `{"input": ${long}` }), 400],
      ['400 wrong type', request('POST', '/v1/embeddings', { host: '127.0.0.1', key: KEY, body: JSON.stringify({ input: [{ [long]: long }] }) }), 400],
      ['400 model', request('POST', '/v1/embeddings', { host: '127.0.0.1', key: KEY, body: JSON.stringify({ input: 'a', model: long }) }), 400],
      ['400 image', request('POST', '/v1/embeddings', { host: '127.0.0.1', key: KEY, body: JSON.stringify({ input: [long], modality: 'image' }) }), 400],
      ['400 malformed HTTP', `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n${long}\r\n\r\n`, 400],
      ['431 headers', `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'h'.repeat(20_000)}\r\n\r\n`, 431],
      ['401 key', request('GET', `/v1/models?${long}`, { host: '127.0.0.1', key: long }), 401],
      ['405-ish: DELETE', request('DELETE', '/v1/models', { host: '127.0.0.1', key: KEY }), 404],
    ];
    for (const [what, text, status] of cases) {
      const a = await raw(s.port, text);
      const body = assertErrorShape(a, status, what);
      assert.ok(!body.error.message.includes('Z'.repeat(101)), `${what}: echoes more than 100 characters: ${body.error.message}`);
    }
  });
});

describe('without --api-key: Host allowlist, CORS, time limits, URL deadline', () => {
  let s: Served;
  let drip: http.Server;
  let dripPort = 0;
  before(async () => {
    s = await serve(['--model', MODEL, '--allowed-host', 'photos.lan', 'Other.Example.', '--cors-origin', 'https://app.example',
      '--request-timeout', '1500ms', '--headers-timeout', '700ms', '--keep-alive-timeout', '300ms',
      '--allow-urls', '--allow-private-urls', '--url-timeout', '800ms']);
    // Drips one byte every 100 ms (an image that never ends); /r/<n> redirects after 300 ms, n times.
    drip = http.createServer((req, res) => {
      const m = /^\/r\/(\d+)$/.exec(req.url ?? '');
      if (m) {
        const timer = setTimeout(() => {
          res.writeHead(302, { location: Number(m[1]) > 0 ? `/r/${Number(m[1]) - 1}` : '/drip' }).end();
        }, 300);
        res.on('close', () => clearTimeout(timer));
        return;
      }
      res.writeHead(200, { 'content-type': 'image/png' });
      let n = 0;
      const timer = setInterval(() => {
        if (++n > 600) return res.end();
        res.write(Buffer.from([0x89]));
      }, 100);
      res.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => drip.listen(0, '127.0.0.1', resolve));
    dripPort = (drip.address() as net.AddressInfo).port;
  });
  after(async () => {
    s.child.kill('SIGKILL');
    drip.closeAllConnections();
    await new Promise((resolve) => drip.close(resolve));
  });

  it('serves loopback names, --host and --allowed-host names; 421 for any other Host', async () => {
    const served = ['localhost', `localhost:${s.port}`, 'LOCALHOST.', 'app.localhost', '127.0.0.1', `127.0.0.1:${s.port}`, '127.9.9.9:1',
      '[::1]', `[::1]:${s.port}`, '[::ffff:127.0.0.1]', 'photos.lan', 'PHOTOS.LAN:8080', 'other.example', 'other.example.:1'];
    const refused = ['evil.example', `evil.example:${s.port}`, '127.0.0.1.evil.example', 'localhost.evil.example', 'localhostx',
      'photos.lan.evil.example', '[::2]', '0.0.0.0', '10.0.0.1', '2130706433', '0x7f.1', '', 'photos.lan@evil.example', 'evil example'];
    for (const host of served) {
      for (const target of ['/v1/models', '/health']) {
        const a = await raw(s.port, request('GET', target, { host }));
        assert.equal(a.status, 200, `Host ${JSON.stringify(host)} ${target}: ${a.raw.slice(0, 200)}`);
      }
    }
    for (const host of refused) {
      for (const target of ['/v1/models', '/v1/search?q=a', '/', '/health', '/nope']) {
        const a = await raw(s.port, request('GET', target, { host }));
        if (a.status === 400 && host === 'evil example') continue; // node refuses the malformed header first
        const body = assertErrorShape(a, 421, `Host ${JSON.stringify(host)} ${target}`);
        assert.equal(body.error.type, 'misdirected_request');
      }
    }
    // No Host at all (HTTP/1.0), and absolute-form targets whose authority is not served.
    assertErrorShape(await raw(s.port, 'GET /v1/models HTTP/1.0\r\n\r\n'), 421, 'no Host');
    for (const target of ['http://evil.example/v1/models', 'http://evil.example:1/health', 'HTTP://10.0.0.1/v1/models']) {
      assertErrorShape(await raw(s.port, request('GET', target, { host: 'localhost' })), 421, `absolute-form ${target}`);
    }
    assert.equal((await raw(s.port, request('GET', 'http://photos.lan/v1/models', { host: 'localhost' }))).status, 200);
  });

  it('CORS: a grant only for --cors-origin, preflights answered for it', async () => {
    const plain = await raw(s.port, request('GET', '/v1/models', { host: 'localhost', headers: ['Origin: https://evil.example'] }));
    assert.equal(plain.status, 200);
    assert.equal(plain.headers['access-control-allow-origin'], undefined);
    const granted = await raw(s.port, request('GET', '/v1/models', { host: 'localhost', headers: ['Origin: https://app.example'] }));
    assert.equal(granted.headers['access-control-allow-origin'], 'https://app.example');
    for (const o of ['https://evil.example', 'https://app.example.evil', 'http://app.example', 'null']) {
      const pre = await raw(s.port, request('OPTIONS', '/v1/embeddings', { host: 'localhost', headers: [`Origin: ${o}`, 'Access-Control-Request-Method: POST'] }));
      assert.equal(pre.headers['access-control-allow-origin'], undefined, `preflight from ${o}`);
      assert.ok(pre.status >= 400, `preflight from ${o}: ${pre.status}`);
    }
    const pre = await raw(s.port, request('OPTIONS', '/v1/embeddings', { host: 'localhost', headers: ['Origin: https://app.example', 'Access-Control-Request-Method: POST'] }));
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], 'https://app.example');
    assert.match(pre.headers['access-control-allow-headers'] ?? '', /authorization/);
  });

  it('a stalled body, dripped headers and an idle keep-alive connection are closed by the time limits', async () => {
    // Body: 10 of 100 bytes, then nothing. The request timeout (1.5 s) answers 408 and closes.
    const stalled = await raw(s.port, `POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"input":"`);
    assertErrorShape(stalled, 408, 'stalled body');
    // Headers dripped one byte every 50 ms, never finished: the headers timeout (0.7 s).
    const dripped = await new Promise<Answer>((resolve) => {
      const socket = net.connect(s.port, '127.0.0.1');
      const text = `GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ${'a'.repeat(400)}`;
      let i = 0;
      let out = '';
      const timer = setInterval(() => (i < text.length ? socket.write(text[i++]!) : undefined), 50);
      const guard = setTimeout(() => socket.destroy(), 20_000);
      socket.on('data', (d) => (out += d));
      socket.on('error', () => {});
      socket.on('close', () => {
        clearInterval(timer);
        clearTimeout(guard);
        resolve(parse(out));
      });
    });
    assertErrorShape(dripped, 408, 'dripped headers');
    // Keep-alive: one request answered, then the idle connection is closed by the server.
    const closedBy = await new Promise<string>((resolve) => {
      const socket = net.connect(s.port, '127.0.0.1');
      let out = '';
      const guard = setTimeout(() => {
        socket.destroy();
        resolve('the test');
      }, 20_000);
      socket.on('data', (d) => (out += d));
      socket.on('error', () => {});
      socket.on('end', () => {
        clearTimeout(guard);
        resolve('the server');
      });
      socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n');
    });
    assert.equal(closedBy, 'the server');
  });

  it('--url-timeout is one deadline for a fetch: a dripping image and a chain of slow redirects both end', async () => {
    for (const target of ['/drip', '/r/3']) {
      const body = JSON.stringify({ input: [`http://127.0.0.1:${dripPort}${target}`], modality: 'image' });
      const a = await raw(s.port, request('POST', '/v1/embeddings', { host: 'localhost', body }));
      const e = assertErrorShape(a, 400, `URL ${target}`);
      assert.match(e.error.message, /within the URL timeout of 800 ms/, target);
    }
  });
});

describe('serve: bad limit flags', () => {
  it('one error line, exit 1, no server', async () => {
    for (const [args, pattern] of [
      [['--headers-timeout', '40s', '--request-timeout', '30s'], /--headers-timeout \(40000 ms\) must not exceed --request-timeout \(30000 ms\)/],
      [['--url-timeout', 'soon'], /expected a duration such as 30s, 500ms or 2m, got "soon"/],
      [['--request-timeout', '-1s'], /expected a duration/],
      [['--cors-origin', 'app.example'], /expected an origin such as https:\/\/app\.example\.com/],
      [['--cors-origin', 'https://app.example/path'], /expected an origin \(scheme:\/\/host\[:port\], no path\)/],
      [['--max-connections', '0'], /--max-connections/],
    ] as const) {
      const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve', '--model', MODEL, '--port', '0', ...args], { cwd: ROOT, env: { ...process.env, ALTCLIP_DEBUG: '' } });
        children.push(child);
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        child.on('exit', (code) => resolve({ code, stdout, stderr }));
      });
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });
});

describe('SSRF blocklist: IPv6 forms that carry or reach IPv4', () => {
  it('refuses every private form and passes public ones', () => {
    const blocked = ['127.0.0.1', '10.1.2.3', '169.254.169.254', '::1', '::', '::127.0.0.1', '::7f00:1', '::10.0.0.1', '::8.8.8.8',
      '::ffff:127.0.0.1', '::ffff:7f00:1', '::FFFF:169.254.169.254', '::ffff:0:10.0.0.1', '2002:7f00:1::', '2002:a00:1::1',
      '2002:808:808::1', '2001:0:4136:e378:8000:63bf:3fff:fdd2', '2001::1', '64:ff9b::127.0.0.1', '64:ff9b::a9fe:a9fe',
      '64:ff9b:1::8.8.8.8', 'fe80::1%eth0', 'fc00::1', 'fd12::1', 'ff02::1', 'fec0::1', '100::1', '2001:db8::1', 'localhost', 'not an ip'];
    const open = ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::8.8.8.8', '2a00:1450:4001::200e'];
    for (const a of blocked) assert.equal(isPrivateAddress(a), true, a);
    for (const a of open) assert.equal(isPrivateAddress(a), false, a);
  });
});

describe('limits: --max-connections and the queue, counted in /metrics', () => {
  it('refuses connections over the cap and requests over the queue, and counts both', async () => {
    const s = await serve(['--model', MODEL, '--max-connections', '3', '--max-queue', '1', '--max-inputs', '1', '--max-batch-size', '64', '--max-wait-ms', '60000']);
    try {
      // One request waits in the queue (a partial batch waits 60 s); the next one does not fit: 429.
      const waiting = raw(s.port, request('POST', '/v1/embeddings', { host: 'localhost', body: CAT }), 120_000);
      let metrics = '';
      for (let i = 0; !metrics.includes('altclip_queue_depth{modality="text"} 1\n'); i++) {
        assert.ok(i < 500, 'the request never got queued');
        await new Promise((r) => setTimeout(r, 20));
        metrics = (await raw(s.port, request('GET', '/metrics', { host: 'localhost' }))).body;
      }
      const busy = await raw(s.port, request('POST', '/v1/embeddings', { host: 'localhost', body: CAT }));
      assertErrorShape(busy, 429, 'queue full');
      // Connections: the waiting one + 2 idle = 3; a 4th is closed at once without an answer.
      const idle = await Promise.all([0, 1].map(() => new Promise<net.Socket>((resolve) => {
        const c = net.connect(s.port, '127.0.0.1', () => resolve(c));
        c.on('error', () => {});
      })));
      await new Promise((r) => setTimeout(r, 200)); // let the server accept them (not a timing assertion)
      const over = await raw(s.port, request('GET', '/health', { host: 'localhost' }));
      assert.equal(over.status, 0, `over the cap: ${over.raw.slice(0, 100)}`);
      for (const c of idle) c.destroy();
      let m = '';
      for (let i = 0; i < 200; i++) {
        const a = await raw(s.port, request('GET', '/metrics', { host: 'localhost' }));
        if (a.status === 200) {
          m = a.body;
          break;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.match(m, /altclip_queue_rejected_total\{modality="text"\} 1\n/);
      assert.match(m, /altclip_http_rejected_total\{reason="queue_full"\} 1\n/);
      assert.match(m, /altclip_http_rejected_total\{reason="connection_limit"\} [1-9]/);
      s.child.kill('SIGTERM');
      const answered = await waiting;
      assert.equal(answered.status, 200, 'the queued request is answered on SIGTERM');
      assertGoldenEmbedding(answered.body, 'queued request');
      assert.equal(await s.exit, 0, s.stderr());
    } finally {
      s.child.kill('SIGKILL');
    }
  });
});

describe('honest drain', () => {
  // 16 requests written on connections the server has (or the kernel has) accepted, then SIGTERM after
  // a delay from the table: every one is answered 200 with the golden embedding, the process exits 0,
  // and nothing listens afterwards. Some of the 16 ride a keep-alive connection that already served one.
  it('a body still uploading at SIGTERM is answered 200; a connection opened after the signal is not served', async () => {
    const s = await serve(['--model', MODEL]);
    try {
      const upload = net.connect(s.port, '127.0.0.1');
      await new Promise((resolve) => upload.once('connect', resolve));
      let out = '';
      upload.on('data', (d) => (out += d));
      const closed = new Promise((resolve) => upload.once('close', resolve));
      const text = request('POST', '/v1/embeddings', { host: 'localhost', body: CAT });
      const half = text.length - 10;
      upload.write(text.slice(0, half));
      // The server has the headers (it answers a ping on another connection after them).
      assert.equal((await raw(s.port, request('GET', '/health', { host: 'localhost' }))).status, 200);
      s.child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 600)); // past the drain's grace (not a timing assertion)
      const late = await raw(s.port, request('GET', '/health', { host: 'localhost' }), 10_000);
      assert.notEqual(late.status, 200, 'a connection opened after the signal is not served');
      upload.write(text.slice(half));
      await closed;
      const a = parse(out);
      assert.equal(a.status, 200, out.slice(0, 200));
      assertGoldenEmbedding(a.body, 'the upload finished after SIGTERM');
      assert.equal(await s.exit, 0, s.stderr());
    } finally {
      s.child.kill('SIGKILL');
    }
  });

  for (const [run, delayMs] of [0, 1, 5, 20, 60].entries()) {
    it(`run ${run + 1}: SIGTERM ${delayMs} ms after 16 requests were sent -> 16 x 200, exit 0`, async () => {
      const s = await serve(['--model', MODEL, '--max-batch-size', '4', '--max-wait-ms', String(run * 20)]);
      try {
        const sockets = await Promise.all(Array.from({ length: 16 }, () => new Promise<net.Socket>((resolve, reject) => {
          const c = net.connect(s.port, '127.0.0.1', () => resolve(c));
          c.on('error', reject);
        })));
        // Every 4th connection first serves one request (keep-alive), then sends its second.
        await Promise.all(sockets.filter((_, i) => i % 4 === 0).map((c) => new Promise<void>((resolve) => {
          let out = '';
          const onData = (d: Buffer) => {
            out += d;
            if (/\r\n\r\n\{"status":"ok"\}$/.test(out)) {
              c.off('data', onData);
              resolve();
            }
          };
          c.on('data', onData);
          c.write('GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n');
        })));
        const answers = sockets.map((c) => new Promise<Answer>((resolve) => {
          let out = '';
          const guard = setTimeout(() => c.destroy(), 120_000);
          c.on('data', (d) => {
            out += d;
            const a = parse(out);
            const length = Number(a.headers['content-length'] ?? -1);
            if (a.status && Buffer.byteLength(a.body) === length) {
              clearTimeout(guard);
              resolve(a);
              c.destroy();
            }
          });
          c.on('close', () => {
            clearTimeout(guard);
            resolve(parse(out));
          });
        }));
        for (const c of sockets) c.write(request('POST', '/v1/embeddings', { host: 'localhost', body: CAT }).replace('Connection: close\r\n', ''));
        if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
        s.child.kill('SIGTERM');
        const all = await Promise.all(answers);
        all.forEach((a, i) => {
          assert.equal(a.status, 200, `request ${i}: ${a.raw.slice(0, 200)}`);
          assertGoldenEmbedding(a.body, `request ${i}`);
        });
        assert.equal(await s.exit, 0, s.stderr());
        const after = await raw(s.port, request('GET', '/health', { host: 'localhost' }), 5000);
        assert.equal(after.status, 0, 'nothing listens after exit');
      } finally {
        s.child.kill('SIGKILL');
      }
    });
  }
});
