/**
 * Every row of the spec's outcome table, on each of the three transports, with the response bodies
 * compared byte for byte to the spec's strings.
 */

import assert from 'node:assert/strict';
import type { Emulator } from '../src/emulator';
import type { EmulatedCredentials } from '../src/emulator/types';
import {
  CREATE,
  DISABLED,
  FAILURE,
  LEGACY,
  NOT_FOUND,
  PRE,
  provisionOverCoap,
  provisionOverHttp,
  provisionOverMqtt,
  request,
  startEmulator,
} from './support/emulator-clients';

type Provision = (emulator: Emulator, body: string) => Promise<string>;

const transports: Record<'mqtt' | 'http' | 'coap', Provision> = {
  mqtt: (emulator, body) => provisionOverMqtt(emulator.ports.mqtt, body),
  http: async (emulator, body) => {
    const reply = await provisionOverHttp(emulator.ports.http, body);
    // 200 whatever the status: the status is in the body only.
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-type'], 'text/plain;charset=UTF-8');
    return reply.body;
  },
  coap: async (emulator, body) => {
    const reply = await provisionOverCoap(emulator.ports.coap, body);
    const status = (JSON.parse(reply.body) as { status: string }).status;
    assert.equal(reply.code, status === 'SUCCESS' ? '2.01' : '4.00');
    assert.equal(reply.contentFormat, 'text/plain');
    return reply.body;
  },
};

const CERT_BODY =
  'MIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGVGb3JUZXN0czAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAlkZXZpY2UtMDE=';
const CERT_PEM = `-----BEGIN CERTIFICATE-----\n${CERT_BODY.slice(0, 64)}\n${CERT_BODY.slice(64)}\n-----END CERTIFICATE-----\n`;

interface Step {
  body: string;
  /** Exact expected body, or a check of the body. */
  expect: string | ((body: string, emulator: Emulator) => void);
}

interface Row {
  title: string;
  devices?: Array<{ name: string; profile: string; credentials: EmulatedCredentials }>;
  steps: Step[];
}

const tokenAnswer = (token: string) =>
  `{"credentialsValue":"${token}","credentialsType":"ACCESS_TOKEN","status":"SUCCESS"}`;

function generatedToken(body: string): string {
  const match =
    /^\{"credentialsValue":"([A-Za-z0-9]{20})","credentialsType":"ACCESS_TOKEN","status":"SUCCESS"\}$/.exec(
      body,
    );
  assert.ok(match, `expected a generated 20-character token, got ${body}`);
  return match[1];
}

