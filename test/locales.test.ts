import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  LANGUAGES,
  NODES,
  NODE_TYPES,
  attribute,
  catalogs,
  checkMarkup,
  english,
  loadEditors,
  readCatalog,
  type NodeDefinition,
  type ScriptBlock,
} from './support/editor-files';
import { helpFile } from './support/package-nodes';

/**
 * The message catalogs, the help and the examples: what a user reads before any message flows.
 * Checked as files, since they are only ever read by the Node-RED editor.
 */

const root = path.resolve(__dirname, '..');
const examplesDir = path.join(root, 'examples');

function placeholders(text: string): string[] {
  return [...text.matchAll(/__([A-Za-z0-9]+)__/g)].map((m) => m[1]).sort();
}

// Words that stay the same in every language: protocols, product and property names.
const TECHNICAL =
  /\b(?:MQTT|MQTTS|HTTPS?|CoAP|DTLS|TLS|UDP|ThingsBoard|Redis|rediss?:\/\/[\w.:/]+|ACCESS_TOKEN|MQTT_BASIC|X509_CERTIFICATE|X\.509|msg(?:\.\w+)+|true|false|connect)\b/g;

function isOnlyTechnical(text: string): boolean {
  const rest = text.replace(/__[A-Za-z0-9]+__/g, '').replace(TECHNICAL, '');
  return !/\p{L}/u.test(rest);
}

// The runtime reports through these keys with these placeholders.
const RUNTIME_KEYS: Record<string, string[]> = {
  'thingsboard-provision.status.provisioning': ['inFlight', 'queued'],
  'thingsboard-provision.status.provisioned': ['device'],
  'thingsboard-provision.status.cached': ['device'],
  'thingsboard-provision.status.failed': ['status'],
  'thingsboard-provision.status.noConfig': [],
  'thingsboard-provision.errors.noConfig': [],
  'thingsboard-provision.errors.noKeys': ['server'],
  'thingsboard-provision.errors.deviceName': ['error'],
  'thingsboard-provision.errors.badOverride': [],
  'thingsboard-provision.errors.closing': [],
  'thingsboard-provision.errors.notSaved': ['error'],
  'thingsboard-provision.errors.failed': ['detail', 'device', 'status'],
  'thingsboard-provision.errors.failedNoName': ['detail', 'status'],
  'thingsboard-provision.warn.storeDamaged': ['movedTo'],
  'thingsboard-provision.warn.storeError': ['error'],
  'thingsboard-provision.warn.storeUnavailable': ['error'],
  'thingsboard-provision-config.errors.noHost': [],
  'thingsboard-provision-config.errors.badPort': ['transport'],
  'thingsboard-provision-config.errors.coapTls': [],
  'thingsboard-provision-config.warn.verifyOff': ['host'],
  'thingsboard-provision-config.warn.redisVerifyOff': [],
};

describe('message catalogs', function () {
  it('have the same keys in every language', function () {
    const expected = [...english.keys()].sort();
    for (const lang of LANGUAGES) {
      assert.deepEqual(
        [...(catalogs.get(lang) as Map<string, string>).keys()].sort(),
        expected,
        lang,
      );
    }
  });

  it('exist for every node type in every language, each grouped under its own type', function () {
    assert.ok(NODES.length >= 2);
    for (const node of NODES) {
      for (const lang of LANGUAGES) {
        assert.deepEqual(Object.keys(readCatalog(node, lang)), [node.type], `${lang} ${node.type}`);
      }
    }
  });

  it('hold every key the runtime reports through, with its placeholders', function () {
    for (const [key, names] of Object.entries(RUNTIME_KEYS)) {
      for (const lang of LANGUAGES) {
        const text = (catalogs.get(lang) as Map<string, string>).get(key);
        assert.ok(text, `${lang} lacks ${key}`);
        assert.deepEqual(placeholders(text), [...names].sort(), `${lang} ${key}`);
      }
    }
  });

  it('keep the placeholders of every entry in every language', function () {
    for (const lang of LANGUAGES) {
      for (const [key, text] of catalogs.get(lang) as Map<string, string>) {
        assert.deepEqual(
          placeholders(text),
          placeholders(english.get(key) ?? ''),
          `${lang} ${key}`,
        );
      }
    }
  });

  it('are translated, not copied from English', function () {
    const script = {
      ja: /[\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Han}]/u,
      'zh-CN': /\p{Script=Han}/u,
    };
    for (const lang of ['ja', 'zh-CN'] as const) {
      for (const [key, text] of catalogs.get(lang) as Map<string, string>) {
        if (isOnlyTechnical(text)) continue;
        assert.notEqual(text, english.get(key), `${lang} ${key} is the English text`);
        assert.match(text, script[lang], `${lang} ${key} is not written in ${lang}`);
      }
    }
  });

  it('tell technical names from prose', function () {
    assert.ok(isOnlyTechnical('__device__'));
    assert.ok(isOnlyTechnical('CoAP'));
    assert.ok(isOnlyTechnical('redis://127.0.0.1:6379/0'));
    assert.ok(!isOnlyTechnical('Redis password'));
    assert.ok(!isOnlyTechnical('provision __device__'));
  });
});

