import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Locator, Page } from 'playwright-core';
import type * as EmulatorModule from '../../src/emulator';
import { assertJapanese, squash, type ShippedCatalog } from './support/catalog';
import type { NodeRedEditor } from './support/editor';
import { adminJson, type NodeRedProcess } from './support/runtime';
import { MODULE, shootFailure, startEditorSession, type EditorSession } from './support/session';

const CONFIG_TYPE = 'thingsboard-provision-config';
const PROVISION_TYPE = 'thingsboard-provision';
const CATEGORY = 'thingsboard';
const TRANSPORTS = ['mqtt', 'http', 'coap'] as const;

interface NodeSet {
  module: string;
  name: string;
  types: string[];
  enabled: boolean;
  loaded?: boolean;
  err?: unknown;
  version?: string;
}

const deviceFor = (transport: string): string => `e2e-device-${transport}`;
// What the provision node says when the message names no device (src/protocol/request.ts).
const NO_DEVICE_NAME =
  "No device name: set msg.deviceName, or choose a fixed name (type string) in the node's Device name field.";

describe('A first-time user: the packed package in a real Node-RED, driven through the editor', function () {
  const key = `e2e-key-${randomBytes(6).toString('hex')}`;
  const secret = `e2e-secret-${randomBytes(9).toString('hex')}`;
  const tokens: string[] = [];
  const ids = { inject: '', provision: '', debug: '' };

  let session: EditorSession | undefined;
  let red: NodeRedProcess;
  let emulator: EmulatorModule.Emulator;
  let page: Page;
  let editor: NodeRedEditor;
  let packageDir: string;
  let en: ShippedCatalog;
  let ja: ShippedCatalog;

  before(async function () {
    this.timeout(300_000);
    session = await startEditorSession({
      name: 'editor',
      profile: { name: 'e2e-profile', key, secret },
    });
    ({ red, emulator, page, editor, packageDir, en, ja } = session);
  });

  afterEach(async function () {
    await shootFailure(this.currentTest, page);
  });

  after(async function () {
    this.timeout(60_000);
    await session?.stop();
  });

  async function shot(name: string): Promise<void> {
    await session?.shot(name);
  }

  async function heightOf(locator: Locator): Promise<number> {
    const box = await locator.boundingBox();
    assert.ok(box, 'element is laid out');
    return Math.round(box.height);
  }

  /** The server dialog's labels are as tall as the one-word Host label: none wraps. */
  async function labelsOnOneLine(): Promise<void> {
    const label = (id: string) => page.locator(`label[for="node-config-input-${id}"]`);
    const oneLine = await heightOf(label('host'));
    for (const id of ['provisionDeviceKey', 'provisionDeviceSecret']) {
      assert.equal(await heightOf(label(id)), oneLine, `the ${id} label wraps`);
    }
  }

  /** Ticking Use TLS moves default ports to their TLS twins and shows the TLS rows; unticking undoes it. */
  async function useTlsMovesDefaultPorts(): Promise<void> {
    const usetls = page.locator('#node-config-input-usetls');
    const ports = () =>
      Promise.all(
        ['mqtt', 'http', 'coap'].map((t) =>
          page.locator(`#node-config-input-${t}Port`).inputValue(),
        ),
      );
    const tlsRows = () =>
      Promise.all(
        ['#node-config-row-tls', '#node-config-row-tls-tip'].map((id) =>
          page.locator(id).isVisible(),
        ),
      );
    assert.deepEqual(await ports(), ['1883', '8080', '5683']);
    assert.deepEqual(await tlsRows(), [false, false], 'TLS rows hidden while TLS is off');
    await usetls.check();
    assert.deepEqual(await ports(), ['8883', '443', '5683']);
    assert.deepEqual(await tlsRows(), [true, true], 'TLS rows shown once TLS is on');
    await shot('config-dialog-tls');
    await usetls.uncheck();
    assert.deepEqual(await ports(), ['1883', '8080', '5683']);
    assert.deepEqual(await tlsRows(), [false, false]);
  }

  it('the runtime loads both node types from the installed tarball, one node set each (admin API)', async function () {
    assert.ok(red);
    const sets = await adminJson<NodeSet[]>(red.url, 'nodes');
    const ours = sets.filter((set) => set.module === MODULE);
    const shipped = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as {
      version: string;
      'node-red': { nodes: Record<string, string> };
    };
    assert.deepEqual(
      ours.map((set) => set.name).sort(),
      Object.keys(shipped['node-red'].nodes).sort(),
      `node sets of ${MODULE}: ${JSON.stringify(ours)}`,
    );
    for (const type of [CONFIG_TYPE, PROVISION_TYPE]) {
      assert.ok(
        ours.some((set) => set.types.includes(type)),
        `${type} is not loaded`,
      );
    }
    for (const set of ours) {
      assert.deepEqual(set.types, [set.name], 'a node set registers the type it is named after');
      assert.equal(set.enabled, true);
      assert.notEqual(set.loaded, false, `${set.name} not loaded: ${JSON.stringify(set.err)}`);
      assert.equal(set.err, undefined);
      assert.equal(set.version, shipped.version);
    }
  });

  it('offers its examples under Import > Examples', async function () {
    assert.ok(red);
    const shipped = fs
      .readdirSync(path.join(packageDir, 'examples'))
      .filter((file) => file.endsWith('.json'))
      .map((file) => file.replace(/\.json$/, ''))
      .sort();
    assert.ok(shipped.length >= 3, `examples shipped: ${shipped.join(', ')}`);
    const listed = await adminJson<unknown[]>(red.url, `library/examples/flows/${MODULE}/`);
    const names = listed
      .map((entry) => (typeof entry === 'string' ? entry : (entry as { fn?: string }).fn))
      .filter((name): name is string => typeof name === 'string')
      .map((name) => name.replace(/\.json$/, ''))
      .sort();
    assert.deepEqual(names, shipped);

    await editor.menu('menu-item-import');
    await page.locator('#red-ui-tab-red-ui-clipboard-dialog-import-tab-examples a').click();
    const tab = page.locator('#red-ui-clipboard-dialog-import-tab-examples');
    await tab.getByText(MODULE, { exact: true }).click();
    for (const name of shipped) await tab.getByText(name, { exact: true }).waitFor();
    await shot('examples-import');
    await page.locator('#red-ui-clipboard-dialog-cancel').click();
  });

  it('shows the provision node in the palette under the thingsboard category, and both types in Manage palette', async function () {
    const node = editor.paletteNode(PROVISION_TYPE);
    await node.waitFor();
    const category = await node.evaluate(
      (element) => element.closest('.red-ui-palette-category')?.id ?? '(none)',
    );
    assert.equal(category, `red-ui-palette-container-${CATEGORY}`, 'palette category');
    await node.scrollIntoViewIfNeeded();
    assert.equal(await editor.paletteCategoryLabel(CATEGORY).textContent(), CATEGORY);
    assert.equal(
      (await node.locator('.red-ui-palette-label').textContent())?.trim(),
      en.text(`${PROVISION_TYPE}.paletteLabel`),
    );
    // Config nodes never appear in the palette itself; the palette manager lists them.
    await editor.menu('menu-item-edit-palette');
    const entry = page.locator('.red-ui-editableList-item-content', {
      has: page.locator('.red-ui-palette-module-name', { hasText: MODULE }),
    });
    await entry.locator('.red-ui-palette-module-set-button').click();
    for (const type of [PROVISION_TYPE, CONFIG_TYPE]) {
      await entry.getByText(type, { exact: true }).waitFor();
    }
    await editor.done();
  });

  it('drags the provision node onto the workspace and adds a server from its dialog, secret masked', async function () {
    ids.provision = await editor.dragFromPalette(PROVISION_TYPE, 360, 260);
    assert.equal(
      await editor.nodeLabel(ids.provision).textContent(),
      en.text(`${PROVISION_TYPE}.nodeLabel.default`),
    );
    await editor.edit(ids.provision);
    assert.equal(await page.locator('#node-input-config').inputValue(), '_ADD_');
    // Node-RED 4.1 disables the pencil until a server exists; the + button adds one.
    await page.locator('#node-input-btn-config-add').click();
    await page.locator('#node-config-input-host').waitFor();
    await editor.trayOpened();

    for (const field of ['host', 'ports', 'provisionDeviceKey', 'provisionDeviceSecret']) {
      await editor.seeInTray(en.text(`${CONFIG_TYPE}.label.${field}`));
    }
    await useTlsMovesDefaultPorts();
    await labelsOnOneLine();
    assert.ok(emulator);
    await page.locator('#node-config-input-name').fill('local emulator');
    await page.locator('#node-config-input-host').fill(emulator.host);
    await page.locator('#node-config-input-mqttPort').fill(String(emulator.ports.mqtt));
    await page.locator('#node-config-input-httpPort').fill(String(emulator.ports.http));
    await page.locator('#node-config-input-coapPort').fill(String(emulator.ports.coap));
    await page.locator('#node-config-input-provisionDeviceKey').fill(key);
    const secretInput = page.locator('#node-config-input-provisionDeviceSecret');
    assert.equal(await secretInput.getAttribute('type'), 'password');
    await secretInput.fill(secret);

    const help = await editor.helpFromTray();
    assert.equal(
      (await help.locator('h1.red-ui-help-title').innerText()).trim(),
      en.text(`${CONFIG_TYPE}.paletteLabel`),
    );
    assert.ok(
      squash(await help.innerText()).includes(en.helpOpening(CONFIG_TYPE)),
      'the help sidebar shows the config node help',
    );
    await shot('config-dialog');
    await editor.done('node-config-dialog-ok');
    assert.notEqual(await page.locator('#node-input-config').inputValue(), '_ADD_');
    await editor.done();
  });

  it('wires inject -> provision -> debug; an inject without msg.deviceName gets a red INVALID_INPUT and advice', async function () {
    ids.inject = await editor.dragFromPalette('inject', 120, 260);
    ids.debug = await editor.dragFromPalette('debug', 640, 260);
    await editor.wire(ids.inject, ids.provision);
    await editor.wire(ids.provision, ids.debug);
    await editor.deploy();
    await editor.clickInjectButton(ids.inject);
    await editor.waitForStatus(ids.provision, { text: 'INVALID_INPUT', shape: 'ring-red' });
    await editor.sidebarTab('debug');
    // Errors reach the debug sidebar as text, as the core nodes' do, not as an Error with a stack.
    // Node-RED shows any text over 80 characters on one line, cut, that a click opens whole: the
    // status and what to do come first, so the cut line already says where the name comes from.
    const error = editor.debugMessages().filter({ hasText: 'INVALID_INPUT' }).last();
    await error.waitFor();
    const payload = error.locator('.red-ui-debug-msg-payload');
    const expected = en
      .text(`${PROVISION_TYPE}.errors.failedNoName`)
      .replace('__status__', 'INVALID_INPUT')
      .replace('__detail__', NO_DEVICE_NAME);
    const firstLine = squash(await payload.innerText());
    assert.ok(
      firstLine.startsWith(
        '"Provisioning failed (INVALID_INPUT): No device name: set msg.deviceName',
      ),
      `the first line of the error: ${firstLine}`,
    );
    assert.equal(firstLine, `"${expected.slice(0, 80)}..."`, 'the text itself, not an Error');
    const handles = payload.locator('.red-ui-debug-msg-object-handle');
    assert.equal(await handles.count(), 1, 'one click to read it whole');
    await handles.click();
    assert.equal(
      squash(await payload.locator('pre').innerText()),
      expected,
      'the whole advice, where the name comes from included, without a stack',
    );
    assert.equal(emulator?.requests.length, 0, 'nothing was sent to the server');
  });

  it('picks the transport and a fixed device name in the dialog, and reads the help', async function () {
    await editor.edit(ids.provision);
    await page.locator('#node-input-transport').selectOption('mqtt');
    await editor.setTypedInput('node-input-deviceName', 'str', deviceFor('mqtt'));
    for (const field of ['config', 'transport', 'deviceName', 'credentialsType']) {
      await editor.seeInTray(en.text(`${PROVISION_TYPE}.label.${field}`));
    }
    const help = await editor.helpFromTray();
    assert.equal(
      (await help.locator('h1.red-ui-help-title').innerText()).trim(),
      en.text(`${PROVISION_TYPE}.paletteLabel`),
    );
    assert.ok(
      squash(await help.innerText()).includes(en.helpOpening(PROVISION_TYPE)),
      'the help sidebar shows the provision node help',
    );
    await shot('provision-dialog');
    await editor.done();
    assert.equal(
      await editor.nodeLabel(ids.provision).textContent(),
      en.text(`${PROVISION_TYPE}.nodeLabel.device`).replace('__device__', deviceFor('mqtt')),
    );
  });

  for (const transport of TRANSPORTS) {
    it(`provisions over ${transport}: green status with the device name, credentials in the debug sidebar`, async function () {
      const device = deviceFor(transport);
      if (transport !== TRANSPORTS[0]) {
        // What a user does to try the next transport: reopen, change, redeploy.
        await editor.edit(ids.provision);
        await page.locator('#node-input-transport').selectOption(transport);
        await editor.setTypedInput('node-input-deviceName', 'str', device);
        await editor.done();
      }
      await editor.deploy();
      await editor.clickInjectButton(ids.inject);
      await editor.waitForStatus(ids.provision, { text: device, shape: 'dot-green' });

      assert.ok(emulator);
      const registered = emulator.device(device);
      assert.ok(registered, `the emulator knows ${device}`);
      assert.equal(registered.credentials.credentialsType, 'ACCESS_TOKEN');
      const token = (registered.credentials as { token: string }).token;
      tokens.push(token);
      const last = emulator.requests.at(-1);
      assert.equal(last?.transport, transport);

      await editor.sidebarTab('debug');
      const message = editor
        .debugMessages()
        .filter({ hasText: `"${device}"` })
        .last();
      await message.waitFor();
      const text = await message.innerText();
      assert.match(text, /"SUCCESS"/);
      assert.match(text, /credentialsValue/);
      assert.ok(text.includes(`"${token}"`), `the debug message shows the token: ${text}`);
      await editor.dismissNotifications();
      await shot(`deployed-flow-${transport}`);
    });
  }

  it('a second click answers from the stored credentials: yellow status', async function () {
    const device = deviceFor(TRANSPORTS[TRANSPORTS.length - 1]);
    assert.ok(emulator);
    const before = emulator.requests.length;
    await editor.clickInjectButton(ids.inject);
    await editor.waitForStatus(ids.provision, {
      text: en.text(`${PROVISION_TYPE}.status.cached`).replace('__device__', device),
      shape: 'dot-yellow',
    });
    assert.equal(emulator.requests.length, before, 'no new request to the server');
  });

  it('keeps the key and secret out of flows.json; flows_cred.json holds them encrypted', async function () {
    assert.ok(red);
    const flows = fs.readFileSync(path.join(red.userDir, 'flows.json'), 'utf8');
    const nodes = JSON.parse(flows) as Array<Record<string, unknown>>;
    const server = nodes.find((node) => node.type === CONFIG_TYPE);
    assert.ok(server, 'the server config node is in flows.json');
    assert.equal(server.host, emulator?.host);
    assert.equal(Number(server.coapPort), emulator?.ports.coap);
    assert.ok(!flows.includes(key), 'the provision key is not in flows.json');
    assert.ok(!flows.includes(secret), 'the provision secret is not in flows.json');
    assert.ok(nodes.every((node) => !('credentials' in node)));

    const credentials = fs.readFileSync(path.join(red.userDir, 'flows_cred.json'), 'utf8');
    assert.ok(typeof (JSON.parse(credentials) as { $?: unknown }).$ === 'string', 'encrypted');
    assert.ok(!credentials.includes(key) && !credentials.includes(secret));
  });

  it('the Node-RED log shows neither the secret nor an obtained token', function () {
    assert.ok(red);
    const log = red.log();
    assert.match(log, /Started flows/);
    assert.ok(!log.includes(secret), 'secret in the log');
    for (const token of tokens) assert.ok(!log.includes(token), 'token in the log');
  });

  it('in Japanese (User Settings > Language), the palette, dialogs, node label and help are Japanese', async function () {
    await editor.menu('menu-item-user-settings');
    await page.locator('#user-settings-editor-language').selectOption('ja');
    await editor.done();
    await editor.reload();

    const paletteLabel = ja.text(`${PROVISION_TYPE}.paletteLabel`);
    assertJapanese(paletteLabel, 'ja paletteLabel');
    const node = editor.paletteNode(PROVISION_TYPE);
    await node.scrollIntoViewIfNeeded();
    assert.equal((await node.locator('.red-ui-palette-label').textContent())?.trim(), paletteLabel);
    assert.equal(
      await heightOf(node),
      await heightOf(editor.paletteNode('inject')),
      'the Japanese palette label fits on one line',
    );

    const device = deviceFor(TRANSPORTS[TRANSPORTS.length - 1]);
    assert.equal(
      await editor.nodeLabel(ids.provision).textContent(),
      ja.text(`${PROVISION_TYPE}.nodeLabel.device`).replace('__device__', device),
    );

    await editor.edit(ids.provision);
    for (const field of ['config', 'transport', 'deviceName', 'credentialsType']) {
      const expected = ja.text(`${PROVISION_TYPE}.label.${field}`);
      assertJapanese(expected, `ja label.${field}`);
      await editor.seeInTray(expected);
    }
    const server = ja.text(`${PROVISION_TYPE}.credentialsType.server`);
    assertJapanese(server, 'ja credentialsType.server');
    assert.equal(
      (await page.locator('#node-input-credentialsType option[value="server"]').innerText()).trim(),
      server,
    );
    const help = await editor.helpFromTray();
    assert.ok(
      squash(await help.innerText()).includes(ja.helpOpening(PROVISION_TYPE)),
      'the help sidebar shows the Japanese provision node help',
    );
    await shot('japanese-provision-dialog');

    await page.locator('#node-input-btn-config-edit').click();
    await page.locator('#node-config-input-host').waitFor();
    await editor.trayOpened();
    for (const field of ['host', 'ports', 'provisionDeviceKey', 'provisionDeviceSecret']) {
      const expected = ja.text(`${CONFIG_TYPE}.label.${field}`);
      assertJapanese(expected, `ja label.${field}`);
      await editor.seeInTray(expected);
    }
    await labelsOnOneLine();
    assert.equal(
      await page.locator('#node-config-input-provisionDeviceSecret').getAttribute('type'),
      'password',
    );
    const configHelp = await editor.helpFromTray();
    assert.ok(
      squash(await configHelp.innerText()).includes(ja.helpOpening(CONFIG_TYPE)),
      'the help sidebar shows the Japanese config node help',
    );
    await shot('japanese-config-dialog');
    await page.locator('#node-config-dialog-cancel').click();
    await page.locator('#node-config-dialog-cancel').waitFor({ state: 'detached' });
    await page.locator('#node-dialog-cancel').click();
  });
});
