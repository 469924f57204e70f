/**
 * Hostile and wrong input through the provision node: every bad device name, credentials object,
 * certificate or override is an INVALID_INPUT at the Catch node before anything reaches the
 * server, quickly and with a short error text; no secret a flow supplied (provision secret,
 * token, password, private key) is ever repeated in an error, a log line or a status.
 */

import assert from 'node:assert/strict';
import type { EventEmitter } from 'node:events';
import { PROFILE, SECRET, keys, loadFlow, provisionFlow } from './support/flows';
import { helper } from './support/node-red';
import { flowTarget, guardEachTest, oneWayOut } from './support/reliability';
import type { WayOut } from './support/reliability';
import { TEST_CA_CERT, TEST_CA_KEY, TEST_DEVICE_CERTS } from './support/transport-certificates';
import { emulatorForSuite } from './support/transport-helpers';
import type { RemoteEmulator } from './support/transport-helpers';

const FIVE_MB = 5 * 1024 * 1024;
/** What an error text may reasonably run to; anything longer is echoing input. */
const MAX_ERROR_TEXT = 1000;

const TOKEN_SECRET = 'tok3n-Secret-Value-991';
const PASSWORD_SECRET = 'pa55word-Secret-Value-77';
/** The base64 body of the CA's private key: must never come back in any text. */
const KEY_BODY = TEST_CA_KEY.split('\n')[1];

type CredentialsType = 'server' | 'ACCESS_TOKEN' | 'MQTT_BASIC' | 'X509_CERTIFICATE';

interface BadInput {
  label: string;
  credentialsType?: CredentialsType;
  msg: Record<string, unknown>;
  /** What the error text must say. */
  says: RegExp;
  /** Text supplied by the flow that must not come back. */
  secrets?: string[];
}

const longName = 'n'.repeat(256);

