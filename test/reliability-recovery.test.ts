/**
 * Lost-answer recovery proves a device is ours only with credentials the node made itself. The
 * issue's case: a flow gives pump-2 the token that already belongs to pump-1; pump-2's first
 * request meets a server error (it may have reached the server), the retry is refused. Checking
 * the token would find it accepted (pump-1's) and hand pump-1's credentials on as pump-2's.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { deviceKey, openFileStore } from '../src/store';
import { TRANSPORT_NAMES } from '../src/transports/types';
import { Collector, keys, loadFlow, provisionFlow, send } from './support/flows';
import { flowTarget, guardEachTest } from './support/reliability';
import { ALLOW, HOST, startEmulator, type RemoteEmulator } from './support/transport-helpers';

describe('reliability: recovery with credentials the flow supplied', function () {
  this.timeout(30_000);
  const guard = guardEachTest();
  let emulator: RemoteEmulator;

  before(async function () {
    emulator = await startEmulator();
  });

  after(async function () {
    await emulator.stop();
  });

  for (const transport of TRANSPORT_NAMES) {
    it(`over ${transport}: pump-2 with pump-1's token ends in FAILURE, nothing stored, pump-1 untouched`, async function () {
      const pump1 = `pump-1-${transport}`;
      const pump2 = `pump-2-${transport}`;
      const token = `pump1-token-${transport}-0000001`;
      await loadFlow(
        provisionFlow(flowTarget(emulator), {
          transport,
          credentialsType: 'ACCESS_TOKEN',
          retries: 1,
          timeout: 2,
        }),
        keys(ALLOW.secret, ALLOW.key),
        guard.userDir,
      );
      const out = new Collector('out');
      const caught = new Collector('caught');
      send({ deviceName: pump1, credentials: { token } });
      await out.waitFor(1);
      await emulator.setFaults({ internalErrorFirst: 1 });
      send({ deviceName: pump2, credentials: { token } });
      const [failed] = await caught.waitFor(1);
      await emulator.setFaults({});
      assert.equal(out.messages.length, 1, 'pump-2 was never sent on');
      const payload = failed.payload as Record<string, unknown>;
      assert.equal(payload.status, 'FAILURE');
      assert.equal(payload.credentialsValue, undefined);
      assert.match(String(payload.errorMsg), /came from msg\.credentials/);
      assert.match(String(payload.errorMsg), /may be another device/);
      assert.ok(!String(failed.error?.message).includes(token), 'the token is not repeated');
      const store = openFileStore({
        filePath: path.join(guard.userDir, 'thingsboard-provision', 'credentials.json'),
      });
      try {
        await store.ready();
        assert.equal(await store.get(deviceKey(HOST, ALLOW.key, pump2)), undefined);
        const kept = await store.get(deviceKey(HOST, ALLOW.key, pump1));
        assert.equal(kept?.answer.credentialsValue, token);
      } finally {
        await store.release();
      }
      assert.equal(await emulator.device(pump2), undefined, 'the server never created pump-2');
    });
  }
});
