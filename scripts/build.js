#!/usr/bin/env node
// Builds the shipped package: compiles src/ into nodes/ and lays the editor files and message
// catalogs beside the compiled node module, where Node-RED looks for them.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'nodes');

fs.rmSync(out, { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', root], {
  stdio: 'inherit',
});

const nodeDir = path.join(out, 'nodes');
for (const file of fs.readdirSync(path.join(root, 'src', 'nodes'))) {
  if (file.endsWith('.html')) {
    fs.copyFileSync(path.join(root, 'src', 'nodes', file), path.join(nodeDir, file));
  }
}
fs.cpSync(path.join(root, 'locales'), path.join(nodeDir, 'locales'), { recursive: true });
const icons = path.join(root, 'src', 'nodes', 'icons');
if (fs.existsSync(icons)) fs.cpSync(icons, path.join(nodeDir, 'icons'), { recursive: true });
fs.chmodSync(path.join(out, 'emulator', 'cli.js'), 0o755);
