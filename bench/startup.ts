/**
 * Start-up cost of the package:
 *   - Node-RED start (spawn to "Started flows") without the package, with it installed, and with
 *     it installed and a flow using both nodes — interleaved repetitions, medians compared;
 *   - requiring the built node module and registering its two types in a fresh process, and which
 *     of mqtt-packet / undici / coap that loaded (none should be: each loads when a node first
 *     uses it).
 */

import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PROVISION_KEY, PROVISION_SECRET, ROOT, median } from './common';
import { makeUserDir } from './product';

export type StartVariant = 'without' | 'with' | 'coreFlow' | 'flow';

export const START_VARIANTS: readonly StartVariant[] = ['without', 'with', 'coreFlow', 'flow'];

const VARIANT_LABEL: Record<StartVariant, string> = {
  without: 'Node-RED start, package not installed, no flow',
  with: 'Node-RED start, package installed, no flow',
  coreFlow: 'Node-RED start, no package, the same flow of core nodes',
  flow: 'Node-RED start, package, a config node and a provision node',
};

/** What each variant is compared with: the same flow size without the package. */
export const REFERENCE: Partial<Record<StartVariant, StartVariant>> = {
  with: 'without',
  flow: 'coreFlow',
};

export function variantLabel(variant: StartVariant): string {
  return VARIANT_LABEL[variant];
}

const SETTINGS = `module.exports = {
  uiHost: '127.0.0.1',
  uiPort: 0,
  flowFile: 'flows.json',
  credentialSecret: false,
  logging: { console: { level: 'info', metrics: false, audit: false } },
};
`;

/**
 * The reference for startFlow(): a flow of the same shape made of core nodes — a config node, a
 * node using it, credentials in flows_cred.json — so only what the package adds differs.
 */
function coreFlow(): { flow: unknown[]; credentials: unknown } {
  return {
    flow: [
      { id: 'tab', type: 'tab', label: 'start-up' },
      { id: 'proxy', type: 'http proxy', url: 'http://127.0.0.1:3128', noproxy: [] },
      {
        id: 'request',
        z: 'tab',
        type: 'http request',
        method: 'POST',
        url: 'http://127.0.0.1:8080/api/v1/provision',
        proxy: 'proxy',
        authType: 'basic',
        x: 200,
        y: 80,
        wires: [[]],
      },
    ],
    credentials: { proxy: { username: 'user', password: 'secret' } },
  };
}

function startFlow(): { flow: unknown[]; credentials: unknown } {
  return {
    flow: [
      { id: 'tab', type: 'tab', label: 'start-up' },
      {
        id: 'cfg',
        type: 'thingsboard-provision-config',
        host: '127.0.0.1',
        mqttPort: 1883,
        httpPort: 8080,
        coapPort: 5683,
        usetls: false,
        tls: '',
      },
      {
        id: 'prov',
        z: 'tab',
        type: 'thingsboard-provision',
        config: 'cfg',
        transport: 'mqtt',
        deviceName: 'deviceName',
        deviceNameType: 'msg',
        credentialsType: 'server',
        x: 200,
        y: 80,
        wires: [[]],
      },
    ],
    credentials: {
      cfg: { provisionDeviceKey: PROVISION_KEY, provisionDeviceSecret: PROVISION_SECRET },
    },
  };
}

/**
 * Preloaded into Node-RED: when it logs "Started flows", reports the CPU time the process used so
 * far on stderr. CPU time moves far less than wall time when other work shares the machine.
 */
const CPU_PROBE = `const Module = require('node:module');
const load = Module._load;
let requireMs = 0;
let registerMs = 0;
// Node-RED requires each node file (nodes/nodes/<type>/<type>.js) by its path, then calls what it
// exports with RED.
Module._load = function (request, ...rest) {
  if (!/[\\\\/]nodes[\\\\/]nodes[\\\\/]([^\\\\/]+)[\\\\/]\\1\\.js$/.test(request)) {
    return load.call(this, request, ...rest);
  }
  const began = performance.now();
  const register = load.call(this, request, ...rest);
  requireMs += performance.now() - began;
  return function (...args) {
    const start = performance.now();
    try {
      return register.apply(this, args);
    } finally {
      registerMs += performance.now() - start;
    }
  };
};
const write = process.stdout.write.bind(process.stdout);
let reported = false;
process.stdout.write = (chunk, ...rest) => {
  if (!reported && String(chunk).includes('Started flows')) {
    reported = true;
    const cpu = process.cpuUsage();
    process.stderr.write(
      'TB_STARTUP ' + (cpu.user + cpu.system) + ' ' + requireMs + ' ' + registerMs + '\\n',
    );
  }
  return write(chunk, ...rest);
};
`;

