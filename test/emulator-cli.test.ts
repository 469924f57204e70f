/** The tb-provision-emulator command, run as a real child process. */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import mqtt from 'mqtt';
import type { Emulator } from '../src/emulator';
import { PRE, httpRequest, provisionOverHttp, startEmulator } from './support/emulator-clients';

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

  it('--record-limit n keeps the newest n entries of each list; below 1 is a usage error', async () => {
    const bad = start(['--record-limit', '0']);
    assert.equal(await bad.exited, 2);
    assert.match(bad.output(), /--record-limit must be a whole number/);
    const cli = start([
      '--mqtt-port',
      '0',
      '--http-port',
      '0',
      '--coap-port',
      '0',
      '--record-limit',
      '2',
    ]);
    const [, httpPort] = await waitForOutput(
      cli,
      /http:\/\/127\.0\.0\.1:(\d+)\/api\/v1\/provision/,
    );
    const port = Number(httpPort);
    const reply = await provisionOverHttp(
      port,
      JSON.stringify({
        provisionDeviceKey: 'demo-provision-key',
        provisionDeviceSecret: 'demo-provision-secret',
        deviceName: 'limited',
      }),
    );
    const token = (JSON.parse(reply.body) as { credentialsValue: string }).credentialsValue;
    for (const n of [1, 2, 3]) {
      await httpRequest(port, `/api/v1/${token}/telemetry`, { body: `{"n":${n}}` });
    }
    const shown = run(['device', 'limited', '--http-port', httpPort]);
    runs.push(shown);
    assert.equal(await shown.exited, 0);
    assert.deepEqual((JSON.parse(shown.output()) as { telemetry: unknown }).telemetry, [
      { n: 2 },
      { n: 3 },
    ]);
    cli.child.kill('SIGINT');
    assert.equal(await cli.exited, 0);
  });
});

describe('emulator command line: talking to a running emulator', () => {
  let emulator: Emulator;
  const runs: Run[] = [];
  const command = async (args: string[]) => {
    const started = run([...args, '--http-port', String(emulator.ports.http)]);
    runs.push(started);
    const code = await started.exited;
    return { code, output: started.output() };
  };

  beforeEach(async () => {
    emulator = await startEmulator();
    emulator.addDevice({
      name: 'pump 1',
      profile: PRE.name,
      credentials: { credentialsType: 'ACCESS_TOKEN', token: 'pump-token' },
    });
  });

  afterEach(async () => {
    for (const { child, exited } of runs.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    await emulator.stop();
  });

  it('rpc <device> <method> [params]: prints the reply, exit code 0', async () => {
    const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${emulator.ports.mqtt}`, {
      username: 'pump-token',
      reconnectPeriod: 0,
    });
    try {
      device.on('message', (topic, payload) => {
        const id = topic.split('/').pop() ?? '';
        const params = (JSON.parse(payload.toString()) as { params: { speed: number } }).params;
        void device.publishAsync(
          `v1/devices/me/rpc/response/${id}`,
          JSON.stringify({ speed: params.speed }),
        );
      });
      await device.subscribeAsync('v1/devices/me/rpc/request/+');
      const { code, output } = await command(['rpc', 'pump 1', 'setSpeed', '{"speed":3}']);
      assert.equal(code, 0, output);
      assert.deepEqual(JSON.parse(output), { speed: 3 });
    } finally {
      await device.endAsync(true);
    }
  });

  it('rpc to a device without a session: the 409 and its reason, exit code 1', async () => {
    const { code, output } = await command(['rpc', 'pump 1', 'stop', '--timeout', '200']);
    assert.equal(code, 1);
    assert.match(output, /409 NOT_DELIVERED/);
  });

  it('attributes <device> <json>: sets and pushes shared attributes; sessions and device print JSON', async () => {
    const set = await command(['attributes', 'pump 1', '{"interval":30}']);
    assert.equal(set.code, 0, set.output);
    assert.deepEqual(JSON.parse(set.output), { sessions: 0 });
    assert.deepEqual(emulator.device('pump 1')?.sharedAttributes, { interval: 30 });
    const sessions = await command(['sessions']);
    assert.equal(sessions.code, 0);
    assert.deepEqual(JSON.parse(sessions.output), []);
    const shown = await command(['device', 'pump 1']);
    assert.equal(shown.code, 0);
    assert.deepEqual((JSON.parse(shown.output) as Record<string, unknown>).sharedAttributes, {
      interval: 30,
    });
    assert.doesNotMatch(shown.output, /pump-token/);
  });

  it('bad arguments: usage and exit code 2; no emulator listening: exit code 1, said plainly', async () => {
    assert.equal((await command(['rpc', 'pump 1'])).code, 2);
    assert.equal((await command(['attributes', 'pump 1', '[1]'])).code, 2);
    assert.equal((await command(['rpc', 'pump 1', 'm', 'not-json'])).code, 2);
    const port = emulator.ports.http;
    await emulator.stop();
    const started = run(['sessions', '--http-port', String(port)]);
    runs.push(started);
    assert.equal(await started.exited, 1);
    assert.match(started.output(), /no emulator answers on http:\/\/127\.0\.0\.1:\d+/);
    emulator = await startEmulator();
  });
});

describe('emulator command line: listening beyond this machine', () => {
  const runs: Run[] = [];

  afterEach(async () => {
    for (const { child, exited } of runs.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    }
  });

  const ports = ['--mqtt-port', '0', '--http-port', '0', '--coap-port', '0'];

  it('--host 0.0.0.0 with the demo key and secret prints a warning', async () => {
    const cli = run(['--host', '0.0.0.0', ...ports]);
    runs.push(cli);
    await waitForOutput(cli, /Press Ctrl\+C/);
    assert.match(cli.output(), /WARNING: listening on 0\.0\.0\.0 with the demo provision key/);
    cli.child.kill('SIGINT');
    assert.equal(await cli.exited, 0);
  });

  it('no warning with a key and secret of its own, or on loopback', async () => {
    const own = run(['--host', '0.0.0.0', ...ports, '--key', 'k1', '--secret', 's1']);
    const loopback = run(ports);
    runs.push(own, loopback);
    for (const cli of [own, loopback]) {
      await waitForOutput(cli, /Press Ctrl\+C/);
      assert.doesNotMatch(cli.output(), /WARNING/);
      cli.child.kill('SIGINT');
      assert.equal(await cli.exited, 0);
    }
  });
});
