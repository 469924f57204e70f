/** The emulator's pure parts: request reading, provisioning rules, MQTT login rules, formatting. */

import assert from 'node:assert/strict';
import { jsonString, mask, mqttBasicValue, successBody } from '../src/emulator/format';
import { readProvisionRequest } from '../src/emulator/request';
import { Tenant, certificateBody, javaTrim } from '../src/emulator/state';
import { CREATE, PRE, request } from './support/emulator-clients';

function read(body: string) {
  const reading = readProvisionRequest(Buffer.from(body));
  assert.ok(reading.ok, `expected a valid request: ${reading.ok ? '' : reading.reason}`);
  return reading.request;
}

describe('emulator request reading', () => {
  it('absent optional fields become "", credentialsType defaults to ACCESS_TOKEN', () => {
    assert.deepEqual(read('{"provisionDeviceKey":"k","provisionDeviceSecret":"s"}'), {
      provisionDeviceKey: 'k',
      provisionDeviceSecret: 's',
      deviceName: '',
      credentialsType: 'ACCESS_TOKEN',
      token: '',
      clientId: '',
      username: '',
      password: '',
      hash: '',
      gateway: false,
    });
  });

  it('numbers and booleans are read as their text, as Gson does', () => {
    const parsed = read(request(CREATE, { deviceName: 42, token: true, gateway: 'TRUE' }));
    assert.equal(parsed.deviceName, '42');
    assert.equal(parsed.token, 'true');
    assert.equal(parsed.gateway, true);
  });

  for (const [what, body, reason] of [
    ['empty', '  ', /empty/],
    ['not JSON', '{oops', /not JSON/],
    ['a number', '12', /not a JSON object/],
    ['missing key', '{"provisionDeviceSecret":"s"}', /provisionDeviceKey is missing/],
    ['missing secret', '{"provisionDeviceKey":"k"}', /provisionDeviceSecret is missing/],
    ['null key', '{"provisionDeviceKey":null,"provisionDeviceSecret":"s"}', /null/],
    ['lower-case type', request(CREATE, { credentialsType: 'mqtt_basic' }), /credentialsType/],
    ['array where a string belongs', request(CREATE, { token: ['a'] }), /token is not a string/],
  ] as const) {
    it(`refuses ${what}`, () => {
      const reading = readProvisionRequest(Buffer.from(body));
      assert.equal(reading.ok, false);
      assert.match(reading.ok ? '' : reading.reason, reason);
    });
  }

  it('LWM2M_CREDENTIALS parses (the server knows the name) but cannot be provisioned', () => {
    const tenant = new Tenant();
    tenant.addProfile(CREATE);
    const parsed = read(request(CREATE, { deviceName: 'l', credentialsType: 'LWM2M_CREDENTIALS' }));
    assert.equal(tenant.provision(parsed).status, 'SUCCESS', 'no credential field: a token');
    const chosen = read(
      request(CREATE, { deviceName: 'm', credentialsType: 'LWM2M_CREDENTIALS', token: 'x' }),
    );
    assert.equal(tenant.provision(chosen).status, 'FAILURE');
  });
});

describe('emulator provisioning rules', () => {
  it('trims like Java: characters up to U+0020, not a no-break space', () => {
    assert.equal(javaTrim('\u0001 a b\t\n'), 'a b');
    assert.equal(javaTrim('\u00a0a'), '\u00a0a');
  });

  it('a name of no-break spaces is not blank for the server', () => {
    const tenant = new Tenant();
    tenant.addProfile(CREATE);
    assert.equal(
      tenant.provision(read(request(CREATE, { deviceName: '\u00a0' }))).status,
      'SUCCESS',
    );
    assert.equal(
      tenant.provision(read(request(CREATE, { deviceName: '\u0000 ' }))).status,
      'FAILURE',
    );
  });

  it('names over 255 characters fail', () => {
    const tenant = new Tenant();
    tenant.addProfile(CREATE);
    const long = 'n'.repeat(256);
    assert.equal(tenant.provision(read(request(CREATE, { deviceName: long }))).status, 'FAILURE');
    assert.equal(
      tenant.provision(read(request(CREATE, { deviceName: long.slice(1) }))).status,
      'SUCCESS',
    );
  });

  it('strips certificate armour and newlines only', () => {
    assert.equal(
      certificateBody('-----BEGIN CERTIFICATE-----\r\nAB CD\r\nEF\n-----END CERTIFICATE-----\n'),
      'AB CDEF',
    );
  });

  it('addProfile and addDevice refuse duplicates and invalid credentials', () => {
    const tenant = new Tenant();
    tenant.addProfile(CREATE);
    assert.throws(() => tenant.addProfile(CREATE), /already exists/);
    assert.throws(() =>
      tenant.addProfile({ ...PRE, provisionDeviceKey: CREATE.provisionDeviceKey }),
    );
    tenant.addProfile(PRE);
    const token = { credentialsType: 'ACCESS_TOKEN', token: 't' } as const;
    tenant.addDevice({ name: 'a', profile: PRE.name, credentials: token });
    assert.throws(() => tenant.addDevice({ name: 'a', profile: PRE.name, credentials: token }));
    assert.throws(() => tenant.addDevice({ name: 'b', profile: PRE.name, credentials: token }));
    assert.throws(() => tenant.addDevice({ name: 'c', profile: 'nope', credentials: token }));
    assert.throws(() =>
      tenant.addDevice({
        name: 'd',
        profile: PRE.name,
        credentials: { credentialsType: 'MQTT_BASIC', clientId: 'c', password: 'p' },
      }),
    );
  });
});

