/**
 * The durable credential store: what ThingsBoard answered, kept so a device is never orphaned.
 *
 * Layout, in `<userDir>/thingsboard-provision/` (folder 0700, files 0600):
 *   credentials.json              the snapshot: every entry, and the journals up to its `sequence`
 *   credentials.json.journal-<n>  entries written since: a header line, then one entry per line
 *
 * A group commit appends its entries to the open journal in one write, flushed to the disk (a
 * synchronized write on Linux, else a write and an fdatasync) before any of its puts resolves;
 * the journal's first commit creates the file and flushes the folder too. A crash can tear only
 * the commit being appended, which no put acknowledged: on loading, the text after a journal's
 * last newline is that torn commit and is ignored. A journal is never appended to again after a
 * restart or a failed write; the next commit starts a new one.
 *
 * The snapshot is written whole: new file, fsync, rename over the old one, fsync the folder, so a
 * crash leaves the old or the new one. It is rewritten once the journals outweigh it, which keeps
 * the bytes written linear in the entries, and when the last user releases the store, so a store
 * at rest is one file. A rewrite folds in the journals up to the one open when it starts; commits
 * go on meanwhile into a new journal, so outputs never wait for a snapshot (tens of milliseconds
 * at ten thousand devices, and growing with the store).
 *
 * Why a journal: the first design wrote a new file per commit (create, fsync, rename, fsync the
 * folder). Creating files made each commit cost 0.3-1 ms of disk calls, growing with the number of
 * files in the folder, where an append and a flush cost ~0.1 ms; bench/store.ts measures the two.
 *
 * A file that does not parse or has the wrong shape (other than a torn journal tail) is moved aside
 * to `<name>.damaged-<time>` and reported, never overwritten.
 *
 * One process-wide writer per file: openCredentialStore() hands every caller a handle on the same
 * core, so two provision nodes never lose each other's entries.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { CREDENTIALS_TYPES } from '../protocol/types';
import {
  appendDurably,
  closeJournals,
  removeFiles,
  syncFolder,
  writeFileDurably,
} from './durable-file';
import type { StoredEntry } from './types';

export const STORE_FORMAT = 'thingsboard-provision-credentials';
export const STORE_VERSION = 1;
/** Fold the journals into the snapshot once they hold more bytes than it, and at least this much. */
export const MIN_COMPACTION_BYTES = 64 * 1024;

export function defaultStorePath(userDir: string): string {
  return path.join(userDir, 'thingsboard-provision', 'credentials.json');
}

/** What went wrong, for callers that word it themselves (the node translates it). */
export type StoreWarning =
  | { kind: 'damaged'; file: string; movedTo: string; problem: string }
  | { kind: 'writeFailed'; file: string; error: string };

export interface CredentialStoreOptions {
  /** Told about damaged files moved aside and background snapshot failures. No secrets inside. */
  onWarning?: (message: string, warning: StoreWarning) => void;
}

export interface CredentialStoreStats {
  entries: number;
  /** Journal files currently on disk. */
  journals: number;
  /** Group commits written since this store was opened. */
  commits: number;
  /** Snapshots rewritten since this store was opened. */
  compactions: number;
}

export interface CredentialStore {
  /** Absolute path of the snapshot file. */
  readonly filePath: string;
  /** Resolves once the files are loaded; rejects when they cannot be read at all. */
  ready(): Promise<void>;
  /** The stored entry for this device (host compared case-insensitively). Only after ready(). */
  get(host: string, provisionDeviceKey: string, deviceName: string): StoredEntry | undefined;
  /** Resolves only once the entry is durable on disk; replaces an entry for the same device. */
  put(entry: StoredEntry): Promise<void>;
  /** Resolves once every put made before it has been written (or has failed). */
  flush(): Promise<void>;
  /** Drops this handle (idempotent) after flushing; the last one folds journals into the snapshot. */
  release(): Promise<void>;
  /** The same as release(). */
  close(): Promise<void>;
  stats(): CredentialStoreStats;
}

interface StoreFile {
  format: typeof STORE_FORMAT;
  version: number;
  kind: 'snapshot' | 'journal';
  sequence: number;
  entries: StoredEntry[];
}

function isString(value: unknown): value is string {
  return typeof value === 'string';
}

