import assert from 'node:assert/strict';
import fs from 'node:fs';
import { LANGUAGES, catalogs, checkMarkup, nodeOf } from './support/editor-files';
import { helpFile } from './support/package-nodes';

/** What the device nodes and their config node report through the catalogs, and their help. */

function placeholders(text: string): string[] {
  return [...text.matchAll(/__([A-Za-z0-9]+)__/g)].map((m) => m[1]).sort();
}

// The runtime reports through these keys with these placeholders.
const RUNTIME_KEYS: Record<string, string[]> = {
  'thingsboard-device-out.errors.noConfig': [],
  'thingsboard-device-out.errors.deviceName': ['error'],
  'thingsboard-device-out.errors.badKind': [],
  'thingsboard-device-out.errors.notProvisioned': ['device'],
  'thingsboard-device-out.errors.noGateway': [],
  'thingsboard-device-out.errors.gatewayNotProvisioned': ['gateway'],
  'thingsboard-device-out.errors.notTheGateway': ['device', 'gateway'],
  'thingsboard-device-out.errors.closing': [],
  'thingsboard-device-out.errors.failed': ['detail', 'device', 'status'],
  'thingsboard-device-out.errors.failedNoName': ['detail', 'status'],
  'thingsboard-device-out.status.sent': ['count'],
  'thingsboard-device-out.status.noConfig': [],
  'thingsboard-device-in.errors.noGateway': [],
  'thingsboard-device-in.errors.gatewayUnknown': ['gateway'],
  'thingsboard-device-in.errors.gatewayFailed': ['error', 'gateway'],
  'thingsboard-device-in.status.noConfig': [],
  'thingsboard-device-in.status.noGateway': [],
  'thingsboard-device-in.status.gatewayWaiting': ['gateway'],
  'thingsboard-provision.errors.reprovisionRefused': [],
  'thingsboard-provision-config.warn.storeDamaged': ['movedTo'],
  'thingsboard-provision-config.warn.storeError': ['error'],
  'thingsboard-provision-config.warn.unsent': ['count'],
  'thingsboard-provision-config.warn.takenOver': ['reason'],
  'thingsboard-provision-config.warn.refused': ['reason'],
};
// Both device nodes show the sessions with these (src/nodes/shared/device-status.ts).
for (const type of ['thingsboard-device-out', 'thingsboard-device-in']) {
  Object.assign(RUNTIME_KEYS, {
    [`${type}.status.connected`]: ['count'],
    [`${type}.status.connecting`]: [],
    [`${type}.status.reconnecting`]: ['count', 'open'],
    [`${type}.status.takenOver`]: ['count'],
    [`${type}.status.refused`]: ['count'],
    [`${type}.status.gateway`]: ['count', 'gateway'],
    [`${type}.status.gatewayReconnecting`]: ['gateway'],
    [`${type}.status.gatewayRefused`]: ['gateway'],
  });
}

function helpOf(type: string, lang: string): string {
  const html = fs.readFileSync(helpFile(nodeOf(type), lang), 'utf8');
  const [block] = checkMarkup(html, `${lang} ${type} help`);
  return block.body;
}

describe('device nodes: catalogs and help', function () {
  it('hold every key the runtime reports through, with its placeholders', function () {
    for (const [key, names] of Object.entries(RUNTIME_KEYS)) {
      for (const lang of LANGUAGES) {
        const text = (catalogs.get(lang) as Map<string, string>).get(key);
        assert.ok(text, `${lang} lacks ${key}`);
        assert.deepEqual(placeholders(text), [...names].sort(), `${lang} ${key}`);
      }
    }
  });

  for (const lang of LANGUAGES) {
    it(`document the device nodes in ${lang}`, function () {
      const out = helpOf('thingsboard-device-out', lang);
      assert.ok((out.match(/<h3>/g) ?? []).length >= 4, 'inputs, outputs, errors, details');
      for (const property of ['payload', 'deviceName', 'kind', 'rpc', 'action', 'thingsboard']) {
        assert.match(out, new RegExp(`<dt( class="optional")?>${property} `), property);
      }
      for (const status of [
        'NOT_PROVISIONED',
        'UNAUTHORIZED',
        'TIMEOUT',
        'CONNECTION_ERROR',
        'QUEUE_FULL',
        'INVALID_INPUT',
      ]) {
        assert.match(out, new RegExp(`<dt>${status}</dt>`), status);
      }
      for (const term of ['65 536', '1 000', 'provisionedAt', '"disconnect"', 'errorMsg']) {
        assert.ok(out.includes(term), term);
      }
      // Through a gateway: the announcement, the type, the advice for a gateway that is not one.
      for (const term of ['v1/gateway/connect', 'msg.deviceType', 'Is gateway', 'QoS 1']) {
        assert.ok(out.includes(term), term);
      }

      const din = helpOf('thingsboard-device-in', lang);
      for (const property of ['deviceName', 'topic', 'payload', 'rpc']) {
        assert.match(din, new RegExp(`<dt>${property} `), property);
      }
      for (const term of ['"rpc"', '"attributes"', 'MQTT', 'device out', 'msg.deviceName']) {
        assert.ok(din.includes(term), term);
      }

      const provision = helpOf('thingsboard-provision', lang);
      // A refused msg.reprovision: delete the device first.
      const reprovision = /<dt class="optional">reprovision [\s\S]*?<\/dd>/.exec(provision)?.[0];
      assert.ok(reprovision?.includes('FAILURE'), 'msg.reprovision says ThingsBoard refuses it');
    });
  }
});
