/**
 * A real redis-server for a test: Debian's binary (scripts/redis-server.js installs it when
 * missing), on a free loopback port, in a temporary folder, with none of the machine's config.
 * Killed, restarted on the same port and folder, and removed by the test itself.
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REDIS_SERVER = process.env.TB_TEST_REDIS_SERVER ?? 'redis-server';

export interface RedisServerOptions {
  /** An append-only file fsynced before each reply: acknowledged writes survive a kill. */
  durable?: boolean;
  /** Replicates this server, for tests of WAIT. */
  replicaOf?: RedisServer;
  /** Refuses clients without this password. */
  password?: string;
  /** Listens for TLS only, with this server certificate (PEM), asking clients for none. */
  tls?: { cert: string; key: string };
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves once something accepts TCP connections on the port. */
async function untilListening(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${log()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > until) throw new Error(`redis-server did not listen on ${port}: ${log()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export class RedisServer {
  private child: ChildProcess | undefined;
  private output = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly options: RedisServerOptions,
  ) {}

  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    if (spawnSync(REDIS_SERVER, ['--version']).status !== 0) {
      throw new Error(
        `${REDIS_SERVER} is not installed: run node scripts/redis-server.js (apt-get install ` +
          'redis-server), or point TB_TEST_REDIS_SERVER at one',
      );
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-redis-'));
    const server = new RedisServer(await freePort(), dir, options);
    await server.restart();
    return server;
  }

  get url(): string {
    return `${this.options.tls ? 'rediss' : 'redis'}://127.0.0.1:${this.port}/0`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && !this.child.killed;
  }

  /** Starts it (again) on the same port and folder: a durable one has kept what it acknowledged. */
  async restart(): Promise<void> {
    if (this.running) throw new Error('redis-server is running already');
    const { durable, replicaOf, password, tls } = this.options;
    const args = ['--bind', '127.0.0.1', '--dir', this.dir, '--save', ''];
    args.push('--appendonly', durable ? 'yes' : 'no');
    if (durable) args.push('--appendfsync', 'always');
    if (replicaOf) args.push('--replicaof', '127.0.0.1', String(replicaOf.port));
    if (password) args.push('--requirepass', password);
    if (tls) {
      fs.writeFileSync(path.join(this.dir, 'server.crt'), tls.cert);
      fs.writeFileSync(path.join(this.dir, 'server.key'), tls.key, { mode: 0o600 });
      args.push('--port', '0', '--tls-port', String(this.port));
      args.push('--tls-cert-file', path.join(this.dir, 'server.crt'));
      args.push('--tls-key-file', path.join(this.dir, 'server.key'));
      args.push('--tls-auth-clients', 'no');
    } else args.push('--port', String(this.port));
    this.output = '';
    const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [child.stdout, child.stderr]) {
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        this.output = (this.output + chunk).slice(-4000);
      });
    }
    this.child = child;
    await untilListening(this.port, child, () => this.output);
  }

  /** Kills it (SIGKILL by default: no shutdown save) and waits for the exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  }

  /** Kills it and removes its folder. */
  async stop(): Promise<void> {
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
