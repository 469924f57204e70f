/** The credential store layer: one interface, and the backends that fill it. */
import { openFileStore, type FileStoreOptions } from './file';
import type { CredentialStore } from './types';

export type {
  CredentialStore,
  DeviceKey,
  GeneratedMaterial,
  StoreWarning,
  StoreWarningListener,
  StoredEntry,
} from './types';
export { deviceKey, isStoredEntry } from './entry';
export { StoreUnavailableError, isStoreUnavailable, type StoreUnavailableReason } from './errors';
export { defaultStorePath, openFileStore } from './file';
export type { FileCredentialStore, FileStoreOptions, FileStoreStats } from './file';
export { SharedStore, type StoreLease } from './shared';

/** Every backend a config node can choose, and what each needs to open. */
export interface StoreBackends {
  file: FileStoreOptions;
}

export type StoreBackend = keyof StoreBackends;

export const STORE_BACKENDS = ['file'] as const satisfies readonly StoreBackend[];

export function isStoreBackend(value: unknown): value is StoreBackend {
  return (STORE_BACKENDS as readonly unknown[]).includes(value);
}

/** Opens a handle on the chosen backend's store; release it once. */
export function openStore<B extends StoreBackend>(
  backend: B,
  options: StoreBackends[B],
): CredentialStore {
  switch (backend) {
    case 'file':
      return openFileStore(options);
  }
  throw new Error(`Unknown credential store backend ${JSON.stringify(backend)}`);
}
