/**
 * The file backend's engine, one per file per process. A group commit appends its entries to the
 * open journal in one write, flushed to the disk before any of its puts resolves; the journal's
 * first commit creates the file and flushes the folder too. A crash can tear only the commit being
 * appended, which no put acknowledged. A journal is never appended to again after a restart or a
 * failed write; the next commit starts a new one.
 *
 * The snapshot is written whole (new file, fsync, rename over the old one, fsync the folder), so a
 * crash leaves the old or the new one. It is rewritten once the journals outweigh it, which keeps
 * the bytes written linear in the entries, and when the last user lets go, so a store at rest is
 * one file. A rewrite folds in the journals up to the one open when it starts; commits go on
 * meanwhile into a new journal, so outputs never wait for a snapshot.
 *
 * The folder is locked for this process (lock.ts) before anything in it is read or written. The
 * store is known to be writable once a commit succeeded; until then, and after a commit failed,
 * writable() tries a commit of what is still unwritten (a new journal's header at least).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { errorText } from '../../protocol/errors';
import { isStoredEntry, keyOf } from '../entry';
import { isStoreUnavailable, type StoreUnavailableError } from '../errors';
import type { DeviceKey, StoreWarning, StoreWarningListener, StoredEntry } from '../types';
import {
  appendDurably,
  closeJournals,
  removeFiles,
  syncFolder,
  writeFileDurably,
} from './durable-file';
import { journalHeader, journalLines, journalName, serializeSnapshot } from './format';
import { loadFiles, type LoadedFiles } from './load';
import type { StoreLock } from './lock';
import { lockFolder, notWritable, openFolder } from './open';

/** Fold the journals into the snapshot once they hold more bytes than it, and at least this much. */
export const MIN_COMPACTION_BYTES = 64 * 1024;

export interface FileStoreStats {
  /** Entries on disk. */
  entries: number;
  /** Journal files currently on disk. */
  journals: number;
  /** Group commits written since this store was opened. */
  commits: number;
  /** Snapshots rewritten since this store was opened. */
  compactions: number;
}

interface PutWaiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

const NOTHING_WRITTEN: Promise<boolean> = Promise.resolve(false);

export class FileStoreCore {
  readonly filePath: string;
  readonly dir: string;
  readonly base: string;
  refs = 0;
  readonly listeners: StoreWarningListener[] = [];

  /**
   * Every entry on disk as the JSON text it is written as, by device: serialised once, when put or
   * loaded, and parsed only when asked for. Strings also keep the garbage collector's work small.
   */
  private durable = new Map<DeviceKey, string>();
  private loaded = false;
  private loading: Promise<void>;
  private loadFailed = false;
  /** Held from the load (or, for a folder made later, the first write) until the last release. */
  private lock: StoreLock | undefined;
  /** Whether the files were read under the lock; not when the folder did not exist yet. */
  private loadedUnderLock = false;
  /** The last commit succeeded: puts can be taken without another check. */
  private healthy = false;
  private probing: Promise<boolean> | undefined;
  /** The refusal last reported, so that a refusal repeated per message is reported once. */
  private reported: string | undefined;
  /** Entries put but not yet part of a commit, latest per device. */
  private dirty = new Map<DeviceKey, string>();
  private waiters: PutWaiter[] = [];
  /** Entries whose write failed: written again with the next commit. */
  private unwritten = new Map<DeviceKey, string>();
  private writing: Promise<void> | undefined;
  /** The snapshot rewrite under way, beside the commits. */
  private compacting: Promise<void> | undefined;
  private compactRequested = false;
  private compactionBlockedUntil = 0;

