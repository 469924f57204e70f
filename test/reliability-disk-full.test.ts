/**
 * The disk fills up under a running Node-RED, then space comes back: no device is orphaned. A
 * real Node-RED in a child process, its file size limit (RLIMIT_FSIZE) lowered to 0 from outside
 * with prlimit, so every write that grows a file fails with EFBIG as on a full disk, even as root
 * (chmod would not stop root, and no small tmpfs can be mounted here). The flow is driven over
 * HTTP (http in → provision → http response, Catch → http response).
 *
 * The scenario: device A is provisioned while the disk is full; its credentials reach the Catch
 * node, marked as not saved; another device is refused with nothing sent; space comes back; A
 * again gets the stored answer (yellow), which must be on disk by then: after a redeploy and a
 * restart, with no other write in between, A is still answered from the store, never sent to the
 * server again (which would refuse it: orphaned).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Emulator } from '../src/emulator';
import { canLimitFileSize, limitFileSize } from './support/file-size-limit';
import { KEY, PROFILE, SECRET, configNode } from './support/flows';

const ROOT = path.resolve(__dirname, '..');
const RUNTIME_DIR =
  process.env.TB_TEST_NODE_RED ?? path.dirname(require.resolve('node-red/package.json'));
const RED_JS = path.join(RUNTIME_DIR, 'red.js');

const SETTINGS = `module.exports = {
  uiHost: '127.0.0.1',
  uiPort: 0,
  httpAdminRoot: '/admin',
  httpNodeRoot: '/',
  flowFile: 'flows.json',
  credentialSecret: false,
  telemetry: { enabled: false },
  diagnostics: { enabled: false },
  externalModules: { autoInstall: false },
  logging: { console: { level: 'info' } },
};
`;

function flow(emulator: Emulator): unknown[] {
  const fn = (id: string, body: string, wires: string[]) => ({
    id,
    z: 'tab',
    type: 'function',
    func: body,
    outputs: 1,
    noerr: 0,
    initialize: '',
    finalize: '',
    libs: [],
    wires: [wires],
  });
  return [
    { id: 'tab', type: 'tab', label: 'disk full' },
    configNode(emulator),
    {
      id: 'in',
      z: 'tab',
      type: 'http in',
      url: '/provision',
      method: 'post',
      upload: false,
      wires: [['name']],
    },
    fn('name', 'msg.deviceName = msg.payload.deviceName;\nreturn msg;', ['prov']),
    {
      id: 'prov',
      z: 'tab',
      type: 'thingsboard-provision',
      config: 'cfg',
      transport: 'http',
      deviceName: 'deviceName',
      deviceNameType: 'msg',
      credentialsType: 'server',
      timeout: 5,
      retries: 0,
      concurrency: 4,
      persist: true,
      wires: [['answered']],
    },
    fn(
      'answered',
      'msg.payload = { out: msg.payload, thingsboard: msg.thingsboard };\nreturn msg;',
      ['reply'],
    ),
    {
      id: 'catcher',
      z: 'tab',
      type: 'catch',
      scope: ['prov'],
      uncaught: false,
      wires: [['failed']],
    },
    fn('failed', 'msg.payload = { caught: msg.payload, error: msg.error.message };\nreturn msg;', [
      'reply',
    ]),
    { id: 'reply', z: 'tab', type: 'http response', statusCode: '200', headers: {}, wires: [] },
  ];
}

class NodeRed {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  private output = '';

  constructor(userDir: string) {
    this.child = spawn(process.execPath, [RED_JS, '--userDir', userDir], {
      cwd: userDir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const stream of [this.child.stdout, this.child.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => (this.output += chunk));
    }
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  get log(): string {
    return this.output;
  }

  /** The base URL once the flows have started. */
  async started(): Promise<string> {
    const until = Date.now() + 30_000;
    for (;;) {
      const port = /Server now running at http:\/\/127\.0\.0\.1:(\d+)\//.exec(this.output)?.[1];
      if (port && this.output.includes('Started flows')) return `http://127.0.0.1:${port}`;
      if (this.child.exitCode !== null || Date.now() > until) {
        assert.fail(`Node-RED did not start\n${this.output.slice(-3000)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(): Promise<void> {
    this.child.kill('SIGINT');
    assert.equal(await this.exited, 0, this.output.slice(-3000));
  }
}

interface Reply {
  out?: { status: string; credentialsValue: unknown };
  thingsboard?: { cached: boolean };
  caught?: {
    status: string;
    errorMsg: string;
    credentialsValue?: unknown;
    credentialsNotSaved?: boolean;
  };
  error?: string;
}

async function provision(base: string, deviceName: string): Promise<Reply> {
  const response = await fetch(`${base}/provision`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ deviceName }),
  });
  return (await response.json()) as Reply;
}

describe('reliability: a full disk under a running Node-RED (file size limit)', function () {
  this.timeout(90_000);
  let emulator: Emulator;
  let userDir: string;
  let red: NodeRed | undefined;

  before(async function () {
    if (!canLimitFileSize()) this.skip();
    emulator = await Emulator.start({ mqttPort: 0, httpPort: 0, coapPort: 0, profiles: [PROFILE] });
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-provision-disk-full-'));
    fs.mkdirSync(path.join(userDir, 'node_modules'));
    fs.symlinkSync(
      ROOT,
      path.join(userDir, 'node_modules', 'node-red-contrib-thingsboard-provision'),
      'dir',
    );
    fs.writeFileSync(path.join(userDir, 'settings.js'), SETTINGS);
    fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flow(emulator)));
    fs.writeFileSync(
      path.join(userDir, 'flows_cred.json'),
      JSON.stringify({ cfg: { provisionDeviceKey: KEY, provisionDeviceSecret: SECRET } }),
    );
  });

  after(async function () {
    red?.child.kill('SIGKILL');
    await red?.exited;
    await emulator?.stop();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });

  const requestsFor = (name: string): number =>
    emulator.requests.filter((r) => (r.body as { deviceName?: unknown })?.deviceName === name)
      .length;

  it('keeps a device provisioned while the disk was full once space is back, through a redeploy and a restart', async function () {
    // A store at rest: one snapshot, no journal.
    red = new NodeRed(userDir);
    let base = await red.started();
    assert.equal((await provision(base, 'before-full')).out?.status, 'SUCCESS');
    await red.stop();

    red = new NodeRed(userDir);
    base = await red.started();
    const pid = red.child.pid as number;
    // The disk fills up while A's request is at the server: the server creates A, the write fails.
    emulator.setFaults({ answerDelayMs: 600 });
    const pending = provision(base, 'device-a');
    const until = Date.now() + 10_000;
    while (requestsFor('device-a') === 0) {
      assert.ok(Date.now() < until, 'the request for device-a never reached the server');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    limitFileSize(pid, 0);
    const lost = await pending;
    emulator.setFaults({});
    assert.equal(lost.caught?.status, 'FAILURE', JSON.stringify(lost));
    assert.equal(lost.caught?.credentialsNotSaved, true);
    const token = lost.caught?.credentialsValue;
    assert.ok(typeof token === 'string' && token.length > 0, 'the credentials are in msg.payload');
    assert.match(String(lost.caught?.errorMsg), /could not be saved.*EFBIG.*msg\.payload/s);
    const refused = await provision(base, 'device-d');
    assert.match(String(refused.caught?.errorMsg), /^Nothing was sent to the server/);
    assert.equal(requestsFor('device-d'), 0, 'nothing sent while the disk is full');

    limitFileSize(pid, 'unlimited');
    const again = await provision(base, 'device-a');
    assert.equal(again.thingsboard?.cached, true, JSON.stringify(again));
    assert.equal(again.out?.credentialsValue, token);

    // A redeploy with no other write, then a restart.
    const deployed = await fetch(`${base}/admin/flows`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: JSON.stringify(flow(emulator)),
    });
    assert.equal(deployed.status, 204);
    await red.stop();
    red = new NodeRed(userDir);
    base = await red.started();
    const afterRestart = await provision(base, 'device-a');
    assert.equal(afterRestart.thingsboard?.cached, true, JSON.stringify(afterRestart));
    assert.equal(afterRestart.out?.credentialsValue, token);
    assert.equal(requestsFor('device-a'), 1, 'asked once: never refused as already provisioned');
    await red.stop();
    red = undefined;
  });
});
