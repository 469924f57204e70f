import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  NODE_TYPES,
  editors,
  english,
  loadEditors,
  nodeOf,
  render,
  type NodeDefinition,
} from './support/editor-files';

/** The editors of device out and device in, and what every node type's dialog has in common. */

const OUT = 'thingsboard-device-out';
const IN = 'thingsboard-device-in';

function definition(type: string, loaded = loadEditors()): NodeDefinition {
  const def = loaded.definitions.get(type);
  assert.ok(def, `${type} is not registered`);
  return def;
}

function defaultsOf(def: NodeDefinition): Record<string, unknown> {
  return Object.fromEntries(Object.entries(def.defaults).map(([k, d]) => [k, d.value]));
}

function valid(def: NodeDefinition, property: string, value: unknown, node = {}): boolean {
  const validate = def.defaults[property].validate;
  assert.ok(validate, `${property} has no validator`);
  const result = validate.call(node, value, {});
  if (result !== true) assert.equal(typeof result, 'string', `${property}: reason for refusing`);
  return result === true;
}

/** The values of a select's <option> elements written in the template, with their labels. */
function staticOptions(type: string, id: string): Array<[string, string | undefined]> {
  const html = editors.get(type) as string;
  const select = new RegExp(`<select id="${id}"[^>]*>([\\s\\S]*?)</select>`).exec(html);
  assert.ok(select, `${type}: no select ${id}`);
  return [...select[1].matchAll(/<option value="([^"]*)" data-i18n="([^"]+)">/g)].map((m) => [
    m[1],
    english.get(m[2]),
  ]);
}