  private snapshotSequence = 0;
  private snapshotBytes = 0;
  /** Journals on disk that the snapshot does not hold yet: sequence → bytes. */
  private journals = new Map<number, number>();
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
    this.loading = this.startLoading();
  }

  get isLoaded(): boolean {
    return this.loaded;
  }

  /** After a failed load (locked, newer files, unreadable), each call tries again. */
  ready(): Promise<void> {
    if (this.loadFailed) this.loading = this.startLoading();
    return this.loading;
  }

  /** False at once while the last commit succeeded; otherwise true after one that does. */
  writable(): Promise<boolean> {
    if (this.healthy) return NOTHING_WRITTEN;
    this.probing ??= this.probe().finally(() => {
      this.probing = undefined;
    });
    return this.probing;
  }

  /** Only after ready(). */
  get(key: DeviceKey): StoredEntry | undefined {
    const line = this.durable.get(key);
    return line === undefined ? undefined : (JSON.parse(line) as StoredEntry);
  }

  put(entry: StoredEntry): Promise<void> {
    if (!isStoredEntry(entry)) {
      return Promise.reject(new TypeError('Not a storable credentials entry'));
    }
    if (!this.loaded) return this.loading.then(() => this.put(entry));
    this.dirty.set(keyOf(entry), JSON.stringify(entry));
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

  /** Writes what an earlier commit could not, then folds the journals into the snapshot. */
  async finish(): Promise<void> {
    await this.loading.catch(() => undefined);
    if (!this.loaded) return;
    if (this.unwritten.size > 0) {
      await new Promise<void>((resolve) => {
        this.waiters.push({ resolve, reject: () => resolve() });
        this.schedule();
      });
    }
    // A rewrite under way leaves out the journal commits went to meanwhile: then one more.
    await this.flush();
    if (this.journals.size > 0) {
      this.compactRequested = true;
      this.schedule();
      await this.flush();
    }
    // The snapshot could not be written: the journal stays as it is, closed.
    if (this.openJournal !== undefined) {
      const open = path.join(this.dir, journalName(this.base, this.openJournal));
      this.openJournal = undefined;
      await closeJournals([open]).catch(() => undefined);
    }
  }

  stats(): FileStoreStats {
    return {
      entries: this.durable.size,
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

  /** Removes the lock unless the store was opened again meanwhile; then it stays in use. */
  async unlock(): Promise<void> {
    const lock = this.lock;
    this.lock = undefined;
    await lock?.release();
  }

  private startLoading(): Promise<void> {
    this.loadFailed = false;
    const loading = this.load();
    // A failed load is reported through ready() and put(); never an unhandled rejection here.
    loading.catch(() => undefined);
    return loading;
  }

  private async load(): Promise<void> {
    try {
      const { lock, files } = await openFolder(this.filePath, (m, w) => this.warn(m, w));
      this.lock = lock;
      this.apply(files);
      this.loadedUnderLock = lock !== undefined;
      this.loaded = true;
    } catch (err) {
      this.loadFailed = true;
      if (isStoreUnavailable(err)) this.reportUnavailable(err);
      throw err;
    }
  }

  private apply(files: LoadedFiles): void {
    this.durable = files.entries;
    this.snapshotSequence = files.snapshotSequence;
    this.snapshotBytes = files.snapshotBytes;
    this.journals = files.journals;
    this.nextJournal = files.nextJournal;
    this.directoryExists = files.directoryExists;
  }

  /** A commit of what is unwritten, if anything: a new journal's header at least. */
  private async probe(): Promise<boolean> {
    await this.ready();
    try {
      await new Promise<void>((resolve, reject) => {
        this.waiters.push({ resolve, reject });
        this.schedule();
      });
      return true;
    } catch (err) {
      const refusal = isStoreUnavailable(err) ? err : notWritable(this.filePath, err);
      this.reportUnavailable(refusal);
      throw refusal;
    }
  }

  private reportUnavailable(err: StoreUnavailableError): void {
    if (this.reported === err.message) return;
    this.reported = err.message;
    this.warn(err.message, { kind: 'unavailable', file: this.filePath, error: err.message });
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
    const batch =
      this.unwritten.size === 0 ? this.dirty : new Map([...this.unwritten, ...this.dirty]);
    this.waiters = [];
    this.dirty = new Map();
    this.unwritten = new Map();
    let sequence = this.openJournal;
    try {
      if (!this.lock || !this.directoryExists) await this.prepareToWrite();
      // Numbered only now: taking the lock may have brought journals of another process.
      let content = journalLines(batch.values());
      if (sequence === undefined) {
        sequence = this.nextJournal++;
        content = journalHeader(sequence) + content;
      }
      await appendDurably(this.dir, path.join(this.dir, journalName(this.base, sequence)), content);
      this.openJournal = sequence;
      this.journals.set(sequence, (this.journals.get(sequence) ?? 0) + Buffer.byteLength(content));
      this.commits++;
      this.healthy = true;
      this.reported = undefined;
    } catch (err) {
      // That journal's tail is unknown now: the next commit starts a new one.
      this.openJournal = undefined;
      this.healthy = false;
      for (const [key, entry] of batch) if (!this.dirty.has(key)) this.unwritten.set(key, entry);
      for (const waiter of waiters) waiter.reject(err);
      return;
    }
    for (const [key, line] of batch) this.durable.set(key, line);
    for (const waiter of waiters) waiter.resolve();
  }

  private async compact(): Promise<void> {
    // Only the holder of the lock rewrites the snapshot.
    if (!this.lock) return;
    // Every journal so far, the open one included, is folded in; from here on commits go to a new
    // one. Started between commits, so none is being appended to. Entries whose commit failed are
    // carried into the snapshot too: once it is renamed into place they are on disk.
    const sequence = this.nextJournal - 1;
    const folded = [...this.journals.keys()];
    const closing = this.openJournal;
    this.openJournal = undefined;
    const carried = new Map(this.unwritten);
    const content = serializeSnapshot(sequence, new Map([...this.durable, ...carried]).values());
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
        await closeJournals([path.join(this.dir, journalName(this.base, closing))]).catch(
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
    for (const [key, line] of carried) {
      // Taken by a later commit meanwhile, or replaced by a newer put: that one decides.
      if (this.unwritten.get(key) !== line) continue;
      this.unwritten.delete(key);
      this.durable.set(key, line);
    }
    for (const folds of folded) this.journals.delete(folds);
    // A journal left behind by a failed removal is ignored on load (sequence <= snapshot's).
    await removeFiles(folded.map((s) => path.join(this.dir, journalName(this.base, s)))).catch(
      () => undefined,
    );
  }

  /** The folder and the lock; files that appeared since the load are read first. */
  private async prepareToWrite(): Promise<void> {
    await this.ensureDirectory();
    if (this.lock) return;
    this.lock = await lockFolder(this.filePath);
    if (this.loadedUnderLock) return;
    // Another process may have written here since: its entries come before ours.
    const files = await loadFiles(this.filePath, (m, w) => this.warn(m, w));
    const ours = this.durable;
    this.apply(files);
    for (const [key, line] of ours) this.durable.set(key, line);
    this.loadedUnderLock = true;
  }

  private async ensureDirectory(): Promise<void> {
    if (this.directoryExists) return;
    const created = await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    // A new folder's own name must be durable in its parent too.
    if (created !== undefined) await syncFolder(path.dirname(this.dir));
    this.directoryExists = true;
  }
}
