import assert from 'node:assert/strict';

import {
  MAX_ANSWER_BYTES,
  ProvisionError,
  buildRequest,
  classifyCoapResponse,
  classifyHttpResponse,
  classifyMqttResponse,
  isTransient,
  maskSecret,
  parseAnswerBody,
  type ProvisionAnswer,
} from '../src/protocol';
import { thrown } from './support/provision-errors';

/** The five bodies of the wire contract, byte for byte. */
const SPEC = {
  token: '{"credentialsValue":"<token>","credentialsType":"ACCESS_TOKEN","status":"SUCCESS"}',
  mqttBasic:
    '{"credentialsValue":{"clientId":"c","userName":"u","password":"p"},"credentialsType":"MQTT_BASIC","status":"SUCCESS"}',
  x509: '{"credentialsValue":"<cert body without BEGIN/END lines or newlines>","credentialsType":"X509_CERTIFICATE","status":"SUCCESS"}',
  notFound: '{"errorMsg":"Provision data was not found!","status":"NOT_FOUND"}',
  failure: '{"errorMsg":"Failed to provision device!","status":"FAILURE"}',
};

const SPEC_SUCCESSES: Array<[string, ProvisionAnswer]> = [
  [SPEC.token, { status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN', credentialsValue: '<token>' }],
  [
    SPEC.mqttBasic,
    {
      status: 'SUCCESS',
      credentialsType: 'MQTT_BASIC',
      credentialsValue: { clientId: 'c', userName: 'u', password: 'p' },
    },
  ],
  [
    SPEC.x509,
    {
      status: 'SUCCESS',
      credentialsType: 'X509_CERTIFICATE',
      credentialsValue: '<cert body without BEGIN/END lines or newlines>',
    },
  ],
];

const b = (text: string): Buffer => Buffer.from(text, 'utf8');

/** Every way the same answer can arrive, as the transports hand it over. */
const READERS: Array<[string, (body: string) => ProvisionAnswer]> = [
  ['parseAnswerBody(string)', (body) => parseAnswerBody(body)],
  ['parseAnswerBody(Buffer)', (body) => parseAnswerBody(b(body))],
  ['MQTT /provision/response', (body) => classifyMqttResponse(b(body))],
  ['HTTP 200', (body) => classifyHttpResponse(200, b(body))],
  ['CoAP 2.01', (body) => classifyCoapResponse('2.01', b(body))],
];

function assertNotFound(err: ProvisionError): void {
  assert.equal(err.serverMessage, 'Provision data was not found!');
  assert.equal(err.maybeDelivered, false);
  assert.match(err.message, /NOT_FOUND/);
  assert.match(err.message, /provision device key and secret/);
  assert.match(err.message, /config node/);
  assert.match(err.message, /provisioning is enabled on the device profile/);
}

function assertFailure(err: ProvisionError): void {
  assert.equal(err.serverMessage, 'Failed to provision device!');
  assert.equal(err.maybeDelivered, false);
  assert.match(err.message, /FAILURE/);
  assert.match(err.message, /already exists/);
  assert.match(err.message, /never provisions a device twice/);
  assert.match(err.message, /already used by another device or are invalid/);
  assert.match(err.message, /pre-provisioned/);
}

describe('protocol: answers from the spec, on every transport', () => {
  for (const [reader, read] of READERS) {
    for (const [body, expected] of SPEC_SUCCESSES) {
      it(`${reader}: ${expected.credentialsType} SUCCESS`, () => {
        assert.deepEqual(read(body), expected);
      });
    }
    it(`${reader}: NOT_FOUND`, () =>
      assertNotFound(thrown(() => read(SPEC.notFound), 'NOT_FOUND')));
    it(`${reader}: FAILURE`, () => assertFailure(thrown(() => read(SPEC.failure), 'FAILURE')));
  }

  it('CoAP 4.00 carries NOT_FOUND and FAILURE with the same JSON', () => {
    assertNotFound(thrown(() => classifyCoapResponse('4.00', b(SPEC.notFound)), 'NOT_FOUND'));
    assertFailure(thrown(() => classifyCoapResponse('4.00', b(SPEC.failure)), 'FAILURE'));
  });

  it('CoAP 2.05 and 2.04 are read like 2.01', () => {
    for (const code of ['2.04', '2.05']) {
      assert.deepEqual(classifyCoapResponse(code, b(SPEC.token)), SPEC_SUCCESSES[0]?.[1]);
      thrown(() => classifyCoapResponse(code, b(SPEC.failure)), 'FAILURE');
    }
  });

  it('returns a fresh object with only the three fields', () => {
    const answer = parseAnswerBody(
      '{"credentialsValue":"t","credentialsType":"ACCESS_TOKEN","status":"SUCCESS","extra":1,"errorMsg":"x"}',
    );
    assert.deepEqual(Object.keys(answer).sort(), ['credentialsType', 'credentialsValue', 'status']);
  });

  it('accepts key order, whitespace and a UTF-8 byte order mark freely', () => {
    const expected = SPEC_SUCCESSES[0]?.[1];
    assert.deepEqual(
      parseAnswerBody(
        '\ufeff{ "status" : "SUCCESS",\n "credentialsType":"ACCESS_TOKEN", "credentialsValue":"<token>" }\n',
      ),
      expected,
    );
    assert.deepEqual(
      parseAnswerBody(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b(SPEC.token)])),
      expected,
    );
  });

  it('keeps Unicode in credential values', () => {
    const answer = parseAnswerBody(
      '{"credentialsValue":{"clientId":"é","userName":"\\u00fc","password":"🔑"},"credentialsType":"MQTT_BASIC","status":"SUCCESS"}',
    );
    assert.deepEqual(answer.credentialsValue, { clientId: 'é', userName: 'ü', password: '🔑' });
  });
});

