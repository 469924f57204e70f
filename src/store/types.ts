/**
 * The credential store: what ThingsBoard answered for each device, kept so that a device is never
 * orphaned. One interface, asynchronous throughout, so a backend may live in a file or across the
 * network; the provisioner knows nothing else about it.
 */
import type { ProvisionAnswer } from '../protocol/types';

/** Material the node generated and ThingsBoard never returns: kept with the answer. */
export interface GeneratedMaterial {
  /** PEM of the self-signed certificate we made. */
  certificate?: string;
  /** PEM (PKCS#8) of its private key. */
  privateKey?: string;
}

/** What the store keeps per device. Never the provision secret. */
export interface StoredEntry {
  host: string;
  provisionDeviceKey: string;
  deviceName: string;
  answer: ProvisionAnswer;
  generated?: GeneratedMaterial;
  provisionedAt: string;
  /** Provisioned as a gateway; absent in entries kept before it was recorded. */
  gateway?: boolean;
}

declare const deviceKeyBrand: unique symbol;

/** One device, as every backend keys it: made by deviceKey() only. */
export type DeviceKey = string & { readonly [deviceKeyBrand]: true };

/**
 * A backend keeps two promises the provisioner builds on: put() resolves only once the entry is
 * durable, and get() answers only entries whose put() completed. Single flight within a process
 * is the provisioner's; a backend shared by several processes must also hold each device for the
 * one process that asks the server, from before its lookup until its answer is put.
 */
export interface CredentialStore {
  /**
   * Resolves once the store can answer; rejects when it cannot be read or reached at all, or is
   * held by another process (a StoreUnavailableError). After a rejection, a call tries again.
   */
  ready(): Promise<void>;
  /** The durable entry for this device as the caller's own copy. Rejects before ready(). */
  get(key: DeviceKey): Promise<StoredEntry | undefined>;
  /**
   * Resolves when a put can be kept: at once with false while the last write succeeded;
   * otherwise (before the first write, after a failed one) with true once a write made now
   * succeeds, which also writes what failed before (get() may then know more). Rejects with a
   * StoreUnavailableError (locked, not writable) that says what to do. The provisioner asks
   * before it sends anything, so that no device is created whose credentials cannot be kept.
   */
  writable(): Promise<boolean>;
  /** Resolves once the entry is durable; replaces an entry for the same device. */
  put(entry: StoredEntry): Promise<void>;
  /** Resolves once every put made before it has been written or has failed. */
  flush(): Promise<void>;
  /** Drops this handle after flushing (idempotent); a put after it rejects. */
  release(): Promise<void>;
  /** The store as a sentence names it: `the credentials file <path>`, or a URL without password. */
  describe(): string;
}

/** What went wrong in the background, for callers that word it themselves (the node translates). */
export type StoreWarning =
  | { kind: 'damaged'; file: string; movedTo: string; problem: string }
  | { kind: 'writeFailed'; file: string; error: string }
  /** Refused for now (locked, not writable, newer files): reported once, not per message. */
  | { kind: 'unavailable'; file: string; error: string };

/** Told about damage found and background writes that failed. No secrets inside. */
export type StoreWarningListener = (message: string, warning: StoreWarning) => void;
