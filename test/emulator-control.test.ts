/** The emulator's control route (/emulator/ on its HTTP port), its log and its bounded records. */

import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as os from 'node:os';
import mqtt from 'mqtt';
import type { Emulator } from '../src/emulator';
import { delay } from './support/common';
import { isLoopback } from '../src/emulator/http-control';
import {
  CREATE,
  httpRequest,
  provisionOverHttp,
  request,
  startEmulator,
} from './support/emulator-clients';
import { addTokenDevice } from './emulator-devices';

/** A control call with a JSON body (the route refuses anything else). */
function control(
  port: number,
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
  host = '127.0.0.1',
): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host, port, method, path, agent: false, headers: { 'Content-Type': contentType } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            json: text === '' ? undefined : JSON.parse(text),
          });
        });
      },
    );
    req.on('error', reject);
    req.end(
      body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    );
  });
}

describe('emulator control route', () => {
  let emulator: Emulator;
  let device: mqtt.MqttClient | undefined;
  const call = (method: string, path: string, body?: unknown, contentType?: string) =>
    control(emulator.ports.http, method, path, body, contentType);

  /** dev connected with mqtt.js, answering every RPC with its method and params. */
  async function connectAnsweringDevice(): Promise<unknown[]> {
    const updates: unknown[] = [];
    device = await mqtt.connectAsync(`mqtt://127.0.0.1:${emulator.ports.mqtt}`, {
      username: 'dev-token',
      reconnectPeriod: 0,
    });
    device.on('message', (topic, payload) => {
      const json = JSON.parse(payload.toString()) as { method?: string; params?: unknown };
      if (topic === 'v1/devices/me/attributes') updates.push(json);
      else {
        const id = topic.split('/').pop() ?? '';
        void device?.publishAsync(`v1/devices/me/rpc/response/${id}`, JSON.stringify(json));
      }
    });
    await device.subscribeAsync(['v1/devices/me/rpc/request/+', 'v1/devices/me/attributes']);
    return updates;
  }

  beforeEach(async () => {
    emulator = await startEmulator();
    addTokenDevice(emulator, 'dev', 'dev-token');
  });

  afterEach(async () => {
    await device?.endAsync(true);
    device = undefined;
    await emulator.stop();
  });

  it('POST /emulator/rpc/{device}: 200 with the device reply', async () => {
    await connectAnsweringDevice();
    const answer = await call('POST', '/emulator/rpc/dev', { method: 'blink', params: { n: 3 } });
    assert.deepEqual(answer, { status: 200, json: { method: 'blink', params: { n: 3 } } });
  });

  it('RPC failures carry the status and code of the library error', async () => {
    assert.deepEqual(await call('POST', '/emulator/rpc/nobody', { method: 'm' }), {
      status: 404,
      json: { error: 'UNKNOWN_DEVICE', message: 'No device named "nobody"' },
    });
    const undelivered = await call('POST', '/emulator/rpc/dev', { method: 'm', timeoutMs: 150 });
    assert.equal(undelivered.status, 409);
    assert.equal((undelivered.json as { error: string }).error, 'NOT_DELIVERED');
  });

  it('bad requests: 400 without a method or with a body that is no object, 415 without JSON', async () => {
    assert.equal((await call('POST', '/emulator/rpc/dev', { params: {} })).status, 400);
    assert.equal((await call('POST', '/emulator/rpc/dev', '[1]')).status, 400);
    assert.equal((await call('POST', '/emulator/rpc/dev', 'nope')).status, 400);
    assert.equal(
      (await call('POST', '/emulator/rpc/dev', { method: 'm', timeoutMs: -1 })).status,
      400,
    );
    const plain = await call('POST', '/emulator/rpc/dev', '{"method":"m"}', 'text/plain');
    assert.equal(plain.status, 415);
    assert.equal((await call('GET', '/emulator/nothing')).status, 404);
    assert.equal((await call('GET', '/emulator/rpc/dev')).status, 404);
  });

  it('POST /emulator/attributes/{device}: pushed to the session, 200 {"sessions":1}', async () => {
    const updates = await connectAnsweringDevice();
    assert.deepEqual(await call('POST', '/emulator/attributes/dev', { interval: 5 }), {
      status: 200,
      json: { sessions: 1 },
    });
    for (let i = 0; i < 100 && updates.length === 0; i++) await delay(10);
    assert.deepEqual(updates, [{ interval: 5 }]);
    assert.deepEqual(emulator.device('dev')?.sharedAttributes, { interval: 5 });
    assert.equal((await call('POST', '/emulator/attributes/nobody', { a: 1 })).status, 404);
  });

  it('GET /emulator/sessions, DELETE /emulator/sessions/{device}', async () => {
    await connectAnsweringDevice();
    const listed = await call('GET', '/emulator/sessions');
    assert.equal(listed.status, 200);
    assert.deepEqual(
      (listed.json as Array<{ device: string; subscriptions: unknown }>).map(
        ({ device: name, subscriptions }) => ({ name, subscriptions }),
      ),
      [{ name: 'dev', subscriptions: { attributes: true, rpc: true } }],
    );
    const closed = new Promise<void>((resolve) => device?.once('close', () => resolve()));
    assert.deepEqual(await call('DELETE', '/emulator/sessions/dev'), {
      status: 200,
      json: { closed: true },
    });
    await closed;
    assert.equal((await call('DELETE', '/emulator/sessions/dev')).status, 404);
  });

  it('GET /emulator/devices/{device}: what it sent, never its credentials', async () => {
    await httpRequest(emulator.ports.http, '/api/v1/dev-token/telemetry', { body: '{"t":1}' });
    const shown = await call('GET', '/emulator/devices/dev');
    assert.equal(shown.status, 200);
    const record = shown.json as Record<string, unknown>;
    assert.deepEqual(record.telemetry, [{ t: 1 }]);
    assert.equal(record.credentials, undefined);
    assert.ok(!JSON.stringify(record).includes('dev-token'));
    assert.equal((await call('GET', '/emulator/devices/nobody')).status, 404);
  });

  it('device names are URL-decoded from the path', async () => {
    addTokenDevice(emulator, 'pump 1/a', 'pump-token');
    const shown = await call('GET', `/emulator/devices/${encodeURIComponent('pump 1/a')}`);
    assert.equal((shown.json as { name: string }).name, 'pump 1/a');
  });

  it('answers loopback peers only', async function () {
    assert.equal(isLoopback('127.0.0.1'), true);
    assert.equal(isLoopback('127.8.9.1'), true);
    assert.equal(isLoopback('::1'), true);
    assert.equal(isLoopback('::ffff:127.0.0.1'), true);
    assert.equal(isLoopback('192.168.1.20'), false);
    assert.equal(isLoopback('::ffff:10.0.0.1'), false);
    assert.equal(isLoopback('fe80::1'), false);
    const external = Object.values(os.networkInterfaces())
      .flat()
      .find((address) => address?.family === 'IPv4' && !address.internal)?.address;
    if (external === undefined) return;
    await emulator.stop();
    emulator = await startEmulator({ host: '0.0.0.0' });
    const refused = await control(
      emulator.ports.http,
      'GET',
      '/emulator/sessions',
      undefined,
      undefined,
      external,
    );
    assert.equal(refused.status, 403);
    const local = await control(emulator.ports.http, 'GET', '/emulator/sessions');
    assert.equal(local.status, 200);
  });
});

