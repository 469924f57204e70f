import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import {
  catalogFile,
  editorFile,
  editorSettings,
  helpFile,
  packageNodes,
} from './support/package-nodes';
import type { PackageNode } from './support/package-nodes';
import { fakeJquery, type FakeElement } from './support/fake-jquery';

/**
 * The editor, its message catalogs, the help and the examples: what a user sees before any message
 * flows. Checked as files, since they are only ever read by the Node-RED editor.
 */

const root = path.resolve(__dirname, '..');
const LANGUAGES = ['en-US', 'ja', 'zh-CN'] as const;
const NODES = packageNodes();
const NODE_TYPES = NODES.map((node) => node.type);
const examplesDir = path.join(root, 'examples');

type Catalog = Record<string, unknown>;

function readCatalog(node: PackageNode, lang: string): Catalog {
  return JSON.parse(fs.readFileSync(catalogFile(node, lang), 'utf8')) as Catalog;
}

function nodeOf(type: string): PackageNode {
  const node = NODES.find((n) => n.type === type);
  assert.ok(node, `package.json registers no ${type}`);
  return node;
}

function flatten(catalog: Catalog, prefix = ''): Map<string, string> {
  const entries = new Map<string, string>();
  for (const [key, value] of Object.entries(catalog)) {
    if (typeof value === 'string') entries.set(prefix + key, value);
    else if (value && typeof value === 'object') {
      for (const [k, v] of flatten(value as Catalog, `${prefix}${key}.`)) entries.set(k, v);
    } else assert.fail(`${prefix}${key} is neither text nor a group`);
  }
  return entries;
}

// Per language, every node type's catalog in one map: each key starts with the type that owns it.
const catalogs = new Map(
  LANGUAGES.map((lang) => [
    lang,
    new Map(NODES.flatMap((node) => [...flatten(readCatalog(node, lang))])),
  ]),
);
const english = catalogs.get('en-US') as Map<string, string>;

function placeholders(text: string): string[] {
  return [...text.matchAll(/__([A-Za-z0-9]+)__/g)].map((m) => m[1]).sort();
}

/** Node-RED's i18n substitution, enough to render a catalog entry. */
function render(key: string, options?: Record<string, unknown>): string {
  const text = english.get(key);
  if (text === undefined) return key;
  return text.replace(/__([A-Za-z0-9]+)__/g, (_, name: string) => String(options?.[name] ?? ''));
}

// Words that stay the same in every language: protocols, product and property names.
const TECHNICAL =
  /\b(?:MQTT|MQTTS|HTTPS?|CoAP|DTLS|TLS|UDP|ThingsBoard|ACCESS_TOKEN|MQTT_BASIC|X509_CERTIFICATE|X\.509|msg(?:\.\w+)+|true|false|connect)\b/g;

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
  'thingsboard-provision-config.errors.noHost': [],
  'thingsboard-provision-config.errors.badPort': ['transport'],
  'thingsboard-provision-config.errors.coapTls': [],
  'thingsboard-provision-config.warn.verifyOff': ['host'],
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
    assert.ok(!isOnlyTechnical('provision __device__'));
  });
});

// ---------------------------------------------------------------------------------------------

const VOID_ELEMENTS = new Set(['input', 'br', 'hr', 'img', 'meta', 'link', 'wbr', 'source']);

interface ScriptBlock {
  attributes: string;
  body: string;
}

/** Checks that elements nest, returns the <script> blocks for a closer look. */
function checkMarkup(html: string, where: string): ScriptBlock[] {
  const scripts: ScriptBlock[] = [];
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w-]*)([^>]*)>|<!--[\s\S]*?-->/g;
  let match: RegExpExecArray | null;
  while ((match = tag.exec(html)) !== null) {
    if (match[0].startsWith('<!--')) continue;
    const [, closing, rawName, attributes] = match;
    const name = rawName.toLowerCase();
    if (name === 'script' && !closing) {
      const end = html.indexOf('</script>', tag.lastIndex);
      assert.ok(end !== -1, `${where}: <script> never closed`);
      const body = html.slice(tag.lastIndex, end);
      assert.ok(!/<script[\s>]/i.test(body), `${where}: <script> inside <script>`);
      scripts.push({ attributes, body });
      tag.lastIndex = end + '</script>'.length;
      continue;
    }
    if (name === 'script') assert.fail(`${where}: </script> without <script>`);
    if (VOID_ELEMENTS.has(name) || attributes.endsWith('/')) continue;
    if (closing) {
      const open = stack.pop();
      assert.equal(open, name, `${where}: </${name}> closes <${open ?? 'nothing'}>`);
    } else stack.push(name);
  }
  assert.deepEqual(stack, [], `${where}: left open`);
  return scripts;
}

