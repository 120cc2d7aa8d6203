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
import { ApiError } from './errors.js';

export interface UrlPolicy {
  /** Fetch http(s) image URLs (default: refused). */
  allowUrls: boolean;
  /** Also to loopback, private, link-local, CGNAT, multicast and unspecified addresses. */
  allowPrivateUrls: boolean;
  /** Most bytes one fetched image may have. */
  maxBytes: number;
  /** Per-fetch time limit. */
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
  const shown = value.length > 40 ? `${value.slice(0, 40)}...` : value;
  throw new ApiError(400, `${what}: expected a data:image/...;base64, URI${policy.allowUrls ? ' or an http(s) URL' : ''}, got ${JSON.stringify(shown)}`);
}

// Addresses that reach this machine or its networks (RFC 6890 special-purpose ranges).
const blocked = new net.BlockList();
for (const [addr, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) blocked.addSubnet(addr, prefix, 'ipv4');
for (const [addr, prefix] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96]] as const) {
  blocked.addSubnet(addr, prefix, 'ipv6');
}

/** True for loopback, private, link-local and other non-public addresses (IPv4-mapped IPv6 included). */
export function isPrivateAddress(address: string): boolean {
  const family = net.isIP(address);
  if (family === 4) return blocked.check(address, 'ipv4');
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return blocked.check(mapped[1]!, 'ipv4');
    return blocked.check(address, 'ipv6');
  }
  return true; // not an address: refuse
}

function fetchImage(url: string, what: string, policy: UrlPolicy, redirects = 3): Promise<Uint8Array> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ApiError(400, `${what}: invalid URL ${JSON.stringify(url)}`);
  }
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  const refuse = (address: string) =>
    new ApiError(400, `${what}: ${parsed.href} resolves to ${address}, a loopback/private address; such URLs are refused (--allow-private-urls allows them)`);
  // A literal IP skips DNS (and the lookup below): check it here.
  if (net.isIP(host) && !policy.allowPrivateUrls && isPrivateAddress(host)) return Promise.reject(refuse(host));
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
    const req = get(parsed, { lookup, timeout: policy.timeoutMs, headers: { accept: 'image/*' } }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        if (redirects === 0) return reject(new ApiError(400, `${what}: ${parsed.href}: too many redirects`));
        const next = new URL(res.headers.location, parsed).href;
        if (!/^https?:/i.test(next)) return reject(new ApiError(400, `${what}: ${parsed.href} redirects to a non-http(s) URL`));
        return fetchImage(next, what, policy, redirects - 1).then(resolve, reject);
      }
      if (status !== 200) {
        res.resume();
        return reject(new ApiError(400, `${what}: ${parsed.href}: HTTP ${status}`));
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > policy.maxBytes) {
          req.destroy();
          reject(new ApiError(400, `${what}: ${parsed.href} is larger than ${policy.maxBytes} bytes`));
        } else chunks.push(chunk);
      });
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', (e) => reject(new ApiError(400, `${what}: ${parsed.href}: ${e.message}`)));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${policy.timeoutMs} ms`)));
    req.on('error', (e) => reject(e instanceof ApiError ? e : new ApiError(400, `${what}: cannot fetch ${parsed.href}: ${e.message}`)));
  });
}
