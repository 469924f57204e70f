/**
 * One Redis connection for a store's commands, one more for the notices it listens to. The client
 * library is loaded only here, when a Redis store opens: file-store users never load it. Commands
 * fail at once while Redis is unreachable (nothing queues behind an outage) and the client keeps
 * reconnecting in the background, so the flow goes on by itself once Redis is back.
 */
import { createHash } from 'node:crypto';
import type { RedisClientType } from '@redis/client';
import { errorText } from '../../protocol/errors';
import type { RedisEndpoint } from './options';

type RedisModule = typeof import('@redis/client');

/** Bounds every command: a Redis that stopped answering must not hold a flow forever. */
export const COMMAND_TIMEOUT_MS = 5000;
const CONNECT_TIMEOUT_MS = 5000;
/** Finds a connection that died silently (no FIN, no RST), as TCP keep-alive would much later. */
const PING_INTERVAL_MS = 15_000;
const RECONNECT_MAX_MS = 2000;
/** How long a command waits for a connection being made, or made again, before it fails. */
const READY_PATIENCE_MS = 5000;
const RETRY_PAUSE_MS = 50;

let redisModule: RedisModule | undefined;

function loadRedis(): RedisModule {
  if (redisModule === undefined) {
    try {
      redisModule = require('@redis/client') as RedisModule;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
      throw new Error(
        'The Redis credential store needs the package @redis/client, which is not installed ' +
          '(an optional dependency): install node-red-contrib-thingsboard-provision again ' +
          'without --omit=optional.',
        { cause: err },
      );
    }
  }
  return redisModule;
}

/** Redis could not be asked: unreachable, refusing us, or too slow. The text says which. */
export class RedisUnavailableError extends Error {
  override readonly name = 'RedisUnavailableError';
  /** Redis answered with an error: asking again will not help. */
  readonly refused: boolean;

  constructor(message: string, options: { cause?: unknown; refused?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.refused = options.refused ?? false;
  }
}

/** A Lua script sent by its SHA-1 digest, and in full when Redis does not know it (yet). */
export class LuaScript {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

/** One client of one Redis: a store has one for commands, one for notices, one for waited writes. */
export class RedisConnection {
  private readonly client: RedisClientType;
  /** The last connection failure, for the text of the errors of commands refused meanwhile. */
  private lastFailure: string | undefined;
  /** While disconnected: resolves at the next connection (or close), one for every command. */
  private reconnected: Promise<void> | undefined;
  private wakeWaiters: (() => void) | undefined;
  private closed = false;

  /** `forNotices`: a connection that only subscribes, which may queue while offline. */
  constructor(
    private readonly endpoint: RedisEndpoint,
    forNotices = false,
  ) {
    const { createClient } = loadRedis();
    const { host, port, tls } = endpoint;
    this.client = createClient({
      socket: {
        host,
        port,
        connectTimeout: CONNECT_TIMEOUT_MS,
        reconnectStrategy: (retries: number) =>
          Math.min(100 * 2 ** retries, RECONNECT_MAX_MS) + Math.floor(Math.random() * 100),
        ...(tls ? { tls: true as const, ...tls } : {}),
      },
      database: endpoint.database,
      username: endpoint.username,
      password: endpoint.password,
      disableOfflineQueue: !forNotices,
      pingInterval: PING_INTERVAL_MS,
      commandOptions: { timeout: COMMAND_TIMEOUT_MS },
    }) as RedisClientType;
    // Without a listener an 'error' event would end the process; failures surface per command.
    this.client.on('error', (err: unknown) => {
      this.lastFailure = errorText(err);
    });
    this.client.on('ready', () => {
      this.lastFailure = undefined;
    });
    this.client.connect().catch(() => undefined);
  }

  /**
   * Sends one command, again after a lost connection while READY_PATIENCE_MS lasts: every command
   * the store sends may run twice (none counts or appends, claims recognise their own token).
   * Rejects with a RedisUnavailableError when Redis cannot answer.
   */
  async command(args: string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<unknown> {
    const giveUpAt = Date.now() + READY_PATIENCE_MS;
    for (;;) {
      await this.ready(giveUpAt);
      try {
        return await this.client.sendCommand(args, { timeout: timeoutMs });
      } catch (err) {
        const failure = this.unavailable(err);
        if (failure.refused || this.closed || Date.now() >= giveUpAt) throw failure;
        await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS));
      }
    }
  }

  /** Resolves once connected (waiting a moment for it); rejects as a command would. */
  async reachable(): Promise<void> {
    await this.ready(Date.now() + READY_PATIENCE_MS);
    if (!this.client.isReady) throw this.unavailable(new Error('not connected'));
  }

  async get(key: string): Promise<string | null> {
    const value = await this.command(['GET', key]);
    return typeof value === 'string' ? value : null;
  }

  /** Runs a script by its digest, sending it whole when Redis does not have it. */
  async run(script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
    const counts = [String(keys.length), ...keys, ...args];
    try {
      return await this.command(['EVALSHA', script.sha, ...counts]);
    } catch (err) {
      // Scripts are cached by Redis only until it restarts.
      if (!(err instanceof RedisUnavailableError && errorText(err.cause).startsWith('NOSCRIPT'))) {
        throw err;
      }
    }
    return this.command(['EVAL', script.source, ...counts]);
  }

  /** Keys matching a SCAN pattern, a batch at a time. */
  async *scan(pattern: string): AsyncGenerator<string[]> {
    let cursor = '0';
    do {
      const reply = (await this.command(['SCAN', cursor, 'MATCH', pattern, 'COUNT', '500'])) as [
        string,
        string[],
      ];
      cursor = reply[0];
      if (reply[1].length > 0) yield reply[1];
    } while (cursor !== '0');
  }

  /** Calls `onMessage` with every message on `channel`, from once Redis is reachable on. */
  subscribe(channel: string, onMessage: (message: string) => void): void {
    // Queued until connected, and subscribed again after each reconnection by the client.
    this.client.subscribe(channel, onMessage).catch(() => undefined);
  }

  /** Closes the connection; commands still running are rejected. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.wakeWaiters?.();
    if (this.client.isOpen) this.client.destroy();
  }

  /** Connected, or waited for it until `giveUpAt`: deploys and short outages fail no message. */
  private async ready(giveUpAt: number): Promise<void> {
    if (this.client.isReady || this.closed) return;
    this.reconnected ??= new Promise<void>((resolve) => {
      const done = (): void => {
        this.client.off('ready', done);
        this.reconnected = undefined;
        this.wakeWaiters = undefined;
        resolve();
      };
      this.wakeWaiters = done;
      this.client.on('ready', done);
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.reconnected,
      new Promise((resolve) => (timer = setTimeout(resolve, Math.max(0, giveUpAt - Date.now())))),
    ]);
    clearTimeout(timer);
  }

  private unavailable(err: unknown): RedisUnavailableError {
    if (err instanceof RedisUnavailableError) return err;
    const { ErrorReply, TimeoutError } = loadRedis();
    // A reply from Redis itself (WRONGTYPE, OOM, READONLY, NOPERM...) is no connection problem.
    if (err instanceof ErrorReply) {
      return new RedisUnavailableError(`Redis refused the command: ${errorText(err)}`, {
        cause: err,
        refused: true,
      });
    }
    const where = `${this.endpoint.host}:${this.endpoint.port}`;
    return new RedisUnavailableError(
      err instanceof TimeoutError
        ? `Redis at ${where} did not answer in time`
        : `Redis at ${where} cannot be reached (${this.lastFailure ?? errorText(err)})`,
      { cause: err },
    );
  }
}