describe('protocol: MQTT_BASIC credentialsValue', () => {
  const read = (value: string): ProvisionAnswer =>
    parseAnswerBody(
      `{"credentialsValue":${value},"credentialsType":"MQTT_BASIC","status":"SUCCESS"}`,
    );

  it('drops the JSON nulls the server writes for absent fields', () => {
    assert.deepEqual(read('{"clientId":"c","userName":null,"password":null}').credentialsValue, {
      clientId: 'c',
    });
    assert.deepEqual(read('{"clientId":null,"userName":"u","password":"p"}').credentialsValue, {
      userName: 'u',
      password: 'p',
    });
    assert.deepEqual(read('{"userName":"u"}').credentialsValue, { userName: 'u' });
    assert.deepEqual(Object.keys(read('{"clientId":"c","userName":null}').credentialsValue), [
      'clientId',
    ]);
  });

  it('ignores unknown fields', () => {
    assert.deepEqual(read('{"clientId":"c","username":"x","other":1}').credentialsValue, {
      clientId: 'c',
    });
  });

  for (const value of [
    '"c:u:p"',
    'null',
    '[]',
    '42',
    '{}',
    '{"clientId":"","userName":""}',
    '{"password":"SeKrit"}',
    '{"clientId":5}',
    '{"clientId":"c","userName":true}',
    '{"clientId":"c","password":{"SeKrit":1}}',
    '{"clientId":"c","password":["SeKrit"]}',
  ]) {
    it(`refuses ${value} as a PROTOCOL_ERROR that may have created the device`, () => {
      const err = thrown(() => read(value), 'PROTOCOL_ERROR');
      assert.match(err.message, /could not be understood: it reported SUCCESS but/);
      assert.match(err.message, /may have been created/);
      assert.equal(err.maybeDelivered, true);
      assert.ok(!err.message.includes('SeKrit'));
    });
  }

  it('a missing credentialsValue is refused', () => {
    thrown(
      () => parseAnswerBody('{"credentialsType":"MQTT_BASIC","status":"SUCCESS"}'),
      'PROTOCOL_ERROR',
    );
  });
});