// ---------------------------------------------------------------------------------------------

describe('help', function () {
  for (const lang of LANGUAGES) {
    it(`documents every node type in ${lang}, each in its own help file`, function () {
      const byName = new Map<string | undefined, ScriptBlock>();
      for (const node of NODES) {
        const html = fs.readFileSync(helpFile(node, lang), 'utf8');
        const blocks = checkMarkup(html, `${lang} ${node.type} help`);
        assert.deepEqual(
          blocks.map((b) => attribute(b.attributes, 'data-help-name')),
          [node.type],
        );
        for (const block of blocks) assert.equal(attribute(block.attributes, 'type'), 'text/html');
        byName.set(node.type, blocks[0]);
      }

      const node = (byName.get('thingsboard-provision') as ScriptBlock).body;
      assert.ok((node.match(/<h3>/g) ?? []).length >= 4, 'inputs, outputs, errors, details');
      assert.ok((node.match(/<dl class="message-properties">/g) ?? []).length >= 3);
      for (const property of [
        'deviceName',
        'credentials',
        'reprovision',
        'gateway',
        'payload',
        'thingsboard',
        'broker',
        'action',
      ]) {
        assert.match(node, new RegExp(`<dt( class="optional")?>${property} `), property);
      }
      for (const status of [
        'NOT_FOUND',
        'FAILURE',
        'TIMEOUT',
        'CONNECTION_ERROR',
        'PROTOCOL_ERROR',
        'INVALID_INPUT',
      ]) {
        assert.match(node, new RegExp(`<dt>${status}</dt>`), status);
      }
      for (const term of [
        '0600',
        'msg.reprovision',
        'clientid',
        'force: true',
        'provisionedAt',
        'userName',
      ]) {
        assert.ok(node.includes(term), term);
      }

      const server = (byName.get('thingsboard-provision-config') as ScriptBlock).body;
      for (const term of [
        'tls-config',
        'thingsboard.cloud',
        'mqtt.thingsboard.cloud',
        '443',
        '8883',
        'flows.json',
        'rediss://',
        'tb-provision:',
        'appendfsync always',
        '?wait=1',
      ]) {
        assert.ok(server.includes(term), term);
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------

interface FlowNode {
  id: string;
  type: string;
  z?: string;
  wires?: string[][];
  [property: string]: unknown;
}

const CORE_TYPES = new Set([
  'inject',
  'debug',
  'comment',
  'catch',
  'change',
  'function',
  'delay',
  'split',
  'join',
  'switch',
  'template',
  'mqtt out',
  'mqtt in',
  'mqtt-broker',
  'http request',
  'tls-config',
]);
const OUR_TYPES = new Set<string>(NODE_TYPES);
// Properties that name another node, per node type.
const REFERENCES: Record<string, string[]> = {
  'thingsboard-provision': ['config'],
  'thingsboard-device-out': ['config'],
  'thingsboard-device-in': ['config'],
  'thingsboard-provision-config': ['tls'],
  'mqtt out': ['broker'],
  'mqtt in': ['broker'],
  'mqtt-broker': ['tls'],
  'http request': ['tls', 'proxy'],
};

// The editor's room for a flow on a 1400x900 screen at the default zoom, beside the palette and the
// sidebar: node centres and an estimate of their width must stay inside it.
const CANVAS = { width: 880, height: 600 };

/** A generous estimate of a node's width on the canvas: Node-RED widens a node to its label. */
function estimatedWidth(node: FlowNode): number {
  const label = typeof node.name === 'string' && node.name !== '' ? node.name : node.type;
  const button = node.type === 'inject' || node.type === 'debug' ? 25 : 0;
  return Math.max(100, 20 * Math.ceil((7.5 * label.length + 50) / 20)) + button;
}

describe('examples', function () {
  const files = fs
    .readdirSync(examplesDir)
    .filter((f) => f.endsWith('.json'))
    .sort();
  const owners = new Map<string, string>();

  it('are there, numbered, one per use', function () {
    assert.ok(files.length >= 3);
    for (const file of files) assert.match(file, /^\d\d - [^/]+\.json$/);
  });

  for (const file of files) {
    it(`${file} imports cleanly`, function () {
      const flow = JSON.parse(fs.readFileSync(path.join(examplesDir, file), 'utf8')) as FlowNode[];
      assert.ok(Array.isArray(flow));
      const ids = new Set<string>();
      for (const node of flow) {
        assert.equal(typeof node.id, 'string');
        assert.ok(!ids.has(node.id), `duplicate id ${node.id}`);
        ids.add(node.id);
        assert.ok(
          CORE_TYPES.has(node.type) || OUR_TYPES.has(node.type),
          `unexpected type ${node.type}`,
        );
        assert.ok(!('credentials' in node), `${node.id} carries credentials`);
      }
      const tabs = new Set(flow.filter((n) => n.z !== undefined).map((n) => n.z));
      assert.ok(tabs.size <= 1, 'all flow nodes on one tab');
      for (const node of flow) {
        for (const output of node.wires ?? []) {
          for (const target of output)
            assert.ok(ids.has(target), `${node.id} wires to missing ${target}`);
        }
        for (const property of REFERENCES[node.type] ?? []) {
          const value = node[property];
          if (typeof value === 'string' && value !== '')
            assert.ok(ids.has(value), `${node.id}.${property}`);
        }
        if (node.type === 'catch' && Array.isArray(node.scope)) {
          for (const target of node.scope as string[])
            assert.ok(ids.has(target), `catch scope ${target}`);
        }
        const isConfig =
          node.type === 'mqtt-broker' ||
          node.type === 'tls-config' ||
          node.type === 'thingsboard-provision-config';
        assert.equal(
          node.z === undefined,
          isConfig,
          `${node.id}: config nodes have no tab, others do`,
        );
        if (!isConfig) {
          assert.equal(typeof node.x, 'number');
          assert.equal(typeof node.y, 'number');
        }
      }
      const ours = flow.filter(
        (n) => OUR_TYPES.has(n.type) && n.type !== 'thingsboard-provision-config',
      );
      assert.ok(ours.length >= 1, 'the example uses a node of the package');
      const { definitions } = loadEditors();
      for (const node of ours) {
        const contract = Object.keys((definitions.get(node.type) as NodeDefinition).defaults);
        for (const property of contract)
          assert.ok(property in node, `${node.id} lacks ${property}`);
      }
      const configs = flow.filter((n) => n.type === 'thingsboard-provision-config');
      assert.equal(configs.length, 1);
      assert.equal(configs[0].host, '127.0.0.1');
    });

    it(`${file} fits a 1400x900 editor at the default zoom`, function () {
      const flow = JSON.parse(fs.readFileSync(path.join(examplesDir, file), 'utf8')) as FlowNode[];
      for (const node of flow.filter((n) => typeof n.x === 'number')) {
        const x = node.x as number;
        const y = node.y as number;
        const half = estimatedWidth(node) / 2;
        const what = `${node.type} "${String(node.name)}" at ${x},${y}`;
        assert.ok(x - half >= 0 && x + half <= CANVAS.width, `${what} is off the canvas`);
        assert.ok(y >= 20 && y <= CANVAS.height, `${what} is off the canvas`);
      }
    });
  }

  it('share no node id, the server configuration included, so one imports beside another without a question', function () {
    for (const file of files) {
      const flow = JSON.parse(fs.readFileSync(path.join(examplesDir, file), 'utf8')) as FlowNode[];
      const tab = flow.find((n) => n.z !== undefined)?.z;
      for (const id of [...flow.map((n) => n.id), tab]) {
        if (id === undefined) continue;
        assert.ok(!owners.has(id), `${file} and ${owners.get(id)} share the id ${id}`);
        owners.set(id, file);
      }
    }
  });
});
