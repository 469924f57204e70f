/**
 * The durable credential store: what ThingsBoard answered, kept so a device is never orphaned.
 *
 * Layout, in `<userDir>/thingsboard-provision/` (folder 0700, files 0600):
 *   credentials.json              the snapshot: every entry, plus the last segment folded into it
 *   credentials.json.segment-<n>  entries written since, one file per group commit
 * Every file is written the same way: complete new file in the same folder, fsync, rename over
 * the final name, fsync the folder. A crash leaves each file old or new, never torn.
 *
 * Why segments: with whole-file rewrites, 10 000 puts at concurrency 32 took ~8-9 s and wrote
 * ~1.2 GB for a 3.7 MB file (quadratic: each of ~620 group commits rewrote everything so far).
 * A commit now writes only its own entries, and the snapshot is rewritten once the segments
 * outweigh it (or there are MAX_SEGMENTS of them), so bytes written stay linear: ~0.6 s for the
 * same run, 14x faster. bench/store.ts measures both designs in one run.
 *
 * Loading reads the snapshot, then the segments in order (later wins). Segments numbered at or
 * below the snapshot's `sequence` were already folded in: a crash came between the snapshot's
 * rename and their removal, so they are removed now. A file that does not parse or has the wrong
 * shape is moved aside to `<name>.damaged-<time>` and reported, never overwritten.
 *
 * One process-wide writer per file: openCredentialStore() hands every caller a handle on the same
 * core, so two provision nodes never lose each other's entries.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { CREDENTIALS_TYPES } from '../protocol/types';
import { removeFiles, stopFileWriter, writeFileDurably } from './durable-file';
import type { StoredEntry } from './types';

export const STORE_FORMAT = 'thingsboard-provision-credentials';
export const STORE_VERSION = 1;
/** Fold segments into the snapshot once there are this many, whatever their size. */
export const MAX_SEGMENTS = 256;
/** ...or once they hold more bytes than the snapshot (and at least this much). */
const MIN_COMPACTION_BYTES = 64 * 1024;

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
  /** Segment files currently on disk. */
  segments: number;
  /** Group commits written since this store was opened. */
  segmentWrites: number;
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
  /** Drops this handle (idempotent) after flushing; the last one folds segments into the snapshot. */
  release(): Promise<void>;
  /** The same as release(). */
  close(): Promise<void>;
  stats(): CredentialStoreStats;
}

interface StoreFile {
  format: typeof STORE_FORMAT;
  version: number;
  kind: 'snapshot' | 'segment';
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

/** Why a file's content cannot be used, or undefined when it can. */
function problemWith(parsed: unknown, kind: StoreFile['kind']): string | undefined {
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
  if (!Array.isArray(parsed.entries)) return 'no entry list';
  const bad = parsed.entries.findIndex((entry) => !isStoredEntry(entry));
  return bad === -1 ? undefined : `entry ${bad} has the wrong shape`;
}

/** One entry per line: small diffs for people who look, and cheap to write. */
function serialize(
  kind: StoreFile['kind'],
  sequence: number,
  entries: Iterable<StoredEntry>,
): string {
  const lines: string[] = [];
  for (const entry of entries) lines.push(JSON.stringify(entry));
  const head = `{"format":"${STORE_FORMAT}","version":${STORE_VERSION},"kind":"${kind}","sequence":${sequence},"entries":[`;
  return lines.length === 0 ? `${head}]}\n` : `${head}\n${lines.join(',\n')}\n]}\n`;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function fileNameStamp(date: Date): string {
  // ISO-8601 with ':' replaced, since Windows forbids it in file names.
  return date.toISOString().replace(/:/g, '-');
}

async function fsyncDirectory(dir: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, 'r');
    await handle.sync();
  } catch (err) {
    // Windows cannot open or flush a directory; its rename is already durable metadata-wise.
    const code = (err as NodeJS.ErrnoException).code;
    if (process.platform !== 'win32' && code !== 'EISDIR' && code !== 'EINVAL') throw err;
  } finally {
    await handle?.close();
  }
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

