/** The emulator's HTTP side: status codes, bodies, content types, device API, keep-alive. */

import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { Emulator } from '../src/emulator';
import {
  CREATE,
  FAILURE,
  NOT_FOUND,
  PRE,
  activeResources,
  assertNoNewResources,
  httpRequest,
  provisionOverHttp,
  request,
  startEmulator,
} from './support/emulator-clients';

describe('emulator HTTP', () => {
  let emulator: Emulator;

  beforeEach(async () => {
    emulator = await startEmulator();
    emulator.addDevice({
      name: 'token-device',
      profile: PRE.name,
      credentials: { credentialsType: 'ACCESS_TOKEN', token: 'device-token' },
    });
  });

  afterEach(() => emulator.stop());

  it('NOT_FOUND and FAILURE come with HTTP 200 and text/plain', async () => {
    for (const [body, expected] of [
      [request({ ...CREATE, provisionDeviceSecret: 'wrong' }, { deviceName: 'a' }), NOT_FOUND],
      [request(PRE, { deviceName: 'ghost' }), FAILURE],
    ]) {
      const reply = await provisionOverHttp(emulator.ports.http, body);
      assert.equal(reply.status, 200);
      assert.equal(reply.headers['content-type'], 'text/plain;charset=UTF-8');
      assert.equal(reply.body, expected);
    }
  });

  it('an empty body: 400', async () => {
    const reply = await provisionOverHttp(emulator.ports.http, '');
    assert.equal(reply.status, 400);
    assert.equal(emulator.requests.length, 1);
    assert.equal(emulator.requests[0].outcome, 'malformed: empty body');
  });

  const malformed: Array<[string, string]> = [
    ['not JSON', 'deviceName=a'],
    ['a JSON array', '[]'],
    ['a JSON string', '"text"'],
    ['missing provisionDeviceKey', JSON.stringify({ provisionDeviceSecret: 's' })],
    ['missing provisionDeviceSecret', JSON.stringify({ provisionDeviceKey: 'k' })],
    ['a null field', request(CREATE, { deviceName: null })],
    ['a null nested in an unknown field', request(CREATE, { deviceName: 'a', extra: [null] })],
    ['an unknown credentialsType', request(CREATE, { credentialsType: 'access_token' })],
    ['an empty credentialsType', request(CREATE, { credentialsType: '' })],
    ['an object where a string belongs', request(CREATE, { deviceName: { first: 'a' } })],
  ];
  for (const [what, body] of malformed) {
    it(`${what}: 500 with a JSON error object`, async () => {
      const before = Date.now();
      const reply = await provisionOverHttp(emulator.ports.http, body);
      assert.equal(reply.status, 500);
      assert.match(reply.headers['content-type'] ?? '', /^application\/json/);
      const error = JSON.parse(reply.body) as Record<string, unknown>;
      assert.deepEqual(Object.keys(error), ['status', 'message', 'errorCode', 'timestamp']);
      assert.equal(error.status, 500);
      assert.equal(error.errorCode, 2);
      assert.equal(typeof error.message, 'string');
      assert.ok((error.timestamp as number) >= before);
      assert.ok(!reply.body.includes(CREATE.provisionDeviceSecret), 'the secret is not echoed');
      assert.equal(emulator.devices.size, 1);
      assert.equal(emulator.requests.length, 1);
      assert.match(emulator.requests[0].outcome, /^malformed/);
    });
  }

  it('the request Content-Type does not matter', async () => {
    const reply = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: emulator.ports.http,
          path: '/api/v1/provision',
          method: 'POST',
          agent: false,
          headers: { 'Content-Type': 'text/plain' },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(request(CREATE, { deviceName: 'typed' }));
    });
    assert.equal(reply, 200);
    assert.ok(emulator.device('typed'));
  });

  it('device API: telemetry with a known token is recorded (200), an unknown token gets 401', async () => {
    const ok = await httpRequest(emulator.ports.http, '/api/v1/device-token/telemetry', {
      body: '{"temperature":20}',
    });
    assert.equal(ok.status, 200);
    assert.deepEqual(emulator.device('token-device')?.telemetry, [{ temperature: 20 }]);
    const refused = await httpRequest(emulator.ports.http, '/api/v1/unknown/telemetry', {
      body: '{"temperature":20}',
    });
    assert.equal(refused.status, 401);
  });

  it('device API: attributes posted then read back; unknown token 401', async () => {
    const empty = await httpRequest(emulator.ports.http, '/api/v1/device-token/attributes', {
      method: 'GET',
    });
    assert.equal(empty.status, 200);
    assert.deepEqual(JSON.parse(empty.body), {});
    const posted = await httpRequest(emulator.ports.http, '/api/v1/device-token/attributes', {
      body: '{"firmware":"2.1"}',
    });
    assert.equal(posted.status, 200);
    const read = await httpRequest(emulator.ports.http, '/api/v1/device-token/attributes', {
      method: 'GET',
    });
    assert.deepEqual(JSON.parse(read.body), { client: { firmware: '2.1' } });
    const refused = await httpRequest(emulator.ports.http, '/api/v1/nope/attributes', {
      method: 'GET',
    });
    assert.equal(refused.status, 401);
  });

  it('a provisioned token works on the device API at once', async () => {
    const reply = await provisionOverHttp(
      emulator.ports.http,
      request(CREATE, { deviceName: 'new' }),
    );
    const token = (JSON.parse(reply.body) as { credentialsValue: string }).credentialsValue;
    const telemetry = await httpRequest(emulator.ports.http, `/api/v1/${token}/telemetry`, {
      body: '{"on":true}',
    });
    assert.equal(telemetry.status, 200);
    assert.deepEqual(emulator.device('new')?.telemetry, [{ on: true }]);
  });

  it('other paths: 404; GET on the provisioning path: 405', async () => {
    assert.equal((await httpRequest(emulator.ports.http, '/api/v1/provisioning')).status, 404);
    assert.equal((await httpRequest(emulator.ports.http, '/')).status, 404);
    assert.equal(
      (await httpRequest(emulator.ports.http, '/api/v1/provision', { method: 'GET' })).status,
      405,
    );
  });

  it('keep-alive: several requests on one connection; stop() ends the idle one', async () => {
    await emulator.stop();
    const before = await activeResources();
    emulator = await startEmulator();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const sockets = new Set<unknown>();
      for (const name of ['k1', 'k2', 'k3']) {
        const reply = await new Promise<number>((resolve, reject) => {
          const req = http.request(
            {
              host: '127.0.0.1',
              port: emulator.ports.http,
              path: '/api/v1/provision',
              method: 'POST',
              agent,
            },
            (res) => {
              sockets.add(res.socket);
              res.resume();
              res.on('end', () => resolve(res.statusCode ?? 0));
            },
          );
          req.on('error', reject);
          req.end(request(CREATE, { deviceName: name }));
        });
        assert.equal(reply, 200);
      }
      assert.equal(sockets.size, 1, 'one connection reused');
      const stopped = Date.now();
      await emulator.stop();
      assert.ok(Date.now() - stopped < 1000, 'stop() did not wait for the keep-alive timeout');
      agent.destroy();
      await assertNoNewResources(before);
    } finally {
      agent.destroy();
    }
  });
});
