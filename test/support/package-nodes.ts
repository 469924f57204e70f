import fs from 'node:fs';
import path from 'node:path';

/** The package's root in this checkout. */
export const ROOT = path.resolve(__dirname, '..', '..');

/** One node type of the package, as package.json's node-red.nodes registers it. */
export interface PackageNode {
  /** The node type, also the name of its node set: the namespace of its catalog. */
  type: string;
  /** The compiled runtime module as shipped (nodes/nodes/<type>/<type>.js). */
  runtime: string;
  /** The folder beside the runtime where Node-RED looks for its editor, catalogs and icons. */
  shippedDir: string;
  /** Its source folder (src/nodes/<type>/). */
  sourceDir: string;
  /** The base name runtime, editor file, catalogs and help share. */
  base: string;
}

/** The node types package.json registers, in its order, for a checkout or an installed copy. */
export function packageNodes(packageDir = ROOT): PackageNode[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as {
    'node-red': { nodes: Record<string, string> };
  };
  return Object.entries(pkg['node-red'].nodes).map(([type, file]) => ({
    type,
    runtime: path.join(packageDir, file),
    shippedDir: path.join(packageDir, path.dirname(file)),
    sourceDir: path.join(packageDir, 'src', path.relative('nodes', path.dirname(file))),
    base: path.basename(file, '.js'),
  }));
}

/** The editor file of a node type, in its source or shipped folder. */
export function editorFile(node: PackageNode, dir = node.sourceDir): string {
  return path.join(dir, `${node.base}.html`);
}

/** A node type's message catalog in one language, namespaced by Node-RED under its type. */
export function catalogFile(node: PackageNode, lang: string, dir = node.sourceDir): string {
  return path.join(dir, 'locales', lang, `${node.base}.json`);
}

/** A node type's help in one language. */
export function helpFile(node: PackageNode, lang: string, dir = node.sourceDir): string {
  return path.join(dir, 'locales', lang, `${node.base}.html`);
}

interface NodeSetting {
  value?: unknown;
  exportable?: boolean;
}

/**
 * What the editor finds in RED.settings from the package: the exportable settings each node type
 * registers from its source runtime, under a name Node-RED accepts (prefixed by the camel-cased
 * type), as JSON carries them.
 */
export function editorSettings(): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const node of packageNodes()) {
    const register = require(path.join(node.sourceDir, node.base)) as (RED: unknown) => void;
    register({
      nodes: {
        registerType(type: string, _constructor: unknown, options?: { settings?: object }) {
          const prefix = type.replace(/[^a-zA-Z0-9]+(.)/g, (_, c: string) => c.toUpperCase());
          for (const [name, setting] of Object.entries(options?.settings ?? {})) {
            if (!name.startsWith(prefix))
              throw new Error(`${type}: setting ${name} lacks ${prefix}`);
            const { value, exportable } = setting as NodeSetting;
            if (exportable) settings[name] = JSON.parse(JSON.stringify(value)) as unknown;
          }
        },
        createNode() {},
        getNode() {},
      },
      settings: {},
      util: {},
      _: (key: string) => key,
      log: {},
    });
  }
  return settings;
}
