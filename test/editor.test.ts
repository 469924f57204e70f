import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  NODE_TYPES,
  attribute,
  checkMarkup,
  editors,
  english,
  loadEditors,
  nodeOf,
  render,
  type NodeDefinition,
} from './support/editor-files';

/** Each node type's editor: its template, its catalog keys, its defaults, validators and labels. */

function i18nKeysOf(html: string): string[] {
  const keys: string[] = [];
  for (const m of html.matchAll(/data-i18n="([^"]+)"/g)) {
    for (const part of m[1].split(';')) keys.push(part.replace(/^\[[^\]]+\]/, '').trim());
  }
  return keys;
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
      store: 'file',
      redisUrl: 'redis://127.0.0.1:6379/0',
      redisPrefix: 'tb-provision:',
      redisTls: undefined,
    });
    for (const property of ['tls', 'redisTls']) {
      assert.equal(config.defaults[property].type, 'tls-config');
      assert.equal(config.defaults[property].required, false);
    }
    assert.deepEqual(JSON.parse(JSON.stringify(config.credentials)), {
      provisionDeviceKey: { type: 'text' },
      provisionDeviceSecret: { type: 'password' },
      redisPassword: { type: 'password' },
    });
  });

  it('offers the credential stores of the contract and shows the Redis fields for Redis only', function () {
    const store = element('#node-config-input-store');
    const before = store.children.length;
    config.oneditprepare?.call({ store: 'redis' });
    assert.deepEqual(
      store.children.slice(before).map((option) => [option.attributes.get('value'), option.label]),
      ['file', 'redis'].map((name) => [
        name,
        english.get(`thingsboard-provision-config.store.${name}`),
      ]),
    );
    assert.equal(store.val(), 'redis');
    const redisRows = element('#node-config-redis');
    const tlsRow = element('#node-config-row-redisTls');
    const url = element('#node-config-input-redisUrl');
    url.val('redis://10.0.0.5:6379/0').trigger('change');
    assert.ok(!redisRows.classes.has('hide'));
    assert.ok(tlsRow.classes.has('hide'), 'a TLS configuration only for rediss://');
    url.val('rediss://redis.example:6380/0').trigger('keyup');
    assert.ok(!tlsRow.classes.has('hide'));
    store.val('file').trigger('change');
    assert.ok(redisRows.classes.has('hide'));
    // Saved with redis:// the TLS configuration is dropped: the runtime would refuse it.
    element('#node-config-input-redisTls').val('tls-node');
    url.val('redis://10.0.0.5:6379/0');
    config.oneditsave?.call({});
    assert.equal(element('#node-config-input-redisTls').val(), '');
  });

  it('refuses a Redis URL with a password in it, or one that is not redis:// or rediss://', function () {
    for (const url of [
      'redis://127.0.0.1:6379/0',
      'rediss://redis.example:6380/2',
      'redis://user@redis.example:6379',
      'redis://127.0.0.1:6379/0?wait=1&waitTimeout=500',
      '${REDIS_URL}',
    ]) {
      assert.ok(valid(config, 'redisUrl', url), url);
    }
    for (const url of ['', 'http://127.0.0.1:6379', 'redis://', '127.0.0.1:6379', 'redis://a b']) {
      assert.ok(!valid(config, 'redisUrl', url), url);
    }
    const refusal = config.defaults.redisUrl.validate?.call({}, 'redis://:hunter2@127.0.0.1/0', {});
    assert.equal(refusal, render('thingsboard-provision-config.errors.redisUrlPassword', {}));
    assert.ok(!valid(config, 'redisUrl', 'redis://user:hunter2@127.0.0.1/0'));
    assert.ok(valid(config, 'redisPrefix', 'plant-7:'));
    for (const prefix of ['', 'two words']) assert.ok(!valid(config, 'redisPrefix', prefix));
  });

  it('takes a server saved before the Redis fields existed as it is: the runtime uses the defaults', function () {
    assert.ok(valid(config, 'redisUrl', undefined));
    assert.ok(valid(config, 'redisPrefix', undefined));
    // Its dialog opens with the defaults filled in, so saving it keeps a valid server.
    element('#node-config-input-redisUrl').val('');
    element('#node-config-input-redisPrefix').val('');
    config.oneditprepare?.call({ store: 'file' });
    assert.equal(element('#node-config-input-redisUrl').val(), 'redis://127.0.0.1:6379/0');
    assert.equal(element('#node-config-input-redisPrefix').val(), 'tb-provision:');
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
    assert.match(configHtml, /<input type="password" id="node-config-input-redisPassword"/);
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