const rows: Row[] = [
  {
    title: 'empty key: NOT_FOUND',
    steps: [
      {
        body: request({ ...CREATE, provisionDeviceKey: '' }, { deviceName: 'a' }),
        expect: NOT_FOUND,
      },
    ],
  },
  {
    title: 'empty secret: NOT_FOUND',
    steps: [
      {
        body: request({ ...CREATE, provisionDeviceSecret: '' }, { deviceName: 'a' }),
        expect: NOT_FOUND,
      },
    ],
  },
  {
    title: 'unknown key: NOT_FOUND',
    steps: [
      {
        body: request({ ...CREATE, provisionDeviceKey: 'nope' }, { deviceName: 'a' }),
        expect: NOT_FOUND,
      },
    ],
  },
  {
    title: 'wrong secret: NOT_FOUND',
    steps: [
      {
        body: request({ ...CREATE, provisionDeviceSecret: 'nope' }, { deviceName: 'a' }),
        expect: NOT_FOUND,
      },
    ],
  },
  {
    title: 'provisioning disabled on the profile: NOT_FOUND',
    steps: [{ body: request(DISABLED, { deviceName: 'a' }), expect: NOT_FOUND }],
  },
  {
    title: 'whitespace-only name: FAILURE, checked before the key',
    steps: [
      {
        body: request({ ...CREATE, provisionDeviceKey: 'nope' }, { deviceName: ' \t ' }),
        expect: FAILURE,
      },
    ],
  },
  {
    title:
      'allow-create, new name: SUCCESS with a generated token, device created with type = profile',
    steps: [
      {
        body: request(CREATE, { deviceName: 'pump-1' }),
        expect: (body, emulator) => {
          const token = generatedToken(body);
          const device = emulator.device('pump-1');
          assert.equal(device?.profile, CREATE.name);
          assert.deepEqual(device?.credentials, { credentialsType: 'ACCESS_TOKEN', token });
          assert.equal(device?.provisioned, true);
        },
      },
    ],
  },
  {
    title: 'allow-create, name already in the tenant (other profile): FAILURE',
    devices: [
      {
        name: 'taken',
        profile: PRE.name,
        credentials: { credentialsType: 'ACCESS_TOKEN', token: 't-taken' },
      },
    ],
    steps: [{ body: request(CREATE, { deviceName: 'taken' }), expect: FAILURE }],
  },
  {
    title: 'allow-create twice with the same name: SUCCESS then FAILURE',
    steps: [
      {
        body: request(CREATE, { deviceName: 'twice' }),
        expect: (body) => void generatedToken(body),
      },
      { body: request(CREATE, { deviceName: 'twice' }), expect: FAILURE },
    ],
  },
  {
    title: 'device-chosen access token: SUCCESS with it',
    steps: [
      {
        body: request(CREATE, {
          deviceName: 'a',
          credentialsType: 'ACCESS_TOKEN',
          token: 'my-token',
        }),
        expect: tokenAnswer('my-token'),
      },
    ],
  },
  {
    title: 'device-chosen token already used by another device: FAILURE, nothing created',
    devices: [
      {
        name: 'holder',
        profile: PRE.name,
        credentials: { credentialsType: 'ACCESS_TOKEN', token: 'used-token' },
      },
    ],
    steps: [
      {
        body: request(CREATE, {
          deviceName: 'b',
          credentialsType: 'ACCESS_TOKEN',
          token: 'used-token',
        }),
        expect: (body, emulator) => {
          assert.equal(body, FAILURE);
          assert.equal(emulator.device('b'), undefined);
        },
      },
    ],
  },
  {
    title: 'MQTT basic: SUCCESS, userName in the answer',
    steps: [
      {
        body: request(CREATE, {
          deviceName: 'a',
          credentialsType: 'MQTT_BASIC',
          clientId: 'c',
          username: 'u',
          password: 'p',
        }),
        expect:
          '{"credentialsValue":{"clientId":"c","userName":"u","password":"p"},"credentialsType":"MQTT_BASIC","status":"SUCCESS"}',
      },
    ],
  },
  {
    title: 'MQTT basic with only a clientId: absent fields stored and answered as ""',
    steps: [
      {
        body: request(CREATE, {
          deviceName: 'a',
          credentialsType: 'MQTT_BASIC',
          clientId: 'only-client',
        }),
        expect:
          '{"credentialsValue":{"clientId":"only-client","userName":"","password":""},"credentialsType":"MQTT_BASIC","status":"SUCCESS"}',
      },
    ],
  },
  {
    title: 'MQTT basic without clientId and username: FAILURE',
    steps: [
      {
        body: request(CREATE, { deviceName: 'a', credentialsType: 'MQTT_BASIC', password: 'p' }),
        expect: FAILURE,
      },
    ],
  },
  {
    title: 'MQTT basic password with clientId but no username: FAILURE',
    steps: [
      {
        body: request(CREATE, {
          deviceName: 'a',
          credentialsType: 'MQTT_BASIC',
          clientId: 'c',
          password: 'p',
        }),
        expect: FAILURE,
      },
    ],
  },
  {
    title: 'MQTT basic credentials already used: FAILURE',
    steps: [
      {
        body: request(CREATE, {
          deviceName: 'a',
          credentialsType: 'MQTT_BASIC',
          clientId: 'c',
          username: 'u',
        }),
        expect:
          '{"credentialsValue":{"clientId":"c","userName":"u","password":""},"credentialsType":"MQTT_BASIC","status":"SUCCESS"}',
      },
      {
        body: request(CREATE, {
          deviceName: 'b',
          credentialsType: 'MQTT_BASIC',
          clientId: 'c',
          username: 'u',
          password: 'x',
        }),
        expect: FAILURE,
      },
    ],
  },
  {
    title: 'MQTT basic user name equal to an access token: FAILURE (same credentials id)',
    devices: [
      {
        name: 'holder',
        profile: PRE.name,
        credentials: { credentialsType: 'ACCESS_TOKEN', token: 'shared' },
      },
    ],
    steps: [
      {
        body: request(CREATE, {
          deviceName: 'a',
          credentialsType: 'MQTT_BASIC',
          username: 'shared',
        }),
        expect: FAILURE,
      },
    ],
  },
  {
    title:
      'X509 PEM: SUCCESS with the body stripped of BEGIN/END lines and newlines; duplicate: FAILURE',
    steps: [
      {
        body: request(CREATE, {
          deviceName: 'a',
          credentialsType: 'X509_CERTIFICATE',
          hash: CERT_PEM,
        }),
        expect: `{"credentialsValue":"${CERT_BODY}","credentialsType":"X509_CERTIFICATE","status":"SUCCESS"}`,
      },
      {
        body: request(CREATE, {
          deviceName: 'b',
          credentialsType: 'X509_CERTIFICATE',
          hash: CERT_BODY,
        }),
        expect: FAILURE,
      },
    ],
  },
  {
    title: 'credentialsType set but no credential field: a generated access token',
    steps: [
      {
        body: request(CREATE, { deviceName: 'a', credentialsType: 'MQTT_BASIC' }),
        expect: (body) => void generatedToken(body),
      },
    ],
  },
  {
    title: 'access token type with only MQTT fields: FAILURE (no token to store)',
    steps: [{ body: request(CREATE, { deviceName: 'a', clientId: 'c' }), expect: FAILURE }],
  },
  {
    title: 'no name: SUCCESS, a random 20-character name the device is not told',
    steps: [
      {
        body: request(CREATE, {}),
        expect: (body, emulator) => {
          generatedToken(body);
          const names = [...emulator.devices.keys()];
          assert.equal(names.length, 1);
          assert.match(names[0], /^[A-Za-z0-9]{20}$/);
          assert.ok(!body.includes(names[0]));
        },
      },
    ],
  },
  {
    title: 'empty name: SUCCESS with a random name',
    steps: [
      {
        body: request(CREATE, { deviceName: '' }),
        expect: (_body, emulator) =>
          assert.match([...emulator.devices.keys()][0], /^[A-Za-z0-9]{20}$/),
      },
    ],
  },
  {
    title: 'name trimmed',
    steps: [
      {
        body: request(CREATE, { deviceName: '  pump-2 \n' }),
        expect: (_body, emulator) => assert.ok(emulator.device('pump-2')),
      },
    ],
  },
  {
    title: 'unknown fields ignored',
    steps: [
      {
        body: request(CREATE, { deviceName: 'a', firmware: '1.2', extra: { deep: [1, 2] } }),
        expect: (body) => void generatedToken(body),
      },
    ],
  },
  {
    title:
      'check-pre-provisioned, first time: SUCCESS with the existing credentials (request ones ignored); then FAILURE',
    devices: [
      {
        name: 'pre-1',
        profile: PRE.name,
        credentials: { credentialsType: 'ACCESS_TOKEN', token: 'pre-token' },
      },
    ],
    steps: [
      {
        body: request(PRE, {
          deviceName: 'pre-1',
          credentialsType: 'ACCESS_TOKEN',
          token: 'ignored',
        }),
        expect: tokenAnswer('pre-token'),
      },
      { body: request(PRE, { deviceName: 'pre-1' }), expect: FAILURE },
    ],
  },
  {
    title: 'check-pre-provisioned, MQTT basic device: its stored credentials',
    devices: [
      {
        name: 'pre-2',
        profile: PRE.name,
        credentials: {
          credentialsType: 'MQTT_BASIC',
          clientId: 'pc',
          userName: 'pu',
          password: 'pp',
        },
      },
    ],
    steps: [
      {
        body: request(PRE, { deviceName: 'pre-2' }),
        expect:
          '{"credentialsValue":{"clientId":"pc","userName":"pu","password":"pp"},"credentialsType":"MQTT_BASIC","status":"SUCCESS"}',
      },
    ],
  },
  {
    title: 'check-pre-provisioned, MQTT basic with absent fields: present fields only',
    devices: [
      {
        name: 'pre-3',
        profile: PRE.name,
        credentials: { credentialsType: 'MQTT_BASIC', userName: 'only-user' },
      },
    ],
    steps: [
      {
        body: request(PRE, { deviceName: 'pre-3' }),
        expect:
          '{"credentialsValue":{"userName":"only-user"},"credentialsType":"MQTT_BASIC","status":"SUCCESS"}',
      },
    ],
  },
  {
    title: 'check-pre-provisioned, X509 device: its certificate body',
    devices: [
      {
        name: 'pre-4',
        profile: PRE.name,
        credentials: { credentialsType: 'X509_CERTIFICATE', certificate: CERT_PEM },
      },
    ],
    steps: [
      {
        body: request(PRE, { deviceName: 'pre-4' }),
        expect: `{"credentialsValue":"${CERT_BODY}","credentialsType":"X509_CERTIFICATE","status":"SUCCESS"}`,
      },
    ],
  },
  {
    title: 'check-pre-provisioned, device missing: FAILURE',
    steps: [{ body: request(PRE, { deviceName: 'ghost' }), expect: FAILURE }],
  },
  {
    title: 'check-pre-provisioned, device in another profile: FAILURE',
    devices: [
      {
        name: 'legacy-1',
        profile: LEGACY.name,
        credentials: { credentialsType: 'ACCESS_TOKEN', token: 'l-token' },
      },
    ],
    steps: [{ body: request(PRE, { deviceName: 'legacy-1' }), expect: FAILURE }],
  },
  {
    title: 'check-pre-provisioned-legacy: SUCCESS, and SUCCESS again',
    devices: [
      {
        name: 'legacy-1',
        profile: LEGACY.name,
        credentials: { credentialsType: 'ACCESS_TOKEN', token: 'l-token' },
      },
    ],
    steps: [
      { body: request(LEGACY, { deviceName: 'legacy-1' }), expect: tokenAnswer('l-token') },
      { body: request(LEGACY, { deviceName: 'legacy-1' }), expect: tokenAnswer('l-token') },
    ],
  },
];

for (const [transport, provision] of Object.entries(transports)) {
  describe(`emulator outcomes over ${transport}`, () => {
    for (const row of rows) {
      it(row.title, async () => {
        const emulator = await startEmulator({ devices: row.devices });
        try {
          for (const step of row.steps) {
            const body = await provision(emulator, step.body);
            if (typeof step.expect === 'string') assert.equal(body, step.expect);
            else step.expect(body, emulator);
          }
          assert.equal(emulator.requests.length, row.steps.length);
          assert.ok(emulator.requests.every((recorded) => recorded.transport === transport));
        } finally {
          await emulator.stop();
        }
      });
    }
  });
}
