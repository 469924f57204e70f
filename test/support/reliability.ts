/**
 * Shared by the reliability suites: the emulator in a child process seen as a flow target, a
 * guard that fails a test on leaked handles or unhandled rejections, and one message's way out.
 */

import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { Emulator } from '../../src/emulator';
import { HOST, assertNoLeaks, resourceCounts } from './transport-helpers';
import type { RemoteEmulator } from './transport-helpers';
import { Collector, send, tempUserDir } from './flows';
import type { Message } from './flows';
import { helper } from './node-red';

/** What provisionFlow reads of an emulator, for one running in a child process. */
export function flowTarget(emulator: RemoteEmulator): Emulator {
  return { host: HOST, ports: emulator.ports } as unknown as Emulator;
}

export interface Guard {
  /** A fresh user directory for the current test, removed after it. */
  readonly userDir: string;
}

/**
 * Installs mocha hooks: a fresh userDir per test; after it, the flows unloaded, then no unhandled
 * rejection and no more active handles or timers than before the test (sockets, agents, timers).
 */
export function guardEachTest(options: { leaks?: boolean } = {}): Guard {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };
  let baseline = new Map<string, number>();
  const guard = { userDir: '' };

  before(function () {
    process.on('unhandledRejection', onUnhandled);
    // Loaded before any baseline: coap opens two idle global sockets when it loads.
    require('mqtt');
    require('coap');
  });
  after(function () {
    process.off('unhandledRejection', onUnhandled);
  });
  beforeEach(async function () {
    guard.userDir = tempUserDir();
    // Taken after an await, as in afterEach, so both count mocha's own hook timer once.
    await new Promise((resolve) => setImmediate(resolve));
    baseline = resourceCounts();
  });
  afterEach(async function () {
    await helper.unload();
    fs.rmSync(guard.userDir, { recursive: true, force: true });
    // Let rejections of promises settled during unload surface before they are counted.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const reasons = unhandled.splice(0).map(String);
    assert.deepEqual(reasons, [], 'unhandled rejections');
    if (options.leaks !== false && this.currentTest?.state !== 'failed') {
      await assertNoLeaks(baseline);
    }
  });
  return guard;
}

export interface WayOut {
  msg: Message;
  /** Which helper node received it: the output or the Catch. */
  via: 'out' | 'caught';
  tookMs: number;
}

/**
 * Sends one message to the provision node and resolves with the first message to reach the
 * output or the Catch node; a moment later checks that nothing else came out for it.
 */
export async function oneWayOut(msg: Record<string, unknown>, waitMs = 25_000): Promise<WayOut> {
  const out = new Collector('out');
  const caught = new Collector('caught');
  const startedAt = Date.now();
  const first = new Promise<WayOut>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('neither output nor Catch')), waitMs);
    for (const via of ['out', 'caught'] as const) {
      helper.getNode(via).once('input', (m: Message) => {
        clearTimeout(timer);
        resolve({ msg: m, via, tookMs: Date.now() - startedAt });
      });
    }
  });
  send(msg);
  const result = await first;
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(out.messages.length + caught.messages.length, 1, 'one message in, one out');
  return result;
}
