import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

/** Debian's Chromium, installed by scripts/e2e.js; never a browser downloaded by Playwright. */
export const CHROMIUM = process.env.TB_E2E_CHROMIUM ?? '/usr/bin/chromium';

export interface EditorBrowser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Headless Chromium with a profile of its own, so no earlier language choice or tour leaks in. */
export async function launchBrowser(): Promise<EditorBrowser> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run \`node scripts/e2e.js\`, which installs it`);
  }
  const profile = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'tb-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    viewport: { width: 1600, height: 1000 },
    locale: 'en-US',
  });
  return {
    context,
    close: async () => {
      await context.close();
      await fs.promises.rm(profile, { recursive: true, force: true });
    },
  };
}
