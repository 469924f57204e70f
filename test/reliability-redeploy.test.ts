/**
 * Redeploy and shutdown in the middle of work: requests already at the server finish and their
 * answers are kept, so no device is orphaned; nothing queued is sent; a closed node shows no
 * status, however late an answer comes.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { deviceKey, openFileStore } from '../src/store';
import { TRANSPORT_NAMES } from '../src/transports/types';
import { delay } from './support/common';
import { Collector, keys, loadFlow, provisionFlow, send } from './support/flows';
import { helper } from './support/node-red';
import { flowTarget, guardEachTest } from './support/reliability';
import { ALLOW, HOST, startEmulator, type RemoteEmulator } from './support/transport-helpers';

describe('reliability: redeploy with requests in flight', function () {
  this.timeout(30_000);
  const guard = guardEachTest();
  let emulator: RemoteEmulator;
  const allow = (): Record<string, Record<string, string>> => keys(ALLOW.secret, ALLOW.key);

  before(async function () {
    emulator = await startEmulator();
  });

  after(async function () {
    await emulator.stop();
  });

  /** The device name a recorded request asked for. */
  const nameOf = (request: { body: unknown }): unknown =>
    (request.body as { deviceName?: unknown } | undefined)?.deviceName;

  async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > end) assert.fail(`timed out waiting until ${what}`);
      await delay(5);
    }
  }

  for (const transport of TRANSPORT_NAMES) {
    it(`over ${transport}: every device the server created mid-run has its credentials in the store`, async function () {
      await emulator.setFaults({ answerDelayMs: 250 });
      const prefix = `redeploy-${transport}`;
      const flow = provisionFlow(flowTarget(emulator), { transport, concurrency: 4, timeout: 5 });
      await loadFlow(flow, allow(), guard.userDir);
      const out = new Collector('out');
      for (let i = 0; i < 24; i++) send({ deviceName: `${prefix}-${i}` });
      // Some answered, and the next four at the server, waiting for their answers.
      await until('a first batch is answered', () => out.messages.length >= 4);
      await helper.unload();
      // The same flow again, as a redeploy does.
      await loadFlow(flow, allow(), guard.userDir);
      await helper.unload();
      // Requests the node gave up on would still be turned into devices meanwhile.
      await delay(400);

      const requests = (await emulator.requests()).filter((r) =>
        String(nameOf(r)).startsWith(prefix),
      );
      const created = requests.filter((r) => r.outcome === 'SUCCESS').map((r) => String(nameOf(r)));
      assert.ok(created.length >= 8 && created.length < 24, `${created.length} devices created`);
      const store = openFileStore({
        filePath: path.join(guard.userDir, 'thingsboard-provision', 'credentials.json'),
      });
      try {
        await store.ready();
        for (const name of created) {
          const entry = await store.get(deviceKey(HOST, ALLOW.key, name));
          assert.ok(entry, `${name} was created by the server but its credentials were lost`);
          const device = await emulator.device(name);
          assert.equal(
            entry.answer.credentialsValue,
            device?.credentials.credentialsType === 'ACCESS_TOKEN' && device.credentials.token,
          );
        }
      } finally {
        await store.release();
      }
      assert.equal(requests.length, created.length, 'nothing queued was sent once closing began');
    });
  }

  it('shows no status once closed, however late an answer comes', async function () {
    await emulator.setFaults({ answerDelayMs: 300 });
    await loadFlow(
      provisionFlow(flowTarget(emulator), { transport: 'http', concurrency: 1 }),
      allow(),
      guard.userDir,
    );
    const shown: number[] = [];
    // Wrapped on the node itself: Node-RED drops a closed node's event listeners.
    const prov = helper.getNode('prov') as unknown as { status(s: unknown): void };
    const status = prov.status.bind(prov);
    prov.status = (s) => {
      shown.push(Date.now());
      status(s);
    };
    send({ deviceName: 'late-answer' });
    send({ deviceName: 'never-sent' });
    await delay(100);
    const closedAt = Date.now();
    await helper.unload();
    // An answer came while closing, and a status timer would have fired by now.
    await delay(300);
    const late = shown.filter((at) => at >= closedAt);
    assert.deepEqual(late, [], 'a status after close would cover the next node’s');
  });
});
