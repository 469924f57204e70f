#!/usr/bin/env node
// Makes sure redis-server is installed before the tests run: the shared-store tests start their
// own on a loopback port. On a Debian/Ubuntu machine without it, installs Debian's package with
// apt-get (as root or with sudo -n). TB_TEST_REDIS_SERVER names another binary. Fails loudly
// rather than let those tests be skipped.
'use strict';
const { spawnSync } = require('node:child_process');
const { aptInstall } = require('./apt');

const binary = process.env.TB_TEST_REDIS_SERVER || 'redis-server';

function installed() {
  return spawnSync(binary, ['--version'], { stdio: 'ignore' }).status === 0;
}

if (!installed()) {
  if (process.env.TB_TEST_REDIS_SERVER) {
    throw new Error(`TB_TEST_REDIS_SERVER=${binary} does not run`);
  }
  aptInstall(['redis-server'], 'install Redis 6.2 or later and set TB_TEST_REDIS_SERVER');
  if (!installed()) throw new Error('redis-server is still missing after apt-get install');
}
