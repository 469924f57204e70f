/**
 * Start-up stays cheap: requiring the shipped node modules, registering their types and deploying a
 * provision node load no MQTT, CoAP or Redis library; each loads only when a node first provisions
 * over it, and the Redis client only for a config node that chose the Redis store.
 * Checked in fresh processes (require.cache of a process that loaded nothing else of ours).
 */

import assert from 'node:assert/strict';
import { LOADED_LIBRARIES, runFresh } from './support/fresh-process';
import { packageNodes } from './support/package-nodes';

const NODES = packageNodes();
const RUNTIMES = JSON.stringify(NODES.map((node) => node.runtime));

describe('start-up of the package', function () {
  this.timeout(40_000);

  it('requiring the built node modules and registering their types loads no MQTT, HTTP or CoAP library', async function () {
    const result = await runFresh(`
      ${LOADED_LIBRARIES}
      const types = [];
      for (const runtime of ${RUNTIMES}) {
        require(runtime)({
          nodes: { registerType: (name) => types.push(name), createNode() {}, getNode() {} },
          settings: {}, util: {}, _: (key) => key, log: {},
        });
      }
      console.log(JSON.stringify({ types, loaded: loaded() }));
    `);
    assert.deepEqual(result, {
      types: NODES.map((node) => node.type),
      loaded: [],
    });
  });

  it('a deployed provision node loads each protocol library only when it provisions over it', async function () {
    const steps = await runFresh(`
      ${LOADED_LIBRARIES}
      const fs = require('node:fs');
      const net = require('node:net');
      const os = require('node:os');
      const path = require('node:path');
      const helper = require('node-red-node-test-helper');
      helper.init(require.resolve('node-red'));
      const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-startup-'));
      // A port nothing listens on: every attempt fails at once with ECONNREFUSED.
      const server = net.createServer().listen(0, '127.0.0.1', async () => {
        const port = server.address().port;
        server.close();
        const flow = [
          { id: 'tab', type: 'tab' },
          { id: 'cfg', type: 'thingsboard-provision-config', host: '127.0.0.1',
            mqttPort: port, httpPort: port, coapPort: port },
          ...['http', 'mqtt', 'coap'].map((transport) => ({
            id: 'prov-' + transport, z: 'tab', type: 'thingsboard-provision', config: 'cfg', transport,
            timeout: 2, retries: 0, persist: false, wires: [[]],
          })),
        ];
        helper.settings({ userDir });
        await helper.load(${RUNTIMES}.map((runtime) => require(runtime)), flow, {
          cfg: { provisionDeviceKey: 'startup-key', provisionDeviceSecret: 'startup-secret' },
        });
        const steps = [{ after: 'deploy', loaded: loaded() }];
        for (const transport of ['http', 'mqtt', 'coap']) {
          const node = helper.getNode('prov-' + transport);
          const failed = new Promise((resolve) => node.once('call:error', resolve));
          node.receive({ deviceName: 'startup-device' });
          await failed;
          steps.push({ after: transport, loaded: loaded() });
        }
        await helper.unload();
        fs.rmSync(userDir, { recursive: true, force: true });
        console.log(JSON.stringify(steps));
      });
    `);
    assert.deepEqual(steps, [
      { after: 'deploy', loaded: [] },
      { after: 'http', loaded: ['undici'] },
      { after: 'mqtt', loaded: ['mqtt-packet', 'undici'] },
      { after: 'coap', loaded: ['coap-packet', 'mqtt-packet', 'undici'] },
    ]);
  });

  it('deployed device nodes load mqtt.js only when a device first connects over MQTT', async function () {
    const steps = await runFresh(`
      ${LOADED_LIBRARIES}
      const fs = require('node:fs');
      const net = require('node:net');
      const os = require('node:os');
      const path = require('node:path');
      const helper = require('node-red-node-test-helper');
      helper.init(require.resolve('node-red'));
      const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-startup-'));
      const server = net.createServer().listen(0, '127.0.0.1', async () => {
        const port = server.address().port;
        server.close();
        const flow = [
          { id: 'tab', type: 'tab' },
          { id: 'cfg', type: 'thingsboard-provision-config', host: '127.0.0.1',
            mqttPort: port, httpPort: port, coapPort: port },
          { id: 'dev', z: 'tab', type: 'thingsboard-device-out', config: 'cfg', via: 'device',
            transport: 'mqtt', provision: false, timeout: 2, wires: [[]] },
          { id: 'din', z: 'tab', type: 'thingsboard-device-in', config: 'cfg', via: 'device',
            wires: [[]] },
        ];
        helper.settings({ userDir });
        await helper.load(${RUNTIMES}.map((runtime) => require(runtime)), flow, {});
        const steps = [{ after: 'deploy', loaded: loaded() }];
        const dev = helper.getNode('dev');
        const failed = new Promise((resolve) => dev.once('call:error', resolve));
        dev.receive({ deviceName: 'nobody', payload: { t: 1 } });
        await failed;
        steps.push({ after: 'not provisioned', loaded: loaded() });
        dev.receive({
          payload: { status: 'SUCCESS', deviceName: 'startup-device',
            credentialsType: 'ACCESS_TOKEN', credentialsValue: 'startup-token' },
          thingsboard: { host: '127.0.0.1', provisionedAt: new Date().toISOString() },
        });
        // Credentials handed over open the device's session at once.
        for (let i = 0; i < 100 && loaded().length === 0; i++) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        steps.push({ after: 'connect', loaded: loaded() });
        await helper.unload();
        fs.rmSync(userDir, { recursive: true, force: true });
        console.log(JSON.stringify(steps));
      });
    `);
    assert.deepEqual(steps, [
      { after: 'deploy', loaded: [] },
      { after: 'not provisioned', loaded: [] },
      { after: 'connect', loaded: ['mqtt', 'mqtt-packet'] },
    ]);
  });

  it('loads the Redis client only for a config node that chose the Redis store', async function () {
    const steps = await runFresh(`
      ${LOADED_LIBRARIES}
      const fs = require('node:fs');
      const net = require('node:net');
      const os = require('node:os');
      const path = require('node:path');
      const helper = require('node-red-node-test-helper');
      helper.init(require.resolve('node-red'));
      const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-startup-'));
      const server = net.createServer().listen(0, '127.0.0.1', async () => {
        const port = server.address().port;
        server.close();
        const flow = (store) => [
          { id: 'tab', type: 'tab' },
          { id: 'cfg', type: 'thingsboard-provision-config', host: '127.0.0.1', httpPort: port,
            store, redisUrl: 'redis://127.0.0.1:' + port + '/0' },
          { id: 'prov', z: 'tab', type: 'thingsboard-provision', config: 'cfg', transport: 'http',
            timeout: 2, retries: 0, persist: true, wires: [[]] },
        ];
        const keys = { cfg: { provisionDeviceKey: 'startup-key', provisionDeviceSecret: 'startup-secret' } };
        const modules = ${RUNTIMES}.map((runtime) => require(runtime));
        helper.settings({ userDir });
        await helper.load(modules, flow('file'), keys);
        const node = helper.getNode('prov');
        const failed = new Promise((resolve) => node.once('call:error', resolve));
        node.receive({ deviceName: 'startup-device' });
        await failed;
        const steps = [{ after: 'a message with the file store', loaded: loaded() }];
        await helper.unload();
        await helper.load(modules, flow('redis'), keys);
        steps.push({ after: 'deploying the Redis store', loaded: loaded() });
        await helper.unload();
        fs.rmSync(userDir, { recursive: true, force: true });
        console.log(JSON.stringify(steps));
      });
    `);
    assert.deepEqual(steps, [
      { after: 'a message with the file store', loaded: ['undici'] },
      { after: 'deploying the Redis store', loaded: ['@redis/client', 'undici'] },
    ]);
  });
});
