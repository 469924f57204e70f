#!/usr/bin/env node
// `npm start`: the local ThingsBoard provisioning emulator plus a real Node-RED with this package and
// example 01 deployed, so a device is provisioned and sends telemetry with no server and no network.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const userDir = path.join(root, '.demo');
const DEMO_KEY = 'demo-provision-key';
const DEMO_SECRET = 'demo-provision-secret';
const EDITOR_PORT = Number(process.env.PORT || 1880);

function prepareUserDir() {
  fs.mkdirSync(path.join(userDir, 'node_modules'), { recursive: true });
  const link = path.join(userDir, 'node_modules', 'node-red-contrib-thingsboard-provision');
  if (!fs.existsSync(link)) fs.symlinkSync(root, link, 'dir');
  fs.writeFileSync(
    path.join(userDir, 'package.json'),
    JSON.stringify(
      {
        name: 'thingsboard-provision-demo',
        private: true,
        dependencies: { 'node-red-contrib-thingsboard-provision': 'file:..' },
      },
      null,
      2,
    ),
  );
  fs.writeFileSync(
    path.join(userDir, 'settings.js'),
    `module.exports = ${JSON.stringify(
      {
        uiHost: '127.0.0.1',
        uiPort: EDITOR_PORT,
        flowFile: 'flows.json',
        credentialSecret: false,
        logging: { console: { level: 'info', metrics: false, audit: false } },
      },
      null,
      2,
    )};\n`,
  );

  const exampleFile = fs
    .readdirSync(path.join(root, 'examples'))
    .filter((f) => f.endsWith('.json'))
    .sort()[0];
  const flow = JSON.parse(fs.readFileSync(path.join(root, 'examples', exampleFile), 'utf8'));
  const credentials = {};
  // Examples import into the editor's current tab; a deployed flow file needs its tab spelled out.
  const tabs = new Set(flow.filter((n) => n.type === 'tab').map((n) => n.id));
  for (const z of new Set(flow.map((n) => n.z).filter(Boolean))) {
    if (!tabs.has(z)) flow.unshift({ id: z, type: 'tab', label: 'ThingsBoard demo' });
  }
  for (const node of flow) {
    if (node.type === 'thingsboard-provision-config') {
      credentials[node.id] = { provisionDeviceKey: DEMO_KEY, provisionDeviceSecret: DEMO_SECRET };
    }
    // Fire the example's inject once shortly after deploy so the demo shows a device at once.
    if (node.type === 'inject') {
      node.once = true;
      node.onceDelay = 1;
    }
  }
  fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flow, null, 2));
  fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify(credentials, null, 2));
  return exampleFile;
}

async function main() {
  if (!fs.existsSync(path.join(root, 'nodes', 'emulator', 'index.js'))) {
    console.error('The package is not built: run `npm install` (or `npm run build`) first.');
    process.exit(1);
  }
  const { Emulator } = require(path.join(root, 'nodes', 'emulator'));
  const example = prepareUserDir();
  let emulator;
  try {
    emulator = await Emulator.start({
      profiles: [
        {
          name: 'demo-profile',
          provisionDeviceKey: DEMO_KEY,
          provisionDeviceSecret: DEMO_SECRET,
          strategy: 'allow-create',
        },
      ],
      log: (line) => console.log(`[emulator] ${line}`),
    });
  } catch (err) {
    console.error(`[emulator] ${err.message}`);
    process.exit(1);
  }
  const { mqtt, http, coap } = emulator.ports;
  console.log(
    `[emulator] ThingsBoard provisioning emulator: mqtt://127.0.0.1:${mqtt} http://127.0.0.1:${http} coap://127.0.0.1:${coap}`,
  );
  console.log(`[demo] deploying "${example}"; editor at http://127.0.0.1:${EDITOR_PORT}/`);

  const red = spawn(
    process.execPath,
    [
      require.resolve('node-red/red.js'),
      '--userDir',
      userDir,
      '--settings',
      path.join(userDir, 'settings.js'),
    ],
    { cwd: root, stdio: 'inherit' },
  );
  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n[demo] ${signal}: stopping Node-RED and the emulator`);
    red.kill('SIGINT');
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  red.on('exit', async (code) => {
    await emulator.stop();
    process.exit(stopping ? 0 : (code ?? 1));
  });
}

main();
