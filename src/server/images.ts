// Image inputs of a request -> encoded bytes for the image processor. A request's strings are never
// handed to the library as strings (which would read them as file paths): only `data:image/...;base64,`
// URIs are accepted, and http(s) URLs when the server was started with --allow-urls. URLs are fetched
// here, never to loopback / private / link-local addresses unless --allow-private-urls: the address is
// checked after DNS resolution, on the address actually connected to, and again on every redirect
// (SSRF: a public name resolving to 127.0.0.1 is refused too).
import * as dns from 'node:dns';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { ApiError, echo } from './errors.js';

export interface UrlPolicy {
  /** Fetch http(s) image URLs (default: refused). */
  allowUrls: boolean;
  /** Also to loopback, private, link-local, CGNAT, multicast and unspecified addresses. */
  allowPrivateUrls: boolean;
  /** Most bytes one fetched image may have. */
  maxBytes: number;
  /** Total deadline of one image fetch, redirects and a slow body included. */
  timeoutMs: number;
}

const DATA_URI = /^data:image\/[a-z0-9.+-]+(?:;[a-z0-9=._+-]*)*;base64,/i;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** `what` names the input in messages, e.g. "input[2]" or "image". */
export async function imageBytes(value: string, what: string, policy: UrlPolicy): Promise<Uint8Array> {
  const head = DATA_URI.exec(value);
  if (head) {
    const b64 = value.slice(head[0].length).replace(/\s+/g, '');
    if (b64.length % 4 === 1 || !BASE64.test(b64)) throw new ApiError(400, `${what}: the data URI's base64 payload is malformed`);
    const bytes = Buffer.from(b64, 'base64');
    if (bytes.length === 0) throw new ApiError(400, `${what}: the data URI is empty`);
    return bytes;
  }
  if (/^https?:\/\//i.test(value)) {
    if (!policy.allowUrls) {
      throw new ApiError(400, `${what}: image URLs are not fetched by this server (start it with --allow-urls); send a data:image/...;base64, URI`);
    }
    return fetchImage(value, what, policy);
  }
  throw new ApiError(400, `${what}: expected a data:image/...;base64, URI${policy.allowUrls ? ' or an http(s) URL' : ''}, got ${echo(value, 40)}`);
}

// Addresses that reach this machine or its networks (RFC 6890 special-purpose ranges, and the
// documentation ranges). IPv6 forms that carry an IPv4 address are judged by that address.
const blocked4 = new net.BlockList();
for (const [addr, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24],
  ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) blocked4.addSubnet(addr, prefix, 'ipv4');
const blocked6 = new net.BlockList();
for (const [addr, prefix] of [
  ['::', 96], ['100::', 64], ['2001::', 23], ['2001:db8::', 32], ['2002::', 16], ['3fff::', 20],
  ['64:ff9b:1::', 48], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
] as const) blocked6.addSubnet(addr, prefix, 'ipv6');
// Prefixes whose last 32 bits are an IPv4 address: IPv4-compatible (::a.b.c.d, RFC 4291 2.5.5.1,
// deprecated: refused whole above, :: and ::1 included), IPv4-mapped (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d, RFC 2765) and NAT64's well-known
// prefix (64:ff9b::/96, RFC 6052). 6to4 (2002::/16), Teredo (2001::/32, inside 2001::/23) and local NAT64
// (64:ff9b:1::/48, RFC 8215) are refused whole above.
const EMBEDS_IPV4: [number[], number][] = [[[0, 0, 0, 0, 0, 0], 96], [[0, 0, 0, 0, 0, 0xffff], 96], [[0, 0, 0, 0, 0xffff, 0], 96], [[0x64, 0xff9b, 0, 0, 0, 0], 96]];

/** True for loopback, private, link-local and other non-public addresses (IPv4 inside IPv6 included). */
export function isPrivateAddress(address: string): boolean {
  const bare = address.replace(/%.*$/, ''); // a zone id (fe80::1%eth0)
  const family = net.isIP(bare);
  if (family === 4) return blocked4.check(bare, 'ipv4');
  if (family === 6) {
    const words = ipv6Words(bare);
    for (const [prefix] of EMBEDS_IPV4) {
      if (prefix.every((w, i) => words[i] === w)) {
        const v4 = `${words[6]! >> 8}.${words[6]! & 255}.${words[7]! >> 8}.${words[7]! & 255}`;
        return blocked4.check(v4, 'ipv4') || blocked6.check(bare, 'ipv6');
      }
    }
    return blocked6.check(bare, 'ipv6');
  }
  return true; // not an address: refuse
}

