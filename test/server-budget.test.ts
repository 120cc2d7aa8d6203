// The server's pixel budget (src/server/budget.ts): borrowed pixels never exceed the capacity, waiters
// are served first come first served, a request over the whole budget is a 413 at once (counted), and
// images are counted by their headers' declared size.
import * as assert from 'node:assert/strict';
import { test } from 'node:test';

import { PixelBudget } from '../src/server/budget.js';
import { ApiError } from '../src/server/errors.js';
import { flatPng, pngClaiming, rleDeltaBmp } from './helpers/bombs.js';

const tick = () => new Promise((r) => setImmediate(r));

test('borrowed pixels never exceed the capacity; waiters run in arrival order; release is idempotent', async () => {
  const budget = new PixelBudget(100);
  const order: string[] = [];
  const a = await budget.acquire(60);
  const pending = [
    budget.acquire(50).then((release) => (order.push('b'), release)),
    budget.acquire(10).then((release) => (order.push('c'), release)), // fits now, but waits behind b
    budget.acquire(40).then((release) => (order.push('d'), release)),
  ];
  await tick();
  assert.deepEqual(order, [], 'c does not pass b');
  assert.equal(budget.inFlight, 60);
  assert.equal(budget.queued, 3);
  a();
  a(); // twice: counted once
  await tick();
  assert.deepEqual(order, ['b', 'c', 'd']);
  assert.equal(budget.inFlight, 100);
  for (const release of await Promise.all(pending)) release();
  assert.equal(budget.inFlight, 0);
});

test('a request over the whole budget is a 413 at once, and counted', async () => {
  let rejected = 0;
  const budget = new PixelBudget(100, () => rejected++);
  const release = await budget.acquire(100); // exactly the budget fits
  await assert.rejects(budget.acquire(101), (e: ApiError) => e instanceof ApiError && e.statusCode === 413 && /101 pixels.*--max-pixels-in-flight 100/.test(e.message));
  assert.equal(rejected, 1);
  assert.equal(budget.queued, 0, 'the refused request does not wait');
  release();
});

test('images count their declared width x height; one the decoder refuses from its header counts 0', async () => {
  const budget = new PixelBudget(10_000_000);
  const release = await budget.acquireImages([rleDeltaBmp(2000, 1000), flatPng(1000, 1000), pngClaiming(50000, 50000), new Uint8Array([1, 2, 3])], 89_478_485);
  assert.equal(budget.inFlight, 3_000_000);
  release();
  await budget.idle();
  assert.equal(budget.inFlight, 0);
});

test('idle() waits for every request still waiting for pixels to be granted', async () => {
  const budget = new PixelBudget(2_000_000);
  const first = await budget.acquireImages([flatPng(1000, 1000), flatPng(1000, 1000)], 89_478_485);
  let granted = false;
  const second = budget.acquireImages([flatPng(1000, 1000)], 89_478_485).then((r) => ((granted = true), r));
  let idle = false;
  const waiting = budget.idle().then(() => (idle = true));
  await tick();
  assert.equal(idle, false);
  first();
  await waiting;
  assert.equal(granted, true);
  (await second)();
});
