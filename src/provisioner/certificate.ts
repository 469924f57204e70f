/**
 * A device's self-signed X.509 certificate (RFC 5280), built as DER with node:crypto alone: a new
 * EC P-256 key, subject and issuer CN=<device name> as a UTF8String (taken literally, never parsed
 * as a DN), signed with ECDSA over SHA-256, for TLS client authentication.
 */
import { createHash, generateKeyPair, randomBytes, sign, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';

export const CERTIFICATE_VALIDITY_YEARS = 10;

export interface GeneratedCertificate {
  /** PEM of the self-signed certificate. */
  certificate: string;
  /** PEM (PKCS#8) of its private key. */
  privateKey: string;
}

const newKeyPair = promisify(generateKeyPair);

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

const sequence = (...items: Buffer[]): Buffer => tlv(0x30, ...items);
const set = (...items: Buffer[]): Buffer => tlv(0x31, ...items);
const octetString = (content: Buffer): Buffer => tlv(0x04, content);
const TRUE = tlv(0x01, Buffer.from([0xff]));

/** A non-negative INTEGER from its big-endian bytes. */
function integer(bytes: Buffer): Buffer {
  return tlv(0x02, bytes[0] & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes);
}

function bitString(bytes: Buffer, unusedBits = 0): Buffer {
  return tlv(0x03, Buffer.from([unusedBits]), bytes);
}

function oid(dotted: string): Buffer {
  const [first, second, ...rest] = dotted.split('.').map(Number);
  const bytes = [first * 40 + second];
  for (const arc of rest) {
    const base128 = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) {
      base128.unshift((v & 0x7f) | 0x80);
    }
    bytes.push(...base128);
  }
  return tlv(0x06, Buffer.from(bytes));
}

/** UTCTime until 2049, GeneralizedTime from 2050 on, as RFC 5280 §4.1.2.5 requires. */
function time(date: Date): Buffer {
  const iso = date.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  const year = date.getUTCFullYear();
  return year < 2050
    ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`))
    : tlv(0x18, Buffer.from(`${iso}Z`));
}

function commonName(name: string): Buffer {
  return sequence(set(sequence(oid('2.5.4.3'), tlv(0x0c, Buffer.from(name, 'utf8')))));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? sequence(oid(id), TRUE, octetString(value))
    : sequence(oid(id), octetString(value));
}

const ECDSA_WITH_SHA256 = sequence(oid('1.2.840.10045.4.3.2'));

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** A positive, non-zero 16-byte serial number (RFC 5280 allows up to 20 octets). */
function randomSerialNumber(): Buffer {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] & 0x7f) | 0x01;
  return bytes;
}

function tbsCertificate(deviceName: string, publicKey: KeyObject): Buffer {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  // The subjectPublicKey BIT STRING's value: the uncompressed point ends the SPKI (65 bytes).
  const point = spki.subarray(spki.length - 65);
  const notBefore = new Date();
  // Tolerates a device clock slightly behind ours.
  notBefore.setUTCMinutes(notBefore.getUTCMinutes() - 5, 0, 0);
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CERTIFICATE_VALIDITY_YEARS);
  const name = commonName(deviceName);
  return sequence(
    tlv(0xa0, integer(Buffer.from([2]))),
    integer(randomSerialNumber()),
    ECDSA_WITH_SHA256,
    name,
    sequence(time(notBefore), time(notAfter)),
    name,
    spki,
    tlv(
      0xa3,
      sequence(
        // Not a CA; digitalSignature and keyAgreement; TLS client authentication.
        extension('2.5.29.19', true, sequence()),
        extension('2.5.29.15', true, bitString(Buffer.from([0x88]), 3)),
        extension('2.5.29.37', false, sequence(oid('1.3.6.1.5.5.7.3.2'))),
        extension('2.5.29.14', false, octetString(createHash('sha1').update(point).digest())),
      ),
    ),
  );
}

/** A new EC P-256 key and a self-signed certificate whose subject is CN=<device name>. */
export async function generateCertificate(deviceName: string): Promise<GeneratedCertificate> {
  const { publicKey, privateKey } = await newKeyPair('ec', { namedCurve: 'P-256' });
  const tbs = tbsCertificate(deviceName, publicKey);
  const signature = sign('sha256', tbs, privateKey);
  const certificate = sequence(tbs, ECDSA_WITH_SHA256, bitString(signature));
  return {
    certificate: pem('CERTIFICATE', certificate),
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}
