/** The emulator's device API over HTTP (spec §3) and CoAP (spec §4). */

import assert from 'node:assert/strict';
import * as net from 'node:net';
import type { Emulator } from '../src/emulator';
import { coapRequest, httpRequest, startEmulator } from './support/emulator-clients';
import { addTokenDevice } from './emulator-devices';

describe('emulator device API over HTTP', () => {
  let emulator: Emulator;
  const post = (path: string, body: string) => httpRequest(emulator.ports.http, path, { body });
  const get = (path: string) => httpRequest(emulator.ports.http, path, { method: 'GET' });

  beforeEach(async () => {
    emulator = await startEmulator();
    addTokenDevice(emulator, 'dev', 'dev-token');
  });

  afterEach(() => emulator.stop());

  it('telemetry in all three shapes and attributes: 200, empty body, recorded', async () => {
    for (const body of ['{"a":1}', '{"ts":1700000000000,"values":{"b":"2"}}', '[{"c":3}]']) {
      const reply = await post('/api/v1/dev-token/telemetry', body);
      assert.equal(reply.status, 200);
      assert.equal(reply.body, '');
    }
    assert.equal((await post('/api/v1/dev-token/attributes', '{"fw":"1.0"}')).status, 200);
    const dev = emulator.device('dev');
    assert.deepEqual(dev?.telemetry, [
      { a: 1 },
      { ts: 1700000000000, values: { b: '2' } },
      [{ c: 3 }],
    ]);
    assert.deepEqual(
      dev?.timeseries.map((point) => point.values),
      [{ a: 1 }, { b: 2 }, { c: 3 }],
    );
    assert.deepEqual(dev?.attributes, { fw: '1.0' });
  });

  it('an unknown token: 401 with an empty body, on every endpoint', async () => {
    for (const reply of [
      await post('/api/v1/nope/telemetry', '{"a":1}'),
      await post('/api/v1/nope/attributes', 'not even json'),
      await get('/api/v1/nope/attributes'),
    ]) {
      assert.equal(reply.status, 401);
      assert.equal(reply.body, '');
    }
  });

  for (const [path, body, what] of [
    ['telemetry', 'not json', 'invalid JSON'],
    ['telemetry', '12', 'telemetry that is a number'],
    ['telemetry', '{"ts":1,"values":5}', 'values that are no object'],
    ['attributes', '[{"a":1}]', 'attributes as an array'],
  ] as const) {
    it(`${what}: 500 (the server cannot convert it), nothing recorded`, async () => {
      const reply = await post(`/api/v1/dev-token/${path}`, body);
      assert.equal(reply.status, 500);
      assert.deepEqual(emulator.device('dev')?.telemetry, []);
      assert.deepEqual(emulator.device('dev')?.attributes, {});
    });
  }

  it('an empty body: 400', async () => {
    assert.equal((await post('/api/v1/dev-token/telemetry', '')).status, 400);
    assert.equal((await post('/api/v1/dev-token/attributes', '')).status, 400);
  });

  it('a body announced over 50 MiB: 413 before it is sent', async () => {
    const socket = net.connect(emulator.ports.http, '127.0.0.1');
    const answer = await new Promise<string>((resolve, reject) => {
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
      socket.write(
        'POST /api/v1/dev-token/telemetry HTTP/1.1\r\nHost: x\r\n' +
          `Content-Type: application/json\r\nContent-Length: ${50 * 1024 * 1024 + 1}\r\n\r\n{"a":`,
      );
    });
    assert.match(answer, /^HTTP\/1\.1 413 /);
    assert.deepEqual(emulator.device('dev')?.telemetry, []);
  });

  it('GET attributes: {"client","shared"}, filtered by clientKeys / sharedKeys, {} when none', async () => {
    assert.deepEqual(JSON.parse((await get('/api/v1/dev-token/attributes')).body), {});
    await post('/api/v1/dev-token/attributes', '{"fw":"1.0","model":"A"}');
    emulator.updateSharedAttributes('dev', { interval: 5, mode: 'eco' });
    const read = async (query: string) =>
      JSON.parse((await get(`/api/v1/dev-token/attributes${query}`)).body) as unknown;
    assert.deepEqual(await read(''), {
      client: { fw: '1.0', model: 'A' },
      shared: { interval: 5, mode: 'eco' },
    });
    assert.deepEqual(await read('?clientKeys=fw,nope'), { client: { fw: '1.0' } });
    assert.deepEqual(await read('?sharedKeys=mode'), { shared: { mode: 'eco' } });
    assert.deepEqual(await read('?clientKeys=model&sharedKeys=interval'), {
      client: { model: 'A' },
      shared: { interval: 5 },
    });
    assert.deepEqual(await read('?clientKeys=nope'), {});
  });
});

