/** The provisioning job layer: what the node calls. */

export * from './types';
export { Provisioner } from './provisioner';
export type { ProvisionerOptions } from './provisioner';
export { ProvisionCancelledError, CredentialsNotSavedError, isCancelledError } from './errors';
export { backoffDelay, DEFAULT_BACKOFF } from './backoff';
export type { VerifyCredentials } from './recovery';
export { generateAccessToken, generateMqttBasic, generateCertificate } from './credentials';
