/**
 * The file backend: credentials under Node-RED's user directory. One engine per file in this
 * process, whatever the number of openers, so two nodes never lose each other's entries.
 */
import path from 'node:path';
import type { CredentialStore, DeviceKey, StoreWarningListener, StoredEntry } from '../types';
import { FileStoreCore, type FileStoreStats } from './core';

export { MIN_COMPACTION_BYTES, type FileStoreStats } from './core';
export { STORE_FORMAT, STORE_VERSION } from './format';

export function defaultStorePath(userDir: string): string {
  return path.join(userDir, 'thingsboard-provision', 'credentials.json');
}

export interface FileStoreOptions {
  /** The snapshot's path; journals and temporary files go beside it. */
  filePath: string;
  onWarning?: StoreWarningListener;
}

/** A file store handle, with what only a file has. */
export interface FileCredentialStore extends CredentialStore {
  /** Absolute path of the snapshot file. */
  readonly filePath: string;
  stats(): FileStoreStats;
}

/** Engines alive in this process, by absolute file path. */
const openCores = new Map<string, FileStoreCore>();

class FileStoreHandle implements FileCredentialStore {
  private released: Promise<void> | undefined;

  constructor(
    private readonly core: FileStoreCore,
    private readonly onWarning: StoreWarningListener | undefined,
  ) {}

  get filePath(): string {
    return this.core.filePath;
  }

  ready(): Promise<void> {
    return this.core.ready();
  }

  async get(key: DeviceKey): Promise<StoredEntry | undefined> {
    if (!this.core.isLoaded) {
      throw new Error('The credential store is not loaded yet: await ready() first');
    }
    return this.core.get(key);
  }

  writable(): Promise<boolean> {
    if (this.released) return Promise.reject(new Error('This credential store was released'));
    return this.core.writable();
  }

  put(entry: StoredEntry): Promise<void> {
    if (this.released) return Promise.reject(new Error('This credential store was released'));
    return this.core.put(entry);
  }

  flush(): Promise<void> {
    return this.core.flush();
  }

  describe(): string {
    return `the credentials file ${this.core.filePath}`;
  }

  stats(): FileStoreStats {
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
              // Reopened meanwhile: the engine lives on with its new holders, and keeps the lock.
              if (core.refs === 0 && openCores.get(core.filePath) === core) {
                openCores.delete(core.filePath);
                return core.unlock();
              }
              return undefined;
            });
    }
    return this.released;
  }
}

/** A handle on the one store for this file in this process. Every handle must be released once. */
export function openFileStore(options: FileStoreOptions): FileCredentialStore {
  const absolute = path.resolve(options.filePath);
  let core = openCores.get(absolute);
  if (!core) {
    core = new FileStoreCore(absolute);
    openCores.set(absolute, core);
  }
  core.refs++;
  if (options.onWarning) core.listeners.push(options.onWarning);
  return new FileStoreHandle(core, options.onWarning);
}
