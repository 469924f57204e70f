import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';

import {
  MAX_CERTIFICATE_BYTES,
  ProvisionError,
  buildRequest,
  normalizeCertificatePem,
  serializeRequest,
  validateCredentials,
  validateDeviceName,
  validateProvisionKeys,
  type CredentialsType,
  type DeviceCredentials,
  type ProvisionInput,
  type ProvisionRequest,
} from '../src/protocol';
import { thrown } from './support/provision-errors';

/** A self-signed EC P-256 certificate, CN=dev1 (public material only). */
const CERT_BODY =
  'MIIBdDCCARmgAwIBAgIUCu+TWsrIhMhhqH2KhA12G7KqRRcwCgYIKoZIzj0EAwIw' +
  'DzENMAsGA1UEAwwEZGV2MTAeFw0yNjExMjcxNTMyMDVaFw0zNjExMjQxNTMyMDVa' +
  'MA8xDTALBgNVBAMMBGRldjEwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAROaVf5' +
  'FpgKvunycvbD6WatC2Xv2n7OV3zRs0knyWMLLr3fU84otmok4gQx9MHGMPyzatmu' +
  'k3x1aRJ5i27rGw1ro1MwUTAdBgNVHQ4EFgQUuNwnd6a1x7eOmfVKncpG8by7gHow' +
  'HwYDVR0jBBgwFoAUuNwnd6a1x7eOmfVKncpG8by7gHowDwYDVR0TAQH/BAUwAwEB' +
  '/zAKBggqhkjOPQQDAgNJADBGAiEAxS+TbaP3KW8UTLmoQwGQEruYHH2fers0jgso' +
  'rTPgLaMCIQDG7cee22TcZe8IqYrGUHQRgoMsPy5Atb9N6b8GreWMXA==';
const pemLines = (body: string): string[] => body.match(/.{1,64}/g) ?? [];
const CERT_PEM = [
  '-----BEGIN CERTIFICATE-----',
  ...pemLines(CERT_BODY),
  '-----END CERTIFICATE-----',
  '',
].join('\n');

const KEY = 'prov-key-1';
const SECRET = 'SeKrit-provision-secret';
const BASE: ProvisionInput = {
  provisionDeviceKey: KEY,
  provisionDeviceSecret: SECRET,
  deviceName: 'dev1',
};

const CONTROL_CHARACTERS = [
  ...Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(i)),
  ...Array.from({ length: 0x21 }, (_, i) => String.fromCharCode(0x7f + i)),
];

const hex = (c: string): string => c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');

