import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { packageNodes } from '../../support/package-nodes';

const run = promisify(execFile);

export const root = path.resolve(__dirname, '..', '..', '..');
export const outputDir = path.join(root, 'test-output', 'e2e');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/**
 * The package as `npm pack` makes it from the built checkout, or the tarball named by
 * TB_E2E_TARBALL (to test the exact file about to be published).
 */
export async function packPackage(destination: string): Promise<string> {
  const given = process.env.TB_E2E_TARBALL;
  if (given) return path.resolve(given);
  if (!packageNodes(root).every((node) => fs.existsSync(node.runtime))) {
    throw new Error('nodes/ is not built: run `npm run build` first');
  }
  // The build already ran; packing must not rebuild nodes/ under tests running beside it.
  const { stdout } = await run(
    npm,
    ['pack', '--ignore-scripts', '--json', '--pack-destination', destination],
    { cwd: root, maxBuffer: 16 * 1024 * 1024 },
  );
  const [packed] = JSON.parse(stdout) as Array<{ filename: string }>;
  return path.join(destination, packed.filename);
}

/** A fresh Node-RED user directory with the tarball installed the way the palette manager does. */
export async function createUserDir(tarball: string): Promise<string> {
  const userDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'tb-e2e-userdir-'));
  await fs.promises.writeFile(
    path.join(userDir, 'package.json'),
    JSON.stringify({ name: 'node-red-project', version: '0.0.1', private: true }, null, 2),
  );
  await run(npm, ['install', tarball, '--no-audit', '--no-fund', '--prefer-offline'], {
    cwd: userDir,
    maxBuffer: 16 * 1024 * 1024,
  });
  return userDir;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface HttpAnswer {
  status: number;
  body: string;
}

/** One request to the Node-RED admin API, without keep-alive so nothing stays open. */
export function adminRequest(
  base: string,
  route: string,
  accept = 'application/json',
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const request = http.get(
      new URL(route, base),
      { agent: false, headers: { Accept: accept } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
        );
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.setTimeout(10_000, () => request.destroy(new Error(`GET ${route} timed out`)));
  });
}

/** Deploys flows through the admin API, as the editor's Deploy button does (a full deploy). */
export function deployFlows(base: string, flows: unknown[]): Promise<HttpAnswer> {
  const body = JSON.stringify(flows);
  return new Promise((resolve, reject) => {
    const request = http.request(
      new URL('flows', base),
      {
        method: 'POST',
        agent: false,
        headers: {
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(body),
          'Node-RED-Deployment-Type': 'full',
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
        );
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.setTimeout(10_000, () => request.destroy(new Error('POST /flows timed out')));
    request.end(body);
  });
}

export async function adminJson<T>(base: string, route: string): Promise<T> {
  const answer = await adminRequest(base, route);
  if (answer.status !== 200) throw new Error(`GET ${route}: HTTP ${answer.status} ${answer.body}`);
  return JSON.parse(answer.body) as T;
}

export interface NodeRedProcess {
  url: string;
  userDir: string;
  /** Everything the runtime printed, stdout and stderr interleaved. */
  log(): string;
  stop(): Promise<void>;
}

/** A real Node-RED 4 process (node_modules/node-red/red.js) on a free loopback port. */
export async function startNodeRed(userDir: string): Promise<NodeRedProcess> {
  const redJs = require.resolve('node-red/red.js');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    await fs.promises.writeFile(path.join(userDir, 'settings.js'), settingsFile(port));
    try {
      return await launch(redJs, userDir, port);
    } catch (error) {
      // The port probed free may be taken by another test before Node-RED binds it.
      if (attempt >= 3 || !/EADDRINUSE|port in use/.test(String(error))) throw error;
    }
  }
}

function settingsFile(port: number): string {
  const settings = {
    uiHost: '127.0.0.1',
    uiPort: port,
    flowFile: 'flows.json',
    // The welcome tour and the telemetry question cover the workspace on a first start.
    editorTheme: { tours: false, palette: { catalogues: [] } },
    telemetry: { enabled: false, updateNotification: false },
    externalModules: { palette: { allowInstall: true } },
    logging: { console: { level: 'info', metrics: false, audit: false } },
  };
  return `module.exports = ${JSON.stringify(settings, null, 2)};\n`;
}

function launch(redJs: string, userDir: string, port: number): Promise<NodeRedProcess> {
  const url = `http://127.0.0.1:${port}/`;
  const child: ChildProcess = spawn(process.execPath, [redJs, '--userDir', userDir], {
    cwd: userDir,
    env: { ...process.env, NODE_RED_DISABLE_TELEMETRY: 'true' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const collect = (chunk: Buffer): void => {
    output += chunk.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);

  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  const handle: NodeRedProcess = { url, userDir, log: () => output, stop };

  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 60_000;
    let settled = false;
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      void stop().then(() => reject(error));
    };
    void exited.then((code) =>
      fail(new Error(`Node-RED exited (code ${code}) while starting:\n${output}`)),
    );
    const poll = async (): Promise<void> => {
      if (settled) return;
      if (/Started flows/.test(output)) {
        const answer = await adminRequest(url, 'settings').catch(() => undefined);
        if (answer?.status === 200) {
          settled = true;
          resolve(handle);
          return;
        }
      }
      if (Date.now() > deadline) {
        fail(new Error(`Node-RED did not start within 60 s:\n${output}`));
        return;
      }
      setTimeout(() => void poll(), 200);
    };
    void poll();
  });
}
