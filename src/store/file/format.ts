/**
 * The file backend's format, in `<userDir>/thingsboard-provision/` (folder 0700, files 0600):
 *   credentials.json              the snapshot: every entry, and the journals up to its `sequence`
 *   credentials.json.journal-<n>  entries written since: a header line, then one entry per line
 */
import fs from 'node:fs';
import path from 'node:path';
import { isRecord, isStoredEntry } from '../entry';
import type { StoredEntry } from '../types';

export const STORE_FORMAT = 'thingsboard-provision-credentials';
export const STORE_VERSION = 1;
export const PACKAGE_NAME = 'node-red-contrib-thingsboard-provision';

let ownVersion: string | undefined;

/** This package's version, written into every header so that a reader can name the writer. */
export function packageVersion(): string {
  if (ownVersion === undefined) {
    // src/store/file or nodes/store/file: the package's root is three folders up either way.
    const manifest = path.join(__dirname, '..', '..', '..', 'package.json');
    try {
      const parsed = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { version?: unknown };
      ownVersion = typeof parsed.version === 'string' ? parsed.version : 'unknown';
    } catch {
      ownVersion = 'unknown';
    }
  }
  return ownVersion;
}

/** A file in a format this version cannot read: never moved aside, never overwritten. */
export interface NewerFormat {
  newer: { formatVersion: number; packageVersion?: string };
}

export type FileKind = 'snapshot' | 'journal';

export interface SnapshotFile {
  format: typeof STORE_FORMAT;
  version: number;
  kind: 'snapshot';
  sequence: number;
  entries: StoredEntry[];
}

/** Why a snapshot's or journal's header cannot be used, or undefined when it can. */
function headerProblem(parsed: unknown, kind: FileKind): string | NewerFormat | undefined {
  if (!isRecord(parsed) || parsed.format !== STORE_FORMAT) return 'not a credentials file';
  if (typeof parsed.version !== 'number') return 'no format version';
  if (Number.isSafeInteger(parsed.version) && parsed.version > STORE_VERSION) {
    const writer = parsed.packageVersion;
    return {
      newer: {
        formatVersion: parsed.version,
        ...(typeof writer === 'string' ? { packageVersion: writer.slice(0, 64) } : {}),
      },
    };
  }
  if (parsed.version !== STORE_VERSION) return `unknown format version ${parsed.version}`;
  if (parsed.kind !== kind) return `expected a ${kind}`;
  if (!Number.isSafeInteger(parsed.sequence) || (parsed.sequence as number) < 0) {
    return 'bad sequence number';
  }
  return undefined;
}

/** A snapshot's content, or why it cannot be used. */
export function parseSnapshot(text: string): SnapshotFile | NewerFormat | { problem: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { problem: 'not valid JSON' };
  }
  const problem = headerProblem(parsed, 'snapshot');
  if (typeof problem === 'object') return problem;
  if (problem !== undefined) return { problem };
  const { entries } = parsed as Record<string, unknown>;
  if (!Array.isArray(entries)) return { problem: 'no entry list' };
  const bad = entries.findIndex((entry) => !isStoredEntry(entry));
  if (bad !== -1) return { problem: `entry ${bad} has the wrong shape` };
  return parsed as SnapshotFile;
}

/**
 * A journal's entries, or why it cannot be used. Text after the last newline is a commit torn by
 * a crash, never acknowledged: ignored. A journal whose header never became complete was never
 * acknowledged either: it holds nothing.
 */
export function parseJournal(
  text: string,
): { entries: StoredEntry[] } | NewerFormat | { problem: string } {
  const end = text.lastIndexOf('\n');
  if (end === -1) return { entries: [] };
  const lines = text.slice(0, end).split('\n');
  let header: unknown;
  try {
    header = JSON.parse(lines[0]);
  } catch {
    return { problem: 'not valid JSON in line 1' };
  }
  const problem = headerProblem(header, 'journal');
  if (typeof problem === 'object') return problem;
  if (problem !== undefined) return { problem };
  const entries: StoredEntry[] = [];
  for (let i = 1; i < lines.length; i++) {
    let entry: unknown;
    try {
      entry = JSON.parse(lines[i]);
    } catch {
      return { problem: `not valid JSON in line ${i + 1}` };
    }
    if (!isStoredEntry(entry)) return { problem: `line ${i + 1} has the wrong shape` };
    entries.push(entry);
  }
  return { entries };
}

function fileHeader(kind: FileKind, sequence: number): string {
  const writer = JSON.stringify(packageVersion());
  return `{"format":"${STORE_FORMAT}","version":${STORE_VERSION},"packageVersion":${writer},"kind":"${kind}","sequence":${sequence}`;
}

/** A new journal's first line. */
export function journalHeader(sequence: number): string {
  return `${fileHeader('journal', sequence)}}\n`;
}

/** One entry (its JSON text) per line: small diffs for people who look, and cheap to write. */
export function serializeSnapshot(sequence: number, lines: Iterable<string>): string {
  const all = [...lines];
  const head = `${fileHeader('snapshot', sequence)},"entries":[`;
  return all.length === 0 ? `${head}]}\n` : `${head}\n${all.join(',\n')}\n]}\n`;
}

/** Entry lines for a journal, each ending in a newline: a line is complete or torn. */
export function journalLines(lines: Iterable<string>): string {
  let text = '';
  for (const line of lines) text += `${line}\n`;
  return text;
}

export function journalName(base: string, sequence: number): string {
  return `${base}.journal-${sequence}`;
}

export function journalPattern(base: string): RegExp {
  return new RegExp(`^${escapeRegExp(base)}\\.journal-(\\d+)$`);
}

export function tempPrefix(base: string): string {
  return `${base}.tmp-`;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
