/** The tb-provision-emulator command, run as a real child process. */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { provisionOverHttp } from './support/emulator-clients';

const CLI = path.join(__dirname, '..', 'src', 'emulator', 'cli.ts');

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function run(args: string[]): Run {
  const child = spawn(process.execPath, ['--require', 'tsx/cjs', CLI, ...args], {
    cwd: path.join(__dirname, '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  return { child, output: () => output, exited };
}

async function waitForOutput(
  process: Run,
  pattern: RegExp,
  timeoutMs = 15000,
): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(process.output());
    if (match !== null) return match;
    if (Date.now() > deadline || process.child.exitCode !== null) {
      throw new Error(`no ${pattern} in output:\n${process.output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('emulator command line', () => {
  const runs: Run[] = [];
  const start = (args: string[]) => {
    const started = run(args);
    runs.push(started);
    return started;
  };

  afterEach(async () => {
    for (const { child, exited } of runs.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    }
  });

  it('prints its URLs, logs a provisioning, stops on SIGINT with exit code 0, never shows the secret', async () => {
    const cli = start([
      '--mqtt-port',
      '0',
      '--http-port',
      '0',
      '--coap-port',
      '0',
      '--key',
      'cli-key-value',
      '--secret',
      'cli-secret-value',
      '--profile',
      'cli-profile',
    ]);
    const [, mqttPort] = await waitForOutput(cli, /mqtt:\/\/127\.0\.0\.1:(\d+)/);
    const [, httpPort] = await waitForOutput(
      cli,
      /http:\/\/127\.0\.0\.1:(\d+)\/api\/v1\/provision/,
    );
    const [, coapPort] = await waitForOutput(
      cli,
      /coap:\/\/127\.0\.0\.1:(\d+)\/api\/v1\/provision/,
    );
    for (const port of [mqttPort, httpPort, coapPort]) assert.notEqual(Number(port), 0);

    const reply = await provisionOverHttp(
      Number(httpPort),
      JSON.stringify({
        provisionDeviceKey: 'cli-key-value',
        provisionDeviceSecret: 'cli-secret-value',
        deviceName: 'cli-device',
      }),
    );
    assert.match(reply.body, /"status":"SUCCESS"/);
    const token = (JSON.parse(reply.body) as { credentialsValue: string }).credentialsValue;
    await waitForOutput(
      cli,
      /http {2}provision device "cli-device" \(key cl…\) -> SUCCESS ACCESS_TOKEN/,
    );

    cli.child.kill('SIGINT');
    assert.equal(await cli.exited, 0);
    const output = cli.output();
    assert.ok(!output.includes('cli-secret-value'), 'the secret never appears');
    assert.ok(!output.includes(token), 'the issued token never appears');
  });

  it('without --key/--secret uses the demo values and says so', async () => {
    const cli = start(['--mqtt-port', '0', '--http-port', '0', '--coap-port', '0']);
    await waitForOutput(cli, /demo-provision-key.*demo-provision-secret.*demo values/);
    cli.child.kill('SIGTERM');
    assert.equal(await cli.exited, 0);
  });

  it('a port in use: a clear error naming the port and the flag, exit code 1', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const cli = start(['--mqtt-port', '0', '--http-port', String(port), '--coap-port', '0']);
      assert.equal(await cli.exited, 1);
      assert.match(
        cli.output(),
        new RegExp(`HTTP port ${port} on 127\\.0\\.0\\.1 is already in use`),
      );
      assert.match(cli.output(), /--http-port/);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('bad flags: usage and exit code 2; --help: usage and exit code 0', async () => {
    const bad = start(['--strategy', 'sometimes']);
    assert.equal(await bad.exited, 2);
    assert.match(bad.output(), /--strategy must be one of/);
    const unknown = start(['--colour']);
    assert.equal(await unknown.exited, 2);
    const help = start(['--help']);
    assert.equal(await help.exited, 0);
    assert.match(help.output(), /Usage: tb-provision-emulator/);
  });
});