  private readonly entries = new Map<string, StoredEntry>();
  private loaded = false;
  private readonly loading: Promise<void>;
  /** Entries put but not yet part of a written file, latest per device. */
  private dirty = new Map<string, StoredEntry>();
  private waiters: PutWaiter[] = [];
  /** Entries whose write failed: written again with the next commit. */
  private unwritten = new Map<string, StoredEntry>();
  private writing: Promise<void> | undefined;
  private compactRequested = false;
  private compactionBlockedUntil = 0;

  private snapshotSequence = 0;
  private snapshotBytes = 0;
  private nextSequence = 1;
  /** Segments on disk that the snapshot does not hold yet: sequence → bytes. */
  private readonly segments = new Map<number, number>();
  private directoryExists = false;
  private tempCounter = 0;
  private segmentWrites = 0;
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
    return this.entries.get(entryKey(host, provisionDeviceKey, deviceName));
  }

  async put(entry: StoredEntry): Promise<void> {
    if (!isStoredEntry(entry)) throw new TypeError('Not a storable credentials entry');
    await this.loading;
    const copy = structuredClone(entry);
    const key = entryKey(copy.host, copy.provisionDeviceKey, copy.deviceName);
    this.entries.set(key, copy);
    this.dirty.set(key, copy);
    const durable = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.schedule();
    return durable;
  }

  async flush(): Promise<void> {
    await this.loading.catch(() => undefined);
    while (this.writing) await this.writing;
  }

  /** Folds the segments into the snapshot, so a store at rest is one file. */
  async finish(): Promise<void> {
    await this.loading.catch(() => undefined);
    if (!this.loaded) return;
    if (this.segments.size > 0) {
      this.compactRequested = true;
      this.schedule();
    }
    await this.flush();
  }

  stats(): CredentialStoreStats {
    return {
      entries: this.entries.size,
      segments: this.segments.size,
      segmentWrites: this.segmentWrites,
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

  private segmentName(sequence: number): string {
    return `${this.base}.segment-${sequence}`;
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
    const segmentPattern = new RegExp(`^${escapeRegExp(this.base)}\\.segment-(\\d+)$`);
    const tempPrefix = `${this.base}.tmp-`;
    const found: number[] = [];
    for (const name of names) {
      const match = segmentPattern.exec(name);
      if (match) found.push(Number(match[1]));
      // Never renamed, so never acknowledged: left by a crash mid-write.
      else if (name.startsWith(tempPrefix)) await fs.rm(path.join(this.dir, name), { force: true });
    }
    found.sort((a, b) => a - b);

    const snapshot = names.includes(this.base)
      ? await this.readFile(this.base, 'snapshot')
      : undefined;
    if (snapshot) {
      this.snapshotSequence = snapshot.file.sequence;
      this.snapshotBytes = snapshot.bytes;
      for (const entry of snapshot.file.entries) this.apply(entry);
    }
    let highest = this.snapshotSequence;
    for (const sequence of found) {
      highest = Math.max(highest, sequence);
      const name = this.segmentName(sequence);
      if (sequence <= this.snapshotSequence) {
        await fs.rm(path.join(this.dir, name), { force: true });
        continue;
      }
      const segment = await this.readFile(name, 'segment');
      if (!segment) continue;
      this.segments.set(sequence, segment.bytes);
      for (const entry of segment.file.entries) this.apply(entry);
    }
    this.nextSequence = highest + 1;
    this.loaded = true;
  }

  private apply(entry: StoredEntry): void {
    this.entries.set(entryKey(entry.host, entry.provisionDeviceKey, entry.deviceName), entry);
  }

  /** The parsed file, or undefined when it was damaged (then moved aside and reported). */
  private async readFile(
    name: string,
    kind: StoreFile['kind'],
  ): Promise<{ file: StoreFile; bytes: number } | undefined> {
    const full = path.join(this.dir, name);
    let text: string;
    try {
      text = await fs.readFile(full, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    let parsed: unknown;
    let problem: string | undefined;
    try {
      parsed = JSON.parse(text);
      problem = problemWith(parsed, kind);
    } catch {
      problem = 'not valid JSON';
    }
    if (problem === undefined) return { file: parsed as StoreFile, bytes: Buffer.byteLength(text) };
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
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
    });
  }

  private async drain(): Promise<void> {
    // Answers read in the same turn of the event loop (a poll phase often delivers several) go
    // into one commit instead of the first alone: waiting for the turn's end costs microseconds.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.waiters.length > 0 || this.compactRequested || this.compactionDue()) {
      if (this.waiters.length > 0) await this.commitBatch();
      // Checked between commits too, so a long burst does not pile up segments.
      if (this.compactRequested || this.compactionDue()) {
        this.compactRequested = false;
        await this.compact();
      }
    }
  }

  private compactionDue(): boolean {
    if (this.segments.size === 0 || this.segmentWrites < this.compactionBlockedUntil) return false;
    let bytes = 0;
    for (const size of this.segments.values()) bytes += size;
    return (
      this.segments.size >= MAX_SEGMENTS ||
      bytes >= Math.max(this.snapshotBytes, MIN_COMPACTION_BYTES)
    );
  }

  /** Group commit: everything put since the last write goes into one segment. */
  private async commitBatch(): Promise<void> {
    const waiters = this.waiters;
    const batch = new Map([...this.unwritten, ...this.dirty]);
    this.waiters = [];
    this.dirty = new Map();
    this.unwritten = new Map();
    const sequence = this.nextSequence++;
    try {
      const bytes = await this.writeDurably(
        this.segmentName(sequence),
        serialize('segment', sequence, batch.values()),
      );
      this.segments.set(sequence, bytes);
      this.segmentWrites++;
    } catch (err) {
      for (const [key, entry] of batch) if (!this.dirty.has(key)) this.unwritten.set(key, entry);
      for (const waiter of waiters) waiter.reject(err);
      return;
    }
    for (const waiter of waiters) waiter.resolve();
  }

  private async compact(): Promise<void> {
    const sequence = this.nextSequence - 1;
    const folded = [...this.segments.keys()].filter((s) => s <= sequence);
    try {
      this.snapshotBytes = await this.writeDurably(
        this.base,
        serialize('snapshot', sequence, this.entries.values()),
      );
      this.snapshotSequence = sequence;
      this.compactions++;
    } catch (err) {
      // Segments still hold everything; try again after a while rather than on every commit.
      this.compactionBlockedUntil = this.segmentWrites + MAX_SEGMENTS;
      this.warn(`Could not rewrite the credentials file ${this.filePath}: ${errorText(err)}`, {
        kind: 'writeFailed',
        file: this.filePath,
        error: errorText(err),
      });
      return;
    }
    for (const s of folded) this.segments.delete(s);
    // A segment left behind by a failed removal is ignored on load (sequence <= snapshot's).
    await removeFiles(folded.map((s) => path.join(this.dir, this.segmentName(s)))).catch(
      () => undefined,
    );
  }

  /** Complete new file, fsync, rename over `name`, fsync the folder. Returns the bytes written. */
  private async writeDurably(name: string, content: string): Promise<number> {
    await this.ensureDirectory();
    const temp = path.join(this.dir, `${this.base}.tmp-${process.pid}-${++this.tempCounter}`);
    await writeFileDurably(this.dir, temp, path.join(this.dir, name), content);
    return Buffer.byteLength(content, 'utf8');
  }

  private async ensureDirectory(): Promise<void> {
    if (this.directoryExists) return;
    const created = await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    // A new folder's own name must be durable in its parent too.
    if (created !== undefined) await fsyncDirectory(path.dirname(this.dir));
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
                // No store left in this process: its writer thread goes too.
                if (openCores.size === 0) stopFileWriter();
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
