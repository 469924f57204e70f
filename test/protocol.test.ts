import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';

import * as protocol from '../src/protocol';
import {
  ProvisionError,
  buildRequest,
  classifyCoapResponse,
  classifyHttpResponse,
  classifyMqttResponse,
  maskSecret,
  parseAnswerBody,
  serializeRequest,
  validateCredentials,
  validateDeviceName,
  validateProvisionKeys,
  type CredentialsType,
  type DeviceCredentials,
  type ProvisionInput,
} from '../src/protocol';
import * as answerModule from '../src/protocol/answer';
import * as requestModule from '../src/protocol/request';

describe('protocol: public API', () => {
  it('request.ts exports the agreed names', () => {
    for (const name of [
      'validateDeviceName',
      'validateCredentials',
      'validateProvisionKeys',
      'buildRequest',
      'serializeRequest',
    ]) {
      assert.equal(typeof (requestModule as Record<string, unknown>)[name], 'function', name);
    }
  });

  it('answer.ts exports the agreed names', () => {
    for (const name of [
      'parseAnswerBody',
      'classifyHttpResponse',
      'classifyCoapResponse',
      'classifyMqttResponse',
      'isTransient',
      'maskSecret',
    ]) {
      assert.equal(typeof (answerModule as Record<string, unknown>)[name], 'function', name);
    }
  });

  it('index.ts re-exports types, errors, request and answer', () => {
    for (const name of [
      ...Object.keys(requestModule),
      ...Object.keys(answerModule),
      'ProvisionError',
      'isProvisionError',
      'CREDENTIALS_TYPES',
    ]) {
      assert.ok(name in protocol, name);
    }
    assert.deepEqual(protocol.CREDENTIALS_TYPES, [
      'ACCESS_TOKEN',
      'MQTT_BASIC',
      'X509_CERTIFICATE',
    ]);
  });

  it('validation errors are INVALID_INPUT ProvisionErrors that cannot succeed on retry', () => {
    const err = (() => {
      try {
        validateDeviceName('');
      } catch (e) {
        return e;
      }
    })();
    assert.ok(protocol.isProvisionError(err));
    assert.equal(err.name, 'ProvisionError');
    assert.equal(err.status, 'INVALID_INPUT');
    assert.equal(err.transient, false);
    assert.equal(err.maybeDelivered, false);
  });
});

describe('protocol: a request and its answer, end to end', () => {
  it('builds, serializes and reads the answer for each credentials type', () => {
    const input: ProvisionInput = {
      provisionDeviceKey: 'k',
      provisionDeviceSecret: 's',
      deviceName: 'dev',
      credentials: { type: 'MQTT_BASIC', clientId: 'c', username: 'u', password: 'p' },
    };
    const wire = JSON.parse(serializeRequest(buildRequest(input))) as Record<string, string>;
    // What a server would echo back for these device-chosen credentials.
    const body = JSON.stringify({
      credentialsValue: {
        clientId: wire.clientId,
        userName: wire.username,
        password: wire.password,
      },
      credentialsType: wire.credentialsType,
      status: 'SUCCESS',
    });
    assert.deepEqual(classifyMqttResponse(Buffer.from(body)), {
      status: 'SUCCESS',
      credentialsType: 'MQTT_BASIC',
      credentialsValue: { clientId: 'c', userName: 'u', password: 'p' },
    });
  });
});

/**
 * Every secret below contains MARKER; no error text may. Device names are not secrets and are
 * deliberately free of it.
 */