/** The eight 16-bit words of an IPv6 address (`::` and a dotted IPv4 tail expanded). */
function ipv6Words(address: string): number[] {
  let text = address.toLowerCase();
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : new Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((w) => parseInt(w, 16));
}

/**
 * GET `url`, following at most `redirects` redirects, all within one deadline (`policy.timeoutMs` from
 * the first request): a server that drips its answer, or a chain of slow redirects, ends at the deadline.
 */
function fetchImage(url: string, what: string, policy: UrlPolicy, redirects = 3, deadline = Date.now() + policy.timeoutMs): Promise<Uint8Array> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ApiError(400, `${what}: invalid URL ${echo(url)}`);
  }
  const shown = echo(parsed.href);
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  const refuse = (address: string) =>
    new ApiError(400, `${what}: ${shown} resolves to ${address}, a loopback/private address; such URLs are refused (--allow-private-urls allows them)`);
  // A literal IP skips DNS (and the lookup below): check it here.
  if (net.isIP(host) && !policy.allowPrivateUrls && isPrivateAddress(host)) return Promise.reject(refuse(host));
  const left = deadline - Date.now();
  if (left <= 0) return Promise.reject(new ApiError(400, `${what}: ${shown}: no complete answer within the URL timeout of ${policy.timeoutMs} ms`));
  // Checked at connect time, on the addresses the socket will use (no second resolution to rebind).
  const lookup: net.LookupFunction = (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 4);
      const list = addresses as dns.LookupAddress[];
      const bad = policy.allowPrivateUrls ? undefined : list.find((a) => isPrivateAddress(a.address));
      if (bad) return callback(Object.assign(refuse(bad.address), { code: 'EPRIVATE' }), '', 4);
      if ((options as dns.LookupOptions).all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, list);
      callback(null, list[0]!.address, list[0]!.family);
    });
  };
  return new Promise<Uint8Array>((resolve, reject) => {
    const get = parsed.protocol === 'https:' ? https.get : http.get;
    const timer = setTimeout(() => {
      fail(new ApiError(400, `${what}: ${shown}: no complete answer within the URL timeout of ${policy.timeoutMs} ms`));
      req.destroy();
    }, left);
    const settle = <T>(fn: (v: T) => void) => (v: T) => {
      clearTimeout(timer);
      fn(v);
    };
    const ok = settle(resolve);
    const fail = settle(reject);
    const req = get(parsed, { lookup, headers: { accept: 'image/*' } }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        if (redirects === 0) return fail(new ApiError(400, `${what}: ${shown}: too many redirects`));
        let next: string;
        try {
          next = new URL(res.headers.location, parsed).href;
        } catch {
          return fail(new ApiError(400, `${what}: ${shown} redirects to an invalid URL`));
        }
        if (!/^https?:/i.test(next)) return fail(new ApiError(400, `${what}: ${shown} redirects to a non-http(s) URL`));
        clearTimeout(timer);
        req.destroy();
        return fetchImage(next, what, policy, redirects - 1, deadline).then(resolve, reject);
      }
      if (status !== 200) {
        res.resume();
        return fail(new ApiError(400, `${what}: ${shown}: HTTP ${status}`));
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > policy.maxBytes) {
          req.destroy();
          fail(new ApiError(400, `${what}: ${shown} is larger than ${policy.maxBytes} bytes`));
        } else chunks.push(chunk);
      });
      res.on('end', () => ok(Buffer.concat(chunks)));
      res.on('error', (e) => fail(e instanceof ApiError ? e : new ApiError(400, `${what}: ${shown}: ${e.message}`)));
    });
    req.on('error', (e) => fail(e instanceof ApiError ? e : new ApiError(400, `${what}: cannot fetch ${shown}: ${e.message}`)));
  });
}
