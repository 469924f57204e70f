import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Emulator } from '../src/emulator';
import { TRANSPORTS, delay } from './support/common';
import {
  Collector,
  KEY,
  PROFILE,
  SECRET,
  keys,
  loadFlow,
  provisionFlow,
  send,
  startEmulator,
  tearDown,
  tempUserDir,
} from './support/flows';
import type { Message } from './support/flows';
import { helper, onCall, packageNodeModules } from './support/node-red';

describe('thingsboard-provision node', function () {
  let emulator: Emulator;
  let userDir: string;

  beforeEach(async function () {
    emulator = await startEmulator();
    userDir = tempUserDir();
  });

  afterEach(async function () {
    await tearDown(emulator, userDir);
  });

  it('registers both node types and keeps the key and secret out of the flow', async function () {
    await loadFlow(provisionFlow(emulator), keys(), userDir);
    const cfg = helper.getNode('cfg') as unknown as { credentials: Record<string, string> };
    assert.equal(cfg.credentials.provisionDeviceKey, KEY);
    assert.equal(cfg.credentials.provisionDeviceSecret, SECRET);
    assert.ok(helper.getNode('prov'));
  });

  for (const transport of TRANSPORTS) {
    describe(`over ${transport}`, function () {
      it('provisions a device and passes the message on with the contract fields', async function () {
        await loadFlow(provisionFlow(emulator, { transport }), keys(), userDir);
        const out = new Collector('out');
        const before = Date.now();
        send({ deviceName: ` pump-${transport} `, topic: 'kept', _msgid: 'm1' });
        const [msg] = await out.waitFor(1);
        const payload = msg.payload as Record<string, unknown>;
        assert.equal(payload.status, 'SUCCESS');
        assert.equal(payload.deviceName, `pump-${transport}`);
        assert.equal(payload.credentialsType, 'ACCESS_TOKEN');
        const device = emulator.device(`pump-${transport}`);
        assert.ok(device, 'device created on the server');
        assert.deepEqual(device.credentials, {
          credentialsType: 'ACCESS_TOKEN',
          token: payload.credentialsValue,
        });
        assert.equal(msg.topic, 'kept', 'the input message is passed on');
        const tb = msg.thingsboard as Record<string, unknown>;
        assert.equal(tb.host, emulator.host);
        assert.equal(tb.transport, transport);
        assert.equal(tb.deviceName, `pump-${transport}`);
        assert.equal(tb.cached, false);
        const at = Date.parse(tb.provisionedAt as string);
        assert.ok(at >= before - 1000 && at <= Date.now(), 'provisionedAt is an ISO time of now');
        assert.deepEqual(msg.broker, {
          broker: emulator.host,
          port: emulator.ports.mqtt,
          username: payload.credentialsValue,
          usetls: false,
          force: true,
        });
        assert.equal(msg.action, undefined, 'no connect action unless asked for');
      });

      it('reports NOT_FOUND to a Catch node without leaking the secret', async function () {
        const wrongSecret = 'wrong-secret-QQ7';
        await loadFlow(provisionFlow(emulator, { transport }), keys(wrongSecret), userDir);
        const out = new Collector('out');
        const caught = new Collector('caught');
        send({ deviceName: 'nf-device' });
        const [msg] = await caught.waitFor(1);
        const payload = msg.payload as Record<string, unknown>;
        assert.equal(payload.status, 'NOT_FOUND');
        assert.equal(payload.deviceName, 'nf-device');
        assert.match(String(payload.errorMsg), /key|secret/i);
        assert.ok(msg.error?.message.includes('NOT_FOUND'));
        assert.ok(!JSON.stringify(msg).includes(wrongSecret));
        assert.equal(out.messages.length, 0, 'no output on failure');
      });

      it('reports FAILURE when the device already exists, saying so', async function () {
        await loadFlow(provisionFlow(emulator, { transport, persist: false }), keys(), userDir);
        const out = new Collector('out');
        const caught = new Collector('caught');
        send({ deviceName: 'twice' });
        await out.waitFor(1);
        send({ deviceName: 'twice' });
        const [msg] = await caught.waitFor(1);
        assert.equal((msg.payload as Record<string, unknown>).status, 'FAILURE');
        assert.match(String(msg.error?.message), /already exists/i);
      });
    });
  }

  describe('device name', function () {
    for (const bad of [undefined, '', '   ', 42]) {
      it(`refuses ${JSON.stringify(bad)} with INVALID_INPUT and sends nothing`, async function () {
        await loadFlow(provisionFlow(emulator), keys(), userDir);
        const caught = new Collector('caught');
        send({ deviceName: bad });
        const [msg] = await caught.waitFor(1);
        assert.equal((msg.payload as Record<string, unknown>).status, 'INVALID_INPUT');
        assert.equal(emulator.requests.length, 0, 'nothing reached the server');
      });
    }

    it('leads the error text with the advice when no name is known, and names a known one', async function () {
      await loadFlow(provisionFlow(emulator), keys(), userDir);
      const caught = new Collector('caught');
      send({});
      const [missing] = await caught.waitFor(1);
      // The debug sidebar shows only the first words of an error until it is expanded.
      assert.match(
        String(missing.error?.message),
        /^(Error: )?Provisioning failed \(INVALID_INPUT\): No device name: set msg\.deviceName/,
      );
      send({ deviceName: 'x'.repeat(256) });
      const named = (await caught.waitFor(2))[1];
      assert.match(
        String(named.error?.message),
        /^(Error: )?Provisioning "x{64}…" failed \(INVALID_INPUT\)/,
      );
    });

    const sources: Array<[string, string, (flowCtx: Record<string, unknown>) => void]> = [
      ['str', 'fixed-name', () => undefined],
      ['msg', 'payload.name', () => undefined],
      ['flow', 'deviceFromFlow', (ctx) => (ctx.flow = 'flow-name')],
      ['global', 'deviceFromGlobal', (ctx) => (ctx.global = 'global-name')],
      ['env', 'TB_TEST_DEVICE_NAME', () => (process.env.TB_TEST_DEVICE_NAME = 'env-name')],
      ['jsonata', '"j-" & payload.name', () => undefined],
    ];
    const expected: Record<string, string> = {
      str: 'fixed-name',
      msg: 'from-msg',
      flow: 'flow-name',
      global: 'global-name',
      env: 'env-name',
      jsonata: 'j-from-msg',
    };
    for (const [type, value, prepare] of sources) {
      it(`reads the name from a ${type} typed input`, async function () {
        const ctx: Record<string, unknown> = {};
        prepare(ctx);
        await loadFlow(
          provisionFlow(emulator, { deviceName: value, deviceNameType: type, transport: 'http' }),
          keys(),
          userDir,
        );
        const prov = helper.getNode('prov');
        if (ctx.flow) prov.context().flow.set('deviceFromFlow', ctx.flow);
        if (ctx.global) prov.context().global.set('deviceFromGlobal', ctx.global);
        const out = new Collector('out');
        send({ payload: { name: 'from-msg' } });
        const [msg] = await out.waitFor(1);
        assert.equal((msg.payload as Record<string, unknown>).deviceName, expected[type]);
        assert.ok(emulator.device(expected[type]));
      });
    }
  });

  describe('device-chosen credentials', function () {
    it('sends the token from msg.credentials', async function () {
      await loadFlow(provisionFlow(emulator, { credentialsType: 'ACCESS_TOKEN' }), keys(), userDir);
      const out = new Collector('out');
      send({ deviceName: 'chosen', credentials: { token: 'myOwnToken123456789012' } });
      const [msg] = await out.waitFor(1);
      assert.equal(
        (msg.payload as Record<string, unknown>).credentialsValue,
        'myOwnToken123456789012',
      );
      assert.deepEqual(emulator.device('chosen')?.credentials, {
        credentialsType: 'ACCESS_TOKEN',
        token: 'myOwnToken123456789012',
      });
    });

    it('makes a random access token of 20+ characters when none is given', async function () {
      await loadFlow(provisionFlow(emulator, { credentialsType: 'ACCESS_TOKEN' }), keys(), userDir);
      const out = new Collector('out');
      send({ deviceName: 'gen-1' });
      send({ deviceName: 'gen-2' });
      const msgs = await out.waitFor(2);
      const tokens = msgs.map((m) =>
        String((m.payload as Record<string, unknown>).credentialsValue),
      );
      for (const token of tokens) assert.ok(token.length >= 20, token);
      assert.notEqual(tokens[0], tokens[1]);
      const sent = emulator.requests.map((r) => (r.body as Record<string, unknown>).token);
      assert.deepEqual(sent.sort(), [...tokens].sort(), 'the tokens were chosen by the node');
    });

    it('makes MQTT basic credentials and hands them on in the mqtt node shape', async function () {
      await loadFlow(
        provisionFlow(emulator, { credentialsType: 'MQTT_BASIC', transport: 'http' }),
        keys(),
        userDir,
      );
      const out = new Collector('out');
      send({ deviceName: 'basic-1' });
      const [msg] = await out.waitFor(1);
      const value = (msg.payload as Record<string, unknown>).credentialsValue as Record<
        string,
        string
      >;
      assert.equal((msg.payload as Record<string, unknown>).credentialsType, 'MQTT_BASIC');
      assert.ok(value.clientId && value.userName && value.password);
      assert.deepEqual(msg.broker, {
        broker: emulator.host,
        port: emulator.ports.mqtt,
        clientid: value.clientId,
        username: value.userName,
        password: value.password,
        usetls: false,
        force: true,
      });
    });

    it('makes an EC P-256 key and a self-signed certificate named after the device', async function () {
      await loadFlow(
        provisionFlow(emulator, { credentialsType: 'X509_CERTIFICATE', transport: 'coap' }),
        keys(),
        userDir,
      );
      const out = new Collector('out');
      send({ deviceName: 'cert-device' });
      const [msg] = await out.waitFor(1);
      const payload = msg.payload as Record<string, string>;
      assert.equal(payload.credentialsType, 'X509_CERTIFICATE');
      const cert = new crypto.X509Certificate(payload.certificate);
      assert.match(cert.subject, /CN=cert-device/);
      const key = crypto.createPrivateKey(payload.privateKey);
      assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
      assert.ok(cert.checkPrivateKey(key));
      assert.ok(cert.verify(cert.publicKey), 'self-signed');
      const body = payload.certificate.replace(/-----[^-]+-----|\s/g, '');
      assert.equal(payload.credentialsValue, body);
      assert.equal(msg.broker, undefined, 'no mqtt broker settings for certificates');
    });

    it('refuses credentials of the wrong shape before sending anything', async function () {
      await loadFlow(provisionFlow(emulator, { credentialsType: 'MQTT_BASIC' }), keys(), userDir);
      const caught = new Collector('caught');
      send({ deviceName: 'bad-creds', credentials: { password: 'p-only-secret' } });
      const [msg] = await caught.waitFor(1);
      assert.equal((msg.payload as Record<string, unknown>).status, 'INVALID_INPUT');
      assert.ok(!String(msg.error?.message).includes('p-only-secret'));
      assert.equal(emulator.requests.length, 0);
    });
  });

  it('provisions a gateway when msg.gateway is true', async function () {
    await loadFlow(provisionFlow(emulator, { transport: 'http' }), keys(), userDir);
    const out = new Collector('out');
    send({ deviceName: 'gw-1', gateway: true });
    send({ deviceName: 'plain-1' });
    await out.waitFor(2);
    assert.equal(emulator.device('gw-1')?.gateway, true);
    assert.equal(emulator.device('plain-1')?.gateway, false);
  });

  it('sets msg.action = "connect" when asked to drive an mqtt node', async function () {
    await loadFlow(provisionFlow(emulator, { mqttConnect: true }), keys(), userDir);
    const out = new Collector('out');
    send({ deviceName: 'connect-me' });
    const [msg] = await out.waitFor(1);
    assert.equal(msg.action, 'connect');
  });

  describe('stored credentials', function () {
    it('answers a second request from the store, marked cached, file mode 0600', async function () {
      await loadFlow(provisionFlow(emulator, { transport: 'http' }), keys(), userDir);
      const out = new Collector('out');
      send({ deviceName: 'kept-1' });
      await out.waitFor(1);
      send({ deviceName: 'kept-1' });
      const [first, second] = await out.waitFor(2);
      assert.equal(emulator.requests.length, 1, 'the server was asked once');
      assert.equal((second.thingsboard as Record<string, unknown>).cached, true);
      assert.deepEqual(second.payload, first.payload);
      const dir = path.join(userDir, 'thingsboard-provision');
      // The lock, a symbolic link naming this process, is there while the flow runs.
      assert.ok(fs.lstatSync(path.join(dir, 'credentials.json.lock')).isSymbolicLink());
      const files = fs
        .readdirSync(dir)
        .filter((f) => f !== 'credentials.json.lock')
        .map((f) => path.join(dir, f));
      for (const file of files) assert.equal(fs.statSync(file).mode & 0o777, 0o600, file);
      const stored = files.map((f) => fs.readFileSync(f, 'utf8')).join('\n');
      assert.ok(stored.includes('kept-1'));
      assert.ok(!stored.includes(SECRET), 'the secret is not stored');
    });

    it('keeps them across a restart of the flows', async function () {
      await loadFlow(provisionFlow(emulator, { transport: 'mqtt' }), keys(), userDir);
      let out = new Collector('out');
      send({ deviceName: 'survivor' });
      const [first] = await out.waitFor(1);
      await helper.unload();
      await loadFlow(provisionFlow(emulator, { transport: 'mqtt' }), keys(), userDir);
      out = new Collector('out');
      send({ deviceName: 'survivor' });
      const [again] = await out.waitFor(1);
      assert.equal((again.thingsboard as Record<string, unknown>).cached, true);
      assert.deepEqual(again.payload, first.payload);
      assert.equal(emulator.requests.length, 1);
    });

    it('asks again with msg.reprovision and replaces the entry', async function () {
      emulator.addProfile({
        ...PROFILE,
        name: 'legacy',
        provisionDeviceKey: 'legacy-key',
        strategy: 'check-pre-provisioned-legacy',
      });
      emulator.addDevice({
        name: 'pre-1',
        profile: 'legacy',
        credentials: { credentialsType: 'ACCESS_TOKEN', token: 'preToken0000000000001' },
      });
      await loadFlow(
        provisionFlow(emulator, { transport: 'http' }),
        keys(SECRET, 'legacy-key'),
        userDir,
      );
      const out = new Collector('out');
      send({ deviceName: 'pre-1' });
      await out.waitFor(1);
      send({ deviceName: 'pre-1', reprovision: true });
      const msgs = await out.waitFor(2);
      assert.equal(emulator.requests.length, 2);
      assert.equal((msgs[1].thingsboard as Record<string, unknown>).cached, false);
    });

    it('moves a damaged store aside, says where in a warning, and starts afresh', async function () {
      const dir = path.join(userDir, 'thingsboard-provision');
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'credentials.json'), '{"format": "thingsboard-prov');
      await loadFlow(provisionFlow(emulator, { transport: 'http' }), keys(), userDir);
      const warnings: string[] = [];
      onCall(helper.getNode('prov'), 'warn', (args) => warnings.push(String(args[0])));
      const out = new Collector('out');
      send({ deviceName: 'after-damage' });
      await out.waitFor(1);
      const aside = fs.readdirSync(dir).find((f) => f.includes('.damaged-'));
      assert.ok(aside, 'the damaged file was kept beside the new store');
      assert.equal(
        fs.readFileSync(path.join(dir, aside), 'utf8'),
        '{"format": "thingsboard-prov',
        'moved untouched',
      );
      assert.equal(warnings.length, 1);
      assert.ok(warnings[0].startsWith('The credential store was damaged'), warnings[0]);
      assert.ok(warnings[0].includes(aside), warnings[0]);
    });

    it('does not store anything with persist off', async function () {
      await loadFlow(provisionFlow(emulator, { persist: false }), keys(), userDir);
      const out = new Collector('out');
      send({ deviceName: 'ephemeral' });
      await out.waitFor(1);
      assert.ok(!fs.existsSync(path.join(userDir, 'thingsboard-provision', 'credentials.json')));
    });
  });

  describe('load and faults', function () {
    it('keeps at most `concurrency` requests in flight and answers every message', async function () {
      emulator.setFaults({ answerDelayMs: 50 });
      await loadFlow(
        provisionFlow(emulator, { transport: 'http', concurrency: 3 }),
        keys(),
        userDir,
      );
      const out = new Collector('out');
      for (let i = 0; i < 12; i++) send({ deviceName: `fleet-${i}` });
      const msgs = await out.waitFor(12);
      assert.equal(emulator.maxConcurrent, 3);
      assert.equal(
        new Set(msgs.map((m) => (m.payload as Record<string, unknown>).deviceName)).size,
        12,
      );
    });

    it('sends one request for two messages about the same device at once', async function () {
      emulator.setFaults({ answerDelayMs: 100 });
      await loadFlow(provisionFlow(emulator, { transport: 'coap' }), keys(), userDir);
      const out = new Collector('out');
      send({ deviceName: 'twin' });
      send({ deviceName: 'twin' });
      const [a, b] = await out.waitFor(2);
      assert.equal(emulator.requests.length, 1);
      assert.deepEqual(a.payload, b.payload);
    });

    it('retries transient failures as configured', async function () {
      emulator.setFaults({ internalErrorFirst: 2 });
      await loadFlow(provisionFlow(emulator, { transport: 'http', retries: 2 }), keys(), userDir);
      const out = new Collector('out');
      send({ deviceName: 'persistent' });
      await out.waitFor(1, 20000);
      assert.equal(emulator.requests.length, 3);
    });

    it('times out with TIMEOUT when the server never answers', async function () {
      emulator.setFaults({ neverAnswerFirst: 5 });
      await loadFlow(provisionFlow(emulator, { timeout: 0.5, retries: 0 }), keys(), userDir);
      const caught = new Collector('caught');
      const started = Date.now();
      send({ deviceName: 'silent' });
      const [msg] = await caught.waitFor(1);
      assert.equal((msg.payload as Record<string, unknown>).status, 'TIMEOUT');
      const took = Date.now() - started;
      assert.ok(took >= 450 && took < 2000, `took ${took} ms`);
    });

    it('reports CONNECTION_ERROR when nothing listens', async function () {
      const ports = emulator.ports;
      await emulator.stop();
      emulator = await startEmulator();
      await loadFlow(
        provisionFlow(emulator, { transport: 'http' }, { httpPort: ports.http }),
        keys(),
        userDir,
      );
      const caught = new Collector('caught');
      send({ deviceName: 'nowhere' });
      const [msg] = await caught.waitFor(1);
      assert.equal((msg.payload as Record<string, unknown>).status, 'CONNECTION_ERROR');
      assert.ok(String(msg.error?.message).includes(String(ports.http)));
    });

    it('refuses CoAP with TLS clearly', async function () {
      await loadFlow(
        provisionFlow(emulator, { transport: 'coap' }, { usetls: true }),
        keys(),
        userDir,
      );
      const caught = new Collector('caught');
      send({ deviceName: 'dtls' });
      const [msg] = await caught.waitFor(1);
      assert.equal((msg.payload as Record<string, unknown>).status, 'INVALID_INPUT');
      assert.match(String(msg.error?.message), /DTLS/);
    });

    it('reports a missing key or secret on the server configuration', async function () {
      await loadFlow(provisionFlow(emulator), { cfg: { provisionDeviceKey: KEY } }, userDir);
      const caught = new Collector('caught');
      send({ deviceName: 'no-secret' });
      const [msg] = await caught.waitFor(1);
      assert.equal((msg.payload as Record<string, unknown>).status, 'INVALID_INPUT');
      assert.match(String(msg.error?.message), /secret/);
    });
  });

  describe('status', function () {
    it('shows blue while provisioning, green on success, yellow from store, red on failure', async function () {
      emulator.setFaults({ answerDelayMs: 300 });
      await loadFlow(provisionFlow(emulator, { transport: 'http' }), keys(), userDir);
      const prov = helper.getNode('prov');
      const statuses: Array<Record<string, string>> = [];
      onCall(prov, 'status', (args) => statuses.push(args[0] as Record<string, string>));
      const out = new Collector('out');
      const caught = new Collector('caught');
      send({ deviceName: 'lamp' });
      await out.waitFor(1);
      await delay(150);
      send({ deviceName: 'lamp' });
      await out.waitFor(2);
      await delay(150);
      send({ deviceName: '' });
      await caught.waitFor(1);
      await delay(150);
      const seen = statuses.map((s) => `${s.fill}/${s.shape}`);
      assert.ok(statuses.some((s) => s.fill === 'blue' && s.shape === 'ring' && /1/.test(s.text)));
      assert.ok(statuses.some((s) => s.fill === 'green' && s.shape === 'dot' && s.text === 'lamp'));
      assert.ok(
        statuses.some((s) => s.fill === 'yellow' && s.shape === 'dot' && s.text.includes('lamp')),
      );
      assert.deepEqual(seen.at(-1), 'red/ring');
      assert.equal(statuses.at(-1)?.text, 'INVALID_INPUT');
    });
  });

  describe('lifecycle', function () {
    it('closes within Node-RED’s close timeout (1 s here) with requests that never end', async function () {
      emulator.setFaults({ neverAnswerFirst: 100 });
      helper.settings({ userDir, nodeCloseTimeout: 1000 } as Parameters<typeof helper.settings>[0]);
      await helper.load(
        packageNodeModules as never,
        provisionFlow(emulator, { timeout: 30, concurrency: 2 }),
        keys(),
      );
      for (let i = 0; i < 5; i++) send({ deviceName: `stuck-${i}` });
      await delay(200);
      const started = Date.now();
      await helper.unload();
      assert.ok(Date.now() - started < 1000, `closing took ${Date.now() - started} ms`);
      assert.equal(emulator.requests.length, 2, 'the messages still waiting were never sent');
    });
  });

  it('never shows a secret in a status, log line, error or output', async function () {
    const wrong = 'another-Secret-value-77';
    await loadFlow(
      provisionFlow(emulator, { transport: 'http', credentialsType: 'MQTT_BASIC' }),
      keys(),
      userDir,
    );
    const prov = helper.getNode('prov');
    const texts: string[] = [];
    for (const method of ['status', 'warn', 'error', 'log', 'debug', 'trace']) {
      // error()'s second argument is the flow's own message, which Node-RED hands to Catch
      // nodes but never writes to a log.
      onCall(prov, method, (args) => texts.push(JSON.stringify(args[0])));
    }
    const out = new Collector('out');
    const caught = new Collector('caught');
    send({
      deviceName: 'secretive',
      credentials: { clientId: 'c1', username: 'u1', password: 'pw-Very-Secret-1' },
    });
    const [msg] = await out.waitFor(1);
    send({ deviceName: 'secretive-2', credentials: { password: wrong } });
    await caught.waitFor(1);
    await delay(150);
    const logged = helper
      .log()
      .args.map((a: unknown[]) => JSON.stringify(a))
      .join('\n');
    const errors = caught.messages.map((m) => m.error?.message ?? '').join('\n');
    for (const secret of [SECRET, 'pw-Very-Secret-1', wrong]) {
      const where = [...texts, logged, errors].find((t) => t.includes(secret));
      assert.equal(where, undefined, `secret leaked: ${secret}`);
    }
    assert.equal(
      ((msg.payload as Record<string, unknown>).credentialsValue as Record<string, string>)
        .password,
      'pw-Very-Secret-1',
    );
  });
});

export type { Message };