export interface StartTime {
  /** Wall milliseconds from spawning Node-RED to its "Started flows" line. */
  wallMs: number;
  /** CPU milliseconds the Node-RED process used until then. */
  cpuMs: number;
  /** Inside that start: requiring the package's node module, and its registering the types. */
  requireMs: number;
  registerMs: number;
}

function startOnce(variant: StartVariant): Promise<StartTime> {
  const userDir = makeUserDir(
    variant === 'flow'
      ? { withPackage: true, ...startFlow() }
      : variant === 'coreFlow'
        ? { withPackage: false, ...coreFlow() }
        : { withPackage: variant === 'with' },
  );
  fs.writeFileSync(path.join(userDir, 'settings.js'), SETTINGS);
  const probe = path.join(userDir, 'cpu-probe.js');
  fs.writeFileSync(probe, CPU_PROBE);
  const red = path.join(
    path.dirname(require.resolve('node-red/package.json', { paths: [ROOT] })),
    'red.js',
  );
  return new Promise<StartTime>((resolve, reject) => {
    const began = performance.now();
    const child = spawn(
      process.execPath,
      ['-r', probe, red, '--userDir', userDir, '--settings', path.join(userDir, 'settings.js')],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    let startedAfter: number | undefined;
    // Types missing for good (the package not found) keep the flows from ever starting.
    const giveUp = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      output += text;
      if (startedAfter === undefined && output.includes('Started flows')) {
        startedAfter = performance.now() - began;
        child.kill('SIGINT');
      }
    });
    let errors = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => (errors += text));
    child.once('close', () => {
      clearTimeout(giveUp);
      fs.rmSync(userDir, { recursive: true, force: true });
      const probe = /TB_STARTUP (\d+) ([\d.]+) ([\d.]+)/.exec(errors);
      if (startedAfter !== undefined && probe) {
        resolve({
          wallMs: startedAfter,
          cpuMs: Number(probe[1]) / 1000,
          requireMs: Number(probe[2]),
          registerMs: Number(probe[3]),
        });
      } else reject(new Error(`Node-RED never said "Started flows":\n${output}`));
    });
  });
}

/** Interleaved repetitions of every variant; the median start time of each. */
export async function nodeRedStartTimes(
  repetitions: number,
): Promise<Record<StartVariant, StartTime>> {
  const times: Record<StartVariant, StartTime[]> = {
    without: [],
    with: [],
    coreFlow: [],
    flow: [],
  };
  const variants = START_VARIANTS;
  // One start of each first, not counted: warms the file cache.
  for (const variant of variants) await startOnce(variant);
  for (let i = 0; i < repetitions; i++) {
    // Rotate the order so no variant always runs right after the same one.
    for (let k = 0; k < variants.length; k++) {
      const variant = variants[(i + k) % variants.length];
      times[variant].push(await startOnce(variant));
    }
  }
  const medians = (runs: StartTime[]): StartTime => ({
    wallMs: median(runs.map((r) => r.wallMs)),
    cpuMs: median(runs.map((r) => r.cpuMs)),
    requireMs: median(runs.map((r) => r.requireMs)),
    registerMs: median(runs.map((r) => r.registerMs)),
  });
  return {
    without: medians(times.without),
    with: medians(times.with),
    coreFlow: medians(times.coreFlow),
    flow: medians(times.flow),
  };
}

/** Run in a fresh process: require the built modules, register with a stub RED, report. */
const REQUIRE_PROBE = `
const started = performance.now();
const types = [];
for (const file of JSON.parse(process.argv[1])) {
  require(file)({
    nodes: { registerType: (name) => types.push(name), createNode() {}, getNode() {} },
    settings: {}, util: {}, _: (key) => key, log: {},
  });
}
const ms = performance.now() - started;
const packages = [...new Set(Object.keys(require.cache)
  .map((file) => /[\\\\/]node_modules[\\\\/]((?:@[^\\\\/]+[\\\\/])?[^\\\\/]+)/.exec(file)?.[1])
  .filter(Boolean))].sort();
console.log(JSON.stringify({ ms, types, packages }));
`;

export interface RequireCost {
  medianMs: number;
  types: string[];
  /** npm packages in require.cache after requiring and registering. */
  packages: string[];
}

export async function requireCost(repetitions: number): Promise<RequireCost> {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    'node-red': { nodes: Record<string, string> };
  };
  const files = JSON.stringify(
    Object.values(pkg['node-red'].nodes).map((file) => path.join(ROOT, file)),
  );
  const runs: Array<{ ms: number; types: string[]; packages: string[] }> = [];
  for (let i = 0; i < repetitions + 1; i++) {
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['-e', REQUIRE_PROBE, files], (err, out) =>
        err ? reject(err) : resolve(out),
      ),
    );
    runs.push(JSON.parse(stdout) as { ms: number; types: string[]; packages: string[] });
  }
  runs.shift();
  return {
    medianMs: median(runs.map((r) => r.ms)),
    types: runs[0].types,
    packages: runs[0].packages,
  };
}
