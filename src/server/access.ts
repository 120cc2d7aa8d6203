// Who may use the server: one onRequest hook, run on the routed request (after fastify has decoded and
// matched the URL), so every spelling of a target that reaches a handler meets the same rule.
// - Host allowlist (DNS rebinding, as Ollama's, Jupyter's and Vite's checks): a page on another origin
//   whose name resolves to 127.0.0.1 sends its own name as Host; unless the server has an API key, only
//   loopback names, the bound --host and --allowed-host names are served, others get 421. An
//   absolute-form target (`GET http://name/...`) is checked too: RFC 9112 3.2.2 lets it override Host.
// - CORS: no grant unless the Origin is one of --cors-origin (then preflights are answered here).
// - API key: every route except the explicit OPEN_ROUTES (the page, /health) needs
//   `Authorization: Bearer <key>`; so do unmatched targets (a 401 says nothing about which routes exist).
import { createHash, timingSafeEqual } from 'node:crypto';
import * as net from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, echo } from './errors.js';

export interface AccessOptions {
  /** Require `Authorization: Bearer <apiKey>` on every route but OPEN_ROUTES. */
  apiKey?: string;
  /** Host names served besides the loopback names and `boundHost` (checked without an API key, or when given). */
  allowedHosts?: string[];
  /** The address the server listens on (--host): served as a Host name too. */
  boundHost?: string;
  /** Origins granted CORS (exact `scheme://host[:port]`). */
  corsOrigins?: string[];
}

/** Routes (fastify route patterns) served without the API key: the web page and the health check. */
export const OPEN_ROUTES: ReadonlySet<string> = new Set(['/', '/app.js', '/style.css', '/health']);

export type Refusal = 'host' | 'auth' | 'cors';

export function registerAccess(app: FastifyInstance, options: AccessOptions, refused: (reason: Refusal) => void): void {
  const names = new Set([...(options.allowedHosts ?? []), ...(options.boundHost ? [options.boundHost] : [])].map(hostName));
  const checkHost = !options.apiKey || (options.allowedHosts?.length ?? 0) > 0;
  const origins = new Set((options.corsOrigins ?? []).map((o) => o.toLowerCase()));

  app.addHook('onRequest', async (request, reply) => {
    if (checkHost) {
      const bad = foreignHost(request, names);
      if (bad !== undefined) {
        refused('host');
        throw new ApiError(421, `this server does not answer for the host ${echo(bad)}: it serves loopback names`
          + `${names.size ? ` and ${[...names].join(', ')}` : ''} (start it with --allowed-host ${echo(bad.replace(/:\d+$/, ''), 60)} to serve that name)`);
      }
    }
    const origin = request.headers.origin;
    const granted = typeof origin === 'string' && origins.has(origin.toLowerCase());
    if (origins.size > 0) reply.header('vary', 'origin'); // answers differ by Origin: caches must key on it
    if (granted) {
      reply.header('access-control-allow-origin', origin);
      if (request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined) {
        // A preflight carries no credentials: answered here, before the key check.
        return reply
          .code(204)
          .header('access-control-allow-methods', 'GET, POST')
          .header('access-control-allow-headers', 'authorization, content-type')
          .header('access-control-max-age', '600')
          .send();
      }
    }
    if (options.apiKey && !OPEN_ROUTES.has(request.routeOptions.url ?? '')) checkKey(request, reply, options.apiKey, refused);
  });
}

function checkKey(request: FastifyRequest, reply: FastifyReply, apiKey: string, refused: (reason: Refusal) => void): void {
  const header = request.headers.authorization ?? '';
  const m = /^Bearer[ \t]+(.+)$/i.exec(header);
  if (m && sameSecret(m[1]!.trim(), apiKey)) return;
  refused('auth');
  reply.header('www-authenticate', 'Bearer');
  throw new ApiError(401, m ? 'invalid API key' : 'missing API key: send "Authorization: Bearer <key>"');
}

/** The Host (or absolute-form authority) that is not served, or undefined when all are. */
function foreignHost(request: FastifyRequest, names: Set<string>): string | undefined {
  const host = request.headers.host;
  if (typeof host !== 'string' || host === '') return '';
  if (!served(host, names)) return host;
  const target = request.raw.url ?? '';
  const absolute = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(target);
  if (absolute && !served(absolute[1]!.replace(/^[^@]*@/, ''), names)) return absolute[1]!;
  return undefined;
}

function served(authority: string, names: Set<string>): boolean {
  const name = hostName(authority);
  return isLoopbackName(name) || names.has(name);
}

/** `name[:port]` / `[v6][:port]` -> the lower-case name without brackets, port or a trailing dot. */
export function hostName(authority: string): string {
  const a = authority.trim().toLowerCase();
  const v6 = /^\[([^\]]*)\](?::\d*)?$/.exec(a);
  if (v6) return v6[1]!;
  if (net.isIPv6(a)) return a; // a bare IPv6 address (--host ::1)
  return a.replace(/:\d*$/, '').replace(/\.$/, '');
}

/** localhost, *.localhost (RFC 6761 6.3), 127.0.0.0/8, ::1 and ::ffff:127.x.y.z. */
export function isLoopbackName(name: string): boolean {
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  if (net.isIPv4(name)) return name.startsWith('127.');
  if (net.isIPv6(name)) return LOOPBACK6.check(name, 'ipv6');
  return false;
}

const LOOPBACK6 = new net.BlockList();
LOOPBACK6.addAddress('::1', 'ipv6');
LOOPBACK6.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** Constant-time comparison (of digests, so that the lengths do not leak either). */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
