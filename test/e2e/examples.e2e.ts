import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import type * as EmulatorModule from '../../src/emulator';
import type { ShippedCatalog } from './support/catalog';
import type { NodeRedEditor } from './support/editor';
import { deployFlows, type NodeRedProcess } from './support/runtime';
import { MODULE, shootFailure, startEditorSession, type EditorSession } from './support/session';

type FlowNode = Record<string, unknown> & { id: string; type: string; z?: string };

const DEMO_KEY = 'demo-provision-key';
const DEMO_SECRET = 'demo-provision-secret';
const { demoFlows } = require('../../scripts/demo.js') as {
  demoFlows(): { flows: FlowNode[]; credentials: Record<string, Record<string, string>> };
};
// What the editor says on an import, from its own catalog.
const editorCatalog = JSON.parse(
  fs.readFileSync(
    path.join(
      path.dirname(require.resolve('@node-red/editor-client/package.json')),
      'locales',
      'en-US',
      'editor.json',
    ),
    'utf8',
  ),
) as { clipboard: { nodesImported: string; import: { conflictNotification1: string } } };

describe('The examples as a newcomer meets them, on a 1400x900 screen', function () {
  let session: EditorSession | undefined;
  let red: NodeRedProcess;
  let emulator: EmulatorModule.Emulator;
  let page: Page;
  let editor: NodeRedEditor;
  let en: ShippedCatalog;
  let examples: string[];

  before(async function () {
    this.timeout(300_000);
    session = await startEditorSession({
      name: 'examples',
      profile: { name: 'demo', key: DEMO_KEY, secret: DEMO_SECRET },
    });
    ({ red, emulator, page, editor, en } = session);
    await page.setViewportSize({ width: 1400, height: 900 });
    examples = fs
      .readdirSync(path.join(session.packageDir, 'examples'))
      .filter((file) => file.endsWith('.json'))
      .sort();
  });

  afterEach(async function () {
    await shootFailure(this.currentTest, page);
  });

  after(async function () {
    this.timeout(60_000);
    await session?.stop();
  });

  /** Flows pointed at the emulator, the key and secret given as a user types them in. */
  function runnable(flows: FlowNode[], credentials: Record<string, Record<string, string>>) {
    const { mqtt, http, coap } = emulator.ports;
    return flows.map((node) => {
      if (node.type === 'thingsboard-provision-config') {
        return {
          ...node,
          mqttPort: mqtt,
          httpPort: http,
          coapPort: coap,
          credentials: credentials[node.id],
        };
      }
      if (node.type === 'mqtt-broker') return { ...node, port: String(mqtt) };
      if (node.type === 'function') {
        return { ...node, func: String(node.func).replace('127.0.0.1:8080', `127.0.0.1:${http}`) };
      }
      return node;
    });
  }

  async function deployAndOpen(flows: FlowNode[]): Promise<void> {
    const answer = await deployFlows(red.url, flows);
    assert.ok(answer.status < 300, `deploy: HTTP ${answer.status} ${answer.body}`);
    await editor.reload();
  }

  /** The nodes of the shown tab that are not wholly inside the visible workspace. */
  function outOfView(): Promise<string[]> {
    return page.evaluate(() => {
      const chart = document.getElementById('red-ui-workspace-chart');
      if (!chart) return ['no workspace'];
      const area = chart.getBoundingClientRect();
      const right = area.left + chart.clientWidth;
      const bottom = area.top + chart.clientHeight;
      return Array.from(chart.querySelectorAll('g.red-ui-flow-node-group')).flatMap((group) => {
        const box = group.getBoundingClientRect();
        const inside =
          box.left >= area.left &&
          box.top >= area.top &&
          box.right <= right &&
          box.bottom <= bottom;
        return inside ? [] : [`${group.textContent ?? group.id} at ${Math.round(box.right)}`];
      });
    });
  }

  /** Shows a flow's tab; a second click on the shown tab would open its properties. */
  async function showTab(id: string): Promise<void> {
    const tab = page.locator(`#red-ui-tab-${id}`);
    if (!((await tab.getAttribute('class')) ?? '').split(' ').includes('active')) {
      await tab.locator('a').click();
    }
    await page.locator(`#red-ui-tab-${id}.active`).waitFor();
  }

  /** Shows each tab in turn: every node in view, then a screenshot named after the tab. */
  async function everyTabInView(tabs: FlowNode[], shotPrefix: string): Promise<void> {
    for (const tab of tabs) {
      await showTab(tab.id);
      await page.waitForTimeout(300);
      assert.deepEqual(await outOfView(), [], `${String(tab.label)}: nodes out of view`);
      await session?.shot(`${shotPrefix}-${String(tab.label).slice(0, 2)}`);
    }
  }

  it('every example, each on a tab of its own, fits the workspace at the default zoom', async function () {
    const flows: FlowNode[] = [];
    const credentials: Record<string, Record<string, string>> = {};
    for (const file of examples) {
      const flow = JSON.parse(
        fs.readFileSync(path.join(session?.packageDir ?? '', 'examples', file), 'utf8'),
      ) as FlowNode[];
      const tab = flow.find((n) => n.z)?.z as string;
      flows.push({ id: tab, type: 'tab', label: file.replace(/\.json$/, '') }, ...flow);
      for (const node of flow.filter((n) => n.type === 'thingsboard-provision-config')) {
        credentials[node.id] = { provisionDeviceKey: DEMO_KEY, provisionDeviceSecret: DEMO_SECRET };
      }
    }
    await deployAndOpen(runnable(flows, credentials));
    await editor.sidebarTab('info');
    await everyTabInView(
      flows.filter((n) => n.type === 'tab'),
      'example',
    );
  });

  it("npm start's flows: every node in view, the device out and device in nodes connected", async function () {
    const { flows, credentials } = demoFlows();
    await deployAndOpen(runnable(flows, credentials));
    await editor.sidebarTab('debug');
    for (const node of flows.filter((n) => n.type.startsWith('thingsboard-device-'))) {
      await showTab(String(node.z));
      await editor.waitForStatus(node.id, { text: '1 connected', shape: 'dot-green' });
    }
    await everyTabInView(
      flows.filter((n) => n.type === 'tab'),
      'demo',
    );
    assert.deepEqual(emulator.device('demo-pump-1')?.telemetry, [{ speed: 0 }]);
  });

  it("imports examples 02 and 03 beside npm start's flows without a question about existing nodes", async function () {
    const { conflictNotification1: conflict } = editorCatalog.clipboard.import;
    for (const prefix of ['02 ', '03 ']) {
      const name = examples.find((file) => file.startsWith(prefix))?.replace(/\.json$/, '');
      assert.ok(name, `example ${prefix}`);
      await editor.dismissNotifications();
      await editor.menu('menu-item-import');
      await page.locator('#red-ui-tab-red-ui-clipboard-dialog-import-tab-examples a').click();
      const tab = page.locator('#red-ui-clipboard-dialog-import-tab-examples');
      await tab.getByText(MODULE, { exact: true }).click();
      await tab.getByText(name, { exact: true }).click();
      await page.locator('#red-ui-clipboard-dialog-import-opt-new').click();
      await page.locator('#red-ui-clipboard-dialog-ok').click();
      const notifications = page.locator('#red-ui-notifications .red-ui-notification');
      const asked = notifications.filter({ hasText: conflict });
      await notifications
        .filter({ hasText: editorCatalog.clipboard.nodesImported })
        .or(asked)
        .last()
        .waitFor();
      assert.equal(await asked.count(), 0, `importing ${name} asked: ${conflict}`);
      // The imported nodes follow the mouse until a click puts them down.
      const chart = await page.locator('#red-ui-workspace-chart').boundingBox();
      assert.ok(chart);
      await page.mouse.move(chart.x + 300, chart.y + 200, { steps: 5 });
      await page.mouse.click(chart.x + 300, chart.y + 200);
      await session?.shot(`import-${prefix.trim()}`);
    }
  });

  it('example 03 imported beside them, its server filled in: ten devices through one gateway, an RPC to one answered', async function () {
    const file = examples.find((f) => f.startsWith('03 '));
    assert.ok(file);
    const flow = JSON.parse(
      fs.readFileSync(path.join(session?.packageDir ?? '', 'examples', file), 'utf8'),
    ) as FlowNode[];
    const byType = (type: string): FlowNode => {
      const node = flow.find((n) => n.type === type);
      assert.ok(node, type);
      return node;
    };
    const deviceOut = byType('thingsboard-device-out');
    const deviceIn = byType('thingsboard-device-in');
    const gateway = String(deviceOut.gateway);
    await editor.dismissNotifications();

    // What the example's comment asks for: the server's ports here, and the key and secret.
    await editor.edit(deviceOut.id);
    await page.locator('#node-input-btn-config-edit').click();
    await page.locator('#node-config-input-host').waitFor();
    await editor.trayOpened();
    for (const transport of ['mqtt', 'http', 'coap'] as const) {
      await page
        .locator(`#node-config-input-${transport}Port`)
        .fill(String(emulator.ports[transport]));
    }
    await page.locator('#node-config-input-provisionDeviceKey').fill(DEMO_KEY);
    await page.locator('#node-config-input-provisionDeviceSecret').fill(DEMO_SECRET);
    await editor.done('node-config-dialog-ok');
    await editor.done();
    await editor.deploy();
    await editor.clickInjectButton(byType('inject').id);

    // Green with the gateway's name and the ten devices it speaks for.
    await editor.waitForStatus(deviceOut.id, {
      text: en
        .text(`${deviceOut.type}.status.gateway`)
        .replace('__gateway__', gateway)
        .replace('__count__', '10'),
      shape: 'dot-green',
    });
    // device in listens on the same connection. Its count is not checked: it follows the changes of
    // the connection, not each device announced on it.
    const gatewayText = en.text(`${deviceIn.type}.status.gateway`).split('__count__');
    await editor.waitForStatus(deviceIn.id, {
      text: new RegExp(`^${gatewayText[0].replace('__gateway__', gateway)}\\d+${gatewayText[1]}$`),
      shape: 'dot-green',
    });
    for (let i = 1; i <= 10; i++) {
      const device = emulator.device(`demo-thermo-${i}`);
      assert.equal(device?.createdByGateway, gateway);
      assert.equal(device?.telemetry.length, 1);
    }
    const reply = await emulator.sendRpc('demo-thermo-3', 'identify', {});
    assert.deepEqual(reply, { device: 'demo-thermo-3', method: 'identify', params: {}, ok: true });
    await editor.sidebarTab('debug');
    await editor.dismissNotifications();
    await session?.shot('example-03-running');
  });
});