function isOptionalString(value: unknown): boolean {
  return value === undefined || typeof value === 'string';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function isStoredEntry(value: unknown): value is StoredEntry {
  if (!isRecord(value)) return false;
  const { host, provisionDeviceKey, deviceName, answer, generated, provisionedAt } = value;
  if (!isString(host) || !isString(provisionDeviceKey) || !isString(deviceName)) return false;
  if (!isString(provisionedAt)) return false;
  if (generated !== undefined) {
    if (!isRecord(generated)) return false;
    if (!isOptionalString(generated.certificate) || !isOptionalString(generated.privateKey)) {
      return false;
    }
  }
  if (!isRecord(answer) || answer.status !== 'SUCCESS') return false;
  const type = answer.credentialsType;
  if (!(CREDENTIALS_TYPES as readonly unknown[]).includes(type)) return false;
  if (type !== 'MQTT_BASIC') return isString(answer.credentialsValue);
  const basic = answer.credentialsValue;
  return (
    isRecord(basic) &&
    isOptionalString(basic.clientId) &&
    isOptionalString(basic.userName) &&
    isOptionalString(basic.password)
  );
}

function entryKey(host: string, provisionDeviceKey: string, deviceName: string): string {
  return JSON.stringify([host.trim().toLowerCase(), provisionDeviceKey, deviceName]);
}

/** Why a snapshot's or journal's header cannot be used, or undefined when it can. */
function headerProblem(parsed: unknown, kind: StoreFile['kind']): string | undefined {
  if (!isRecord(parsed) || parsed.format !== STORE_FORMAT) return 'not a credentials file';
  if (typeof parsed.version !== 'number') return 'no format version';
  if (parsed.version > STORE_VERSION) {
    return `format version ${parsed.version} was written by a newer version of this package`;
  }
  if (parsed.version !== STORE_VERSION) return `unknown format version ${parsed.version}`;
  if (parsed.kind !== kind) return `expected a ${kind}`;
  if (!Number.isSafeInteger(parsed.sequence) || (parsed.sequence as number) < 0) {
    return 'bad sequence number';
  }
  return undefined;
}

/** Why a snapshot's content cannot be used, or undefined when it can. */
function snapshotProblem(parsed: unknown): string | undefined {
  const problem = headerProblem(parsed, 'snapshot');
  if (problem !== undefined || !isRecord(parsed)) return problem;
  if (!Array.isArray(parsed.entries)) return 'no entry list';
  const bad = parsed.entries.findIndex((entry) => !isStoredEntry(entry));
  return bad === -1 ? undefined : `entry ${bad} has the wrong shape`;
}

/**
 * A journal's entries, or why it cannot be used. Text after the last newline is a commit torn by
 * a crash, never acknowledged: ignored. A journal whose header never became complete was never
 * acknowledged either: it holds nothing.
 */
function parseJournal(text: string): { entries: StoredEntry[] } | { problem: string } {
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

function fileHeader(kind: StoreFile['kind'], sequence: number): string {
  return `{"format":"${STORE_FORMAT}","version":${STORE_VERSION},"kind":"${kind}","sequence":${sequence}`;
}

/** One entry (its JSON text) per line: small diffs for people who look, and cheap to write. */
function serializeSnapshot(sequence: number, lines: Iterable<string>): string {
  const all = [...lines];
  const head = `${fileHeader('snapshot', sequence)},"entries":[`;
  return all.length === 0 ? `${head}]}\n` : `${head}\n${all.join(',\n')}\n]}\n`;
}

/** Entry lines for a journal, each ending in a newline: a line is complete or torn. */
function journalLines(lines: Iterable<string>): string {
  let text = '';
  for (const line of lines) text += `${line}\n`;
  return text;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function fileNameStamp(date: Date): string {
  // ISO-8601 with ':' replaced, since Windows forbids it in file names.
  return date.toISOString().replace(/:/g, '-');
}

interface PutWaiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

class StoreCore {
  readonly filePath: string;
  readonly dir: string;
  readonly base: string;
  refs = 0;
  readonly listeners: Array<NonNullable<CredentialStoreOptions['onWarning']>> = [];

  /**
   * Every entry as the JSON text it is written as, by device: serialised once, when put or
   * loaded, and parsed only when asked for. Strings also keep the garbage collector's work small.
   */
  private readonly entries = new Map<string, string>();
  private loaded = false;
  private readonly loading: Promise<void>;
  /** Entries put but not yet part of a written file, latest per device. */
  private dirty = new Map<string, string>();
  private waiters: PutWaiter[] = [];
  /** Entries whose write failed: written again with the next commit. */
  private unwritten = new Map<string, string>();
  private writing: Promise<void> | undefined;
  /** The snapshot rewrite under way, beside the commits. */
  private compacting: Promise<void> | undefined;
  private compactRequested = false;
  private compactionBlockedUntil = 0;

  private snapshotSequence = 0;
  private snapshotBytes = 0;
  /** Journals on disk that the snapshot does not hold yet: sequence → bytes. */
  private readonly journals = new Map<number, number>();
  /** The journal this process appends to, once its first commit created it. */
  private openJournal: number | undefined;
  private nextJournal = 1;
  private directoryExists = false;
  private tempCounter = 0;
  private commits = 0;
  private compactions = 0;

  constructor(filePath: string) {
    this.filePath = filePath;
    this.dir = path.dirname(filePath);
    this.base = path.basename(filePath);
    this.loading = this.load();
    // A failed load is reported through ready() and put(); never an unhandled rejection here.
    this.loading.catch(() => undefined);
  }

  ready(): Promise<void> {
    return this.loading;
  }

  get(host: string, provisionDeviceKey: string, deviceName: string): StoredEntry | undefined {
    if (!this.loaded)
      throw new Error('The credential store is not loaded yet: await ready() first');
    const line = this.entries.get(entryKey(host, provisionDeviceKey, deviceName));
    return line === undefined ? undefined : (JSON.parse(line) as StoredEntry);
  }

  put(entry: StoredEntry): Promise<void> {
    if (!isStoredEntry(entry)) {
      return Promise.reject(new TypeError('Not a storable credentials entry'));
    }
    if (!this.loaded) return this.loading.then(() => this.put(entry));
    const line = JSON.stringify(entry);
    const key = entryKey(entry.host, entry.provisionDeviceKey, entry.deviceName);
    this.entries.set(key, line);
    this.dirty.set(key, line);
    const durable = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.schedule();
    return durable;
  }

  /** Waits for the commits and the snapshot rewrite under way, and those they start. */
  async flush(): Promise<void> {
    await this.loading.catch(() => undefined);
    for (let busy = this.writing ?? this.compacting; busy; busy = this.writing ?? this.compacting) {
      await busy;
    }
  }

  /** Folds the journals into the snapshot, so a store at rest is one file. */
  async finish(): Promise<void> {
    await this.loading.catch(() => undefined);
    if (!this.loaded) return;
    // A rewrite under way leaves out the journal commits went to meanwhile: then one more.
    await this.flush();
    if (this.journals.size > 0) {
      this.compactRequested = true;
      this.schedule();
      await this.flush();
    }
    // The snapshot could not be written: the journal stays as it is, closed.
    if (this.openJournal !== undefined) {
      const open = path.join(this.dir, this.journalName(this.openJournal));
      this.openJournal = undefined;
      await closeJournals([open]).catch(() => undefined);
    }
  }

  stats(): CredentialStoreStats {
    return {
      entries: this.entries.size,
      journals: this.journals.size,
      commits: this.commits,
      compactions: this.compactions,
    };
  }

  private warn(message: string, warning: StoreWarning): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(message, warning);
      } catch {
        // A listener's failure must not break the store.
      }
    }
  }

  private journalName(sequence: number): string {
    return `${this.base}.journal-${sequence}`;
  }

  private async load(): Promise<void> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
      this.directoryExists = true;
    } catch (err) {
      // Missing folder, or a path through a file: nothing stored yet (writing will say why not).
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
      names = [];
    }
    const journalPattern = new RegExp(`^${escapeRegExp(this.base)}\\.journal-(\\d+)$`);
    const tempPrefix = `${this.base}.tmp-`;
    const found: number[] = [];
    for (const name of names) {
      const match = journalPattern.exec(name);
      if (match) found.push(Number(match[1]));
      // Never renamed, so never acknowledged: left by a crash mid-write.
      else if (name.startsWith(tempPrefix)) await fs.rm(path.join(this.dir, name), { force: true });
    }
    found.sort((a, b) => a - b);

    const snapshot = names.includes(this.base) ? await this.readSnapshot() : undefined;
    if (snapshot) {
      this.snapshotSequence = snapshot.sequence;
      this.snapshotBytes = snapshot.bytes;
      for (const entry of snapshot.entries) this.apply(entry);
    }
    let highest = this.snapshotSequence;
    for (const sequence of found) {
      highest = Math.max(highest, sequence);
      const name = this.journalName(sequence);
      // Folded into the snapshot already: a crash came between its rename and their removal.
      if (sequence <= this.snapshotSequence) {
        await fs.rm(path.join(this.dir, name), { force: true });
        continue;
      }
      const journal = await this.readJournal(name);
      if (!journal) continue;
      this.journals.set(sequence, journal.bytes);
      for (const entry of journal.entries) this.apply(entry);
    }
    this.nextJournal = highest + 1;
    this.loaded = true;
  }

  private apply(entry: StoredEntry): void {
    const key = entryKey(entry.host, entry.provisionDeviceKey, entry.deviceName);
    this.entries.set(key, JSON.stringify(entry));
  }

  /** A file's text, or undefined when it is gone. */
  private async readText(full: string): Promise<string | undefined> {
    try {
      return await fs.readFile(full, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** The snapshot, or undefined when it was damaged (then moved aside and reported). */
  private async readSnapshot(): Promise<
    { sequence: number; entries: StoredEntry[]; bytes: number } | undefined
  > {
    const text = await this.readText(this.filePath);
    if (text === undefined) return undefined;
    let parsed: unknown;
    let problem: string | undefined;
    try {
      parsed = JSON.parse(text);
      problem = snapshotProblem(parsed);
    } catch {
      problem = 'not valid JSON';
    }
    if (problem !== undefined) return this.damaged(this.filePath, problem);
    const file = parsed as StoreFile;
    return { sequence: file.sequence, entries: file.entries, bytes: Buffer.byteLength(text) };
  }

  /** A journal's complete entries, or undefined when it was damaged (moved aside, reported). */
  private async readJournal(
    name: string,
  ): Promise<{ entries: StoredEntry[]; bytes: number } | undefined> {
    const full = path.join(this.dir, name);
    const text = await this.readText(full);
    if (text === undefined) return undefined;
    const journal = parseJournal(text);
    if ('problem' in journal) return this.damaged(full, journal.problem);
    return { entries: journal.entries, bytes: Buffer.byteLength(text) };
  }

  private async damaged(full: string, problem: string): Promise<undefined> {
    const aside = await this.moveAside(full);
    this.warn(
      `The credentials file ${full} is damaged (${problem}). It was moved to ${aside} and ` +
        'left untouched; credentials it held are no longer used until restored from it.',
      { kind: 'damaged', file: full, movedTo: aside, problem },
    );
    return undefined;
  }

  private async moveAside(full: string): Promise<string> {
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

  private schedule(): void {
    if (this.writing) return;
    this.writing = this.drain();
  }

  private async drain(): Promise<void> {
    try {
      // Answers read in the same turn of the event loop (a poll phase often delivers several) go
      // into one commit instead of the first alone: waiting for the turn's end costs microseconds.
      await new Promise<void>((resolve) => setImmediate(resolve));
      while (this.waiters.length > 0) {
        await this.commitBatch();
        // Checked between commits, so a long burst does not grow the journal without bound.
        this.startCompaction();
      }
      this.startCompaction();
    } finally {
      // In the same step as the last check: a put() from here on starts the next drain.
      this.writing = undefined;
    }
  }

  /** Starts a snapshot rewrite beside the commits when one is asked for or due. */
  private startCompaction(): void {
    if (this.compacting || !(this.compactRequested || this.compactionDue())) return;
    this.compactRequested = false;
    this.compacting = this.compact().finally(() => {
      this.compacting = undefined;
      // Asked for again meanwhile (by finish()), or due again after a long burst.
      if (!this.writing) this.startCompaction();
    });
  }

  private compactionDue(): boolean {
    if (this.journals.size === 0 || this.commits < this.compactionBlockedUntil) return false;
    let bytes = 0;
    for (const size of this.journals.values()) bytes += size;
    return bytes >= Math.max(this.snapshotBytes, MIN_COMPACTION_BYTES);
  }

  /** Group commit: everything put since the last write goes into one append. */
  private async commitBatch(): Promise<void> {
    const waiters = this.waiters;
    const batch = new Map([...this.unwritten, ...this.dirty]);
    this.waiters = [];
    this.dirty = new Map();
    this.unwritten = new Map();
    let sequence = this.openJournal;
    let content = journalLines(batch.values());
    if (sequence === undefined) {
      sequence = this.nextJournal++;
      content = `${fileHeader('journal', sequence)}}\n${content}`;
    }
    try {
      await this.ensureDirectory();
      await appendDurably(this.dir, path.join(this.dir, this.journalName(sequence)), content);
      this.openJournal = sequence;
      this.journals.set(sequence, (this.journals.get(sequence) ?? 0) + Buffer.byteLength(content));
      this.commits++;
    } catch (err) {
      // That journal's tail is unknown now: the next commit starts a new one.
      this.openJournal = undefined;
      for (const [key, entry] of batch) if (!this.dirty.has(key)) this.unwritten.set(key, entry);
      for (const waiter of waiters) waiter.reject(err);
      return;
    }
    for (const waiter of waiters) waiter.resolve();
  }

  private async compact(): Promise<void> {
    // Every journal so far, the open one included, is folded in; from here on commits go to a new
    // one. Started between commits, so none is being appended to; the entries are taken now, and
    // any not yet in a journal are in the snapshot as well as in the commit that will carry them.
    const sequence = this.nextJournal - 1;
    const folded = [...this.journals.keys()];
    const closing = this.openJournal;
    this.openJournal = undefined;
    const content = serializeSnapshot(sequence, this.entries.values());
    try {
      await this.ensureDirectory();
      const temp = path.join(this.dir, `${this.base}.tmp-${process.pid}-${++this.tempCounter}`);
      await writeFileDurably(this.dir, temp, this.filePath, content);
      this.snapshotBytes = Buffer.byteLength(content);
      this.snapshotSequence = sequence;
      this.compactions++;
    } catch (err) {
      // The journals still hold everything; try again after a while rather than on every commit.
      this.compactionBlockedUntil = this.commits + 256;
      if (closing !== undefined) {
        await closeJournals([path.join(this.dir, this.journalName(closing))]).catch(
          () => undefined,
        );
      }
      this.warn(`Could not rewrite the credentials file ${this.filePath}: ${errorText(err)}`, {
        kind: 'writeFailed',
        file: this.filePath,
        error: errorText(err),
      });
      return;
    }
    for (const folds of folded) this.journals.delete(folds);
    // A journal left behind by a failed removal is ignored on load (sequence <= snapshot's).
    await removeFiles(folded.map((s) => path.join(this.dir, this.journalName(s)))).catch(
      () => undefined,
    );
  }

  private async ensureDirectory(): Promise<void> {
    if (this.directoryExists) return;
    const created = await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    // A new folder's own name must be durable in its parent too.
    if (created !== undefined) await syncFolder(path.dirname(this.dir));
    this.directoryExists = true;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Cores alive in this process, by absolute file path. */
const openCores = new Map<string, StoreCore>();

class CredentialStoreHandle implements CredentialStore {
  private released: Promise<void> | undefined;

  constructor(
    private readonly core: StoreCore,
    private readonly onWarning: CredentialStoreOptions['onWarning'],
  ) {}

  get filePath(): string {
    return this.core.filePath;
  }

  ready(): Promise<void> {
    return this.core.ready();
  }

  get(host: string, provisionDeviceKey: string, deviceName: string): StoredEntry | undefined {
    return this.core.get(host, provisionDeviceKey, deviceName);
  }

  put(entry: StoredEntry): Promise<void> {
    if (this.released) return Promise.reject(new Error('This credential store was released'));
    return this.core.put(entry);
  }

  flush(): Promise<void> {
    return this.core.flush();
  }

  stats(): CredentialStoreStats {
    return this.core.stats();
  }

  release(): Promise<void> {
    if (!this.released) {
      const listeners = this.core.listeners;
      if (this.onWarning) listeners.splice(listeners.indexOf(this.onWarning), 1);
      const core = this.core;
      core.refs--;
      this.released =
        core.refs > 0
          ? core.flush()
          : core.finish().finally(() => {
              // Reopened meanwhile: the core lives on with its new holders.
              if (core.refs === 0 && openCores.get(core.filePath) === core) {
                openCores.delete(core.filePath);
              }
            });
    }
    return this.released;
  }

  close(): Promise<void> {
    return this.release();
  }
}

/**
 * A handle on the one store for this file in this process. Loading starts at once; await
 * ready() before get(). Every handle must be released once.
 */
export function openCredentialStore(
  filePath: string,
  options: CredentialStoreOptions = {},
): CredentialStore {
  const absolute = path.resolve(filePath);
  let core = openCores.get(absolute);
  if (!core) {
    core = new StoreCore(absolute);
    openCores.set(absolute, core);
  }
  core.refs++;
  if (options.onWarning) core.listeners.push(options.onWarning);
  return new CredentialStoreHandle(core, options.onWarning);
}
