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
