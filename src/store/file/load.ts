/**
 * Reading the file backend at start: the snapshot, then every newer journal in order. A file that
 * does not parse or has the wrong shape (other than a torn journal tail) is moved aside to
 * `<name>.damaged-<time>` and reported, never overwritten. A file in a newer format stops the
 * load: it is whole, only this version cannot read it.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { keyOf } from '../entry';
import { StoreUnavailableError } from '../errors';
import type { DeviceKey, StoreWarningListener, StoredEntry } from '../types';
import {
  PACKAGE_NAME,
  STORE_VERSION,
  journalName,
  journalPattern,
  packageVersion,
  parseJournal,
  parseSnapshot,
  tempPrefix,
  type NewerFormat,
} from './format';

export interface LoadedFiles {
  /** Every entry as the JSON text it is written as, by device. */
  entries: Map<DeviceKey, string>;
  snapshotSequence: number;
  snapshotBytes: number;
  /** Journals on disk that the snapshot does not hold yet: sequence → bytes. */
  journals: Map<number, number>;
  nextJournal: number;
  directoryExists: boolean;
}

export async function loadFiles(
  filePath: string,
  warn: StoreWarningListener,
): Promise<LoadedFiles> {
  const dir = path.dirname(filePath);
  const base = path.basename(filePath);
  const loaded: LoadedFiles = {
    entries: new Map(),
    snapshotSequence: 0,
    snapshotBytes: 0,
    journals: new Map(),
    nextJournal: 1,
    directoryExists: false,
  };
  const apply = (entries: StoredEntry[]): void => {
    for (const entry of entries) loaded.entries.set(keyOf(entry), JSON.stringify(entry));
  };
  let names: string[];
  try {
    names = await fs.readdir(dir);
    loaded.directoryExists = true;
  } catch (err) {
    // Missing folder, or a path through a file: nothing stored yet (writing will say why not).
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    names = [];
  }
  const isJournal = journalPattern(base);
  const temp = tempPrefix(base);
  const found: number[] = [];
  for (const name of names) {
    const match = isJournal.exec(name);
    if (match) found.push(Number(match[1]));
    // Never renamed, so never acknowledged: left by a crash mid-write.
    else if (name.startsWith(temp)) await fs.rm(path.join(dir, name), { force: true });
  }
  found.sort((a, b) => a - b);

  const snapshot = names.includes(base) ? await readSnapshot(filePath, warn) : undefined;
  if (snapshot) {
    loaded.snapshotSequence = snapshot.sequence;
    loaded.snapshotBytes = snapshot.bytes;
    apply(snapshot.entries);
  }
  let highest = loaded.snapshotSequence;
  for (const sequence of found) {
    highest = Math.max(highest, sequence);
    const full = path.join(dir, journalName(base, sequence));
    // Folded into the snapshot already: a crash came between its rename and their removal.
    if (sequence <= loaded.snapshotSequence) {
      await fs.rm(full, { force: true });
      continue;
    }
    const journal = await readJournal(full, warn);
    if (!journal) continue;
    loaded.journals.set(sequence, journal.bytes);
    apply(journal.entries);
  }
  loaded.nextJournal = highest + 1;
  return loaded;
}

/** A file's text, or undefined when it is gone. */
async function readText(full: string): Promise<string | undefined> {
  try {
    return await fs.readFile(full, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The snapshot, or undefined when it was damaged (then moved aside and reported). */
async function readSnapshot(
  full: string,
  warn: StoreWarningListener,
): Promise<{ sequence: number; entries: StoredEntry[]; bytes: number } | undefined> {
  const text = await readText(full);
  if (text === undefined) return undefined;
  const snapshot = parseSnapshot(text);
  if ('newer' in snapshot) throw newerFormat(full, snapshot);
  if ('problem' in snapshot) return damaged(full, snapshot.problem, warn);
  return { sequence: snapshot.sequence, entries: snapshot.entries, bytes: Buffer.byteLength(text) };
}

/** A journal's complete entries, or undefined when it was damaged (moved aside, reported). */
async function readJournal(
  full: string,
  warn: StoreWarningListener,
): Promise<{ entries: StoredEntry[]; bytes: number } | undefined> {
  const text = await readText(full);
  if (text === undefined) return undefined;
  const journal = parseJournal(text);
  if ('newer' in journal) throw newerFormat(full, journal);
  if ('problem' in journal) return damaged(full, journal.problem, warn);
  return { entries: journal.entries, bytes: Buffer.byteLength(text) };
}

function newerFormat(full: string, { newer }: NewerFormat): StoreUnavailableError {
  const writer = newer.packageVersion;
  return new StoreUnavailableError(
    'newerVersion',
    `The credentials file ${full} was written by ${PACKAGE_NAME} ` +
      `${writer === undefined ? '(a newer version)' : writer} in store format ` +
      `${newer.formatVersion}; this is version ${packageVersion()}, which reads format ` +
      `${STORE_VERSION} only. The file was left as it is, and nothing is provisioned with this ` +
      `store until ${writer === undefined ? 'that version' : `version ${writer}`} or a later one ` +
      'is installed again.',
  );
}

async function damaged(
  full: string,
  problem: string,
  warn: StoreWarningListener,
): Promise<undefined> {
  const aside = await moveAside(full);
  warn(
    `The credentials file ${full} is damaged (${problem}). It was moved to ${aside} and ` +
      'left untouched; credentials it held are no longer used until restored from it.',
    { kind: 'damaged', file: full, movedTo: aside, problem },
  );
  return undefined;
}

async function moveAside(full: string): Promise<string> {
  const stamp = fileNameStamp(new Date());
  for (let n = 0; ; n++) {
    const aside = `${full}.damaged-${stamp}${n === 0 ? '' : `-${n}`}`;
    try {
      await fs.access(aside);
      continue;
    } catch {
      // Free: nothing is overwritten.
    }
    await fs.rename(full, aside);
    return aside;
  }
}

function fileNameStamp(date: Date): string {
  // ISO-8601 with ':' replaced, since Windows forbids it in file names.
  return date.toISOString().replace(/:/g, '-');
}
