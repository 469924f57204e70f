/** MQTTS and HTTPS listeners, and X509 device login by client certificate. */

import assert from 'node:assert/strict';
import * as https from 'node:https';
import mqtt from 'mqtt';
import type { Emulator } from '../src/emulator';
import {
  CREATE,
  activeResources,
  assertNoNewResources,
  request,
  startEmulator,
} from './support/emulator-clients';

/** Self-signed for 127.0.0.1 and localhost (EC P-256, valid until 2126); test material only. */
const SERVER_CERT = `-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUJHzt6/oOTxYYD1QHcT9jsQlvSxswCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyNzE2MTQ0NVoYDzIxMjYxMTAz
MTYxNDQ1WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAARf7tkjO2oXMR1b+AqTqs7dTUx0FWV/HNmtQV3BFxP2r2zQ3llUt5vJ
YYQjroGO5Fyys1mzApXKDj/2e+YBQQTGo28wbTAdBgNVHQ4EFgQUec+mNDl0g0Cc
YQNzRRKzCUm2LiswHwYDVR0jBBgwFoAUec+mNDl0g0CcYQNzRRKzCUm2LiswDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwCgYIKoZI
zj0EAwIDSAAwRQIhALmNF1UvoqhStKs9C50uvcgY3ItcooabkkABnYMQ6oKdAiAk
EC5p7nlzlvyInhy93Ij0c9KLDP+xdnW1fiFhNwE2Bw==
-----END CERTIFICATE-----
`;
const SERVER_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgjOPYLC2hQNJEWZod
Oisn4HgZ+sT+Fq72RJOoEieHegGhRANCAARf7tkjO2oXMR1b+AqTqs7dTUx0FWV/
HNmtQV3BFxP2r2zQ3llUt5vJYYQjroGO5Fyys1mzApXKDj/2e+YBQQTG
-----END PRIVATE KEY-----
`;
/** A self-signed device certificate and its key. */
const DEVICE_CERT = `-----BEGIN CERTIFICATE-----
MIIBlTCCATugAwIBAgIUWzmbY/1vQ/kxflaOfqH5gx3n9TMwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUZW11bGF0b3ItdGVzdC1kZXZpY2UwIBcNMjYxMTI3MTYxNDQ1
WhgPMjEyNjExMDMxNjE0NDVaMB8xHTAbBgNVBAMMFGVtdWxhdG9yLXRlc3QtZGV2
aWNlMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEI20qk5RvHMF2qUq1hSCgED1W
S2Pn35dlGDDPGvnJ9zubzV74yROaTejETLMyxy9szMcYDJvuRuxQOrMCEVmnt6NT
MFEwHQYDVR0OBBYEFGJt8oPUA1cgPUZezPaMKM5wE4+pMB8GA1UdIwQYMBaAFGJt
8oPUA1cgPUZezPaMKM5wE4+pMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SAAwRQIhAOmefHD8yqLKJbxw91f5jjcq2Meb8iJx1gwzOcNJUxQ4AiAJnLHbfjs8
7/G3YPTqUBpyopYEejMEPeY/PyLpz89x5Q==
-----END CERTIFICATE-----
`;
const DEVICE_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgg2lmnYzijz7S6+M5
CNGmIp0q4H3H5Fs/9t+ZdQtr0NqhRANCAAQjbSqTlG8cwXapSrWFIKAQPVZLY+ff
l2UYMM8a+cn3O5vNXvjJE5pN6MRMszLHL2zMxxgMm+5G7FA6swIRWae3
-----END PRIVATE KEY-----
`;

function httpsProvision(port: number, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: '/api/v1/provision',
        method: 'POST',
        ca: SERVER_CERT,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('emulator TLS', () => {
  let emulator: Emulator;
  let before: string[];

  beforeEach(async () => {
    before = await activeResources();
    emulator = await startEmulator({
      tls: { key: SERVER_KEY, cert: SERVER_CERT, requestCert: true },
      mqttsPort: 0,
      httpsPort: 0,
    });
  });

  afterEach(async () => {
    await emulator.stop();
    await assertNoNewResources(before);
  });

  it('listens on MQTTS and HTTPS beside the plain ports', () => {
    assert.ok(emulator.ports.mqtts !== undefined && emulator.ports.mqtts > 0);
    assert.ok(emulator.ports.https !== undefined && emulator.ports.https > 0);
    assert.notEqual(emulator.ports.mqtts, emulator.ports.mqtt);
  });

  it('provisions over HTTPS, the server certificate verified', async () => {
    const reply = await httpsProvision(
      emulator.ports.https ?? 0,
      request(CREATE, { token: 'tls-t' }),
    );
    assert.equal(reply.status, 200);
    assert.equal(
      reply.body,
      '{"credentialsValue":"tls-t","credentialsType":"ACCESS_TOKEN","status":"SUCCESS"}',
    );
  });

  it('provisions over MQTTS', async () => {
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${emulator.ports.mqtts}`, {
      username: 'provision',
      ca: SERVER_CERT,
      reconnectPeriod: 0,
    });
    try {
      const answer = new Promise<string>((resolve) =>
        client.once('message', (_topic, payload) => resolve(payload.toString())),
      );
      await client.subscribeAsync('/provision/response', { qos: 1 });
      await client.publishAsync('/provision/request', request(CREATE, { deviceName: 'tls-dev' }), {
        qos: 1,
      });
      assert.match(await answer, /"status":"SUCCESS"/);
      assert.ok(emulator.device('tls-dev'));
    } finally {
      await client.endAsync(true);
    }
  });

  it('an X509 device logs in over MQTTS with its client certificate; another certificate is refused', async () => {
    const reply = await httpsProvision(
      emulator.ports.https ?? 0,
      request(CREATE, {
        deviceName: 'x509',
        credentialsType: 'X509_CERTIFICATE',
        hash: DEVICE_CERT,
      }),
    );
    assert.match(reply.body, /"credentialsType":"X509_CERTIFICATE","status":"SUCCESS"/);
    const device = await mqtt.connectAsync(`mqtts://127.0.0.1:${emulator.ports.mqtts}`, {
      ca: SERVER_CERT,
      cert: DEVICE_CERT,
      key: DEVICE_KEY,
      reconnectPeriod: 0,
    });
    try {
      await device.publishAsync('v1/devices/me/telemetry', '{"signed":true}', { qos: 1 });
      assert.deepEqual(emulator.device('x509')?.telemetry, [{ signed: true }]);
    } finally {
      await device.endAsync(true);
    }
    const stranger = mqtt.connectAsync(`mqtts://127.0.0.1:${emulator.ports.mqtts}`, {
      ca: SERVER_CERT,
      cert: SERVER_CERT,
      key: SERVER_KEY,
      username: 'provisioned-or-not',
      reconnectPeriod: 0,
    });
    await assert.rejects(stranger, /Not authorized/);
  });
});
