#!/usr/bin/env node
// Runs the test suite on the Node-RED 5.x line, which needs Node.js 22.9+. Both are installed from
// the npm registry into .cache/ on first use (the npm package `node@22` ships the binary), so a fresh
// clone needs nothing else. Usage: node scripts/node-red-5.js [mocha arguments...]
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const cache = path.join(root, '.cache');
const NODE_SPEC = 'node@22';
const NODE_RED_SPEC = 'node-red@5';

function npmInstall(prefix, spec, marker) {
  const stamp = path.join(prefix, '.installed');
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === spec && fs.existsSync(marker)) {
    return;
  }
  fs.mkdirSync(prefix, { recursive: true });
  console.log(`Installing ${spec} into ${path.relative(root, prefix)} ...`);
  execFileSync(
    'npm',
    ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', prefix, spec],
    { stdio: 'inherit' },
  );
  fs.writeFileSync(stamp, spec);
}

const nodeDir = path.join(cache, 'node22');
const node22 = path.join(nodeDir, 'node_modules', 'node', 'bin', 'node');
npmInstall(nodeDir, NODE_SPEC, node22);

const redDir = path.join(cache, 'node-red-5');
const redPackage = path.join(redDir, 'node_modules', 'node-red', 'package.json');
npmInstall(redDir, NODE_RED_SPEC, redPackage);

const nodeVersion = execFileSync(node22, ['--version'], { encoding: 'utf8' }).trim();
const redVersion = JSON.parse(fs.readFileSync(redPackage, 'utf8')).version;
console.log(`Node-RED ${redVersion} on Node.js ${nodeVersion}`);

// The shared-store tests start their own redis-server.
execFileSync(process.execPath, [path.join(__dirname, 'redis-server.js')], { stdio: 'inherit' });

const mocha = path.join(root, 'node_modules', 'mocha', 'bin', 'mocha.js');
const result = spawnSync(node22, [mocha, ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
  env: {
    ...process.env,
    TB_TEST_NODE_RED: path.dirname(redPackage),
    PATH: `${path.dirname(node22)}${path.delimiter}${process.env.PATH}`,
  },
});
process.exit(result.status ?? 1);