describe('emulator device API over CoAP', () => {
  let emulator: Emulator;
  const coap = (path: string, payload: string, method: 'GET' | 'POST' = 'POST') =>
    coapRequest(emulator.ports.coap, path, payload, { method });

  beforeEach(async () => {
    emulator = await startEmulator();
    addTokenDevice(emulator, 'dev', 'dev-token');
  });

  afterEach(() => emulator.stop());

  it('telemetry and attributes: 2.01 without payload, recorded', async () => {
    for (const body of ['{"a":1}', '[{"ts":1700000000000,"values":{"b":2}}]']) {
      const reply = await coap('/api/v1/dev-token/telemetry', body);
      assert.equal(reply.code, '2.01');
      assert.equal(reply.body, '');
    }
    assert.equal((await coap('/api/v1/dev-token/attributes', '{"fw":"1.0"}')).code, '2.01');
    assert.deepEqual(emulator.device('dev')?.telemetry, [
      { a: 1 },
      [{ ts: 1700000000000, values: { b: 2 } }],
    ]);
    assert.deepEqual(emulator.device('dev')?.attributes, { fw: '1.0' });
  });

  it('an unknown token: 4.01; invalid JSON, a wrong shape or an unknown feature: 4.00', async () => {
    assert.equal((await coap('/api/v1/nope/telemetry', '{"a":1}')).code, '4.01');
    assert.equal((await coap('/api/v1/nope/attributes', '', 'GET')).code, '4.01');
    assert.equal((await coap('/api/v1/dev-token/telemetry', 'nope')).code, '4.00');
    assert.equal((await coap('/api/v1/dev-token/telemetry', '')).code, '4.00');
    assert.equal((await coap('/api/v1/dev-token/attributes', '[1]')).code, '4.00');
    assert.equal((await coap('/api/v1/dev-token/readings', '{"a":1}')).code, '4.00');
    assert.deepEqual(emulator.device('dev')?.telemetry, []);
  });

  it('GET attributes: 4.04 when nothing is found (as for every new device)', async () => {
    const reply = await coap('/api/v1/dev-token/attributes', '', 'GET');
    assert.equal(reply.code, '4.04');
    assert.equal(reply.body, '');
    await coap('/api/v1/dev-token/attributes', '{"fw":"1.0"}');
    assert.equal((await coap('/api/v1/dev-token/attributes?sharedKeys=x', '', 'GET')).code, '4.04');
  });

  it('GET attributes: 2.05 {"client","shared"} as JSON, filtered by the keys asked', async () => {
    await coap('/api/v1/dev-token/attributes', '{"fw":"1.0","model":"A"}');
    emulator.updateSharedAttributes('dev', { interval: 5 });
    const all = await coap('/api/v1/dev-token/attributes', '', 'GET');
    assert.equal(all.code, '2.05');
    assert.equal(all.contentFormat, 'application/json');
    assert.deepEqual(JSON.parse(all.body), {
      client: { fw: '1.0', model: 'A' },
      shared: { interval: 5 },
    });
    const some = await coap('/api/v1/dev-token/attributes?clientKeys=model', '', 'GET');
    assert.deepEqual(JSON.parse(some.body), { client: { model: 'A' } });
  });
});
