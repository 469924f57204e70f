/** CoAP message ids and tokens for every link of this process. */
import * as crypto from 'node:crypto';

/**
 * The last CoAP message id sent, across every link of this process. A server drops a request
 * whose (address, port, message id) it saw in the last 247 s as a retransmission, so a new link
 * that got a recently used port must not repeat a run of ids: one counter for all links never
 * repeats an id before 65 536 requests.
 */
let lastMessageId = Math.floor(Math.random() * 0x10000);

export function nextMessageId(): number {
  lastMessageId = (lastMessageId + 1) & 0xffff;
  return lastMessageId;
}

/**
 * Tokens are 8 random bytes from the system's secure source (RFC 7252 §5.3.1): an off-path
 * sender cannot guess one to slip in a forged answer, as it could with a counter. Drawn from a
 * pool refilled a few hundred tokens at a time, so an exchange costs no call into the source.
 */
const TOKEN_BYTES = 8;
const tokenPool = Buffer.alloc(TOKEN_BYTES * 512);
let tokenOffset = tokenPool.length;

export function randomToken(): Buffer {
  if (tokenOffset === tokenPool.length) {
    crypto.randomFillSync(tokenPool);
    tokenOffset = 0;
  }
  const token = Buffer.from(tokenPool.subarray(tokenOffset, tokenOffset + TOKEN_BYTES));
  tokenOffset += TOKEN_BYTES;
  return token;
}
