/**
 * Cuts the MQTT byte stream into whole packets before they are parsed, so that a packet over the
 * server's size limit is refused from its fixed header instead of being buffered first.
 */

/** NETTY_MAX_PAYLOAD_SIZE: the most bytes after the fixed header that the server decodes. */
export const MAX_PACKET_BYTES = 65_536;

export type FrameEvent =
  | { kind: 'packet'; bytes: Buffer }
  /** The remaining length announced by a fixed header exceeds the limit. */
  | { kind: 'too-large'; length: number }
  /** A remaining length that takes more than four bytes. */
  | { kind: 'malformed' };

export class FrameReader {
  private buffered: Buffer = Buffer.alloc(0);
  private failed = false;

  constructor(private readonly maxBytes = MAX_PACKET_BYTES) {}

  /** The whole packets completed by this chunk; after an error, nothing more. */
  push(chunk: Buffer): FrameEvent[] {
    if (this.failed) return [];
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const events: FrameEvent[] = [];
    let offset = 0;
    for (;;) {
      const header = readFixedHeader(this.buffered, offset);
      if (header === 'incomplete') break;
      if (header === 'malformed' || header.remaining > this.maxBytes) {
        this.failed = true;
        this.buffered = Buffer.alloc(0);
        events.push(
          header === 'malformed'
            ? { kind: 'malformed' }
            : { kind: 'too-large', length: header.remaining },
        );
        return events;
      }
      const end = offset + header.headerBytes + header.remaining;
      if (end > this.buffered.length) break;
      events.push({ kind: 'packet', bytes: this.buffered.subarray(offset, end) });
      offset = end;
    }
    this.buffered = offset === 0 ? this.buffered : this.buffered.subarray(offset);
    return events;
  }
}

type FixedHeader = { headerBytes: number; remaining: number } | 'incomplete' | 'malformed';

function readFixedHeader(bytes: Buffer, offset: number): FixedHeader {
  let remaining = 0;
  let multiplier = 1;
  for (let index = 1; index <= 4; index++) {
    if (offset + index >= bytes.length) return 'incomplete';
    const byte = bytes[offset + index];
    remaining += (byte & 0x7f) * multiplier;
    if ((byte & 0x80) === 0) return { headerBytes: index + 1, remaining };
    multiplier *= 128;
  }
  return 'malformed';
}
