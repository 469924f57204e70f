import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Page } from 'playwright-core';
import type * as EmulatorModule from '../../src/emulator';
import { squash, type ShippedCatalog } from './support/catalog';
import type { NodeRedEditor } from './support/editor';
import { shootFailure, startEditorSession, type EditorSession } from './support/session';

const OUT = 'thingsboard-device-out';
const IN = 'thingsboard-device-in';
// MQTT last: its session stays open for the RPC that follows.
const TRANSPORTS = ['http', 'coap', 'mqtt'] as const;
const READING = { temperature: 21.5 };

const meterFor = (transport: string): string => `e2e-meter-${transport}`;

describe('A user sends as devices: device out and device in dragged, configured, deployed', function () {
  const key = `e2e-key-${randomBytes(6).toString('hex')}`;
  const secret = `e2e-secret-${randomBytes(9).toString('hex')}`;
  const ids = { inject: '', out: '', debug: '', in: '', func: '' };

  let session: EditorSession | undefined;
  let emulator: EmulatorModule.Emulator;
  let page: Page;
  let editor: NodeRedEditor;
  let en: ShippedCatalog;

  before(async function () {
    this.timeout(300_000);
    session = await startEditorSession({
      name: 'device-nodes',
      profile: { name: 'e2e-devices', key, secret },
    });
    ({ emulator, page, editor, en } = session);
  });

  afterEach(async function () {
    await shootFailure(this.currentTest, page);
  });

  after(async function () {
    this.timeout(60_000);
    await session?.stop();
  });

  async function telemetryOf(device: string): Promise<unknown[]> {
    for (let i = 0; i < 100 && !emulator.device(device)?.telemetry.length; i++) {
      await page.waitForTimeout(50);
    }
    return emulator.device(device)?.telemetry ?? [];
  }

  /** The help the book button of the open dialog shows: its title and first paragraph. */
  async function helpShown(type: string): Promise<void> {
    const help = await editor.helpFromTray();
    assert.equal(
      (await help.locator('h1.red-ui-help-title').innerText()).trim(),
      en.text(`${type}.paletteLabel`),
    );
    assert.ok(
      squash(await help.innerText()).includes(en.helpOpening(type)),
      `the help sidebar shows the ${type} help`,
    );
  }

  it('drags device out onto the workspace and adds a server from its dialog; every choice has its label and hints', async function () {
    ids.out = await editor.dragFromPalette(OUT, 420, 200);
    assert.equal(
      await editor.nodeLabel(ids.out).textContent(),
      en.text(`${OUT}.nodeLabel.default`),
    );
    await editor.edit(ids.out);
    assert.equal(await page.locator('#node-input-config').inputValue(), '_ADD_');
    await editor.addServer({
      name: 'local emulator',
      host: emulator.host,
      ports: emulator.ports,
      key,
      secret,
    });
    assert.notEqual(await page.locator('#node-input-config').inputValue(), '_ADD_');

    for (const field of ['config', 'via', 'transport', 'deviceName', 'kind', 'qos', 'timeout']) {
      await editor.seeInTray(en.text(`${OUT}.label.${field}`));
    }
    await editor.seeInTray(en.text(`${OUT}.label.provision`));
    assert.equal(await page.locator('#node-input-provision').isChecked(), true);
    await editor.seeInTray(en.text(`${OUT}.tip.provision`));
    await editor.seeInTray(en.text(`${OUT}.tip.rpc`));
    await page.locator('#node-input-transport').selectOption('mqtt');
    await editor.setTypedInput('node-input-deviceName', 'str', meterFor('mqtt'));
    await helpShown(OUT);
    await session?.shot('device-out-dialog');

    // Through a gateway: the gateway's name and the devices' type instead of a transport.
    await page.locator('#node-input-via').selectOption('gateway');
    await editor.seeInTray(en.text(`${OUT}.label.gateway`));
    await editor.seeInTray(en.text(`${OUT}.label.deviceType`));
    await editor.seeInTray(en.text(`${OUT}.tip.gateway`));
    assert.equal(await page.locator('#node-input-transport').isVisible(), false);
    await session?.shot('device-out-dialog-gateway');
    await page.locator('#node-input-via').selectOption('device');
    await editor.done();
    assert.equal(
      await editor.nodeLabel(ids.out).textContent(),
      en.text(`${OUT}.nodeLabel.device`).replace('__device__', meterFor('mqtt')),
    );
  });

  for (const transport of TRANSPORTS) {
    it(`sends a reading as the device over ${transport}: it arrives at the emulator and the status turns green`, async function () {
      const meter = meterFor(transport);
      if (transport === TRANSPORTS[0]) {
        ids.inject = await editor.dragFromPalette('inject', 140, 200);
        ids.debug = await editor.dragFromPalette('debug', 700, 200);
        await editor.edit(ids.inject);
        await editor.setTypedInputOf(
          '#node-input-property-container .node-input-prop-property-value',
          'json',
          JSON.stringify(READING),
        );
        await editor.done();
        await editor.wire(ids.inject, ids.out);
        await editor.wire(ids.out, ids.debug);
      }
      await editor.edit(ids.out);
      await page.locator('#node-input-transport').selectOption(transport);
      await editor.setTypedInput('node-input-deviceName', 'str', meter);
      await editor.done();
      await editor.deploy();
      await editor.clickInjectButton(ids.inject);

      const status = transport === 'mqtt' ? 'status.connected' : 'status.sent';
      await editor.waitForStatus(ids.out, {
        text: en.text(`${OUT}.${status}`).replace('__count__', '1'),
        shape: 'dot-green',
      });
      // Over MQTT the status turns green once connected, maybe before the reading is acknowledged.
      assert.deepEqual(await telemetryOf(meter), [READING]);
      // Provisioned on first use, over the transport chosen in the dialog.
      assert.equal(emulator.requests.at(-1)?.transport, transport);

      await editor.sidebarTab('debug');
      const message = editor.debugMessages().filter({ hasText: 'temperature' }).last();
      await message.waitFor();
      assert.match(squash(await message.innerText()), /temperature: 21\.5/);
      await editor.dismissNotifications();
      await session?.shot(`device-out-${transport}`);
    });
  }

  it('answers an RPC: device in -> a function that builds the reply -> device out', async function () {
    ids.in = await editor.dragFromPalette(IN, 140, 320);
    ids.func = await editor.dragFromPalette('function', 420, 320);
    assert.equal(await editor.nodeLabel(ids.in).textContent(), en.text(`${IN}.nodeLabel.default`));

    await editor.edit(ids.in);
    // A new node names no server: the user picks the one added from device out's dialog.
    await page.locator('#node-input-config').selectOption({ label: 'local emulator' });
    for (const field of ['config', 'via', 'name']) {
      await editor.seeInTray(en.text(`${IN}.label.${field}`));
    }
    await editor.seeInTray(en.text(`${IN}.tip.mqttOnly`));
    await editor.seeInTray(en.text(`${IN}.tip.sessions`));
    await helpShown(IN);
    await session?.shot('device-in-dialog');
    await editor.done();

    await editor.edit(ids.func);
    await editor.pasteFunctionCode(
      '// The reply: msg.rpc, kept, routes it back.\n' +
        'msg.payload = { speed: msg.payload.speed, done: true };\nreturn msg;',
    );
    await editor.done();
    await editor.wire(ids.in, ids.func);
    await editor.wire(ids.func, ids.out);
    await editor.deploy();
    // The redeploy closed the device's connection; its next reading opens it again.
    await editor.clickInjectButton(ids.inject);
    const connected = {
      text: en.text(`${IN}.status.connected`).replace('__count__', '1'),
      shape: 'dot-green',
    };
    await editor.waitForStatus(ids.in, connected);

    const reply = await emulator.sendRpc(meterFor('mqtt'), 'setSpeed', { speed: 3 });
    assert.deepEqual(reply, { speed: 3, done: true });
    await editor.waitForStatus(ids.out, {
      text: en.text(`${OUT}.status.connected`).replace('__count__', '1'),
      shape: 'dot-green',
    });
    await editor.sidebarTab('debug');
    await editor.debugMessages().filter({ hasText: 'done: true' }).last().waitFor();
    await editor.dismissNotifications();
    await session?.shot('device-rpc-flow');
  });
});
