/** The provisioning job layer: what the node calls. */

export * from './types';
export {
  Provisioner,
  ProvisionCancelledError,
  CredentialsNotSavedError,
  isCancelledError,
  backoffDelay,
  DEFAULT_BACKOFF,
} from './provisioner';
export type { ProvisionerOptions, VerifyCredentials } from './provisioner';
export { openCredentialStore, defaultStorePath } from './store';
export type {
  CredentialStore,
  CredentialStoreOptions,
  CredentialStoreStats,
  StoreWarning,
} from './store';
export { generateAccessToken, generateMqttBasic, generateCertificate } from './credentials';
