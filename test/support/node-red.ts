import fs from 'node:fs';
import path from 'node:path';
import helper from 'node-red-node-test-helper';
import { catalogFile, packageNodes } from './package-nodes';

/**
 * The Node-RED runtime under test: Node-RED 4.x from devDependencies, or the 5.x install that
 * scripts/node-red-5.js points at through TB_TEST_NODE_RED.
 */
const runtimeDir = process.env.TB_TEST_NODE_RED;
helper.init(require.resolve(runtimeDir ? path.join(runtimeDir, 'lib', 'red.js') : 'node-red'));

export { helper };

const nodes = packageNodes();
// Each node type's catalog holds one top-level entry, its type: merged, every key stays distinct.
const catalog = Object.assign(
  {},
  ...nodes.map(
    (node) =>
      JSON.parse(fs.readFileSync(catalogFile(node, 'en-US', node.shippedDir), 'utf8')) as object,
  ),
) as Record<string, unknown>;

/** The en-US text for a catalog key, with Node-RED's __name__ placeholders filled in. */
export function translate(key: string, params: Record<string, unknown> = {}): string {
  let value: unknown = catalog;
  for (const part of key.split('.')) {
    value = (value as Record<string, unknown> | undefined)?.[part];
  }
  if (typeof value !== 'string') return key;
  return value.replace(/__(\w+)__/g, (whole, name: string) =>
    name in params ? String(params[name]) : whole,
  );
}

type NodeModule = (RED: Record<string, unknown>) => void;

/**
 * The package's node modules as they ship (built into nodes/), one per node type. The test
 * helper's RED._ returns bare keys, so messages are translated here from the shipped en-US catalogs
 * to test what users read.
 */
export const packageNodeModules: NodeModule[] = nodes.map((node) => (RED) => {
  RED._ = translate;
  (require(node.runtime) as NodeModule)(RED);
});

// The test helper loads its catch, status and complete modules once per such node of a flow, and
// Node-RED refuses a type registered twice: each registers once per loaded runtime here.
const registeringOnce = new Map<NodeModule, NodeModule>();
const helperModules =
  (helper as unknown as { _nodeModules?: Record<string, NodeModule> })._nodeModules ?? {};
for (const [type, module] of Object.entries(helperModules)) {
  const registeredIn = new WeakSet<object>();
  const once: NodeModule = (RED) => {
    if (registeredIn.has(RED)) return;
    registeredIn.add(RED);
    module(RED);
  };
  helperModules[type] = once;
  registeringOnce.set(module, once);
}

/** The core mqtt nodes, for chaining tests. */
export function coreNodeModule(relative: string): NodeModule {
  const base = runtimeDir
    ? path.join(runtimeDir, '..', '@node-red', 'nodes')
    : path.dirname(require.resolve('@node-red/nodes/package.json'));
  const module = require(path.join(base, relative)) as NodeModule;
  // The same function as the helper's, so the helper does not load the module a second time.
  return registeringOnce.get(module) ?? module;
}

/** Calls of a Node method (status, warn, error, ...) on one node, as the test helper reports them. */
export function onCall(
  node: ReturnType<typeof helper.getNode>,
  method: string,
  listener: (args: unknown[]) => void,
): void {
  const emitter = node as unknown as {
    on(event: string, fn: (call: { args: unknown[] }) => void): void;
  };
  emitter.on(`call:${method}`, (call) => listener(call.args));
}
