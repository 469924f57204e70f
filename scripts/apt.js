// Installs Debian packages a test run needs (Chromium for the browser test, redis-server for the
// shared-store tests) with apt-get, as root or through sudo -n; never prompts.
'use strict';
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');

/** Throws when there is no apt-get (the text ends with `otherwise`, what to do) or it fails. */
function aptInstall(packages, otherwise) {
  if (!fs.existsSync('/usr/bin/apt-get')) {
    throw new Error(`${packages.join(', ')} missing and no apt-get here: ${otherwise}`);
  }
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const prefix = asRoot ? [] : ['sudo', '-n'];
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (args) => {
    const [command, ...rest] = [...prefix, 'apt-get', ...args];
    execFileSync(command, rest, { stdio: 'inherit', env });
  };
  console.log(`Installing ${packages.join(' ')} with apt-get ...`);
  apt(['update']);
  apt(['install', '-y', ...packages]);
}

module.exports = { aptInstall };