function attribute(attributes: string, name: string): string | undefined {
  return new RegExp(`\\b${name}="([^"]*)"`).exec(attributes)?.[1];
}

function i18nKeysOf(html: string): string[] {
  const keys: string[] = [];
  for (const m of html.matchAll(/data-i18n="([^"]+)"/g)) {
    for (const part of m[1].split(';')) keys.push(part.replace(/^\[[^\]]+\]/, '').trim());
  }
  return keys;
}

interface NodeDefinition {
  category: string;
  defaults: Record<
    string,
    {
      value?: unknown;
      type?: string;
      required?: boolean;
      validate?: (v: unknown, opt: unknown) => unknown;
    }
  >;
  credentials?: Record<string, { type: string }>;
  icon?: string;
  inputs?: number;
  outputs?: number;
  color?: string;
  label: (this: Record<string, unknown>) => string;
  paletteLabel?: string | (() => string);
  inputLabels?: () => string;
  outputLabels?: () => string;
  oneditprepare?: () => void;
  oneditsave?: () => void;
}

const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  name: string;
  'node-red': { nodes: Record<string, string> };
};
const editors = new Map(
  NODES.map((node) => [node.type, fs.readFileSync(editorFile(node), 'utf8')]),
);

/** The package's editor resources a tag names, e.g. resources/<package>/editor.js. */
function resourceOf(url: string): string {
  const prefix = `resources/${pkg.name}/`;
  assert.ok(url.startsWith(prefix), `${url} is not one of the package's resources`);
  const file = path.join(root, 'resources', url.slice(prefix.length));
  assert.ok(fs.existsSync(file), `${url}: no ${path.relative(root, file)}`);
  return file;
}

interface LoadedEditors {
  definitions: Map<string, NodeDefinition>;
  /** The node type whose editor file registered each type. */
  registeredBy: Map<string, string>;
  requested: string[];
  /** The elements the scripts have touched, by selector. */
  element: (selector: string) => FakeElement;
}

/**
 * Runs every editor file's scripts, as the editor loads them (the shared resources they name
 * first), against a small stand-in for the editor API.
 */
function loadEditors(): LoadedEditors {
  const definitions = new Map<string, NodeDefinition>();
  const registeredBy = new Map<string, string>();
  const requested: string[] = [];
  const { $, find } = fakeJquery();
  let loading = '';
  const RED = {
    _: (key: string, options?: Record<string, unknown>) => {
      requested.push(key);
      const [, packageName, type, entry] = /^([^:]+)\/([^/:]+):(.*)$/.exec(key) ?? [];
      assert.equal(packageName, pkg.name, `${key} names another package`);
      assert.ok(NODE_TYPES.includes(type), `${key}: ${type} is not a node type of the package`);
      assert.ok(entry.startsWith(`${type}.`), `${key} is not in the ${type} catalog`);
      return render(entry, options);
    },
    nodes: {
      registerType: (type: string, def: NodeDefinition) => {
        definitions.set(type, def);
        registeredBy.set(type, loading);
      },
      node: () => null,
    },
    settings: editorSettings(),
    validators: {
      typedInput: () =>
        function (v: unknown) {
          return typeof v === 'string' && v !== '' ? true : 'invalid';
        },
    },
  };
  const context = vm.createContext({ RED, $ });
  context.window = context;
  for (const node of NODES) {
    loading = node.type;
    const html = editors.get(node.type) as string;
    for (const block of checkMarkup(html, `${node.type} editor`)) {
      if (attribute(block.attributes, 'type') !== 'text/javascript') continue;
      const src = attribute(block.attributes, 'src');
      const file = src ? resourceOf(src) : editorFile(node);
      vm.runInContext(src ? fs.readFileSync(file, 'utf8') : block.body, context, {
        filename: file,
      });
    }
    for (const link of html.matchAll(/<link [^>]*href="([^"]+)"/g)) resourceOf(link[1]);
  }
  return { definitions, registeredBy, requested, element: find };
}

