#!/usr/bin/env node
// Builds the shipped package: compiles src/ into nodes/ and copies what else each node folder under
// src/nodes/ holds (editor HTML, catalogs, help, icons) beside its compiled runtime, where Node-RED
// looks for them.
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

fs.cpSync(path.join(root, 'src', 'nodes'), path.join(out, 'nodes'), {
  recursive: true,
  filter: (source) => !source.endsWith('.ts'),
});
fs.chmodSync(path.join(out, 'emulator', 'cli.js'), 0o755);
fs.chmodSync(path.join(out, 'store', 'cli.js'), 0o755);