describe('protocol: validateDeviceName', () => {
  it('returns the name trimmed', () => {
    assert.equal(validateDeviceName('dev1'), 'dev1');
    assert.equal(validateDeviceName('  dev 1 \t\n'), 'dev 1');
    assert.equal(validateDeviceName('\u00a0\u3000dev\ufeff'), 'dev');
    assert.equal(validateDeviceName('Pump #7 / hall (B)'), 'Pump #7 / hall (B)');
    assert.equal(validateDeviceName('温度センサー 🌡'), '温度センサー 🌡');
    assert.equal(validateDeviceName('a\u00a0b'), 'a\u00a0b');
  });

  it('refuses a missing name with the advice first, since the editor shows only the start', () => {
    const err = thrown(() => validateDeviceName(undefined));
    assert.match(err.message, /^No device name: set msg\.deviceName, or choose a fixed name/);
    assert.match(err.message, /Device name field/);
  });

  for (const raw of [null, 42, 0, true, false, {}, ['dev'], Buffer.from('dev')]) {
    it(`refuses ${Array.isArray(raw) ? 'an array' : typeof raw} ${String(raw)} naming its type`, () => {
      const err = thrown(() => validateDeviceName(raw));
      assert.match(err.message, /must be a string/);
      assert.match(err.message, /msg\.deviceName/);
      assert.match(err.message, /Device name/);
    });
  }

  it('names the given type precisely', () => {
    assert.match(thrown(() => validateDeviceName(7)).message, /a number was given/);
    assert.match(thrown(() => validateDeviceName(null)).message, /null was given/);
    assert.match(thrown(() => validateDeviceName([])).message, /an array was given/);
    assert.match(thrown(() => validateDeviceName({})).message, /an object was given/);
    assert.match(thrown(() => validateDeviceName(true)).message, /a boolean was given/);
  });

  for (const raw of ['', ' ', '   ', '\t', '\n\r', ' \u00a0 ', '\u3000', '\u2003\u2028']) {
    it(`refuses empty or whitespace-only ${JSON.stringify(raw)}`, () => {
      const err = thrown(() => validateDeviceName(raw));
      assert.match(err.message, raw === '' ? /is empty/ : /only whitespace/);
      assert.match(err.message, /invent a random name/);
    });
  }

  it('accepts 255 characters and refuses 256 (after trimming)', () => {
    assert.equal(validateDeviceName('x'.repeat(255)), 'x'.repeat(255));
    assert.equal(validateDeviceName(`  ${'x'.repeat(255)}  `), 'x'.repeat(255));
    const err = thrown(() => validateDeviceName('x'.repeat(256)));
    assert.match(err.message, /256 characters/);
    assert.match(err.message, /at most 255/);
    for (let length = 250; length <= 260; length++) {
      const name = 'n'.repeat(length);
      if (length <= 255) assert.equal(validateDeviceName(name), name);
      else thrown(() => validateDeviceName(name));
    }
  });

  it('counts length in UTF-16 code units as ThingsBoard does', () => {
    const emoji = '🌡';
    assert.equal(validateDeviceName(emoji.repeat(127) + 'x').length, 255);
    thrown(() => validateDeviceName(emoji.repeat(128)));
  });

  it('echoes only a short prefix of a long name', () => {
    const name = 'abcdefghijklmnopqrstuvwxyz'.repeat(20);
    const err = thrown(() => validateDeviceName(name));
    assert.ok(err.message.includes('"abcdefghijklmnopqrstuvwx…"'), err.message);
    assert.ok(!err.message.includes('abcdefghijklmnopqrstuvwxy'));
    assert.ok(err.message.length < 300);
  });

  for (const c of CONTROL_CHARACTERS) {
    it(`refuses control character U+${hex(c)} inside the name`, () => {
      const err = thrown(() => validateDeviceName(`dev${c}1`));
      assert.match(err.message, new RegExp(`U\\+${hex(c)}`));
      assert.match(err.message, /position 4/);
      // The echoed prefix shows the character escaped, never raw.
      assert.ok(err.message.includes(`dev\\u${hex(c).toLowerCase()}1`), err.message);
      // eslint-disable-next-line no-control-regex -- the message must hold no raw control character
      assert.ok(!/[\u0000-\u001f\u007f-\u009f]/.test(err.message));
    });
  }

  it('refuses control characters that trimming leaves at the edges', () => {
    for (const c of CONTROL_CHARACTERS) {
      const edged = `${c}dev${c}`;
      if (edged.trim() === 'dev') assert.equal(validateDeviceName(edged), 'dev');
      else thrown(() => validateDeviceName(edged));
    }
    thrown(() => validateDeviceName('\u0000dev'));
    thrown(() => validateDeviceName('dev\u007f'));
    thrown(() => validateDeviceName('dev\u0085x'));
  });

  it('refuses malformed Unicode (unpaired surrogates)', () => {
    assert.match(thrown(() => validateDeviceName('dev\ud800')).message, /unpaired surrogate/);
    assert.match(thrown(() => validateDeviceName('\udc00dev')).message, /unpaired surrogate/);
    assert.equal(validateDeviceName('dev\ud83c\udf21'), 'dev🌡');
  });
});