const BAD_INPUTS: BadInput[] = [
  // Device names.
  { label: 'a name with a NUL', msg: { deviceName: 'pump\u00001' }, says: /U\+0000/ },
  {
    label: 'a name with a newline (log injection)',
    msg: { deviceName: 'pump\nERROR forged log line' },
    says: /U\+000A/,
  },
  { label: 'a name with ESC', msg: { deviceName: 'pump\u001b[31m' }, says: /U\+001B/ },
  { label: 'a name with DEL', msg: { deviceName: 'pump\u007f' }, says: /U\+007F/ },
  { label: 'a name with a C1 control', msg: { deviceName: 'pump\u0085' }, says: /U\+0085/ },
  { label: 'a name with a lone surrogate', msg: { deviceName: 'pump\ud800' }, says: /surrogate/ },
  { label: 'a name of 256 characters', msg: { deviceName: longName }, says: /256 characters/ },
  { label: 'a number as name', msg: { deviceName: 42 }, says: /must be a string.*a number/ },
  { label: 'an object as name', msg: { deviceName: { name: 'x' } }, says: /an object/ },
  { label: 'an array as name', msg: { deviceName: ['pump'] }, says: /an array/ },
  { label: 'a Buffer as name', msg: { deviceName: Buffer.from('pump') }, says: /a Buffer/ },
  { label: 'a boolean as name', msg: { deviceName: true }, says: /a boolean/ },
  { label: 'null as name', msg: { deviceName: null }, says: /must be a string.*null/ },
  { label: 'no name at all', msg: {}, says: /^No device name: set msg\.deviceName/ },
  { label: 'a blank name', msg: { deviceName: ' \t ' }, says: /only whitespace/ },
  // msg.gateway.
  { label: 'msg.gateway "yes"', msg: { deviceName: 'gw-1', gateway: 'yes' }, says: /gateway/ },
  // Access tokens.
  {
    label: 'a token as a bare string',
    credentialsType: 'ACCESS_TOKEN',
    msg: { deviceName: 'tok-1', credentials: TOKEN_SECRET },
    says: /must be an object/,
    secrets: [TOKEN_SECRET],
  },
  {
    label: 'credentials as an array',
    credentialsType: 'ACCESS_TOKEN',
    msg: { deviceName: 'tok-2', credentials: [TOKEN_SECRET] },
    says: /an array/,
    secrets: [TOKEN_SECRET],
  },
  {
    label: 'credentials as a Buffer',
    credentialsType: 'ACCESS_TOKEN',
    msg: { deviceName: 'tok-3', credentials: Buffer.from(TOKEN_SECRET) },
    says: /a Buffer/,
    secrets: [TOKEN_SECRET],
  },
  {
    label: 'a numeric token',
    credentialsType: 'ACCESS_TOKEN',
    msg: { deviceName: 'tok-4', credentials: { token: 123456789 } },
    says: /token must be a string/,
    secrets: ['123456789'],
  },
  {
    label: 'an empty token',
    credentialsType: 'ACCESS_TOKEN',
    msg: { deviceName: 'tok-5', credentials: { token: '' } },
    says: /token is empty/,
  },
  {
    label: 'a token with a space',
    credentialsType: 'ACCESS_TOKEN',
    msg: { deviceName: 'tok-6', credentials: { token: `${TOKEN_SECRET} x` } },
    says: /whitespace/,
    secrets: [TOKEN_SECRET],
  },
  {
    label: 'a token with a control character',
    credentialsType: 'ACCESS_TOKEN',
    msg: { deviceName: 'tok-7', credentials: { token: `${TOKEN_SECRET}\u0007` } },
    says: /invalid character/,
    secrets: [TOKEN_SECRET],
  },
  {
    label: 'a token of 300 characters',
    credentialsType: 'ACCESS_TOKEN',
    msg: { deviceName: 'tok-8', credentials: { token: TOKEN_SECRET.repeat(14) } },
    says: /at most 255/,
    secrets: [TOKEN_SECRET],
  },
  {
    label: 'MQTT basic credentials where a token is expected',
    credentialsType: 'ACCESS_TOKEN',
    msg: { deviceName: 'tok-9', credentials: { username: 'u', password: PASSWORD_SECRET } },
    says: /look like MQTT_BASIC/,
    secrets: [PASSWORD_SECRET],
  },
  {
    label: 'a declared type that disagrees with the node',
    credentialsType: 'ACCESS_TOKEN',
    msg: { deviceName: 'tok-10', credentials: { type: 'MQTT_BASIC', token: TOKEN_SECRET } },
    says: /make them agree/,
    secrets: [TOKEN_SECRET],
  },
  // MQTT basic.
  {
    label: 'MQTT basic with neither client id nor user name',
    credentialsType: 'MQTT_BASIC',
    msg: { deviceName: 'basic-1', credentials: { password: PASSWORD_SECRET } },
    says: /need a clientId or a username/,
    secrets: [PASSWORD_SECRET],
  },
  {
    label: 'MQTT basic with a password and a client id but no user name',
    credentialsType: 'MQTT_BASIC',
    msg: { deviceName: 'basic-2', credentials: { clientId: 'c', password: PASSWORD_SECRET } },
    says: /no username/,
    secrets: [PASSWORD_SECRET],
  },
  {
    label: 'MQTT basic with a numeric password',
    credentialsType: 'MQTT_BASIC',
    msg: { deviceName: 'basic-3', credentials: { username: 'u', password: 987654321 } },
    says: /password must be a string/,
    secrets: ['987654321'],
  },
  {
    label: 'MQTT basic with an object as user name',
    credentialsType: 'MQTT_BASIC',
    msg: { deviceName: 'basic-4', credentials: { username: { user: PASSWORD_SECRET } } },
    says: /username must be a string/,
    secrets: [PASSWORD_SECRET],
  },
  {
    label: 'MQTT basic with a password holding a newline',
    credentialsType: 'MQTT_BASIC',
    msg: {
      deviceName: 'basic-5',
      credentials: { username: 'u', password: `${PASSWORD_SECRET}\n` },
    },
    says: /invalid character/,
    secrets: [PASSWORD_SECRET],
  },
  // X.509.
  {
    label: 'a private key where the certificate belongs',
    credentialsType: 'X509_CERTIFICATE',
    msg: { deviceName: 'x509-1', credentials: { certificate: TEST_CA_KEY } },
    says: /private key was supplied/,
    secrets: [KEY_BODY],
  },
  {
    label: 'a certificate followed by its private key',
    credentialsType: 'X509_CERTIFICATE',
    msg: { deviceName: 'x509-2', credentials: { certificate: TEST_CA_CERT + TEST_CA_KEY } },
    says: /private key was supplied/,
    secrets: [KEY_BODY],
  },
  {
    label: 'garbage as certificate',
    credentialsType: 'X509_CERTIFICATE',
    msg: { deviceName: 'x509-3', credentials: { certificate: 'hello, I am a certificate' } },
    says: /not a certificate/,
  },
  {
    label: 'a CERTIFICATE block that is not base64',
    credentialsType: 'X509_CERTIFICATE',
    msg: {
      deviceName: 'x509-4',
      credentials: {
        certificate: '-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n',
      },
    },
    says: /not valid base64/,
  },
  {
    label: 'a CERTIFICATE block that is base64 but not X.509',
    credentialsType: 'X509_CERTIFICATE',
    msg: {
      deviceName: 'x509-5',
      credentials: {
        certificate: `-----BEGIN CERTIFICATE-----\n${Buffer.from('not der at all').toString('base64')}\n-----END CERTIFICATE-----\n`,
      },
    },
    says: /does not parse as an X.509 certificate/,
  },
  {
    label: 'a chain of two certificates',
    credentialsType: 'X509_CERTIFICATE',
    msg: {
      deviceName: 'x509-6',
      credentials: { certificate: TEST_DEVICE_CERTS[0] + TEST_CA_CERT },
    },
    says: /not a chain/,
  },
  {
    label: 'a certificate as a Buffer',
    credentialsType: 'X509_CERTIFICATE',
    msg: { deviceName: 'x509-7', credentials: { certificate: Buffer.from(TEST_DEVICE_CERTS[0]) } },
    says: /must be a string of PEM text/,
  },
  {
    label: 'a 5 MB certificate',
    credentialsType: 'X509_CERTIFICATE',
    msg: { deviceName: 'x509-8', credentials: { certificate: 'A'.repeat(FIVE_MB) } },
    says: /at most 16384 bytes/,
  },
];

