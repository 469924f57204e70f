import type { CredentialsMode, DeviceCredentials, ProvisionAnswer } from '../protocol/types';
import type { GeneratedMaterial } from '../store/types';
import type { TransportName, TransportTarget } from '../transports/types';

export type { CredentialsMode };
export type { GeneratedMaterial, StoredEntry } from '../store/types';

/** One request to provision one device, as the node hands it over. */
export interface ProvisionJob {
  transport: TransportName;
  target: TransportTarget;
  provisionDeviceKey: string;
  provisionDeviceSecret: string;
  /** Raw value from the flow; validated by the provisioner. */
  deviceName: unknown;
  credentialsMode: CredentialsMode;
  /** msg.credentials as the flow gave it; validated by the provisioner. */
  credentials?: unknown;
  gateway?: boolean;
  /** Milliseconds allowed for one attempt. */
  timeoutMs: number;
  /** Further attempts after a transient failure. */
  retries: number;
  /** Keep the result in the store and answer from it. */
  persist: boolean;
  /** Skip the stored entry and ask the server again. */
  reprovision?: boolean;
  /** Aborts the job (node closing). */
  signal?: AbortSignal;
}

export interface ProvisionResult {
  deviceName: string;
  answer: ProvisionAnswer;
  generated?: GeneratedMaterial;
  /** True when answered from the store. */
  cached: boolean;
  /** ISO-8601 time of the server's answer. */
  provisionedAt: string;
  /** True when the answer was recovered by checking node-generated credentials after a lost answer. */
  recovered?: boolean;
  /** Provisioned as a gateway; unknown for entries stored before it was kept. */
  gateway?: boolean;
  /**
   * What this job asked for that the answer does not reflect (stored credentials, or another
   * message's request for the same device): its msg.credentials, its gateway flag.
   */
  ignored?: IgnoredField[];
}

export type IgnoredField = 'credentials' | 'gateway';

export type { DeviceCredentials };
