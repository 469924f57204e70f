#!/usr/bin/env node
// Runs the browser test (test/e2e/): a real Node-RED with the packed package, driven through the
// editor in Debian's Chromium. On a clean Debian/Ubuntu machine it installs Chromium (and a Japanese
// font, so the Japanese screenshots are legible) with apt-get first; Playwright never downloads a
// browser. Usage: node scripts/e2e.js [mocha arguments...]
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const { aptInstall } = require('./apt');

const root = path.resolve(__dirname, '..');
const chromium = process.env.TB_E2E_CHROMIUM || '/usr/bin/chromium';

function hasJapaneseFont() {
  try {
    return execFileSync('fc-list', [':lang=ja'], { encoding: 'utf8' }).trim() !== '';
  } catch {
    return false;
  }
}

const missing = [];
if (!fs.existsSync(chromium)) {
  if (process.env.TB_E2E_CHROMIUM) throw new Error(`TB_E2E_CHROMIUM=${chromium} does not exist`);
  missing.push('chromium');
}
if (!hasJapaneseFont()) missing.push('fonts-ipafont-gothic');
if (missing.length > 0) {
  try {
    aptInstall(missing, 'install Chromium and set TB_E2E_CHROMIUM');
  } catch (error) {
    // Without the font only the Japanese screenshots suffer; without Chromium nothing runs.
    if (missing.includes('chromium')) throw error;
    console.warn(`No Japanese font (${error.message}); Japanese screenshots will show boxes.`);
  }
}

const nodeFiles = Object.values(require(path.join(root, 'package.json'))['node-red'].nodes);
if (!nodeFiles.every((file) => fs.existsSync(path.join(root, file)))) {
  execFileSync(process.execPath, [path.join(root, 'scripts', 'build.js')], { stdio: 'inherit' });
}

const started = Date.now();
const mocha = spawnSync(
  process.execPath,
  [
    require.resolve('mocha/bin/mocha.js'),
    '--config',
    path.join('test', 'e2e', 'mocharc.json'),
    ...process.argv.slice(2),
  ],
  { cwd: root, stdio: 'inherit' },
);
console.log(
  `Browser test finished in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ` +
    path.join('test-output', 'e2e'),
);
process.exit(mocha.status ?? 1);
