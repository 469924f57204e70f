/**
 * How the provision node reports a failure where a user reads it: the debug sidebar (an error no
 * Catch node took) and the Catch node's msg.error, and the advice for a refused msg.reprovision.
 */

import assert from 'node:assert/strict';
import type { Emulator } from '../src/emulator';
import {
  Collector,
  keys,
  loadFlow,
  provisionFlow,
  send,
  startEmulator,
  tearDown,
  tempUserDir,
} from './support/flows';
import { helper } from './support/node-red';

interface LogEntry {
  level: number;
  id?: string;
  msg: unknown;
}

/** What the nodes logged at error level: what the debug sidebar shows of uncaught errors. */
function loggedErrors(): LogEntry[] {
  return (helper.log().args as unknown[][])
    .map((args) => args[0] as LogEntry)
    .filter((entry) => entry.level === 20);
}

async function waitForLoggedError(): Promise<LogEntry> {
  for (let i = 0; i < 100; i++) {
    const [entry] = loggedErrors();
    if (entry) return entry;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail('no error was logged');
}

describe('thingsboard-provision: reporting failures', function () {
  let emulator: Emulator;
  let userDir: string;

  beforeEach(async function () {
    emulator = await startEmulator();
    userDir = tempUserDir();
  });

  afterEach(async function () {
    await tearDown(emulator, userDir);
  });

  it('hands an uncaught error to the log as one line of text, not as an Error object', async function () {
    const flow = provisionFlow(emulator).filter((node) => node.type !== 'catch');
    await loadFlow(flow, keys(), userDir);
    send({});
    const entry = await waitForLoggedError();
    assert.equal(entry.id, 'prov');
    // The sidebar folds an Error into an object whose first words are cut; text shows whole.
    assert.equal(typeof entry.msg, 'string');
    assert.match(
      entry.msg as string,
      /^Provisioning failed \(INVALID_INPUT\): No device name: set msg\.deviceName/,
    );
    assert.doesNotMatch(entry.msg as string, /\n/);
  });

  it('gives a Catch node the text itself as msg.error.message', async function () {
    await loadFlow(provisionFlow(emulator), keys(), userDir);
    const caught = new Collector('caught');
    send({ deviceName: '   ' });
    const [msg] = await caught.waitFor(1);
    const payload = msg.payload as Record<string, unknown>;
    assert.equal(
      msg.error?.message,
      `Provisioning failed (INVALID_INPUT): ${String(payload.errorMsg)}`,
    );
  });

  it('says a refused msg.reprovision of a stored device needs the device deleted first', async function () {
    await loadFlow(provisionFlow(emulator, { transport: 'http' }), keys(), userDir);
    const out = new Collector('out');
    const caught = new Collector('caught');
    send({ deviceName: 'renew-me' });
    const [first] = await out.waitFor(1);
    send({ deviceName: 'renew-me', reprovision: true });
    const [msg] = await caught.waitFor(1);
    const payload = msg.payload as Record<string, unknown>;
    assert.equal(payload.status, 'FAILURE');
    assert.match(String(payload.errorMsg), /delete the device in ThingsBoard first/);
    assert.match(String(payload.errorMsg), /stored and kept/);
    assert.match(String(msg.error?.message), /^Provisioning renew-me failed \(FAILURE\): /);
    assert.match(String(msg.error?.message), /msg\.reprovision/);
    // The stored credentials still answer.
    send({ deviceName: 'renew-me' });
    const [, again] = await out.waitFor(2);
    assert.deepEqual(again.payload, first.payload);
    assert.equal((again.thingsboard as Record<string, unknown>).cached, true);
  });

  it('keeps the general FAILURE advice when the store does not hold the device', async function () {
    emulator.addDevice({
      name: 'made-elsewhere',
      profile: 'test-profile',
      credentials: { credentialsType: 'ACCESS_TOKEN', token: 'elsewhere-token-0000001' },
    });
    await loadFlow(provisionFlow(emulator, { transport: 'http' }), keys(), userDir);
    const caught = new Collector('caught');
    send({ deviceName: 'made-elsewhere', reprovision: true });
    const [msg] = await caught.waitFor(1);
    const payload = msg.payload as Record<string, unknown>;
    assert.equal(payload.status, 'FAILURE');
    assert.match(String(payload.errorMsg), /already exists/);
    assert.doesNotMatch(String(payload.errorMsg), /stored and kept/);
  });
});
