import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import path from 'node:path';
import {
  ACCESS_TOKEN_LENGTH,
  generateAccessToken,
  generateCertificate,
  generateMqttBasic,
  randomAlphanumeric,
} from '../src/provisioner/credentials';

const ALPHANUMERIC = /^[A-Za-z0-9]+$/;
const YEAR_MS = 365.25 * 24 * 3600 * 1000;

describe('generated device credentials', () => {
  describe('access token', () => {
    it('is 24 characters of [A-Za-z0-9], different every time', () => {
      const tokens = new Set(Array.from({ length: 1000 }, generateAccessToken));
      assert.equal(tokens.size, 1000);
      for (const token of tokens) {
        assert.equal(token.length, ACCESS_TOKEN_LENGTH);
        assert.ok(token.length >= 20);
        assert.match(token, ALPHANUMERIC);
      }
    });

    it('favours no character (no modulo bias)', () => {
      // Taking byte % 62 would make the first 8 characters 25 % more frequent than the rest.
      const counts = new Map<string, number>();
      const text = randomAlphanumeric(248_000);
      for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
      assert.equal(counts.size, 62);
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
      const mean = (chars: string): number =>
        [...chars].reduce((sum, c) => sum + (counts.get(c) ?? 0), 0) / chars.length;
      const ratio = mean(alphabet.slice(0, 8)) / mean(alphabet.slice(8));
      assert.ok(ratio > 0.95 && ratio < 1.05, `first-8 / rest frequency ratio ${ratio}`);
    });
  });

  describe('MQTT basic', () => {
    it('makes a random client id (with a readable name fragment), username and password', () => {
      const a = generateMqttBasic('Boiler room / sensor #7');
      const b = generateMqttBasic('Boiler room / sensor #7');
      assert.notEqual(a.clientId, b.clientId);
      assert.notEqual(a.username, b.username);
      assert.notEqual(a.password, b.password);
      assert.match(a.clientId, /^Boilerroom-[A-Za-z0-9]{12}$/);
      assert.ok(a.clientId.length <= 23, 'MQTT 3.1 client id limit');
      assert.match(a.username, ALPHANUMERIC);
      assert.ok(a.username.length >= 16);
      assert.match(a.password, ALPHANUMERIC);
      assert.ok(a.password.length >= 24);
    });

    it('still makes a client id when the name has no usable characters', () => {
      assert.match(generateMqttBasic('温度计').clientId, /^device-[A-Za-z0-9]{12}$/);
    });
  });

  describe('self-signed certificate', function () {
    this.timeout(10_000);

    it('is a new EC P-256 key and a self-signed certificate for CN=<device name>, valid 10 years', async () => {
      const before = Date.now();
      const { certificate, privateKey } = await generateCertificate('Sensor-42');
      const cert = new X509Certificate(certificate);
      const key = createPrivateKey(privateKey);
      assert.match(certificate, /^-----BEGIN CERTIFICATE-----\n/);
      assert.match(privateKey, /^-----BEGIN PRIVATE KEY-----\n/, 'PKCS#8 PEM');
      assert.equal(cert.toLegacyObject().subject.CN, 'Sensor-42');
      assert.equal(cert.subject, cert.issuer);
      assert.ok(cert.checkPrivateKey(key), 'the key belongs to the certificate');
      assert.ok(cert.verify(cert.publicKey), 'signed by its own key');
      assert.equal(key.asymmetricKeyType, 'ec');
      assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
      assert.equal(cert.ca, false);
      const from = Date.parse(cert.validFrom);
      const to = Date.parse(cert.validTo);
      assert.ok(from <= before, 'valid from now (allowing for clock skew)');
      assert.ok(to - before > 9.9 * YEAR_MS && to - before < 10.1 * YEAR_MS);
    });

    it('makes a new key and a new random serial every time', async () => {
      const [a, b] = await Promise.all([generateCertificate('same'), generateCertificate('same')]);
      assert.notEqual(a.privateKey, b.privateKey);
      const serialA = new X509Certificate(a.certificate).serialNumber;
      const serialB = new X509Certificate(b.certificate).serialNumber;
      assert.notEqual(serialA, serialB);
      assert.ok(serialA.length >= 30, `serial ${serialA} carries enough randomness`);
    });

    for (const name of [
      'Line 3, Cell "A"+B=1; <x>\\ end',
      '#0403abcd',
      '  padded  ',
      'CN=evil, O=Other',
      'Температура 温度',
    ]) {
      it(`keeps the device name ${JSON.stringify(name)} literally in the CN`, async () => {
        const cert = new X509Certificate((await generateCertificate(name)).certificate);
        const subject = cert.toLegacyObject().subject as unknown as Record<string, string>;
        assert.deepEqual({ ...subject }, { CN: name });
      });
    }
  });

  it('loads no MQTT, HTTP or CoAP library until a job needs it', () => {
    const root = path.resolve(__dirname, '..');
    const loaded = execFileSync(
      process.execPath,
      [
        '-r',
        'tsx/cjs',
        '-e',
        `require('./src/provisioner');
         const names = Object.keys(require.cache);
         const heavy = ['node_modules/mqtt', 'node_modules/undici', 'node_modules/coap'];
         console.log(JSON.stringify(heavy.filter((m) => names.some((n) => n.includes(m)))));`,
      ],
      { cwd: root, encoding: 'utf8' },
    );
    assert.deepEqual(JSON.parse(loaded), []);
  });
});