describe('editor: device nodes', function () {
  it('declares the device out properties of the contract', function () {
    const out = definition(OUT);
    assert.equal(out.category, 'thingsboard');
    assert.equal(out.inputs, 1);
    assert.equal(out.outputs, 1);
    assert.deepEqual(defaultsOf(out), {
      name: '',
      config: undefined,
      via: 'device',
      transport: 'mqtt',
      gateway: '',
      deviceName: 'deviceName',
      deviceNameType: 'msg',
      deviceType: 'default',
      kind: 'telemetry',
      provision: true,
      qos: 1,
      timeout: 10,
    });
    assert.equal(out.defaults.config.type, 'thingsboard-provision-config');
    assert.equal(out.defaults.config.required, true);
  });

  it('declares the device in properties of the contract', function () {
    const din = definition(IN);
    assert.equal(din.category, 'thingsboard');
    assert.equal(din.inputs, 0);
    assert.equal(din.outputs, 1);
    assert.deepEqual(defaultsOf(din), { name: '', config: undefined, via: 'device', gateway: '' });
    assert.equal(din.defaults.config.type, 'thingsboard-provision-config');
  });

  it('has an input node-input-<property> for every property of both', function () {
    for (const type of [OUT, IN]) {
      for (const property of Object.keys(definition(type).defaults)) {
        assert.match(
          editors.get(type) as string,
          new RegExp(`id="node-input-${property}"`),
          property,
        );
      }
    }
  });

  it('offers the choices of the contract, labelled from the catalog', function () {
    const label = (key: string) => english.get(key);
    for (const type of [OUT, IN]) {
      assert.deepEqual(staticOptions(type, 'node-input-via'), [
        ['device', label(`${type}.via.device`)],
        ['gateway', label(`${type}.via.gateway`)],
      ]);
    }
    assert.deepEqual(staticOptions(OUT, 'node-input-kind'), [
      ['telemetry', 'telemetry'],
      ['attributes', 'client attributes'],
    ]);
    assert.deepEqual(
      staticOptions(OUT, 'node-input-qos').map(([value]) => value),
      ['0', '1'],
    );
    const loaded = loadEditors();
    definition(OUT, loaded).oneditprepare?.call({
      ...defaultsOf(definition(OUT, loaded)),
      transport: 'coap',
    });
    const transport = loaded.element('#node-input-transport');
    assert.deepEqual(
      transport.children.map((option) => [option.attributes.get('value'), option.label]),
      ['mqtt', 'http', 'coap'].map((t) => [t, label(`${OUT}.transport.${t}`)]),
    );
    assert.equal(transport.val(), 'coap');
    assert.equal(loaded.element('#node-input-qos').val(), '1');
  });

  it('shows the gateway rows only through a gateway, and QoS only where MQTT carries it', function () {
    const loaded = loadEditors();
    const out = definition(OUT, loaded);
    out.oneditprepare?.call({ ...defaultsOf(out) });
    const hidden = (id: string) => loaded.element(`#${id}`).classes.has('hide');
    assert.ok(hidden('node-row-gateway') && hidden('node-row-deviceType'));
    assert.ok(!hidden('node-row-transport') && !hidden('node-row-qos'));
    loaded.element('#node-input-transport').val('http').trigger('change');
    assert.ok(hidden('node-row-qos'), 'no QoS over HTTP');
    loaded.element('#node-input-transport').val('mqtt').trigger('change');
    assert.ok(!hidden('node-row-qos') && hidden('node-row-tip-gateway'));
    loaded.element('#node-input-via').val('gateway').trigger('change');
    assert.ok(!hidden('node-row-gateway') && !hidden('node-row-deviceType'));
    assert.ok(!hidden('node-row-tip-gateway'));
    assert.ok(hidden('node-row-transport'), 'a gateway is always MQTT');
    assert.ok(hidden('node-row-qos'), 'a gateway always publishes at QoS 1');
  });

  it('says device in is MQTT only', function () {
    assert.match(editors.get(IN) as string, /data-i18n="thingsboard-device-in\.tip\.mqttOnly"/);
    assert.match(english.get(`${IN}.tip.mqttOnly`) ?? '', /^MQTT only/);
  });

  it('refuses what the runtime cannot use', function () {
    const loaded = loadEditors();
    const out = definition(OUT, loaded);
    assert.ok(valid(out, 'gateway', '', { via: 'device' }));
    assert.ok(!valid(out, 'gateway', ' ', { via: 'gateway' }));
    assert.ok(valid(out, 'gateway', 'gw-1', { via: 'gateway' }));
    assert.ok(!valid(definition(IN, loaded), 'gateway', '', { via: 'gateway' }));
    assert.ok(!valid(out, 'deviceName', '  ', { deviceNameType: 'str' }));
    assert.ok(valid(out, 'deviceName', 'pump-1', { deviceNameType: 'str' }));
    for (const v of [1, '10', 2.5, '${TB_TIMEOUT}']) assert.ok(valid(out, 'timeout', v), `${v}`);
    for (const v of [0, 0.5, '', 'x']) assert.ok(!valid(out, 'timeout', v), `${v}`);
  });

  it('labels the nodes from the catalog', function () {
    const out = definition(OUT);
    const din = definition(IN);
    assert.equal((out.paletteLabel as () => string)(), 'device out');
    assert.equal((din.paletteLabel as () => string)(), 'device in');
    assert.equal(out.label.call({ name: 'mine' }), 'mine');
    assert.equal(
      out.label.call({ name: '', deviceName: 'pump-7', deviceNameType: 'str' }),
      render(`${OUT}.nodeLabel.device`, { device: 'pump-7' }),
    );
    assert.equal(
      out.label.call({ name: '', deviceNameType: 'msg' }),
      english.get(`${OUT}.nodeLabel.default`),
    );
    assert.equal(din.label.call({ name: '' }), english.get(`${IN}.nodeLabel.default`));
    assert.equal(out.inputLabels?.(), english.get(`${OUT}.ports.input`));
    assert.equal(out.outputLabels?.(), english.get(`${OUT}.ports.output`));
    assert.equal(din.outputLabels?.(), english.get(`${IN}.ports.output`));
  });

  it('ships the icons it names', function () {
    for (const type of [OUT, IN]) {
      const icon = definition(type).icon;
      assert.ok(icon);
      const svg = fs.readFileSync(path.join(nodeOf(type).sourceDir, 'icons', icon), 'utf8');
      assert.match(svg, /^<svg [^>]*viewBox="0 0 40 60"/);
    }
  });

  it('gives every row of a dialog its own icon', function () {
    for (const type of NODE_TYPES) {
      const html = editors.get(type) as string;
      const icons = [...html.matchAll(/<label[^>]*><i class="fa (fa-[\w-]+)"><\/i>/g)].map(
        (m) => m[1],
      );
      assert.ok(icons.length > 2, type);
      assert.deepEqual(icons, [...new Set(icons)], `${type} repeats an icon`);
    }
  });
});
