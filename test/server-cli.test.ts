// `altclip serve` as a real process on the fixture checkpoint: the "listening on" line, a request in
// flight when SIGTERM arrives is still answered (with the golden embedding) and the process exits 0,
// --api-key from the environment, bad flags. Goldens: test/fixtures/goldens/tiny-altclip.safetensors
// (transformers 4.40.2, see test/fixtures/README.md).
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

import { MAIN, ROOT, type Served, startServe } from './helpers/cli.js';
import { FIXTURES, Goldens } from './helpers/goldens.js';

const MODEL = path.join(FIXTURES, 'models', 'tiny-altclip');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-serve-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const g = new Goldens(path.join(FIXTURES, 'goldens', 'tiny-altclip.safetensors'));

function serve(args: string[], env: Record<string, string> = {}): Promise<Served> {
  return startServe(['--model', MODEL, '--port', '0', '--threads', '1', ...args], path.join(tmp, 'cache'), { env, limitMs: 60_000 });
}

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env: { ...process.env, ALTCLIP_DEBUG: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('altclip serve', () => {
  it('prints "listening on", finishes the request in flight on SIGTERM and exits 0', async () => {
    // A partial batch waits up to a minute for more inputs: the request is surely in flight when
    // SIGTERM comes, and draining runs it at once.
    const s = await serve(['--max-wait-ms', '60000', '--max-batch-size', '64']);
    try {
      const pending = fetch(`${s.url}/v1/embeddings`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input: 'a photo of a cat', modality: 'text' }),
      });
      for (let i = 0; ; i++) {
        const metrics = await (await fetch(`${s.url}/metrics`)).text();
        if (metrics.includes('altclip_queue_depth{modality="text"} 1\n')) break;
        assert.ok(i < 1000, 'the request never got queued');
        await new Promise((r) => setTimeout(r, 10));
      }
      s.child.kill('SIGTERM');
      const res = await pending;
      assert.equal(res.status, 200);
      const body = (await res.json()) as { data: { embedding: number[] }[] };
      const golden = g.get('single/outputs/text_embeds').data as Float32Array;
      const d = Math.max(...body.data[0]!.embedding.map((x, j) => Math.abs(x - golden[j]!)));
      assert.ok(d <= 1e-5, `max diff ${d}`);
      assert.equal(await s.exit, 0, s.stderr());
      assert.match(s.stderr(), /SIGTERM: finishing the requests in flight/);
      await assert.rejects(fetch(`${s.url}/health`), 'no longer listening');
    } finally {
      s.child.kill('SIGKILL');
    }
  });

  it('--api-key from ALTCLIP_API_KEY; SIGINT also exits 0', async () => {
    const s = await serve([], { ALTCLIP_API_KEY: 'k3y' });
    try {
      assert.equal((await fetch(`${s.url}/v1/models`)).status, 401);
      const ok = await fetch(`${s.url}/v1/models`, { headers: { authorization: 'Bearer k3y' } });
      assert.equal(ok.status, 200);
      assert.equal(((await ok.json()) as { data: { id: string }[] }).data[0]!.id, MODEL);
      s.child.kill('SIGINT');
      assert.equal(await s.exit, 0);
    } finally {
      s.child.kill('SIGKILL');
    }
  });

  it('bad flags: one error line, exit 1, no server', async () => {
    for (const [args, pattern] of [
      [['--port', 'http'], /option '--port <port>' argument 'http' is invalid\. expected a port number/],
      [['--allow-private-urls'], /--allow-private-urls needs --allow-urls/],
      [['--max-queue', '8'], /--max-queue \(8\) must be at least --max-inputs \(256\)/],
      [['--model', path.join(tmp, 'no-such-model')], /no-such-model/],
    ] as const) {
      const r = await run(['serve', '--port', '0', ...args]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, pattern);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });
});