describe('editor', function () {
  const { definitions, registeredBy, requested, element } = loadEditors();
  const html = (type: string): string => editors.get(type) as string;
  const config = definitions.get('thingsboard-provision-config') as NodeDefinition;
  const provision = definitions.get('thingsboard-provision') as NodeDefinition;

  function valid(def: NodeDefinition, property: string, value: unknown, node = {}): boolean {
    const validate = def.defaults[property].validate;
    assert.ok(validate, `${property} has no validator`);
    const result = validate.call(node, value, {});
    if (result !== true) assert.equal(typeof result, 'string', `${property}: reason for refusing`);
    return result === true;
  }

  it('has one editor file per node type, holding its template and registering it', function () {
    for (const type of NODE_TYPES) {
      const templates = checkMarkup(html(type), `${type} editor`)
        .map((s) => attribute(s.attributes, 'data-template-name'))
        .filter(Boolean);
      assert.deepEqual(templates, [type]);
      assert.equal(registeredBy.get(type), type);
    }
    assert.deepEqual([...definitions.keys()].sort(), [...NODE_TYPES].sort());
  });

  it("finds every data-i18n key in its node type's catalog", function () {
    let count = 0;
    for (const type of NODE_TYPES) {
      for (const key of i18nKeysOf(html(type))) {
        count++;
        // The editor looks a template's keys up in the namespace of its node type.
        assert.ok(key.startsWith(`${type}.`), `data-i18n ${key} is not in the ${type} catalog`);
        assert.ok(english.has(key), `data-i18n ${key} is not in the catalog`);
      }
    }
    assert.ok(count > 20);
  });

  it("finds every key the script asks for in its node type's catalog", function () {
    let count = 0;
    for (const type of NODE_TYPES) {
      // Whole keys; a key built from a prefix is checked when it is asked for (below).
      for (const m of html(type).matchAll(/\b(?:t|_)\(\s*'([^']+)'\s*[,)]/g)) {
        count++;
        assert.ok(m[1].startsWith(`${type}.`), `${m[1]} is not in the ${type} catalog`);
        assert.ok(english.has(m[1]), `${m[1]} is not in the catalog`);
      }
    }
    assert.ok(count > 10);
    // What ran while registering went through the namespace of a node type and its catalog.
    assert.ok(requested.length > 0);
    for (const key of requested) assert.ok(english.has(key.replace(/^.*:/, '')), key);
  });

  it('leaves no English text in the templates', function () {
    for (const type of NODE_TYPES) {
      for (const block of checkMarkup(html(type), `${type} editor`)) {
        if (attribute(block.attributes, 'type') !== 'text/html') continue;
        const text = block.body.replace(/<[^>]*>/g, ' ').replace(/&nbsp;/g, ' ');
        assert.equal(text.trim(), '', `visible text outside the catalog: ${text.trim()}`);
      }
    }
  });

  it('declares the config node properties of the contract', function () {
    assert.equal(config.category, 'config');
    const values = Object.fromEntries(
      Object.entries(config.defaults).map(([k, d]) => [k, d.value]),
    );
    assert.deepEqual(values, {
      name: '',
      host: '',
      mqttPort: 1883,
      httpPort: 8080,
      coapPort: 5683,
      usetls: false,
      tls: undefined,
    });
    assert.equal(config.defaults.tls.type, 'tls-config');
    assert.equal(config.defaults.tls.required, false);
    assert.deepEqual(JSON.parse(JSON.stringify(config.credentials)), {
      provisionDeviceKey: { type: 'text' },
      provisionDeviceSecret: { type: 'password' },
    });
  });

  it('declares the provision node properties of the contract', function () {
    assert.equal(provision.category, 'thingsboard');
    assert.equal(provision.inputs, 1);
    assert.equal(provision.outputs, 1);
    const values = Object.fromEntries(
      Object.entries(provision.defaults).map(([k, d]) => [k, d.value]),
    );
    assert.deepEqual(values, {
      name: '',
      config: undefined,
      transport: 'mqtt',
      deviceName: 'deviceName',
      deviceNameType: 'msg',
      credentialsType: 'server',
      gateway: false,
      timeout: 10,
      retries: 2,
      concurrency: 8,
      persist: true,
      mqttConnect: false,
    });
    assert.equal(provision.defaults.config.type, 'thingsboard-provision-config');
    assert.equal(provision.defaults.config.required, true);
  });

  it('offers exactly the transports and credential types of the contract, labelled', function () {
    const editing = { transport: 'http', credentialsType: 'MQTT_BASIC' };
    provision.oneditprepare?.call(editing);
    const options = (id: string) => {
      const select = element(`#${id}`);
      assert.ok(html('thingsboard-provision').includes(`<select id="${id}"`), id);
      return select.children.map((option) => [option.attributes.get('value'), option.label]);
    };
    assert.deepEqual(
      options('node-input-transport'),
      ['mqtt', 'http', 'coap'].map((t) => [t, english.get(`thingsboard-provision.transport.${t}`)]),
    );
    assert.deepEqual(
      options('node-input-credentialsType'),
      ['server', 'ACCESS_TOKEN', 'MQTT_BASIC', 'X509_CERTIFICATE'].map((type) => [
        type,
        english.get(`thingsboard-provision.credentialsType.${type}`),
      ]),
    );
    // The node's own values are chosen once the choices are there.
    assert.equal(element('#node-input-transport').val(), 'http');
    assert.equal(element('#node-input-credentialsType').val(), 'MQTT_BASIC');
  });

  it('moves the well-known ports to their TLS twins when TLS is ticked, and back', function () {
    config.oneditprepare?.call({});
    const usetls = element('#node-config-input-usetls');
    const ports = () =>
      ['mqtt', 'http', 'coap'].map((t) => element(`#node-config-input-${t}Port`).val());
    const set = (values: unknown[]) =>
      ['mqtt', 'http', 'coap'].forEach((t, i) =>
        element(`#node-config-input-${t}Port`).val(values[i]),
      );
    set([1883, 8080, 5683]);
    usetls.prop('checked', true).trigger('change');
    assert.deepEqual(ports(), ['8883', '443', 5683]);
    usetls.prop('checked', false).trigger('change');
    assert.deepEqual(ports(), ['1883', '8080', 5683]);
    set(['1884', '8080', '5683']);
    usetls.prop('checked', true).trigger('change');
    assert.deepEqual(ports(), ['1884', '443', '5683'], 'a custom port stays');
  });

  it('has an input for every property', function () {
    const configHtml = html('thingsboard-provision-config');
    for (const property of Object.keys(config.defaults)) {
      assert.match(configHtml, new RegExp(`id="node-config-input-${property}"`), property);
    }
    for (const property of Object.keys(config.credentials ?? {})) {
      assert.match(configHtml, new RegExp(`id="node-config-input-${property}"`), property);
    }
    assert.match(configHtml, /<input type="password" id="node-config-input-provisionDeviceSecret"/);
    for (const property of Object.keys(provision.defaults)) {
      assert.match(
        html('thingsboard-provision'),
        new RegExp(`id="node-input-${property}"`),
        property,
      );
    }
  });

  it('refuses hosts and ports the server cannot be reached at', function () {
    assert.ok(valid(config, 'host', '127.0.0.1'));
    assert.ok(valid(config, 'host', 'thingsboard.cloud'));
    for (const host of ['', '   ', 'https://thingsboard.cloud', 'thingsboard.cloud/api', 'a b']) {
      assert.ok(!valid(config, 'host', host), host);
    }
    for (const property of ['mqttPort', 'httpPort', 'coapPort']) {
      for (const port of [1, 1883, '8080', 65535, '${TB_PORT}'])
        assert.ok(valid(config, property, port), `${port}`);
      for (const port of [0, 65536, '', 'abc', 1.5, -1])
        assert.ok(!valid(config, property, port), `${port}`);
    }
  });

  it('refuses timeouts, retries and concurrency the runtime cannot use', function () {
    for (const v of [1, '10', 2.5]) assert.ok(valid(provision, 'timeout', v), `${v}`);
    for (const v of [0, 0.5, '', 'x']) assert.ok(!valid(provision, 'timeout', v), `${v}`);
    for (const v of [0, '2', 10]) assert.ok(valid(provision, 'retries', v), `${v}`);
    for (const v of [-1, 1.5, '']) assert.ok(!valid(provision, 'retries', v), `${v}`);
    for (const v of [1, '8']) assert.ok(valid(provision, 'concurrency', v), `${v}`);
    for (const v of [0, 2.5, '']) assert.ok(!valid(provision, 'concurrency', v), `${v}`);
  });

  it('refuses an empty fixed device name', function () {
    assert.ok(valid(provision, 'deviceName', 'sensor-1', { deviceNameType: 'str' }));
    assert.ok(!valid(provision, 'deviceName', '  ', { deviceNameType: 'str' }));
    assert.ok(valid(provision, 'deviceName', 'deviceName', { deviceNameType: 'msg' }));
  });

  it('labels nodes from the catalog', function () {
    assert.equal(config.label.call({ name: '', host: 'tb.example' }), 'tb.example');
    assert.equal(config.label.call({ name: 'Plant', host: 'tb.example' }), 'Plant');
    assert.equal(
      config.label.call({ name: '', host: '' }),
      english.get('thingsboard-provision-config.label.unnamed'),
    );
    assert.equal(provision.label.call({ name: 'mine' }), 'mine');
    assert.equal(
      provision.label.call({ name: '', deviceName: 'pump-7', deviceNameType: 'str' }),
      render('thingsboard-provision.nodeLabel.device', { device: 'pump-7' }),
    );
    assert.equal(
      provision.label.call({ name: '', deviceName: 'deviceName', deviceNameType: 'msg' }),
      english.get('thingsboard-provision.nodeLabel.default'),
    );
    assert.equal(typeof provision.paletteLabel, 'function');
    assert.equal(
      (provision.paletteLabel as () => string)(),
      english.get('thingsboard-provision.paletteLabel'),
    );
    assert.equal(provision.inputLabels?.(), english.get('thingsboard-provision.ports.input'));
    assert.equal(provision.outputLabels?.(), english.get('thingsboard-provision.ports.output'));
  });

  it('ships the icon it names', function () {
    assert.ok(provision.icon);
    const icon = fs.readFileSync(
      path.join(nodeOf('thingsboard-provision').sourceDir, 'icons', provision.icon),
      'utf8',
    );
    assert.match(icon, /^<svg [^>]*viewBox="0 0 40 60"/);
    checkMarkup(icon, 'icon');
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
  'thingsboard-provision-config': ['tls'],
  'mqtt out': ['broker'],
  'mqtt in': ['broker'],
  'mqtt-broker': ['tls'],
  'http request': ['tls', 'proxy'],
};

describe('examples', function () {
  const files = fs
    .readdirSync(examplesDir)
    .filter((f) => f.endsWith('.json'))
    .sort();
  const servers = new Map<string, string>();

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
      const provisions = flow.filter((n) => n.type === 'thingsboard-provision');
      assert.ok(provisions.length >= 1);
      const { definitions } = loadEditors();
      const contract = Object.keys(
        (definitions.get('thingsboard-provision') as NodeDefinition).defaults,
      );
      for (const node of provisions) {
        for (const property of contract)
          assert.ok(property in node, `${node.id} lacks ${property}`);
      }
      const configs = flow.filter((n) => n.type === 'thingsboard-provision-config');
      assert.equal(configs.length, 1);
      const [server] = configs;
      servers.set(file, JSON.stringify(server));
    });
  }

  it('share one server configuration, so importing several adds it once', function () {
    assert.equal(new Set(servers.values()).size, 1);
    const server = JSON.parse([...servers.values()][0]) as FlowNode;
    assert.equal(server.host, '127.0.0.1');
  });
});
