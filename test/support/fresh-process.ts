import { execFile } from 'node:child_process';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

/**
 * Runs a CommonJS script in a fresh `node` (with tsx when it requires sources) from the package
 * root, and returns the JSON of its last output line: its require.cache holds only what it loaded.
 */
export function runFresh(script: string, options: { tsx?: boolean } = {}): Promise<unknown> {
  const preload = options.tsx ? ['-r', require.resolve('tsx/cjs')] : [];
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [...preload, '-e', script],
      { cwd: ROOT, timeout: 30_000 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${error.message}\n${stderr}`));
        else resolve(JSON.parse(stdout.trim().split('\n').pop() ?? 'null'));
      },
    );
  });
}

/**
 * Script text defining `loaded()`: the MQTT, HTTP, CoAP and Redis libraries in require.cache,
 * sorted.
 */
export const LOADED_LIBRARIES = `
  const loaded = () => [...new Set(Object.keys(require.cache)
    .map((file) => /[\\\\/]node_modules[\\\\/](mqtt-packet|mqtt|coap-packet|coap|undici|@redis[\\\\/]client)[\\\\/]/.exec(file)?.[1])
    .filter(Boolean).map((name) => name.replace('\\\\', '/')))].sort();
`;