describe('emulator MQTT login rules', () => {
  const tenant = new Tenant();
  tenant.addProfile(PRE);
  const devices = {
    token: { credentialsType: 'ACCESS_TOKEN', token: 'tok' },
    client: { credentialsType: 'MQTT_BASIC', clientId: 'c1' },
    clientPass: { credentialsType: 'MQTT_BASIC', clientId: 'c2', userName: 'u2', password: 'p2' },
    user: { credentialsType: 'MQTT_BASIC', userName: 'u3' },
    userPass: { credentialsType: 'MQTT_BASIC', userName: 'u4', password: 'p4' },
    cert: { credentialsType: 'X509_CERTIFICATE', certificate: 'CERTBODY' },
  } as const;
  for (const [name, credentials] of Object.entries(devices)) {
    tenant.addDevice({ name, profile: PRE.name, credentials });
  }
  const cases: Array<
    [string, { clientId: string; username?: string; password?: string }, string | undefined]
  > = [
    [
      'token as user name, any client id and password',
      { clientId: 'x', username: 'tok', password: 'y' },
      'token',
    ],
    ['client id only', { clientId: 'c1' }, 'client'],
    ['client id only, with a password', { clientId: 'c1', password: 'p' }, 'client'],
    ['all three', { clientId: 'c2', username: 'u2', password: 'p2' }, 'clientPass'],
    ['all three, wrong password', { clientId: 'c2', username: 'u2', password: 'no' }, undefined],
    ['user name only creds, any client id', { clientId: 'z', username: 'u3' }, 'user'],
    ['user name and password creds', { clientId: 'z', username: 'u4', password: 'p4' }, 'userPass'],
    ['user name and password creds, no password', { clientId: 'z', username: 'u4' }, undefined],
    ['unknown', { clientId: 'z', username: 'nobody' }, undefined],
    ['a certificate is no password', { clientId: 'z', username: 'CERTBODY' }, undefined],
  ];
  for (const [what, login, expected] of cases) {
    it(what, () => {
      assert.equal(tenant.authenticateMqtt(login)?.name, expected);
    });
  }

  it('finds X509 devices by certificate and tokens by value only for ACCESS_TOKEN', () => {
    assert.equal(tenant.deviceByCertificate('CERTBODY')?.name, 'cert');
    assert.equal(tenant.deviceByAccessToken('tok')?.name, 'token');
    assert.equal(tenant.deviceByAccessToken('u3'), undefined);
  });
});

describe('emulator formatting', () => {
  it('escapes like Gson, including U+2028 and U+2029', () => {
    assert.equal(jsonString('a"b\\c\n\u2028\u2029'), '"a\\"b\\\\c\\n\\u2028\\u2029"');
  });

  it('renders MQTT basic credentials with present fields only, in order', () => {
    assert.equal(
      mqttBasicValue({ password: 'p', clientId: 'c' }),
      '{"clientId":"c","password":"p"}',
    );
    assert.equal(
      successBody({ credentialsType: 'MQTT_BASIC', userName: 'u' }),
      '{"credentialsValue":{"userName":"u"},"credentialsType":"MQTT_BASIC","status":"SUCCESS"}',
    );
  });

  it('masks to two characters', () => {
    assert.equal(mask('secret'), 'se…');
    assert.equal(mask(''), '…');
  });
});
