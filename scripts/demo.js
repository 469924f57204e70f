#!/usr/bin/env node
// `npm start`: the local ThingsBoard emulator plus a real Node-RED with this package and three
// examples deployed (01: the core mqtt node, 04: device out, 05: an RPC answered through device in),
// so devices are provisioned, send telemetry and answer RPC with no server and no network. The
// terminal shows what the emulator receives and the RPC replies; so does the editor's debug sidebar.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const userDir = path.join(root, '.demo');
const DEMO_KEY = 'demo-provision-key';
const DEMO_SECRET = 'demo-provision-secret';
const EDITOR_PORT = Number(process.env.PORT || 1880);
const DEMO_EXAMPLES = ['01 ', '04 ', '05 '];
const RPC_EVERY_MS = 10_000;

/** The demo's examples, each on a tab of its own, with the demo key and secret filled in. */
function demoFlows() {
  const files = fs.readdirSync(path.join(root, 'examples')).filter((f) => f.endsWith('.json'));
  const flows = [];
  const credentials = {};
  const names = [];
  let rpcDevice;
  DEMO_EXAMPLES.forEach((prefix, index) => {
    const file = files.find((f) => f.startsWith(prefix));
    if (!file) throw new Error(`no example ${prefix.trim()} in examples/`);
    names.push(file.replace(/\.json$/, ''));
    const flow = JSON.parse(fs.readFileSync(path.join(root, 'examples', file), 'utf8'));
    // Examples import into the editor's current tab; a deployed flow file needs its tab spelled out.
    const tab = flow.find((n) => n.z).z;
    flows.push({ id: tab, type: 'tab', label: file.replace(/\.json$/, '') });
    for (const node of flow) {
      if (node.type === 'thingsboard-provision-config') {
        credentials[node.id] = { provisionDeviceKey: DEMO_KEY, provisionDeviceSecret: DEMO_SECRET };
      }
      // Each example's inject fires once shortly after deploy, so the demo shows devices at once.
      if (node.type === 'inject') {
        node.once = true;
        node.onceDelay = 1 + index;
      }
    }
    if (flow.some((n) => n.type === 'thingsboard-device-in')) {
      rpcDevice = flow
        .filter((n) => n.type === 'inject')
        .flatMap((n) => n.props || [])
        .find((p) => p.p === 'deviceName')?.v;
    }
    flows.push(...flow);
  });
  return { flows, credentials, names, rpcDevice };
}

function prepareUserDir(flows, credentials) {
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
        // Offline: no first-start question about sending usage data and checking for updates.
        telemetry: { enabled: false, updateNotification: false },
        logging: { console: { level: 'info', metrics: false, audit: false } },
      },
      null,
      2,
    )};\n`,
  );
  fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flows, null, 2));
  fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify(credentials, null, 2));
}

/** Prints each telemetry message the emulator accepted since the last call, per device. */
function telemetryPrinter(emulator) {
  const lastSeen = new Map();
  return () => {
    for (const [name, device] of emulator.devices) {
      const entries = device.telemetry;
      // The list drops its oldest entries beyond its limit: find the last one printed by identity.
      const from = lastSeen.has(name) ? entries.lastIndexOf(lastSeen.get(name)) + 1 : 0;
      for (const entry of entries.slice(from)) {
        console.log(`[demo] telemetry from ${JSON.stringify(name)}: ${JSON.stringify(entry)}`);
      }
      if (entries.length > 0) lastSeen.set(name, entries[entries.length - 1]);
    }
  };
}

/** Sends the RPC device a setSpeed request now and then, as a dashboard would, and prints the reply. */
function rpcSender(emulator, device, isStopping) {
  let speed = 0;
  return async () => {
    speed = (speed % 5) + 1;
    const params = { speed };
    const request = `RPC setSpeed ${JSON.stringify(params)} to ${JSON.stringify(device)}`;
    try {
      const reply = await emulator.sendRpc(device, 'setSpeed', params, { timeoutMs: 8_000 });
      console.log(`[demo] ${request} -> reply ${JSON.stringify(reply)}`);
    } catch (err) {
      if (!isStopping()) console.log(`[demo] ${request} -> no reply: ${err.code ?? err.message}`);
    }
  };
}

async function main() {
  if (!fs.existsSync(path.join(root, 'nodes', 'emulator', 'index.js'))) {
    console.error('The package is not built: run `npm install` (or `npm run build`) first.');
    process.exit(1);
  }
  const { Emulator } = require(path.join(root, 'nodes', 'emulator'));
  const { defaultStorePath } = require(path.join(root, 'nodes', 'store', 'file'));
  const { flows, credentials, names, rpcDevice } = demoFlows();
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
  // The emulator forgets its devices when it stops: credentials kept by an earlier run would be
  // refused, so the demo's store starts empty too (only once the ports showed no demo running).
  fs.rmSync(path.dirname(defaultStorePath(userDir)), { recursive: true, force: true });
  prepareUserDir(flows, credentials);
  const { mqtt, http, coap } = emulator.ports;
  console.log(
    `[emulator] ThingsBoard emulator: mqtt://127.0.0.1:${mqtt} http://127.0.0.1:${http} coap://127.0.0.1:${coap}`,
  );
  for (const name of names) console.log(`[demo] deploying "${name}"`);
  console.log(`[demo] editor at http://127.0.0.1:${EDITOR_PORT}/ (Ctrl+C stops everything)`);
  console.log(
    '[demo] more in the editor: Menu > Import > Examples > node-red-contrib-thingsboard-provision ' +
      `(03: ten devices through one gateway), then give its server node the key ${DEMO_KEY} ` +
      `and the secret ${DEMO_SECRET}`,
  );
  if (rpcDevice) {
    console.log(
      `[demo] an RPC to ${JSON.stringify(rpcDevice)} every ${RPC_EVERY_MS / 1000} s; send your own with: ` +
        `npx tb-provision-emulator rpc ${rpcDevice} setSpeed '{"speed":3}'`,
    );
  }

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
  const timers = [setInterval(telemetryPrinter(emulator), 500)];
  if (rpcDevice) {
    timers.push(
      setInterval(
        rpcSender(emulator, rpcDevice, () => stopping),
        RPC_EVERY_MS,
      ),
    );
  }
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    for (const timer of timers) clearInterval(timer);
    console.log(`\n[demo] ${signal}: stopping Node-RED and the emulator`);
    red.kill('SIGINT');
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  red.on('exit', async (code) => {
    const asked = stopping;
    stopping = true;
    for (const timer of timers) clearInterval(timer);
    await emulator.stop();
    process.exit(asked ? 0 : (code ?? 1));
  });
}

if (require.main === module) main();

module.exports = { demoFlows };