describe('protocol: answers that cannot be understood', () => {
  const cases: Array<[string, string | Buffer, RegExp]> = [
    ['an empty body', '', /an empty body, not JSON/],
    ['whitespace', '  \n', /bytes of text, not JSON/],
    ['plain text', 'SeKrit-token-in-text', /20 bytes of text, not JSON/],
    ['an HTML page', '<html><body>SeKrit</body></html>', /HTML or XML page, not JSON/],
    ['truncated JSON', '{"credentialsValue":"SeKrit","credentialsType":"ACC', /not JSON/],
    [
      'protobuf-looking bytes',
      Buffer.from([0x0a, 0x06, 0x53, 0x65, 0x4b, 0x72, 0x69, 0x74, 0xff]),
      /binary data, not JSON/,
    ],
    ['JSON null', 'null', /null, not a JSON object/],
    ['a JSON array', '[{"status":"SUCCESS"}]', /an array, not a JSON object/],
    ['a JSON string', '"SeKrit"', /a string, not a JSON object/],
    ['a JSON number', '200', /a number, not a JSON object/],
    ['a JSON boolean', 'true', /a boolean, not a JSON object/],
    [
      'no status',
      '{"credentialsValue":"SeKrit","credentialsType":"ACCESS_TOKEN"}',
      /it has no status/,
    ],
    ['a numeric status', '{"status":200,"credentialsValue":"SeKrit"}', /its status is a number/],
    ['a null status', '{"status":null}', /its status is null/],
    [
      'an unknown status',
      '{"status":"OK","credentialsValue":"SeKrit"}',
      /its status is "OK", not SUCCESS, NOT_FOUND or FAILURE/,
    ],
    ['a lower-case status', '{"status":"success"}', /its status is "success"/],
    [
      'a status that quotes a secret',
      '{"status":"SeKrit token=abc"}',
      /its status is an unrecognised text/,
    ],
    [
      'a REST error object',
      '{"status":401,"message":"Authentication failed","errorCode":10}',
      /its status is a number/,
    ],
    [
      'SUCCESS without credentialsType',
      '{"status":"SUCCESS","credentialsValue":"SeKrit"}',
      /SUCCESS but it has no credentialsType/,
    ],
    [
      'SUCCESS with an unknown credentialsType',
      '{"status":"SUCCESS","credentialsType":"LWM2M_CREDENTIALS","credentialsValue":"SeKrit"}',
      /credentialsType is "LWM2M_CREDENTIALS"/,
    ],
    [
      'SUCCESS with a numeric credentialsType',
      '{"status":"SUCCESS","credentialsType":1,"credentialsValue":"SeKrit"}',
      /credentialsType is a number/,
    ],
    [
      'SUCCESS with a token object',
      '{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":{"token":"SeKrit"}}',
      /ACCESS_TOKEN credentialsValue is an object/,
    ],
    [
      'SUCCESS with an empty token',
      '{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":""}',
      /credentialsValue is empty/,
    ],
    [
      'SUCCESS with a null token',
      '{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":null}',
      /credentialsValue is null/,
    ],
    [
      'SUCCESS with no token',
      '{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN"}',
      /credentialsValue is nothing/,
    ],
    [
      'SUCCESS with a numeric certificate',
      '{"status":"SUCCESS","credentialsType":"X509_CERTIFICATE","credentialsValue":12}',
      /X509_CERTIFICATE credentialsValue is a number/,
    ],
    [
      'SUCCESS with a certificate array',
      '{"status":"SUCCESS","credentialsType":"X509_CERTIFICATE","credentialsValue":["SeKrit"]}',
      /an array/,
    ],
    [
      'inherited fields only',
      '{"__proto__":{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":"SeKrit"}}',
      /it has no status/,
    ],
  ];
  for (const [what, body, pattern] of cases) {
    it(`${what}: PROTOCOL_ERROR, not transient, body not quoted`, () => {
      for (const read of [
        parseAnswerBody,
        classifyMqttResponse,
        (x: Buffer | string) => classifyHttpResponse(200, Buffer.from(x)),
      ]) {
        const err = thrown(() => read(typeof body === 'string' ? b(body) : body), 'PROTOCOL_ERROR');
        assert.match(err.message, /The server's answer could not be understood/);
        assert.match(err.message, pattern);
        assert.ok(!err.message.includes('SeKrit'), err.message);
        assert.equal(err.cause, undefined);
        assert.equal(err.serverMessage, undefined);
        assert.equal(err.maybeDelivered, true);
      }
    });
  }

  it("the outdated docs' provisionDeviceStatus shape gets its own explanation", () => {
    for (const body of [
      '{"provisionDeviceStatus":"SUCCESS","credentialsType":"ACCESS_TOKEN","accessToken":"SeKrit"}',
      '{"provisionDeviceStatus":"NOT_FOUND"}',
      '{"credentialsValue":"SeKrit","provisionDeviceStatus":"SUCCESS"}',
    ]) {
      const err = thrown(() => classifyMqttResponse(b(body)), 'PROTOCOL_ERROR');
      assert.match(err.message, /outdated provisionDeviceStatus format/);
      assert.match(err.message, /3\.2/);
      assert.ok(!err.message.includes('SeKrit'));
    }
  });

  it('NOT_FOUND and FAILURE do not need an errorMsg, and a strange one is not repeated', () => {
    for (const [status, check] of [
      ['NOT_FOUND', /provision device key and secret/],
      ['FAILURE', /already exists/],
    ] as const) {
      for (const errorMsg of [
        undefined,
        null,
        5,
        '',
        'x'.repeat(121),
        'Bad "SeKrit" {json}',
        'a\nb',
      ]) {
        const body = JSON.stringify({ errorMsg, status });
        const err = thrown(() => parseAnswerBody(body), status);
        assert.equal(err.serverMessage, undefined, body);
        assert.match(err.message, check);
        assert.ok(!err.message.includes('SeKrit'));
      }
      const err = thrown(
        () => parseAnswerBody(JSON.stringify({ errorMsg: 'Other words.', status })),
        status,
      );
      assert.equal(err.serverMessage, 'Other words.');
      assert.ok(err.message.includes('Other words.'));
    }
  });

  it('never repeats server text that holds a value of the request it answers', () => {
    const sent = buildRequest({
      provisionDeviceKey: 'key',
      provisionDeviceSecret: 'plainwords',
      deviceName: 'dev',
      credentials: { type: 'MQTT_BASIC', clientId: 'device', username: 'user', password: 'hunter' },
    });
    for (const [errorMsg, repeated] of [
      ['Secret plainwords is wrong', false],
      ['Password hunter is too short', false],
      ['Client device already exists', false],
      ['Provision data was not found!', true],
      ['Token abc123def456 already used', false],
      ['Failed at step 3', true],
    ] as const) {
      const body = JSON.stringify({ errorMsg, status: 'FAILURE' });
      const informed = thrown(() => parseAnswerBody(body, sent), 'FAILURE');
      assert.equal(informed.serverMessage, repeated ? errorMsg : undefined, errorMsg);
      for (const err of [
        thrown(() => classifyMqttResponse(b(body), sent), 'FAILURE'),
        thrown(() => classifyHttpResponse(200, b(body), sent), 'FAILURE'),
        thrown(() => classifyCoapResponse('4.00', b(body), sent), 'FAILURE'),
      ]) {
        assert.equal(err.serverMessage, informed.serverMessage);
      }
      const rest = JSON.stringify({ status: 500, message: errorMsg, errorCode: 2 });
      const restErr = thrown(() => classifyHttpResponse(500, b(rest), sent), 'PROTOCOL_ERROR');
      assert.equal(restErr.serverMessage, repeated ? errorMsg : undefined, errorMsg);
    }
    // Without the request, plain words are all it can judge by.
    const uninformed = thrown(
      () => parseAnswerBody('{"errorMsg":"Secret plainwords is wrong","status":"FAILURE"}'),
      'FAILURE',
    );
    assert.equal(uninformed.serverMessage, 'Secret plainwords is wrong');
  });

  it(`accepts a body of exactly ${MAX_ANSWER_BYTES} bytes and refuses one byte more unparsed`, () => {
    const padded = SPEC.token + ' '.repeat(MAX_ANSWER_BYTES - SPEC.token.length);
    assert.equal(Buffer.byteLength(padded), MAX_ANSWER_BYTES);
    assert.equal(parseAnswerBody(padded).status, 'SUCCESS');
    assert.equal(parseAnswerBody(b(padded)).status, 'SUCCESS');
    for (const big of [padded + ' ', b(padded + ' '), padded.slice(0, -1) + 'é']) {
      const err = thrown(() => parseAnswerBody(big), 'PROTOCOL_ERROR');
      assert.match(err.message, /far larger than a provisioning answer/);
    }
    thrown(() => classifyMqttResponse(b(padded + ' ')), 'PROTOCOL_ERROR');
    thrown(() => classifyHttpResponse(200, b(padded + ' ')), 'PROTOCOL_ERROR');
    thrown(() => classifyCoapResponse('2.01', b(padded + ' ')), 'PROTOCOL_ERROR');
  });
});

describe('protocol: classifyHttpResponse', () => {
  it('500 with an empty body is an internal error or timeout: transient', () => {
    for (const body of ['', ' ', '\r\n']) {
      const err = thrown(() => classifyHttpResponse(500, b(body)), 'PROTOCOL_ERROR', true);
      assert.match(
        err.message,
        /internal error or timed out \(HTTP 500\); another attempt may succeed/,
      );
      assert.equal(err.maybeDelivered, true);
    }
  });

  it('500 with a ThingsBoard JSON error object is a malformed request: not transient', () => {
    const body =
      '{"status":500,"message":"Provision request is missing key field","errorCode":2,"timestamp":1700000000000}';
    const err = thrown(() => classifyHttpResponse(500, b(body)), 'PROTOCOL_ERROR');
    assert.match(
      err.message,
      /rejected the provisioning request as malformed \(HTTP 500: "Provision request is missing key field"\)/,
    );
    assert.equal(err.serverMessage, 'Provision request is missing key field');
    assert.equal(err.maybeDelivered, false);
    for (const other of [
      '{"status":500,"errorCode":2}',
      '{"message":"Internal","errorCode":2}',
      '{"status":500,"message":null}',
    ]) {
      const e = thrown(() => classifyHttpResponse(500, b(other)), 'PROTOCOL_ERROR');
      assert.match(e.message, /malformed/);
    }
  });

  it('never repeats a 500 message that could quote the request', () => {
    const quoting = [
      'JSON parse error: Unexpected character at [Source: (String)"{"provisionDeviceSecret":"SeKrit"}"',
      "Unrecognized token 'SeKrit': was expecting (JSON String, Number, Array, Object)",
      'provisionDeviceSecret=SeKrit',
      `${'long '.repeat(30)}SeKrit`,
      'line\nSeKrit',
    ];
    for (const message of quoting) {
      const body = JSON.stringify({ status: 500, message, errorCode: 2 });
      const err = thrown(() => classifyHttpResponse(500, b(body)), 'PROTOCOL_ERROR');
      assert.match(err.message, /malformed \(HTTP 500\)/);
      assert.ok(!err.message.includes('SeKrit'));
      assert.equal(err.serverMessage, undefined);
    }
  });

  it('500 with other content (HTML, plain text, other JSON) stays transient', () => {
    for (const body of [
      '<html>Internal Server Error</html>',
      'Internal Server Error',
      '{"status":"FAILURE"}',
      '[]',
    ]) {
      const err = thrown(() => classifyHttpResponse(500, b(body)), 'PROTOCOL_ERROR', true);
      assert.match(err.message, /HTTP 500, /);
    }
  });

  for (const status of [501, 502, 503, 504, 507, 520, 599]) {
    it(`HTTP ${status} (e.g. from a proxy) is transient, with or without a body`, () => {
      for (const body of [
        '',
        '<html><h1>502 Bad Gateway</h1></html>',
        '{"status":502,"message":"x","errorCode":2}',
      ]) {
        const err = thrown(() => classifyHttpResponse(status, b(body)), 'PROTOCOL_ERROR', true);
        assert.ok(err.message.includes(`HTTP ${status}`));
      }
    });
  }

  it('400 is a bad request: not transient', () => {
    for (const body of ['', '{"error":"bad"}']) {
      const err = thrown(() => classifyHttpResponse(400, b(body)), 'PROTOCOL_ERROR');
      assert.match(err.message, /rejected the provisioning request as bad \(HTTP 400\)/);
    }
  });

  for (const status of [401, 403, 404, 405]) {
    it(`HTTP ${status} hints at a wrong port or path`, () => {
      const err = thrown(() => classifyHttpResponse(status, b('{"status":404}')), 'PROTOCOL_ERROR');
      assert.match(err.message, /wrong port or path/);
      assert.match(err.message, /not a ThingsBoard HTTP transport/);
      assert.match(err.message, /8080/);
      assert.equal(err.maybeDelivered, false);
    });
  }

  for (const status of [301, 302, 303, 307, 308]) {
    it(`HTTP ${status} hints at HTTPS`, () => {
      const err = thrown(() => classifyHttpResponse(status, b('')), 'PROTOCOL_ERROR');
      assert.match(err.message, /redirected/);
      assert.match(err.message, /TLS/);
    });
  }

  it('429 and 408 ask to try again later: transient', () => {
    for (const status of [408, 429]) {
      thrown(() => classifyHttpResponse(status, b('')), 'PROTOCOL_ERROR', true);
    }
  });

  for (const status of [
    0,
    100,
    201,
    202,
    204,
    206,
    402,
    409,
    410,
    413,
    418,
    422,
    600,
    999,
    -1,
    NaN,
  ]) {
    it(`HTTP ${status} is an unexpected PROTOCOL_ERROR, even with a SUCCESS body`, () => {
      const err = thrown(() => classifyHttpResponse(status, b(SPEC.token)), 'PROTOCOL_ERROR');
      assert.match(err.message, /unexpected HTTP/);
      assert.ok(!err.message.includes('<token>'));
    });
  }

  it('200 never trusts the HTTP code alone: NOT_FOUND and FAILURE arrive as 200', () => {
    thrown(() => classifyHttpResponse(200, b(SPEC.notFound)), 'NOT_FOUND');
    thrown(() => classifyHttpResponse(200, b(SPEC.failure)), 'FAILURE');
    thrown(() => classifyHttpResponse(200, b('')), 'PROTOCOL_ERROR');
  });
});

describe('protocol: classifyCoapResponse', () => {
  it('4.00 with an empty payload: the request was not decodable, not transient', () => {
    const err = thrown(() => classifyCoapResponse('4.00', Buffer.alloc(0)), 'PROTOCOL_ERROR');
    assert.match(
      err.message,
      /could not decode the provisioning request \(CoAP 4\.00, empty payload\)/,
    );
    assert.equal(err.maybeDelivered, false);
  });

  it('4.00 with a SUCCESS payload is contradictory', () => {
    const err = thrown(() => classifyCoapResponse('4.00', b(SPEC.token)), 'PROTOCOL_ERROR');
    assert.match(err.message, /4\.00 \(Bad Request\) but a SUCCESS payload/);
    assert.ok(!err.message.includes('<token>'));
  });

  it('4.00 with garbage is a PROTOCOL_ERROR', () => {
    thrown(() => classifyCoapResponse('4.00', b('Bad request')), 'PROTOCOL_ERROR');
  });

  for (const code of ['5.00', '5.01', '5.02', '5.03', '5.04', '5.05']) {
    it(`${code} is transient`, () => {
      for (const payload of [Buffer.alloc(0), b('Internal error')]) {
        const err = thrown(() => classifyCoapResponse(code, payload), 'PROTOCOL_ERROR', true);
        assert.ok(err.message.includes(`CoAP ${code}`));
        assert.equal(err.maybeDelivered, true);
      }
    });
  }

  for (const code of ['4.04', '4.05', '4.01', '4.03']) {
    it(`${code} hints at a wrong port or a disabled CoAP transport`, () => {
      const err = thrown(() => classifyCoapResponse(code, Buffer.alloc(0)), 'PROTOCOL_ERROR');
      assert.match(err.message, /no provisioning resource/);
      assert.match(err.message, /5683/);
    });
  }

  it('4.29 is transient', () => {
    thrown(() => classifyCoapResponse('4.29', Buffer.alloc(0)), 'PROTOCOL_ERROR', true);
  });

  for (const code of ['2.02', '2.03', '2.31', '4.02', '4.06', '4.13', '4.15', '0.00', '3.00']) {
    it(`${code} is an unexpected PROTOCOL_ERROR`, () => {
      const err = thrown(() => classifyCoapResponse(code, b(SPEC.token)), 'PROTOCOL_ERROR');
      assert.match(err.message, /unexpected CoAP/);
      assert.ok(!err.message.includes('<token>'));
    });
  }

  for (const code of ['', 'abc', '201', '2.1', '2.001', '8.00', ' 2.01', 'SeKrit']) {
    it(`an unrecognised code ${JSON.stringify(code)} is a PROTOCOL_ERROR`, () => {
      const err = thrown(() => classifyCoapResponse(code, b(SPEC.token)), 'PROTOCOL_ERROR');
      assert.match(err.message, /unrecognised code/);
      assert.ok(!err.message.includes('SeKrit'));
    });
  }

  it('ignores Content-Format: a text/plain JSON payload is read as JSON', () => {
    assert.equal(classifyCoapResponse('2.01', b(SPEC.mqttBasic)).credentialsType, 'MQTT_BASIC');
  });
});

describe('protocol: isTransient', () => {
  it('is true only for transient ProvisionErrors', () => {
    assert.equal(
      isTransient(new ProvisionError('CONNECTION_ERROR', 'x', { transient: true })),
      true,
    );
    assert.equal(isTransient(new ProvisionError('TIMEOUT', 'x', { transient: true })), true);
    assert.equal(isTransient(new ProvisionError('CONNECTION_ERROR', 'x')), false);
    assert.equal(isTransient(new ProvisionError('FAILURE', 'x')), false);
    for (const other of [
      new Error('x'),
      Object.assign(new Error('x'), { transient: true }),
      { transient: true },
      null,
      undefined,
      'transient',
    ]) {
      assert.equal(isTransient(other), false);
    }
  });
});

describe('protocol: maskSecret', () => {
  it('shows at most two characters, then an ellipsis', () => {
    assert.equal(maskSecret('A1B2C3D4E5F6G7H8I9J0'), 'A1…');
    assert.equal(maskSecret('abcdefgh'), 'ab…');
    assert.equal(maskSecret('abcdefg'), 'a…');
    assert.equal(maskSecret('abcd'), 'a…');
    assert.equal(maskSecret('abc'), '…');
    assert.equal(maskSecret('a'), '…');
    assert.equal(maskSecret(''), '…');
  });

  it('never shows more than two characters nor a quarter of the value', () => {
    for (let length = 0; length <= 64; length++) {
      const secret = 'x'.repeat(length);
      const shown = maskSecret(secret).replace(/…$/, '');
      assert.ok(maskSecret(secret).endsWith('…'));
      assert.ok(shown.length <= 2 && shown.length <= length / 4, `length ${length}`);
    }
  });

  it('does not split a surrogate pair or show control characters', () => {
    assert.equal(maskSecret('🔑🔑🔑🔑🔑🔑🔑🔑'), '🔑🔑…');
    assert.equal(maskSecret('\n\tabcdefgh'), '??…');
  });
});