describe('protocol: no error ever contains a secret', () => {
  const MARKER = 'SeKrit';
  const SECRET = `${MARKER}-provision-secret-0123456789`;
  const TOKEN = `${MARKER}tokenA1B2C3D4E5`;
  const PASSWORD = `${MARKER}-password!`;
  const RANDOM_TOKEN = 'A1B2C3D4E5F6G7H8I9J0';
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const PRIVATE_KEY = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const KEY_BODY = PRIVATE_KEY.split('\n')[1] ?? '';
  const SECRETS = [MARKER, SECRET, TOKEN, PASSWORD, RANDOM_TOKEN, KEY_BODY.slice(0, 12)];
  const base: ProvisionInput = {
    provisionDeviceKey: 'key',
    provisionDeviceSecret: SECRET,
    deviceName: 'dev',
  };
  const withCredentials = (credentials: unknown): ProvisionInput =>
    ({ ...base, credentials }) as ProvisionInput;
  const badCharacters = ['\u0000', '\n', '\u007f', '\u0085', '\ud800', ' ', '\t'];

  const cases: Array<[string, () => unknown]> = [];
  const add = (name: string, fn: () => unknown): void => {
    cases.push([name, fn]);
  };

  // Provision key and secret.
  for (const secret of [
    ` ${SECRET}`,
    `${SECRET} `,
    `${SECRET}\n`,
    SECRET + 'x'.repeat(2000),
    { SECRET },
    [SECRET],
    ...badCharacters.filter((c) => c !== ' ').map((c) => `${SECRET}${c}${SECRET}`),
  ]) {
    add(`secret ${JSON.stringify(secret).slice(0, 30)}`, () => validateProvisionKeys('k', secret));
    add(`key ${JSON.stringify(secret).slice(0, 30)}`, () => validateProvisionKeys(secret, SECRET));
    add('buildRequest secret', () =>
      buildRequest({ ...base, provisionDeviceSecret: secret } as unknown as ProvisionInput),
    );
  }
  // Device name errors with a secret elsewhere in the input.
  for (const deviceName of ['', '  ', 'x'.repeat(300), 'a\u0000b', 7, null]) {
    add(`device name ${String(deviceName).slice(0, 10)}`, () =>
      buildRequest({ ...base, deviceName } as unknown as ProvisionInput),
    );
  }
  // Access tokens.
  for (const token of [
    '',
    TOKEN + 'x'.repeat(300),
    ...badCharacters.map((c) => `${TOKEN}${c}${TOKEN}`),
    42,
    { TOKEN },
    [TOKEN],
  ]) {
    add(`token ${typeof token}`, () => validateCredentials('ACCESS_TOKEN', { token }));
    add('buildRequest token', () => buildRequest(withCredentials({ type: 'ACCESS_TOKEN', token })));
  }
  add('token as a bare string', () => validateCredentials('ACCESS_TOKEN', TOKEN));
  add('token under the wrong type', () => validateCredentials('MQTT_BASIC', { token: TOKEN }));
  add('unknown type', () => validateCredentials(TOKEN as CredentialsType, { token: TOKEN }));
  add('unknown declared type', () =>
    validateCredentials('ACCESS_TOKEN', { type: TOKEN, token: TOKEN }),
  );
  // MQTT basic.
  for (const field of ['clientId', 'username', 'userName', 'password']) {
    for (const value of [
      PASSWORD + 'x'.repeat(300),
      ...badCharacters.filter((c) => c !== ' ').map((c) => `${PASSWORD}${c}`),
      5,
      { PASSWORD },
    ]) {
      add(`mqtt ${field}`, () =>
        validateCredentials('MQTT_BASIC', { clientId: 'c', username: 'u', [field]: value }),
      );
    }
  }
  add('mqtt password without username', () =>
    validateCredentials('MQTT_BASIC', { clientId: TOKEN, password: PASSWORD }),
  );
  add('mqtt password alone', () => validateCredentials('MQTT_BASIC', { password: PASSWORD }));
  add('mqtt two user names', () =>
    validateCredentials('MQTT_BASIC', { username: PASSWORD, userName: TOKEN }),
  );
  // Certificates and keys.
  for (const certificate of [
    PRIVATE_KEY,
    PRIVATE_KEY.replace(/PRIVATE KEY/g, 'RSA PRIVATE KEY'),
    KEY_BODY,
    `-----BEGIN CERTIFICATE-----\n${KEY_BODY}\n-----END CERTIFICATE-----\n`,
    `-----BEGIN CERTIFICATE-----\n${KEY_BODY}`,
    PRIVATE_KEY + 'x'.repeat(20000),
    Buffer.from(PRIVATE_KEY),
  ]) {
    add('certificate', () => validateCredentials('X509_CERTIFICATE', { certificate }));
    add('buildRequest certificate', () =>
      buildRequest(withCredentials({ type: 'X509_CERTIFICATE', certificate })),
    );
  }
  add('private key under another type', () =>
    validateCredentials('ACCESS_TOKEN', { certificate: PRIVATE_KEY }),
  );
  add('gateway', () => buildRequest({ ...base, gateway: TOKEN } as unknown as ProvisionInput));
  add('credentials not an object', () =>
    buildRequest(withCredentials(TOKEN) as ProvisionInput & { credentials: DeviceCredentials }),
  );

  // Answers that carry credentials in a shape we refuse.
  const answerBodies = [
    `{"status":"SUCCESS","credentialsType":"JWT","credentialsValue":"${TOKEN}"}`,
    `{"status":"SUCCESS","credentialsType":"${RANDOM_TOKEN}","credentialsValue":"${TOKEN}"}`,
    `{"status":"${RANDOM_TOKEN}","credentialsValue":"${TOKEN}"}`,
    `{"status":"${TOKEN}"}`,
    `{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":{"t":"${TOKEN}"}}`,
    `{"status":"SUCCESS","credentialsType":"MQTT_BASIC","credentialsValue":"${PASSWORD}"}`,
    `{"status":"SUCCESS","credentialsType":"MQTT_BASIC","credentialsValue":{"password":"${PASSWORD}"}}`,
    `{"status":"SUCCESS","credentialsType":"MQTT_BASIC","credentialsValue":{"clientId":1,"password":"${PASSWORD}"}}`,
    `{"provisionDeviceStatus":"SUCCESS","accessToken":"${TOKEN}"}`,
    `{"status":"FAILURE","errorMsg":"token ${TOKEN} already used"}`,
    `{"status":"NOT_FOUND","errorMsg":"secret \\"${SECRET}\\" is wrong"}`,
    `{"status":"FAILURE","errorMsg":"${TOKEN}"}`,
    `${TOKEN}`,
    `<html>${TOKEN}</html>`,
    `{"credentialsValue":"${TOKEN}"`,
    `["${TOKEN}"]`,
    `"${TOKEN}"`,
    `{"credentialsValue":"${TOKEN}","credentialsType":"ACCESS_TOKEN","status":"SUCCESS"}${' '.repeat(1 << 20)}`,
  ];
  const sent = buildRequest({
    ...base,
    credentials: { type: 'MQTT_BASIC', clientId: TOKEN, username: PASSWORD, password: PASSWORD },
  });
  for (const body of answerBodies) {
    add(`answer ${body.slice(0, 40)}`, () => parseAnswerBody(body));
    add('answer, knowing the request', () => parseAnswerBody(body, sent));
    add('mqtt answer, knowing the request', () => classifyMqttResponse(Buffer.from(body), sent));
    add('coap answer, knowing the request', () =>
      classifyCoapResponse('4.00', Buffer.from(body), sent),
    );
    add('http answer, knowing the request', () =>
      classifyHttpResponse(200, Buffer.from(body), sent),
    );
    add('mqtt answer', () => classifyMqttResponse(Buffer.from(body)));
    add('coap 4.00 answer', () => classifyCoapResponse('4.00', Buffer.from(body)));
    add('coap 4.04 answer', () => classifyCoapResponse('4.04', Buffer.from(body)));
    add('coap 5.00 answer', () => classifyCoapResponse('5.00', Buffer.from(body)));
    add('coap odd code', () => classifyCoapResponse(TOKEN, Buffer.from(body)));
    for (const status of [200, 201, 301, 400, 404, 429, 500, 502]) {
      add(`http ${status} answer`, () => classifyHttpResponse(status, Buffer.from(body)));
    }
  }
  for (const message of [
    `Unrecognized token '${TOKEN}'`,
    `[Source: (String)"{"provisionDeviceSecret":"${SECRET}"}"`,
    `secret ${SECRET} rejected`,
    `${RANDOM_TOKEN}`,
  ]) {
    const body = JSON.stringify({ status: 500, message, errorCode: 2 });
    add(`http 500 message ${message.slice(0, 20)}`, () =>
      classifyHttpResponse(500, Buffer.from(body)),
    );
    add('http 500 message, knowing the request', () =>
      classifyHttpResponse(500, Buffer.from(body), sent),
    );
  }

  it(`covers many error cases (${cases.length})`, () => {
    assert.ok(cases.length > 300);
  });

  it('every case throws a ProvisionError whose texts hold no secret', () => {
    for (const [name, fn] of cases) {
      let caught: unknown;
      try {
        fn();
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof ProvisionError, `${name}: expected a ProvisionError`);
      const texts = [
        caught.message,
        caught.serverMessage ?? '',
        String(caught),
        caught.stack ?? '',
        JSON.stringify(caught),
        caught.cause === undefined ? '' : String(caught.cause),
      ];
      for (const text of texts) {
        for (const secret of SECRETS) {
          assert.ok(!text.includes(secret), `${name}: error text contains a secret: ${text}`);
        }
      }
      assert.ok(caught.message.length < 700, `${name}: message too long`);
      assert.equal(caught.cause, undefined, `${name}: carries a cause that may quote input`);
    }
  });

  it('maskSecret never reveals more than a short prefix', () => {
    for (const secret of [SECRET, TOKEN, PASSWORD, RANDOM_TOKEN]) {
      const masked = maskSecret(secret);
      assert.equal(masked, `${secret.slice(0, 2)}…`);
      assert.ok(!masked.includes(secret.slice(0, 3)));
    }
  });
});