describe('emulator log and records', () => {
  let emulator: Emulator | undefined;

  afterEach(async () => {
    await emulator?.stop();
    emulator = undefined;
  });

  it('control characters from a request never reach the log unescaped', async () => {
    const lines: string[] = [];
    emulator = await startEmulator({ log: (line) => lines.push(line) });
    const name = 'evil\u001b[2J\u009b31m\u2028next\u202eline';
    await provisionOverHttp(
      emulator.ports.http,
      JSON.stringify({
        provisionDeviceKey: '\u001b]0;k',
        provisionDeviceSecret: 'secret',
        deviceName: name,
      }),
    );
    await provisionOverHttp(emulator.ports.http, request(CREATE, { deviceName: name }));
    addTokenDevice(emulator, 'x\u0085y', 'x-token');
    await httpRequest(emulator.ports.http, '/api/v1/x-token/telemetry', { body: '{"a":1}' });
    assert.ok(lines.length >= 3, lines.join('\n'));
    for (const line of lines) {
      assert.doesNotMatch(line, /[\p{Cc}\u2028\u2029\u202a-\u202e]/u, line);
    }
    assert.ok(
      lines.some((line) => line.includes('\\u009b31m')),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((line) => line.includes('\\u0085')),
      lines.join('\n'),
    );
  });

  it('recordLimit keeps the newest requests and records, dropping the oldest', async () => {
    emulator = await startEmulator({ recordLimit: 3 });
    for (let i = 0; i < 5; i++) {
      await provisionOverHttp(emulator.ports.http, request(CREATE, { deviceName: `d${i}` }));
    }
    assert.deepEqual(
      emulator.requests.map((recorded) => (recorded.body as { deviceName: string }).deviceName),
      ['d2', 'd3', 'd4'],
    );
    addTokenDevice(emulator, 'dev', 'dev-token');
    for (let i = 0; i < 5; i++) {
      await httpRequest(emulator.ports.http, '/api/v1/dev-token/telemetry', {
        body: JSON.stringify([{ n: i }, { m: i }]),
      });
    }
    const dev = emulator.device('dev');
    assert.deepEqual(dev?.telemetry, [
      [{ n: 2 }, { m: 2 }],
      [{ n: 3 }, { m: 3 }],
      [{ n: 4 }, { m: 4 }],
    ]);
    assert.deepEqual(
      dev?.timeseries.map((point) => point.values),
      [{ m: 3 }, { n: 4 }, { m: 4 }],
    );
  });

  it('the default limit is 10 000; a limit below 1 is refused', async () => {
    await assert.rejects(startEmulator({ recordLimit: 0 }), RangeError);
    emulator = await startEmulator();
    addTokenDevice(emulator, 'dev', 'dev-token');
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${emulator.ports.mqtt}`, {
      username: 'dev-token',
      reconnectPeriod: 0,
    });
    try {
      await Promise.all(
        Array.from({ length: 10_050 }, (_, n) =>
          client.publishAsync('v1/devices/me/telemetry', `{"n":${n}}`, { qos: 1 }),
        ),
      );
    } finally {
      await client.endAsync();
    }
    const telemetry = emulator.device('dev')?.telemetry ?? [];
    assert.equal(telemetry.length, 10_000);
    assert.deepEqual(telemetry[0], { n: 50 });
  });
});
