/**
 * The credential store as a flow meets it: a store that cannot be written, or that another
 * Node-RED process holds, makes the node refuse with nothing sent to the server, and say so once
 * in the log; an answer from stored credentials says what of the message it did not apply.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { defaultStorePath } from '../src/store';
import { Collector, keys, loadFlow, provisionFlow, send } from './support/flows';
import { helper, onCall } from './support/node-red';
import { flowTarget, guardEachTest } from './support/reliability';
import { StoreProcess } from './support/store-process';
import { ALLOW, startEmulator, type RemoteEmulator } from './support/transport-helpers';

describe('reliability: the credential store seen from a flow', function () {
  this.timeout(30_000);
  const guard = guardEachTest();
  let emulator: RemoteEmulator;
  const allow = (): Record<string, Record<string, string>> => keys(ALLOW.secret, ALLOW.key);
  const payloadOf = (msg: { payload?: unknown }): Record<string, unknown> =>
    msg.payload as Record<string, unknown>;

  before(async function () {
    emulator = await startEmulator();
  });

  after(async function () {
    await emulator.stop();
  });

  async function requestsFor(name: string): Promise<number> {
    const requests = await emulator.requests();
    return requests.filter((r) => (r.body as { deviceName?: unknown })?.deviceName === name).length;
  }

  it('sends nothing while the store cannot be written, says so once, and goes on once it can', async function () {
    // As root, permissions stop nothing: a file where the store's folder goes does.
    const folder = path.join(guard.userDir, 'thingsboard-provision');
    fs.writeFileSync(folder, 'not a folder');
    await loadFlow(
      provisionFlow(flowTarget(emulator), { transport: 'http' }),
      allow(),
      guard.userDir,
    );
    const warnings: string[] = [];
    onCall(helper.getNode('prov'), 'warn', (args) => warnings.push(String(args[0])));
    const out = new Collector('out');
    const caught = new Collector('caught');
    for (const [i, name] of ['unkept-1', 'unkept-2'].entries()) {
      send({ deviceName: name });
      const msg = (await caught.waitFor(i + 1))[i];
      assert.equal(payloadOf(msg).status, 'FAILURE');
      assert.match(String(payloadOf(msg).errorMsg), /^Nothing was sent to the server/);
      assert.ok(String(msg.error?.message).includes('cannot be written'), msg.error?.message);
      assert.equal(payloadOf(msg).credentialsValue, undefined);
      assert.equal(await requestsFor(name), 0, `${name} reached the server`);
    }
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0], /^The credential store cannot be used now/);
    fs.rmSync(folder);
    send({ deviceName: 'unkept-1' });
    await out.waitFor(1);
    assert.equal(caught.messages.length, 2);
    assert.equal(await requestsFor('unkept-1'), 1);
    assert.ok(fs.readdirSync(folder).includes('credentials.json.journal-1'));
  });

  it('refuses while another process holds the store, naming it, and provisions once it has gone', async function () {
    const holder = new StoreProcess(defaultStorePath(guard.userDir));
    try {
      assert.deepEqual(await holder.report, { holding: true });
      await loadFlow(
        provisionFlow(flowTarget(emulator), { transport: 'mqtt' }),
        allow(),
        guard.userDir,
      );
      const out = new Collector('out');
      const caught = new Collector('caught');
      send({ deviceName: 'shared-dir' });
      const [msg] = await caught.waitFor(1);
      assert.equal(payloadOf(msg).status, 'FAILURE');
      const text = String(payloadOf(msg).errorMsg);
      assert.match(text, /^Nothing was sent to the server/);
      assert.match(text, new RegExp(`in use by another Node-RED process: pid ${holder.child.pid}`));
      assert.equal(await requestsFor('shared-dir'), 0);
      await holder.stop();
      send({ deviceName: 'shared-dir' });
      await out.waitFor(1);
      assert.equal(caught.messages.length, 1);
      assert.equal(await requestsFor('shared-dir'), 1);
    } finally {
      await holder.kill();
    }
  });

  it('answers from stored credentials, saying in msg.thingsboard.ignored what it did not apply', async function () {
    await loadFlow(
      provisionFlow(flowTarget(emulator), { transport: 'http', credentialsType: 'ACCESS_TOKEN' }),
      allow(),
      guard.userDir,
    );
    const out = new Collector('out');
    send({ deviceName: 'kept-pump', credentials: { token: 'pump-token-000000000001' } });
    send({ deviceName: 'other-pump' });
    const [first] = await out.waitFor(2);
    assert.equal((first.thingsboard as Record<string, unknown>).ignored, undefined);
    send({
      deviceName: 'kept-pump',
      credentials: { token: 'pump-token-000000000002' },
      gateway: true,
    });
    send({ deviceName: 'kept-pump', credentials: { token: 'pump-token-000000000001' } });
    const [, , changed, same] = await out.waitFor(4);
    const seen = changed.thingsboard as Record<string, unknown>;
    assert.equal(seen.cached, true);
    assert.deepEqual(seen.ignored, ['credentials', 'gateway']);
    assert.equal(payloadOf(changed).credentialsValue, 'pump-token-000000000001');
    assert.equal((same.thingsboard as Record<string, unknown>).ignored, undefined);
    assert.equal(await requestsFor('kept-pump'), 1);
  });
});
