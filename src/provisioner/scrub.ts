/** Defence in depth: whatever a lower layer wrote, a secret never leaves in an error text. */
import { ProvisionError } from '../protocol/errors';
import type { DeviceCredentials } from '../protocol/types';
import type { GeneratedMaterial } from './types';

/** Shorter ones would blot out ordinary words. */
const SHORTEST_SECRET = 4;

/** The secrets a job's credentials carry: token, password, generated private key. */
export function secretsOf(
  credentials: DeviceCredentials | undefined,
  generated?: GeneratedMaterial,
): string[] {
  const secrets: string[] = [];
  if (credentials?.type === 'ACCESS_TOKEN') secrets.push(credentials.token);
  if (credentials?.type === 'MQTT_BASIC' && credentials.password) {
    secrets.push(credentials.password);
  }
  if (generated?.privateKey) secrets.push(generated.privateKey);
  return secrets;
}

/** `err` with every secret in its message, stack and server message replaced by `***`. */
export function scrub<T>(err: T, secrets: readonly string[]): T {
  if (!(err instanceof Error)) return err;
  const known = secrets.filter((s) => typeof s === 'string' && s.length >= SHORTEST_SECRET);
  if (known.length === 0) return err;
  const clean = (text: string): string =>
    known.reduce((out, secret) => out.split(secret).join('***'), text);
  err.message = clean(err.message);
  if (err.stack) err.stack = clean(err.stack);
  if (err instanceof ProvisionError && err.serverMessage !== undefined) {
    (err as { serverMessage?: string }).serverMessage = clean(err.serverMessage);
  }
  return err;
}
