// Preloaded (node -r) into `node-red-dev validate` by scripts/pack-check.js. The Flow Library
// catalogue (catalogue.nodered.org) is unreachable offline and node-red-dev abandons every later
// check when it cannot fetch it, so its requests are answered with an empty catalogue here; the
// checks that depend on it (P08 similar names, N01 unique node types) are reported as skipped.
// When the npm registry is unreachable too, the node-red metadata comes from the local install.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const toolDir = process.env.TB_NODE_RED_DEV_DIR;
const axios = require(require.resolve('axios', { paths: [toolDir] }));
const CATALOGUE = 'https://catalogue.nodered.org/';
const NODE_RED_METADATA = 'https://registry.npmjs.org/node-red';

function answer(config, data) {
  return Promise.resolve({ data, status: 200, statusText: 'OK', headers: {}, config, request: {} });
}

function localNodeRedMetadata() {
  const versions = {};
  let latest;
  for (const dir of (process.env.TB_LOCAL_NODE_RED || '').split(path.delimiter)) {
    if (!dir) continue;
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    versions[pkg.version] = { engines: pkg.engines };
    if (!latest || Number(pkg.version.split('.')[0]) > Number(latest.split('.')[0])) {
      latest = pkg.version;
    }
  }
  return { 'dist-tags': { latest }, versions };
}

axios.interceptors.request.use((config) => {
  if (config.url.startsWith(CATALOGUE)) {
    config.adapter = (request) => answer(request, { modules: [] });
    console.log(`SKIPPED (catalogue unreachable offline): ${config.url}`);
  } else if (config.url === NODE_RED_METADATA) {
    const network = axios.defaults.adapter;
    config.adapter = (request) =>
      network(request).catch((error) => {
        console.log(`npm registry unreachable (${error.message}): using the local node-red`);
        return answer(request, localNodeRedMetadata());
      });
  }
  return config;
});