describe('protocol: validateProvisionKeys', () => {
  it('returns both unchanged', () => {
    assert.deepEqual(validateProvisionKeys('k', 's'), {
      provisionDeviceKey: 'k',
      provisionDeviceSecret: 's',
    });
    assert.deepEqual(validateProvisionKeys(KEY, SECRET), {
      provisionDeviceKey: KEY,
      provisionDeviceSecret: SECRET,
    });
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['undefined', undefined, /is missing/],
    ['null', null, /is missing/],
    ['empty', '', /is missing/],
    ['whitespace', '   ', /only whitespace/],
    ['a number', 12345, /must be a string, but a number/],
    ['an object', { secret: SECRET }, /must be a string, but an object/],
    ['padded', ` ${SECRET} `, /starts or ends with whitespace/],
    ['trailing newline', `${SECRET}\n`, /starts or ends with whitespace/],
    ['a control character', `${SECRET}\u0000x`, /invalid character at position 24/],
    ['too long', SECRET + 'x'.repeat(1024), /characters long/],
  ];
  for (const [what, value, pattern] of bad) {
    it(`refuses a key that is ${what}`, () => {
      const err = thrown(() => validateProvisionKeys(value, SECRET));
      assert.match(err.message, /provision device key/);
      assert.match(err.message, pattern);
      assert.match(err.message, /config node/);
      assert.ok(!err.message.includes(SECRET));
    });
    it(`refuses a secret that is ${what}, never echoing it`, () => {
      const err = thrown(() => validateProvisionKeys(KEY, value));
      assert.match(err.message, /provision device secret/);
      assert.match(err.message, pattern);
      assert.match(err.message, /config node/);
      assert.ok(!err.message.includes(SECRET));
      assert.ok(!err.message.includes('SeKrit'));
    });
  }

  it('accepts 1024 characters and refuses 1025', () => {
    validateProvisionKeys('k'.repeat(1024), 's'.repeat(1024));
    thrown(() => validateProvisionKeys('k'.repeat(1025), 's'));
    thrown(() => validateProvisionKeys('k', 's'.repeat(1025)));
  });
});

describe('protocol: validateCredentials', () => {
  it('refuses an unknown credentials type', () => {
    for (const type of ['X509', 'access_token', '', 'ACCESS TOKEN', 5, null, undefined]) {
      const err = thrown(() => validateCredentials(type as CredentialsType, { token: 'abc' }));
      assert.match(err.message, /Unknown credentials type/);
      assert.match(err.message, /ACCESS_TOKEN, MQTT_BASIC or X509_CERTIFICATE/);
    }
  });

  for (const type of ['ACCESS_TOKEN', 'MQTT_BASIC', 'X509_CERTIFICATE'] as const) {
    for (const raw of [undefined, null, 'SeKrit-token', 42, true, ['SeKrit'], Buffer.from('x')]) {
      it(`${type}: refuses msg.credentials that is ${String(raw)}`, () => {
        const err = thrown(() => validateCredentials(type, raw));
        assert.match(err.message, /msg\.credentials must be an object/);
        assert.ok(err.message.includes(type));
        assert.ok(!err.message.includes('SeKrit'));
      });
    }
    it(`${type}: refuses a contradicting msg.credentials.type`, () => {
      for (const declared of ['ACCESS_TOKEN', 'MQTT_BASIC', 'X509_CERTIFICATE', 'SeKrit', 7]) {
        if (declared === type) continue;
        const err = thrown(() => validateCredentials(type, { type: declared, token: 'x' }));
        assert.match(err.message, /msg\.credentials\.type/);
        assert.ok(!err.message.includes('SeKrit'));
      }
    });
  }

  describe('ACCESS_TOKEN', () => {
    it('returns the token', () => {
      assert.deepEqual(validateCredentials('ACCESS_TOKEN', { token: 'A1b2-C3_d4.e5~!' }), {
        type: 'ACCESS_TOKEN',
        token: 'A1b2-C3_d4.e5~!',
      });
      assert.deepEqual(validateCredentials('ACCESS_TOKEN', { type: 'ACCESS_TOKEN', token: 't' }), {
        type: 'ACCESS_TOKEN',
        token: 't',
      });
    });

    it('says when the token is missing, with a hint when the shape is another type', () => {
      assert.match(
        thrown(() => validateCredentials('ACCESS_TOKEN', {})).message,
        /msg\.credentials\.token is missing/,
      );
      assert.match(
        thrown(() => validateCredentials('ACCESS_TOKEN', { token: null })).message,
        /token is missing/,
      );
      const mqtt = thrown(() =>
        validateCredentials('ACCESS_TOKEN', { clientId: 'c', password: 'SeKrit' }),
      );
      assert.match(mqtt.message, /look like MQTT_BASIC/);
      const x509 = thrown(() => validateCredentials('ACCESS_TOKEN', { certificate: CERT_PEM }));
      assert.match(x509.message, /look like X509_CERTIFICATE/);
    });

    for (const token of [42, true, { v: 'SeKrit' }, ['SeKrit'], Buffer.from('SeKrit')]) {
      it(`refuses a token that is not a string (${typeof token})`, () => {
        const err = thrown(() => validateCredentials('ACCESS_TOKEN', { token }));
        assert.match(err.message, /msg\.credentials\.token must be a string/);
        assert.ok(!err.message.includes('SeKrit'));
      });
    }

    it('refuses an empty token', () => {
      assert.match(
        thrown(() => validateCredentials('ACCESS_TOKEN', { token: '' })).message,
        /empty/,
      );
    });

    it('accepts 255 characters and refuses 256', () => {
      validateCredentials('ACCESS_TOKEN', { token: 't'.repeat(255) });
      const err = thrown(() => validateCredentials('ACCESS_TOKEN', { token: 't'.repeat(256) }));
      assert.match(err.message, /256 characters long; at most 255/);
      assert.ok(!err.message.includes('tttt'));
    });

    for (const space of [' ', '\u00a0', '\u2003', '\u3000', '\u2028', '\ufeff']) {
      for (const at of ['start', 'middle', 'end']) {
        it(`refuses whitespace U+${hex(space)} at the ${at} of the token`, () => {
          const token =
            at === 'start' ? `${space}SeKrit` : at === 'end' ? `SeKrit${space}` : `SeK${space}rit`;
          const err = thrown(() => validateCredentials('ACCESS_TOKEN', { token }));
          assert.match(err.message, /whitespace/);
          assert.ok(!err.message.includes('SeK'));
        });
      }
    }

    it('refuses every control character, naming only the position', () => {
      for (const c of CONTROL_CHARACTERS) {
        const err = thrown(() => validateCredentials('ACCESS_TOKEN', { token: `SeKrit${c}x` }));
        assert.match(err.message, /invalid character .* at position 7/, `U+${hex(c)}`);
        assert.ok(!err.message.includes('SeKrit'));
      }
    });

    it('refuses malformed Unicode', () => {
      thrown(() => validateCredentials('ACCESS_TOKEN', { token: 'abc\ud800' }));
    });
  });

  describe('MQTT_BASIC', () => {
    const FIELDS = ['clientId', 'username', 'password'] as const;

    it('follows the server rules for every combination of present fields', () => {
      for (let mask = 0; mask < 8; mask++) {
        const raw: Record<string, string> = {};
        FIELDS.forEach((field, i) => {
          if (mask & (1 << i)) raw[field] = `${field}-SeKrit`;
        });
        const valid =
          (raw.clientId !== undefined || raw.username !== undefined) &&
          !(raw.clientId !== undefined && raw.username === undefined && raw.password !== undefined);
        if (valid) {
          assert.deepEqual(validateCredentials('MQTT_BASIC', raw), { type: 'MQTT_BASIC', ...raw });
        } else {
          const err = thrown(() => validateCredentials('MQTT_BASIC', raw));
          assert.ok(!err.message.includes('SeKrit'), err.message);
          if (raw.clientId) assert.match(err.message, /no username are refused/);
          else assert.match(err.message, /need a clientId or a username/);
        }
      }
    });

    it('treats null, undefined and "" as absent, as the server does', () => {
      for (const absent of [null, undefined, '']) {
        assert.deepEqual(
          validateCredentials('MQTT_BASIC', { clientId: 'c', username: absent, password: absent }),
          { type: 'MQTT_BASIC', clientId: 'c' },
        );
        assert.deepEqual(
          validateCredentials('MQTT_BASIC', { clientId: absent, username: 'u', password: 'p' }),
          { type: 'MQTT_BASIC', username: 'u', password: 'p' },
        );
        thrown(() =>
          validateCredentials('MQTT_BASIC', { clientId: 'c', username: absent, password: 'p' }),
        );
        thrown(() => validateCredentials('MQTT_BASIC', { clientId: absent, username: absent }));
      }
    });

    it('omits absent fields from the result (no undefined keys)', () => {
      const credentials = validateCredentials('MQTT_BASIC', { username: 'u', clientId: undefined });
      assert.deepEqual(Object.keys(credentials), ['type', 'username']);
    });

    it('accepts userName (as answers spell it) for username', () => {
      assert.deepEqual(
        validateCredentials('MQTT_BASIC', { clientId: 'c', userName: 'u', password: 'p' }),
        {
          type: 'MQTT_BASIC',
          clientId: 'c',
          username: 'u',
          password: 'p',
        },
      );
      assert.deepEqual(validateCredentials('MQTT_BASIC', { username: 'u', userName: 'u' }), {
        type: 'MQTT_BASIC',
        username: 'u',
      });
      const err = thrown(() =>
        validateCredentials('MQTT_BASIC', { username: 'SeKrit1', userName: 'SeKrit2' }),
      );
      assert.match(err.message, /both username and userName/);
      assert.ok(!err.message.includes('SeKrit'));
    });

    // userName stands in for username, so it cannot sit beside a different one.
    const base = (field: string): Record<string, string> =>
      field === 'userName' ? { clientId: 'c' } : { clientId: 'c', username: 'u' };
    for (const field of ['clientId', 'username', 'userName', 'password']) {
      for (const value of [5, true, { a: 'SeKrit' }, ['SeKrit']]) {
        it(`refuses a ${field} that is ${typeof value}, naming the field`, () => {
          const raw = { ...base(field), [field]: value };
          const err = thrown(() => validateCredentials('MQTT_BASIC', raw));
          assert.ok(err.message.includes(`msg.credentials.${field} must be a string`), err.message);
          assert.ok(!err.message.includes('SeKrit'));
        });
      }

      it(`limits ${field} to 255 characters`, () => {
        validateCredentials('MQTT_BASIC', {
          ...base(field),
          [field]: 'v'.repeat(255),
        });
        const err = thrown(() =>
          validateCredentials('MQTT_BASIC', {
            ...base(field),
            [field]: 'v'.repeat(256),
          }),
        );
        assert.ok(err.message.includes(`msg.credentials.${field}`));
      });

      it(`refuses control characters in ${field} but allows spaces`, () => {
        validateCredentials('MQTT_BASIC', { ...base(field), [field]: 'a b' });
        for (const c of CONTROL_CHARACTERS) {
          const err = thrown(() =>
            validateCredentials('MQTT_BASIC', {
              ...base(field),
              [field]: `SeKrit${c}`,
            }),
          );
          assert.ok(err.message.includes(`msg.credentials.${field}`));
          assert.ok(!err.message.includes('SeKrit'));
        }
      });
    }

    it('points at a mismatched node setting', () => {
      const err = thrown(() => validateCredentials('MQTT_BASIC', { token: 'SeKrit' }));
      assert.match(err.message, /look like ACCESS_TOKEN/);
      assert.ok(!err.message.includes('SeKrit'));
    });
  });

  describe('X509_CERTIFICATE', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const PKCS8 = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const SEC1 = privateKey.export({ type: 'sec1', format: 'pem' }).toString();
    const ENCRYPTED = privateKey
      .export({ type: 'pkcs8', format: 'pem', cipher: 'aes-128-cbc', passphrase: 'pw' })
      .toString();
    const PUBLIC = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const keyBody = (pem: string): string => pem.split('\n')[1] ?? '';

    const certificate = (pem: string): string => {
      const credentials = validateCredentials('X509_CERTIFICATE', { certificate: pem });
      assert.equal(credentials.type, 'X509_CERTIFICATE');
      return credentials.type === 'X509_CERTIFICATE' ? credentials.certificate : '';
    };
    const refused = (pem: unknown, pattern: RegExp): ProvisionError => {
      const err = thrown(() => validateCredentials('X509_CERTIFICATE', { certificate: pem }));
      assert.match(err.message, pattern);
      return err;
    };

    it('returns canonical PEM that parses with crypto.X509Certificate', () => {
      assert.equal(certificate(CERT_PEM), CERT_PEM);
      assert.equal(new X509Certificate(certificate(CERT_PEM)).subject, 'CN=dev1');
      assert.equal(normalizeCertificatePem(CERT_PEM), CERT_PEM);
    });

    it('normalises CRLF, indentation, line width and surrounding text to the same PEM', () => {
      const variants = [
        CERT_PEM.replace(/\n/g, '\r\n'),
        CERT_PEM.trimEnd(),
        `\n\n  ${CERT_PEM}\n\n`,
        `-----BEGIN CERTIFICATE-----\n${CERT_BODY}\n-----END CERTIFICATE-----`,
        `-----BEGIN CERTIFICATE-----${CERT_BODY}-----END CERTIFICATE-----`,
        `-----BEGIN CERTIFICATE-----\n${(CERT_BODY.match(/.{1,76}/g) ?? []).join('\n')}\n-----END CERTIFICATE-----`,
        `Bag Attributes\n    friendlyName: dev1\nsubject=CN = dev1\n${CERT_PEM}`,
        CERT_PEM.split('\n')
          .map((line) => `  ${line}`)
          .join('\n'),
      ];
      for (const variant of variants) assert.equal(certificate(variant), CERT_PEM);
    });

    for (const [label, pem] of [
      ['PKCS#8', () => PKCS8],
      ['SEC1 (EC PRIVATE KEY)', () => SEC1],
      ['encrypted PKCS#8', () => ENCRYPTED],
      ['RSA PRIVATE KEY', () => PKCS8.replace(/PRIVATE KEY/g, 'RSA PRIVATE KEY')],
      ['certificate followed by its key', () => CERT_PEM + PKCS8],
      ['key followed by the certificate', () => PKCS8 + CERT_PEM],
      ['key with no END line', () => PKCS8.split('-----END')[0] ?? ''],
    ] as const) {
      it(`refuses a private key (${label}) without echoing it`, () => {
        const err = refused(pem(), /private key was supplied where a certificate is expected/);
        assert.ok(!err.message.includes(keyBody(PKCS8).slice(0, 16)));
        assert.ok(!err.message.includes(keyBody(SEC1).slice(0, 16)));
        assert.ok(!err.message.includes(keyBody(ENCRYPTED).slice(0, 16)));
        assert.equal(err.cause, undefined);
      });
    }

    it('refuses text that is not PEM', () => {
      refused('', /not a certificate: expected PEM/);
      refused('hello', /not a certificate: expected PEM/);
      refused(CERT_BODY, /not a certificate: expected PEM/);
      refused(Buffer.from(CERT_BODY, 'base64').toString('latin1'), /not a certificate/);
    });

    it('refuses other PEM blocks by their label', () => {
      refused(PUBLIC, /found a PEM PUBLIC KEY block/);
      refused(
        '-----BEGIN CERTIFICATE REQUEST-----\nMIIBAA==\n-----END CERTIFICATE REQUEST-----\n',
        /found a PEM CERTIFICATE REQUEST block/,
      );
      refused(
        CERT_PEM.replace(/CERTIFICATE/g, 'TRUSTED CERTIFICATE'),
        /found a PEM TRUSTED CERTIFICATE/,
      );
      refused(CERT_PEM.replace(/CERTIFICATE/g, 'X509 CRL'), /found a PEM X509 CRL block/);
    });

    it('refuses a chain, a missing END line and a mismatched END line', () => {
      refused(CERT_PEM + CERT_PEM, /2 CERTIFICATE blocks.*not a chain/);
      refused(
        CERT_PEM.replace('-----END CERTIFICATE-----', ''),
        /no matching -----END CERTIFICATE/,
      );
      refused(CERT_PEM.replace('END CERTIFICATE', 'END CERT'), /no matching/);
      refused(CERT_PEM + CERT_PEM.replace('-----END CERTIFICATE-----', ''), /CERTIFICATE blocks/);
    });

    it('refuses a body that is not valid base64', () => {
      const wrap = (body: string): string =>
        `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
      refused(wrap(''), /not valid base64/);
      refused(wrap(CERT_BODY.replace('M', '*')), /not valid base64/);
      refused(wrap(CERT_BODY.replace('M', '-')), /not valid base64/);
      refused(wrap(CERT_BODY.slice(0, -1)), /not valid base64/);
      refused(wrap(CERT_BODY + '='), /not valid base64/);
      refused(wrap('=' + CERT_BODY.slice(1)), /not valid base64/);
      // Non-zero padding bits: Node would decode it, but it is not the canonical encoding.
      refused(wrap(CERT_BODY.replace(/XA==$/, 'XB==')), /not valid base64/);
    });

    it('refuses base64 that is not an X.509 certificate', () => {
      const wrap = (der: Buffer): string =>
        `-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`;
      const der = Buffer.from(CERT_BODY, 'base64');
      refused(wrap(Buffer.from('hello world')), /does not parse as an X\.509 certificate/);
      refused(wrap(der.subarray(0, der.length - 10)), /does not parse/);
      refused(wrap(Buffer.alloc(300)), /does not parse/);
      const corrupted = Buffer.from(der);
      corrupted[0] = 0x31;
      refused(wrap(corrupted), /does not parse/);
      refused(
        wrap(Buffer.concat([der, Buffer.from([0, 0, 1])])),
        /extra data after the certificate/,
      );
      const spki = publicKey.export({ type: 'spki', format: 'der' });
      refused(wrap(spki), /does not parse/);
    });

    it(`limits the certificate to ${MAX_CERTIFICATE_BYTES} bytes`, () => {
      const padded = CERT_PEM + ' '.repeat(MAX_CERTIFICATE_BYTES - CERT_PEM.length);
      assert.equal(certificate(padded), CERT_PEM);
      refused(padded + ' ', /16385 bytes/);
      refused('é'.repeat(MAX_CERTIFICATE_BYTES / 2) + CERT_PEM, /bytes/);
    });

    for (const value of [42, Buffer.from(CERT_PEM), { pem: CERT_PEM }, true]) {
      it(`refuses a certificate that is not a string (${Buffer.isBuffer(value) ? 'a Buffer' : typeof value})`, () => {
        refused(value, /must be a string of PEM text/);
      });
    }

    it('says when the certificate is missing, pointing at a mismatched type', () => {
      refused(undefined, /certificate is missing/);
      refused(null, /certificate is missing/);
      const err = thrown(() => validateCredentials('X509_CERTIFICATE', { token: 'SeKrit' }));
      assert.match(err.message, /look like ACCESS_TOKEN/);
      assert.ok(!err.message.includes('SeKrit'));
    });
  });
});

describe('protocol: buildRequest', () => {
  const ALLOWED = new Set([
    'provisionDeviceKey',
    'provisionDeviceSecret',
    'deviceName',
    'credentialsType',
    'token',
    'clientId',
    'username',
    'password',
    'hash',
    'gateway',
  ]);
  const assertClean = (request: ProvisionRequest): void => {
    for (const [key, value] of Object.entries(request)) {
      assert.ok(ALLOWED.has(key), `unexpected key ${key}`);
      assert.notEqual(value, null, `${key} is null`);
      assert.notEqual(value, undefined, `${key} is undefined`);
    }
  };

  it('server-generated credentials: key, secret and name only; no credentialsType', () => {
    const request = buildRequest(BASE);
    assert.deepEqual(request, {
      provisionDeviceKey: KEY,
      provisionDeviceSecret: SECRET,
      deviceName: 'dev1',
    });
    assert.deepEqual(Object.keys(request), [
      'provisionDeviceKey',
      'provisionDeviceSecret',
      'deviceName',
    ]);
    assert.deepEqual(
      Object.keys(buildRequest({ ...BASE, credentials: undefined, gateway: false })),
      ['provisionDeviceKey', 'provisionDeviceSecret', 'deviceName'],
    );
    const withNull = { ...BASE, credentials: null, gateway: null } as unknown as ProvisionInput;
    assert.deepEqual(Object.keys(buildRequest(withNull)), [
      'provisionDeviceKey',
      'provisionDeviceSecret',
      'deviceName',
    ]);
  });

  it('trims the device name it sends', () => {
    assert.equal(buildRequest({ ...BASE, deviceName: '  pump 7\n' }).deviceName, 'pump 7');
  });

  it('ACCESS_TOKEN: credentialsType and token', () => {
    const request = buildRequest({
      ...BASE,
      credentials: { type: 'ACCESS_TOKEN', token: 'tok123' },
    });
    assert.deepEqual(request, {
      provisionDeviceKey: KEY,
      provisionDeviceSecret: SECRET,
      deviceName: 'dev1',
      credentialsType: 'ACCESS_TOKEN',
      token: 'tok123',
    });
  });

  it('MQTT_BASIC: only the fields given, request spelling username', () => {
    const cases: Array<[DeviceCredentials, Partial<ProvisionRequest>]> = [
      [
        { type: 'MQTT_BASIC', clientId: 'c', username: 'u', password: 'p' },
        { clientId: 'c', username: 'u', password: 'p' },
      ],
      [{ type: 'MQTT_BASIC', clientId: 'c' }, { clientId: 'c' }],
      [{ type: 'MQTT_BASIC', username: 'u' }, { username: 'u' }],
      [
        { type: 'MQTT_BASIC', username: 'u', password: 'p' },
        { username: 'u', password: 'p' },
      ],
      [
        { type: 'MQTT_BASIC', clientId: 'c', username: 'u' },
        { clientId: 'c', username: 'u' },
      ],
    ];
    for (const [credentials, fields] of cases) {
      const request = buildRequest({ ...BASE, credentials });
      assert.deepEqual(request, { ...BASE, credentialsType: 'MQTT_BASIC', ...fields });
      assertClean(request);
      assert.ok(!('userName' in request));
    }
  });

  it('X509_CERTIFICATE: hash carries the certificate PEM itself', () => {
    const request = buildRequest({
      ...BASE,
      credentials: { type: 'X509_CERTIFICATE', certificate: CERT_PEM.replace(/\n/g, '\r\n') },
    });
    assert.deepEqual(request, { ...BASE, credentialsType: 'X509_CERTIFICATE', hash: CERT_PEM });
  });

  it('gateway: true only when requested', () => {
    assert.equal(buildRequest({ ...BASE, gateway: true }).gateway, true);
    assert.ok(!('gateway' in buildRequest({ ...BASE, gateway: false })));
    assert.ok(!('gateway' in buildRequest({ ...BASE })));
    for (const gateway of ['true', 1, 0, 'false', {}]) {
      const err = thrown(() => buildRequest({ ...BASE, gateway } as unknown as ProvisionInput));
      assert.match(err.message, /msg\.gateway must be true or false/);
    }
  });

  it('never produces a null or undefined key, for every combination', () => {
    const credentialOptions: Array<DeviceCredentials | undefined> = [
      undefined,
      { type: 'ACCESS_TOKEN', token: 't' },
      { type: 'X509_CERTIFICATE', certificate: CERT_PEM },
    ];
    for (let mask = 1; mask < 8; mask++) {
      const credentials: DeviceCredentials = { type: 'MQTT_BASIC' };
      if (mask & 1) credentials.clientId = 'c';
      if (mask & 2) credentials.username = 'u';
      if (mask & 4) credentials.password = 'p';
      if (mask !== 5 && mask !== 4) credentialOptions.push(credentials);
    }
    for (const credentials of credentialOptions) {
      for (const gateway of [undefined, false, true]) {
        const input: ProvisionInput = { ...BASE };
        if (credentials) input.credentials = credentials;
        if (gateway !== undefined) input.gateway = gateway;
        const request = buildRequest(input);
        assertClean(request);
        assert.equal('credentialsType' in request, credentials !== undefined);
        assert.equal('gateway' in request, gateway === true);
        const wire = JSON.parse(serializeRequest(request)) as Record<string, unknown>;
        assert.deepEqual(wire, request);
        assert.ok(!serializeRequest(request).includes('null'));
      }
    }
  });

  it('validates everything it is given', () => {
    thrown(() => buildRequest(null as unknown as ProvisionInput));
    thrown(() => buildRequest({ ...BASE, provisionDeviceKey: '' }));
    thrown(() => buildRequest({ ...BASE, provisionDeviceSecret: '' }));
    thrown(() => buildRequest({ ...BASE, deviceName: '   ' }));
    thrown(() => buildRequest({ ...BASE, deviceName: 'x'.repeat(256) }));
    thrown(() => buildRequest({ ...BASE, credentials: { type: 'ACCESS_TOKEN', token: 'a b' } }));
    thrown(() => buildRequest({ ...BASE, credentials: { type: 'MQTT_BASIC' } }));
    thrown(() =>
      buildRequest({ ...BASE, credentials: { type: 'MQTT_BASIC', clientId: 'c', password: 'p' } }),
    );
    thrown(() =>
      buildRequest({ ...BASE, credentials: { type: 'X509_CERTIFICATE', certificate: 'x' } }),
    );
    thrown(() => buildRequest({ ...BASE, credentials: 'tok' as unknown as DeviceCredentials }));
    thrown(() =>
      buildRequest({ ...BASE, credentials: { type: 'JWT' } as unknown as DeviceCredentials }),
    );
  });
});

describe('protocol: serializeRequest', () => {
  it('writes compact JSON in a fixed key order', () => {
    assert.equal(
      serializeRequest(buildRequest(BASE)),
      `{"provisionDeviceKey":"${KEY}","provisionDeviceSecret":"${SECRET}","deviceName":"dev1"}`,
    );
    assert.equal(
      serializeRequest({
        gateway: true,
        token: 't',
        credentialsType: 'ACCESS_TOKEN',
        deviceName: 'd',
        provisionDeviceSecret: 's',
        provisionDeviceKey: 'k',
      }),
      '{"provisionDeviceKey":"k","provisionDeviceSecret":"s","deviceName":"d","credentialsType":"ACCESS_TOKEN","token":"t","gateway":true}',
    );
    assert.equal(
      serializeRequest(
        buildRequest({
          ...BASE,
          credentials: { type: 'MQTT_BASIC', clientId: 'c', username: 'u', password: 'p' },
        }),
      ),
      `{"provisionDeviceKey":"${KEY}","provisionDeviceSecret":"${SECRET}","deviceName":"dev1","credentialsType":"MQTT_BASIC","clientId":"c","username":"u","password":"p"}`,
    );
  });

  it('escapes the certificate newlines as JSON', () => {
    const json = serializeRequest(
      buildRequest({ ...BASE, credentials: { type: 'X509_CERTIFICATE', certificate: CERT_PEM } }),
    );
    assert.ok(json.includes('"hash":"-----BEGIN CERTIFICATE-----\\nMIIB'));
    assert.equal((JSON.parse(json) as { hash: string }).hash, CERT_PEM);
  });

  it('leaves out null, undefined, false gateway and unknown fields', () => {
    const sloppy = {
      provisionDeviceKey: 'k',
      provisionDeviceSecret: 's',
      deviceName: 'd',
      credentialsType: null,
      token: undefined,
      clientId: null,
      username: null,
      password: null,
      hash: null,
      gateway: false,
      extra: 'x',
    } as unknown as ProvisionRequest;
    assert.equal(
      serializeRequest(sloppy),
      '{"provisionDeviceKey":"k","provisionDeviceSecret":"s","deviceName":"d"}',
    );
  });

  it('keeps Unicode device names intact', () => {
    const json = serializeRequest(buildRequest({ ...BASE, deviceName: 'Gerät "7" \\ 🌡' }));
    assert.equal((JSON.parse(json) as { deviceName: string }).deviceName, 'Gerät "7" \\ 🌡');
  });
});