describe('reliability: hostile and wrong input through the provision node', function () {
  let emulator: RemoteEmulator;
  const guard = guardEachTest();
  emulatorForSuite((e) => (emulator = e), { profiles: [PROFILE] });

  /** Every text the node showed or logged: status, warn, error, log lines. */
  function watchTexts(): string[] {
    const texts: string[] = [];
    const prov = helper.getNode('prov') as unknown as EventEmitter;
    for (const method of ['status', 'warn', 'error', 'log', 'debug', 'trace']) {
      prov.on(`call:${method}`, (call: { args: unknown[] }) => {
        texts.push(JSON.stringify(call.args[0]) ?? '');
      });
    }
    return texts;
  }

  function loggedText(): string {
    return helper
      .log()
      .args.map((args: unknown[]) => JSON.stringify(args))
      .join('\n');
  }

  async function expectInvalid(
    input: BadInput,
    transport: 'mqtt' | 'http' | 'coap',
  ): Promise<WayOut> {
    const requestsBefore = (await emulator.requests()).length;
    await loadFlow(
      provisionFlow(flowTarget(emulator), {
        transport,
        credentialsType: input.credentialsType ?? 'server',
        retries: 2,
      }),
      keys(),
      guard.userDir,
    );
    const texts = watchTexts();
    const result = await oneWayOut(input.msg);
    assert.equal(result.via, 'caught');
    const payload = result.msg.payload as Record<string, unknown>;
    assert.equal(payload.status, 'INVALID_INPUT', String(payload.errorMsg));
    assert.match(String(payload.errorMsg), input.says);
    assert.equal((await emulator.requests()).length, requestsBefore, 'nothing was sent');
    assert.ok(result.tookMs < 1000, `took ${result.tookMs} ms`);
    const errorText = result.msg.error?.message ?? '';
    assert.ok(String(payload.errorMsg).length <= MAX_ERROR_TEXT, 'errorMsg is short');
    assert.ok(errorText.length <= MAX_ERROR_TEXT, `error text is ${errorText.length} long`);
    // Control characters from the input never reach a log line or an error text.
    // eslint-disable-next-line no-control-regex -- looking for them is the point
    assert.doesNotMatch(errorText, /[\u0000-\u001f\u007f-\u009f]/);
    const visible = [String(payload.errorMsg), errorText, ...texts, loggedText()];
    for (const secret of [SECRET, ...(input.secrets ?? [])]) {
      const where = visible.find((text) => text.includes(secret));
      assert.equal(where, undefined, `a secret came back: ${where?.slice(0, 200)}`);
    }
    return result;
  }

  for (const input of BAD_INPUTS) {
    it(`${input.label}: INVALID_INPUT, nothing sent, no secret echoed`, async function () {
      await expectInvalid(input, 'http');
    });
  }

  for (const transport of ['mqtt', 'coap'] as const) {
    it(`the same checks hold over ${transport} (control character, wrong credentials)`, async function () {
      await expectInvalid(BAD_INPUTS[1], transport);
      await helper.unload();
      await expectInvalid(
        BAD_INPUTS.find((input) => input.label.startsWith('a private key')) as BadInput,
        transport,
      );
    });
  }

  it('a 5 MB device name: INVALID_INPUT within 1 s, the error text stays short', async function () {
    const input: BadInput = {
      label: '5 MB name',
      msg: { deviceName: 'x'.repeat(FIVE_MB) },
      says: /5242880 characters long; ThingsBoard allows at most 255/,
    };
    const { tookMs } = await expectInvalid(input, 'http');
    assert.ok(tookMs < 1000);
  });

  it('a provision secret with a control character: INVALID_INPUT, never shown', async function () {
    const badSecret = 'hostile-Secret\u0000-Value';
    await loadFlow(
      provisionFlow(flowTarget(emulator), { transport: 'http' }),
      keys(badSecret),
      guard.userDir,
    );
    const texts = watchTexts();
    const requestsBefore = (await emulator.requests()).length;
    const { msg, via } = await oneWayOut({ deviceName: 'secret-check' });
    assert.equal(via, 'caught');
    const payload = msg.payload as Record<string, string>;
    assert.equal(payload.status, 'INVALID_INPUT');
    assert.match(payload.errorMsg, /provision device secret contains an invalid character/);
    assert.equal((await emulator.requests()).length, requestsBefore);
    for (const text of [payload.errorMsg, msg.error?.message ?? '', ...texts, loggedText()]) {
      assert.ok(!text.includes('hostile-Secret'), text);
    }
  });

  describe('what is not wrong must still work', function () {
    it('a 5 MB msg.payload beside a valid name: provisioned, the payload is not sent', async function () {
      await loadFlow(
        provisionFlow(flowTarget(emulator), { transport: 'http' }),
        keys(),
        guard.userDir,
      );
      const { msg, via, tookMs } = await oneWayOut({
        deviceName: 'big-payload',
        payload: 'p'.repeat(FIVE_MB),
        topic: 'kept',
      });
      assert.equal(via, 'out', String(msg.error?.message));
      assert.equal((msg.payload as Record<string, unknown>).status, 'SUCCESS');
      assert.equal(msg.topic, 'kept');
      const [request] = (await emulator.requests()).filter(
        (r) => (r.body as { deviceName?: string }).deviceName === 'big-payload',
      );
      assert.ok(JSON.stringify(request.body).length < 500, 'only the provisioning request');
      assert.ok(tookMs < 2000, `took ${tookMs} ms`);
    });

    it('a name of exactly 255 characters and a Unicode name are provisioned', async function () {
      await loadFlow(
        provisionFlow(flowTarget(emulator), { transport: 'coap' }),
        keys(),
        guard.userDir,
      );
      for (const name of ['m'.repeat(255), '温度センサー 🌡️ Kühlraum']) {
        const { msg, via } = await oneWayOut({ deviceName: name });
        assert.equal(via, 'out', String(msg.error?.message));
        assert.equal((msg.payload as Record<string, unknown>).deviceName, name);
        assert.ok(await emulator.device(name));
      }
    });
  });
});
