import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import type * as EmulatorModule from '../../../src/emulator';
import { launchBrowser, type EditorBrowser } from './browser';
import { ShippedCatalog } from './catalog';
import { NodeRedEditor } from './editor';
import {
  createUserDir,
  outputDir,
  packPackage,
  startNodeRed,
  type NodeRedProcess,
} from './runtime';

export const MODULE = 'node-red-contrib-thingsboard-provision';

/** What a first-time user has: the packed package installed, an emulator, Node-RED and a browser. */
export interface EditorSession {
  red: NodeRedProcess;
  emulator: EmulatorModule.Emulator;
  page: Page;
  editor: NodeRedEditor;
  /** The package as installed in the user directory. */
  packageDir: string;
  en: ShippedCatalog;
  ja: ShippedCatalog;
  /** Saves a screenshot of the page as test-output/e2e/<name>.png. */
  shot(name: string): Promise<void>;
  stop(): Promise<void>;
}

let packed: Promise<string> | undefined;

/** The tarball, packed once for every browser test file of this run. */
function tarball(): Promise<string> {
  packed ??= fs.promises.mkdtemp(path.join(os.tmpdir(), 'tb-e2e-')).then((work) => {
    process.once('exit', () => fs.rmSync(work, { recursive: true, force: true }));
    return packPackage(work);
  });
  return packed;
}

/**
 * Installs the package into a fresh user directory, starts the emulator shipped in it with one
 * profile, Node-RED and Chromium, and opens the editor.
 */
export async function startEditorSession(options: {
  /** Names the session's Node-RED log: test-output/e2e/node-red-<name>.log. */
  name: string;
  profile: { name: string; key: string; secret: string };
}): Promise<EditorSession> {
  const { profile } = options;
  clearFailedShots();
  const userDir = await createUserDir(await tarball());
  const packageDir = path.join(userDir, 'node_modules', MODULE);
  // The emulator as shipped in the tarball, so the test also covers what `npx` users start.
  const { Emulator } = require(path.join(packageDir, 'nodes', 'emulator')) as typeof EmulatorModule;
  const emulator = await Emulator.start({
    mqttPort: 0,
    httpPort: 0,
    coapPort: 0,
    profiles: [
      {
        name: profile.name,
        provisionDeviceKey: profile.key,
        provisionDeviceSecret: profile.secret,
        strategy: 'allow-create',
      },
    ],
  });
  let red: NodeRedProcess | undefined;
  let browser: EditorBrowser | undefined;
  const stop = async (): Promise<void> => {
    await browser?.close();
    await red?.stop();
    if (red) {
      fs.writeFileSync(path.join(outputDir, `node-red-${options.name}.log`), red.log());
    }
    if (!process.env.TB_E2E_KEEP) await fs.promises.rm(userDir, { recursive: true, force: true });
    await emulator.stop();
  };
  try {
    red = await startNodeRed(userDir);
    browser = await launchBrowser();
    const page = browser.context.pages()[0] ?? (await browser.context.newPage());
    page.setDefaultTimeout(15_000);
    const editor = new NodeRedEditor(page, red.url);
    await editor.open();
    return {
      red,
      emulator,
      page,
      editor,
      packageDir,
      en: new ShippedCatalog(packageDir, 'en-US'),
      ja: new ShippedCatalog(packageDir, 'ja'),
      shot: async (name) => {
        await page.screenshot({ path: path.join(outputDir, `${name}.png`) });
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

let cleared = false;

/** Removes the screenshots of failed tests of an earlier run, once per run. */
function clearFailedShots(): void {
  fs.mkdirSync(outputDir, { recursive: true });
  if (cleared) return;
  cleared = true;
  for (const old of fs.readdirSync(outputDir).filter((file) => file.startsWith('failed-'))) {
    fs.rmSync(path.join(outputDir, old));
  }
}

/** After a failed test: a screenshot named after it, to see what the user would have seen. */
export async function shootFailure(
  test: Mocha.Test | undefined,
  page: Page | undefined,
): Promise<void> {
  if (test?.state !== 'failed' || !page) return;
  const name = test.title.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
  await page.screenshot({ path: path.join(outputDir, `failed-${name}.png`) }).catch(() => {});
}
