/**
 * Single flight across processes: a device is held in Redis by one process at a time, under a
 * random token with an expiry (SET NX PX), read in the same step, renewed while held, and let go
 * by compare-and-delete, which also tells the processes waiting for it (pub/sub). A waiter that
 * misses the notice looks again after a bounded wait; a holder that died lets go when its hold
 * expires, and its record of credentials sent lets the next holder recover the lost answer.
 */
import { randomBytes } from 'node:crypto';
import type {
  ClaimOptions,
  DeviceClaim,
  DeviceKey,
  HeldElsewhere,
  SentCredentials,
  StoredEntry,
} from '../types';
import { LuaScript, type RedisConnection } from './connection';
import {
  deviceKeys,
  parseEntry,
  parseSending,
  releasedChannel,
  serializeSending,
  type DeviceKeys,
} from './records';

/**
 * Hold it (or find it held under this token already: a retry after a lost reply), and read the
 * entry and the record of credentials sent; or say how long another holder keeps it, and mark
 * the device wanted so that its release is published.
 */
const CLAIM = new LuaScript(`
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  holder = ARGV[1]
end
if holder == ARGV[1] then
  return {1, redis.call('GET', KEYS[2]) or '', redis.call('GET', KEYS[3]) or ''}
end
local left = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[4], '1', 'PX', math.max(left, 0) + 1000)
return {0, left}`);

