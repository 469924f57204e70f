/**
 * A process of its own that opens a file store and holds it (and its lock) until told to let go:
 * the other Node-RED process of the tests that share one user directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

const STORE_MODULE = path.resolve(__dirname, '../../src/store/file/index.ts');

export interface StoreProcessReport {
  holding?: boolean;
  refused?: string;
  reason?: string;
}

/** A process that opens the store and holds it until its stdin ends (then releases it). */
export class StoreProcess {
  readonly child: ChildProcess;
  readonly report: Promise<StoreProcessReport>;
  readonly exited: Promise<void>;

  /** With `onGo`, the child loads, says so, and opens the store only when told to. */
  constructor(file: string, put?: string, onGo = false) {
    const script = `
      const { openFileStore } = require(${JSON.stringify(STORE_MODULE)});
      const say = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
      const go = new Promise((resolve) => {
        if (!${onGo}) return resolve();
        say({ loaded: true });
        process.stdin.once('data', resolve);
      });
      (async () => {
        await go;
        const store = openFileStore({ filePath: ${JSON.stringify(file)} });
        try {
          await store.ready();
          await store.writable();
          ${put ? `await store.put(${put});` : ''}
          say({ holding: true });
        } catch (err) {
          say({ refused: err.message, reason: err.reason });
          process.exit(0);
        }
        process.stdin.on('end', () => store.release().then(() => process.exit(0)));
        process.stdin.resume();
      })();
    `;
    this.child = spawn(process.execPath, ['-r', 'tsx/cjs', '-e', script], {
      cwd: path.resolve(__dirname, '..', '..'),
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    const lines: StoreProcessReport[] = [];
    const waiting: Array<(report: StoreProcessReport) => void> = [];
    let output = '';
    this.child.stdout?.setEncoding('utf8');
    this.child.stdout?.on('data', (chunk: string) => {
      output += chunk;
      while (output.includes('\n')) {
        const end = output.indexOf('\n');
        lines.push(JSON.parse(output.slice(0, end)) as StoreProcessReport);
        output = output.slice(end + 1);
        waiting.shift()?.(lines[lines.length - 1]);
      }
    });
    const next = (): Promise<StoreProcessReport> =>
      new Promise((resolve, reject) => {
        waiting.push(resolve);
        this.child.once('exit', () => reject(new Error('exited before reporting')));
      });
    this.loaded = onGo ? next() : Promise.resolve({});
    this.report = this.loaded.then(next);
  }

  readonly loaded: Promise<StoreProcessReport>;

  go(): void {
    this.child.stdin?.write('go\n');
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Ends stdin: the child releases the store and exits. */
  async stop(): Promise<void> {
    this.child.stdin?.end();
    await this.exited;
  }

  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }
}
