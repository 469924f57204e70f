/**
 * Start-up cost of the package:
 *   - Node-RED start (spawn to "Started flows") without the package, with it installed, and with
 *     it installed and a flow using both nodes — interleaved repetitions, medians compared;
 *   - requiring the built node module and registering its two types in a fresh process, and which
 *     of mqtt / coap that loaded (neither should be: they load when a node first uses them).
 */

import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PROVISION_KEY, PROVISION_SECRET, ROOT, median } from './common';
import { makeUserDir } from './product';

export type StartVariant = 'without' | 'with' | 'flow';

const VARIANT_LABEL: Record<StartVariant, string> = {
  without: 'Node-RED start, package not installed',
  with: 'Node-RED start, package installed',
  flow: 'Node-RED start, package + a flow using it',
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
        wires: [[]],
      },
    ],
    credentials: {
      cfg: { provisionDeviceKey: PROVISION_KEY, provisionDeviceSecret: PROVISION_SECRET },
    },
  };
}

/** Milliseconds from spawning Node-RED to its "Started flows" line. */
function startOnce(variant: StartVariant): Promise<number> {
  const userDir = makeUserDir(
    variant === 'flow'
      ? { withPackage: true, ...startFlow() }
      : { withPackage: variant === 'with' },
  );
  fs.writeFileSync(path.join(userDir, 'settings.js'), SETTINGS);
  const red = path.join(
    path.dirname(require.resolve('node-red/package.json', { paths: [ROOT] })),
    'red.js',
  );
  return new Promise<number>((resolve, reject) => {
    const began = performance.now();
    const child = spawn(
      process.execPath,
      [red, '--userDir', userDir, '--settings', path.join(userDir, 'settings.js')],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    let startedAfter: number | undefined;
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      output += text;
      // Without the package the flow's types stay missing and the flows never start.
      if (output.includes('Waiting for missing types')) child.kill('SIGKILL');
      if (startedAfter === undefined && output.includes('Started flows')) {
        startedAfter = performance.now() - began;
        child.kill('SIGINT');
      }
    });
    child.stderr.resume();
    child.once('close', () => {
      fs.rmSync(userDir, { recursive: true, force: true });
      if (startedAfter !== undefined) resolve(startedAfter);
      else reject(new Error(`Node-RED never said "Started flows":\n${output}`));
    });
  });
}

/** Interleaved repetitions of every variant; the median start time of each. */
export async function nodeRedStartTimes(
  repetitions: number,
): Promise<Record<StartVariant, number>> {
  const times: Record<StartVariant, number[]> = { without: [], with: [], flow: [] };
  const variants: StartVariant[] = ['without', 'with', 'flow'];
  // One start of each first, not counted: warms the file cache.
  for (const variant of variants) await startOnce(variant);
  for (let i = 0; i < repetitions; i++) {
    // Rotate the order so no variant always runs right after the same one.
    for (let k = 0; k < variants.length; k++) {
      const variant = variants[(i + k) % variants.length];
      times[variant].push(await startOnce(variant));
    }
  }
  return { without: median(times.without), with: median(times.with), flow: median(times.flow) };
}

/** Run in a fresh process: require the built module, register with a stub RED, report. */
const REQUIRE_PROBE = `
const started = performance.now();
const register = require(process.argv[1]);
const types = [];
register({
  nodes: { registerType: (name) => types.push(name), createNode() {}, getNode() {} },
  settings: {}, util: {}, _: (key) => key, log: {},
});
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
  const file = path.join(ROOT, 'nodes', 'nodes', 'thingsboard-provision.js');
  const runs: Array<{ ms: number; types: string[]; packages: string[] }> = [];
  for (let i = 0; i < repetitions + 1; i++) {
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['-e', REQUIRE_PROBE, file], (err, out) =>
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