/** Only while still held: renew the hold from now and record the credentials about to be sent. */
const SENDING = new LuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return 1`);

/** Renews every hold still ours (token, hold time in pairs); answers the positions lost. */
const RENEW = new LuaScript(`
local lost = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[2 * i - 1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
  else
    lost[#lost + 1] = i
  end
end
return lost`);

/**
 * Compare-and-delete: never lets go of a hold that expired and went to another process. The
 * release is published only when another process waits for it.
 */
const RELEASE = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('DEL', KEYS[2]) == 1 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
  return 1
end
return 0`);

/** Keep the entry, forget the credentials recorded as sent, and let go of this hold, at once. */
const KEEP = new LuaScript(`
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) == ARGV[2] then
  redis.call('DEL', KEYS[3])
  if redis.call('DEL', KEYS[4]) == 1 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
end
return 1`);

/** A waiter looks again at least this often, in case a notice was missed. */
const LOOK_AGAIN_MS = 2000;
/** Long enough for any takeover, short enough not to keep generated secrets for long. */
const SENDING_RECORD_MS = 24 * 60 * 60 * 1000;

/** Thrown by sending() when the hold expired and may belong to another process now. */
export class HoldLostError extends Error {
  override readonly name = 'HoldLostError';
}

class RedisDeviceClaim implements DeviceClaim {
  readonly held = true;
  renewedAt = Date.now();
  released: Promise<void> | undefined;

  constructor(
    private readonly claims: RedisClaims,
    readonly keys: DeviceKeys,
    readonly key: DeviceKey,
    readonly token: string,
    readonly holdMs: number,
    readonly entry: StoredEntry | undefined,
    readonly unanswered: SentCredentials | undefined,
  ) {}

  sending(sent: SentCredentials): Promise<void> {
    return this.claims.sending(this, sent);
  }

  release(): Promise<void> {
    this.released ??= this.claims.release(this);
    return this.released;
  }
}

export class RedisClaims {
  /** Holds of this handle, by device. */
  private readonly held = new Map<DeviceKey, RedisDeviceClaim>();
  /** Waiters for a device another process holds, woken by its release notice. */
  private readonly waiters = new Map<DeviceKey, Set<() => void>>();
  /** The connection for release notices, opened by the first claim. */
  private listener: RedisConnection | undefined;
  private renewal: NodeJS.Timeout | undefined;
  private readonly releases = new Set<Promise<void>>();

  constructor(
    private readonly connection: RedisConnection,
    private readonly openListener: () => RedisConnection,
    private readonly prefix: string,
  ) {}

  async claim(key: DeviceKey, { holdMs }: ClaimOptions): Promise<DeviceClaim | HeldElsewhere> {
    const keys = deviceKeys(this.prefix, key);
    const token = randomBytes(16).toString('hex');
    if (!this.listener) {
      // Not waited for: until it listens, waiters look again by themselves.
      this.listener = this.openListener();
      this.listener.subscribe(releasedChannel(this.prefix), (message) =>
        this.wake(message as DeviceKey),
      );
    }
    // Listening before asking: a release between the two still wakes the waiter.
    const notice = this.notice(key);
    let reply: unknown;
    try {
      reply = await this.connection.run(
        CLAIM,
        [keys.claim, keys.entry, keys.sending, keys.wanted],
        [token, String(Math.ceil(holdMs))],
      );
    } catch (err) {
      notice.cancel();
      throw err;
    }
    const [won, entryText, sendingText] = reply as [number, string | number, string];
    if (won === 1) {
      notice.cancel();
      return this.hold(keys, key, token, holdMs, String(entryText), sendingText);
    }
    const heldFor = Number(entryText);
    const lookAgainMs = heldFor > 0 ? Math.min(heldFor + 5, LOOK_AGAIN_MS) : 10;
    return { held: false, released: (signal) => notice.wait(lookAgainMs, signal) };
  }

  async sending(claim: RedisDeviceClaim, sent: SentCredentials): Promise<void> {
    const ours = await this.connection.run(
      SENDING,
      [claim.keys.claim, claim.keys.sending],
      [claim.token, String(claim.holdMs), serializeSending(sent), String(SENDING_RECORD_MS)],
    );
    if (ours !== 1) {
      throw new HoldLostError(
        'this process lost its hold on the device in Redis (its renewal did not reach Redis in ' +
          'time), so another process may be asking the server for it now',
      );
    }
    claim.renewedAt = Date.now();
  }

  /**
   * Writes an entry through `connection`; this handle's hold on the device, if any, goes in the
   * same round trip (its release() then has nothing left to do).
   */
  async keep(connection: RedisConnection, key: DeviceKey, value: string): Promise<void> {
    const keys = deviceKeys(this.prefix, key);
    const claim = this.held.get(key);
    await connection.run(
      KEEP,
      [keys.entry, keys.sending, keys.claim, keys.wanted],
      [value, claim?.token ?? '', releasedChannel(this.prefix), key],
    );
    if (claim && !claim.released) {
      this.forget(claim);
      claim.released = Promise.resolve();
    }
  }

  release(claim: RedisDeviceClaim): Promise<void> {
    this.forget(claim);
    const { keys } = claim;
    const done = this.connection
      .run(
        RELEASE,
        [keys.claim, keys.wanted],
        [claim.token, releasedChannel(this.prefix), claim.key],
      )
      .then(
        () => undefined,
        // Unreachable: the hold expires by itself and the waiters look again then.
        () => undefined,
      );
    this.releases.add(done);
    void done.then(() => this.releases.delete(done));
    return done;
  }

  /** Resolves once every release under way has reached Redis or failed. */
  async settled(): Promise<void> {
    while (this.releases.size > 0) await Promise.all([...this.releases]);
  }

  stop(): void {
    this.stopRenewal();
    this.listener?.close();
    for (const waiters of this.waiters.values()) for (const wake of waiters) wake();
  }

  private hold(
    keys: DeviceKeys,
    key: DeviceKey,
    token: string,
    holdMs: number,
    entryText: string,
    sendingText: string,
  ): RedisDeviceClaim {
    let entry: StoredEntry | undefined;
    try {
      entry = entryText === '' ? undefined : parseEntry(entryText, keys.entry);
    } catch (err) {
      void this.release(new RedisDeviceClaim(this, keys, key, token, holdMs, undefined, undefined));
      throw err;
    }
    const unanswered = sendingText === '' ? undefined : parseSending(sendingText, keys.sending);
    const claim = new RedisDeviceClaim(this, keys, key, token, holdMs, entry, unanswered);
    this.held.set(key, claim);
    this.scheduleRenewal();
    return claim;
  }

  private forget(claim: RedisDeviceClaim): void {
    if (this.held.get(claim.key) === claim) this.held.delete(claim.key);
    if (this.held.size === 0) this.stopRenewal();
  }

  /** A wait for the device's release notice, or `ms`, or the signal; cancel() if never awaited. */
  private notice(key: DeviceKey): {
    wait(ms: number, signal: AbortSignal): Promise<void>;
    cancel(): void;
  } {
    let woken = false;
    let wake: () => void = () => {
      woken = true;
    };
    const listener = (): void => wake();
    let set = this.waiters.get(key);
    if (!set) {
      set = new Set();
      this.waiters.set(key, set);
    }
    set.add(listener);
    const cancel = (): void => {
      const current = this.waiters.get(key);
      current?.delete(listener);
      if (current?.size === 0) this.waiters.delete(key);
    };
    const wait = (ms: number, signal: AbortSignal): Promise<void> =>
      new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          cancel();
          resolve();
        };
        const timer = setTimeout(done, ms);
        signal.addEventListener('abort', done, { once: true });
        wake = done;
        if (woken || signal.aborted) done();
      });
    return { wait, cancel };
  }

  private wake(key: DeviceKey): void {
    const set = this.waiters.get(key);
    if (set) for (const wake of [...set]) wake();
  }

  private scheduleRenewal(): void {
    if (this.renewal) return;
    const shortest = Math.min(...[...this.held.values()].map((claim) => claim.holdMs));
    this.renewal = setTimeout(
      () => {
        this.renewal = undefined;
        void this.renew().finally(() => {
          if (this.held.size > 0) this.scheduleRenewal();
        });
      },
      Math.max(100, shortest / 4),
    );
    // Holds must not keep a process alive that has nothing else to do.
    this.renewal.unref();
  }

  private stopRenewal(): void {
    clearTimeout(this.renewal);
    this.renewal = undefined;
  }

  /** Renews the holds due (a third of their time gone), in one script for all of them. */
  private async renew(): Promise<void> {
    const now = Date.now();
    const due = [...this.held.values()].filter(
      (claim) => now - claim.renewedAt >= claim.holdMs / 3,
    );
    if (due.length === 0) return;
    const args = due.flatMap((claim) => [claim.token, String(claim.holdMs)]);
    let lost: number[];
    try {
      lost = (await this.connection.run(
        RENEW,
        due.map((claim) => claim.keys.claim),
        args,
      )) as number[];
    } catch {
      // Unreachable: the next round tries again; a hold lost meanwhile fails its sending().
      return;
    }
    const gone = new Set(lost.map((position) => due[position - 1]));
    for (const claim of due) if (!gone.has(claim)) claim.renewedAt = now;
  }
}
