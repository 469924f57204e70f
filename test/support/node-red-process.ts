/**
 * A real Node-RED runtime in a child process, started from its command line with a user directory
 * holding this package as npm links it, for the suites that kill and restart processes. The flows
 * record what leaves a node with synchronous appends, one JSON line each: the flow's own proof.
 */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
const RUNTIME_DIR =
  process.env.TB_TEST_NODE_RED ?? path.dirname(require.resolve('node-red/package.json'));
const RED_JS = path.join(RUNTIME_DIR, 'red.js');

/** No editor, no HTTP server, little logging; function nodes get `fs` for their records. */
export const SETTINGS = `module.exports = {
  uiHost: '127.0.0.1',
  uiPort: 0,
  httpAdminRoot: false,
  httpNodeRoot: false,
  flowFile: 'flows.json',
  credentialSecret: false,
  functionGlobalContext: { fs: require('fs') },
  telemetry: { enabled: false },
  diagnostics: { enabled: false },
  externalModules: { autoInstall: false },
  logging: { console: { level: 'warn' } },
};
`;

/** Sets up `userDir`: the package linked into node_modules, settings.js and the credentials. */
export function prepareUserDir(userDir: string, credentials: Record<string, object>): void {
  fs.mkdirSync(path.join(userDir, 'node_modules'), { recursive: true });
  // Installed the way npm links a package: Node-RED finds it in userDir/node_modules.
  fs.symlinkSync(
    ROOT,
    path.join(userDir, 'node_modules', 'node-red-contrib-thingsboard-provision'),
    'dir',
  );
  fs.writeFileSync(path.join(userDir, 'settings.js'), SETTINGS);
  fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify(credentials));
}

/** A function node's body that appends `fields` (an expression over msg) to `file` as a line. */
export function recordTo(file: string, fields: string): string {
  return [
    "const fs = global.get('fs');",
    `fs.appendFileSync(${JSON.stringify(file)}, JSON.stringify(${fields}) + '\\n');`,
    'return null;',
  ].join('\n');
}

/** Complete lines only: a record cut by a kill (never seen in practice) is not counted. */
export function readLines<T>(file: string): T[] {
  if (!fs.existsSync(file)) return [];
  const text = fs.readFileSync(file, 'utf8');
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  return complete
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as T);
}

export class NodeRedProcess {
  readonly output: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;

  constructor(userDir: string) {
    this.child = spawn(process.execPath, [RED_JS, '--userDir', userDir], {
      cwd: userDir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const stream of [this.child.stdout, this.child.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => this.output.push(chunk));
    }
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => resolve({ code, signal }));
    });
  }

  get hasExited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  kill(signal: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  get log(): string {
    return this.output.join('');
  }
}

/** Polls `check` until it holds; fails on timeout or when one of `children` exits first. */
export async function waitUntil(
  what: string,
  check: () => boolean,
  timeoutMs: number,
  ...children: NodeRedProcess[]
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    for (const child of children) {
      if (child.hasExited) assert.fail(`Node-RED exited before ${what}\n${child.log.slice(-3000)}`);
    }
    if (Date.now() > until) {
      const logs = children.map((child) => child.log.slice(-3000)).join('\n');
      assert.fail(`timed out waiting until ${what}\n${logs}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** An inject sending `names` once at start, split so each name reaches `target` as its own message. */
export function injectEachOnce(
  id: string,
  names: readonly string[],
  target: string,
): Array<{ id: string; type: string } & Record<string, unknown>> {
  return [
    {
      id: `inject-${id}`,
      z: 'tab',
      type: 'inject',
      props: [{ p: 'payload' }],
      payload: JSON.stringify(names),
      payloadType: 'json',
      repeat: '',
      once: true,
      onceDelay: 0.1,
      wires: [[`split-${id}`]],
    },
    {
      id: `split-${id}`,
      z: 'tab',
      type: 'split',
      splt: '\\n',
      spltType: 'str',
      arraySplt: 1,
      arraySpltType: 'len',
      stream: false,
      addname: '',
      wires: [[target]],
    },
  ];
}
