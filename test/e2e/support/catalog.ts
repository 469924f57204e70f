import assert from 'node:assert/strict';
import fs from 'node:fs';
import { catalogFile, helpFile, packageNodes } from '../../support/package-nodes';

/** The message catalogs and help of every node type as shipped in the installed package. */
export class ShippedCatalog {
  private readonly messages: Record<string, unknown> = {};
  private readonly help: string;

  constructor(
    packageDir: string,
    readonly lang: string,
  ) {
    const nodes = packageNodes(packageDir);
    // Each catalog holds one top-level entry, its node type: merged, every key stays distinct.
    for (const node of nodes) {
      const file = catalogFile(node, lang, node.shippedDir);
      Object.assign(this.messages, JSON.parse(fs.readFileSync(file, 'utf8')) as object);
    }
    this.help = nodes
      .map((node) => fs.readFileSync(helpFile(node, lang, node.shippedDir), 'utf8'))
      .join('\n');
  }

  /** A catalog entry; fails when it is missing, so a dropped entry fails the test that uses it. */
  text(key: string): string {
    let value: unknown = this.messages;
    for (const part of key.split('.')) value = (value as Record<string, unknown>)?.[part];
    assert.equal(typeof value, 'string', `${this.lang} catalog has no entry ${key}`);
    assert.ok((value as string).trim() !== '', `${this.lang} catalog entry ${key} is empty`);
    return value as string;
  }

  /** The first paragraph of a node's help, as plain text with single spaces. */
  helpOpening(type: string): string {
    const block = new RegExp(
      `<script[^>]*data-help-name="${type}"[^>]*>([\\s\\S]*?)</script>`,
    ).exec(this.help);
    assert.ok(block, `${this.lang} help has no entry for ${type}`);
    const paragraph = /<p>([\s\S]*?)<\/p>/.exec(block[1]);
    assert.ok(paragraph, `${this.lang} help for ${type} has no paragraph`);
    const text = plain(paragraph[1]);
    assert.ok(text.length > 20, `${this.lang} help for ${type} is too short: "${text}"`);
    return text;
  }
}

/** Text without tags or entities, whitespace collapsed, as a browser's innerText reads it. */
export function plain(html: string): string {
  return html
    .replace(/<[^>]+>/g, '')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ')
    .trim();
}

/** Text with its whitespace collapsed, as compared with what the page shows. */
export function squash(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

const JAPANESE = /[\u3040-\u30ff\u4e00-\u9fff]/;

export function assertJapanese(text: string, what: string): void {
  assert.match(text, JAPANESE, `${what} is not Japanese: "${text}"`);
}
