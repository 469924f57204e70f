import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { fakeJquery, type FakeElement } from './fake-jquery';
import {
  catalogFile,
  editorFile,
  editorSettings,
  packageNodes,
  type PackageNode,
} from './package-nodes';

/**
 * What a user sees before any message flows, as the Node-RED editor reads it: each node type's
 * catalogs, its editor file and the shared editor resources, run against a stand-in editor API.
 */

const root = path.resolve(__dirname, '..', '..');
export const LANGUAGES = ['en-US', 'ja', 'zh-CN'] as const;
export const NODES = packageNodes();
export const NODE_TYPES = NODES.map((node) => node.type);

export type Catalog = Record<string, unknown>;

export function readCatalog(node: PackageNode, lang: string): Catalog {
  return JSON.parse(fs.readFileSync(catalogFile(node, lang), 'utf8')) as Catalog;
}

export function nodeOf(type: string): PackageNode {
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
export const catalogs = new Map(
  LANGUAGES.map((lang) => [
    lang,
    new Map(NODES.flatMap((node) => [...flatten(readCatalog(node, lang))])),
  ]),
);
export const english = catalogs.get('en-US') as Map<string, string>;

/** Node-RED's i18n substitution, enough to render a catalog entry. */
export function render(key: string, options?: Record<string, unknown>): string {
  const text = english.get(key);
  if (text === undefined) return key;
  return text.replace(/__([A-Za-z0-9]+)__/g, (_, name: string) => String(options?.[name] ?? ''));
}

const VOID_ELEMENTS = new Set(['input', 'br', 'hr', 'img', 'meta', 'link', 'wbr', 'source']);

export interface ScriptBlock {
  attributes: string;
  body: string;
}

/** Checks that elements nest, returns the <script> blocks for a closer look. */
export function checkMarkup(html: string, where: string): ScriptBlock[] {
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

export function attribute(attributes: string, name: string): string | undefined {
  return new RegExp(`\\b${name}="([^"]*)"`).exec(attributes)?.[1];
}

export interface NodeDefinition {
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
export const editors = new Map(
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

export interface LoadedEditors {
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
export function loadEditors(): LoadedEditors {
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
