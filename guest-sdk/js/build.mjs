// Builds a JavaScript plugin directory into a Weir component; run by
// `guest-sdk/js/build PLUGIN_DIR OUT.wasm` (which installs the toolchain
// and sets WEIR_CACHE).
//
// 1. esbuild bundles PLUGIN_DIR/index.js (or .ts/.mjs) with the SDK into one
//    ES module (componentize-js takes a single source module). The entry
//    exports `handler` = createHandler(the plugin module's namespace); the
//    world's imports (`weir:transform/...`) stay external.
// 2. componentize-js (StarlingMonkey + wizer) turns the bundle into a
//    component of weir:transform/plugin@0.2.1, its JavaScript compiled
//    ahead of time by weval (WEIR_JS_AOT=0: interpreted, a faster build
//    of a component half as fast), with every WASI feature
//    disabled, so the component imports only the world's interfaces (all
//    of them, `tables` included, whether the plugin uses them or not).

import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdtemp, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const witPath = resolve(here, '../../wit/0.2');
const tools = join(process.env.WEIR_CACHE ?? join(process.env.HOME, '.cache/weir'), 'js');
const require = createRequire(join(tools, 'package.json'));

const [pluginArg, outArg] = process.argv.slice(2);
if (!pluginArg || !outArg) {
  console.error('usage: build.mjs PLUGIN_DIR OUT.wasm');
  process.exit(2);
}
const pluginDir = resolve(pluginArg);
const out = resolve(outArg);
const entry = ['index.js', 'index.mjs', 'index.ts'].map((f) => join(pluginDir, f)).find(existsSync);
if (!entry) {
  console.error(`weir js build: no index.js, index.mjs or index.ts in ${pluginDir}`);
  process.exit(1);
}

const weirPlugin = {
  name: 'weir',
  setup(build) {
    build.onResolve({ filter: /^weir$/ }, () => ({ path: join(here, 'weir.js') }));
    build.onResolve({ filter: /^weir:/ }, (args) => ({ path: args.path, external: true }));
  },
};

const started = Date.now();
const esbuild = require('esbuild');
const bundled = await esbuild.build({
  stdin: {
    contents: [
      `import * as plugin from ${JSON.stringify(entry)};`,
      `import { createHandler } from 'weir';`,
      `export const handler = createHandler(plugin);`,
    ].join('\n'),
    resolveDir: pluginDir,
    sourcefile: 'weir-entry.js',
    loader: 'js',
  },
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  mainFields: ['module', 'main'],
  target: 'es2023',
  keepNames: true,
  legalComments: 'none',
  write: false,
  logLevel: 'warning',
  plugins: [weirPlugin],
});

// A component depends only on the bundle, the WIT and the toolchain (its
// bytes differ between runs, its behaviour does not): reuse an earlier one
// when all three are unchanged. WEIR_JS_NO_CACHE=1 rebuilds.
const cacheDir = join(tools, 'components');
const aot = process.env.WEIR_JS_AOT !== '0';
const hash = createHash('sha256');
hash.update(aot ? 'aot' : 'interpreted');
hash.update(bundled.outputFiles[0].contents);
for (const f of readdirSync(witPath).filter((f) => f.endsWith('.wit')).sort()) hash.update(f).update(readFileSync(join(witPath, f)));
hash.update(readFileSync(join(here, 'package-lock.json'))).update(readFileSync(fileURLToPath(import.meta.url)));
const cached = join(cacheDir, `${hash.digest('hex').slice(0, 32)}.wasm`);
await mkdir(dirname(out), { recursive: true });
if (!process.env.WEIR_JS_NO_CACHE && existsSync(cached)) {
  await copyFile(cached, out);
  console.error(`weir js build: ${out} (unchanged, from ${cached})`);
  process.exit(0);
}

const work = await mkdtemp(join(tmpdir(), 'weir-js-'));
const source = join(work, 'plugin.js');
await writeFile(source, bundled.outputFiles[0].contents);

const { componentize } = await import(pathToFileURL(join(tools, 'node_modules/@bytecodealliance/componentize-js/src/componentize.js')).href);
let component;
try {
  ({ component } = await componentize({
    sourcePath: source,
    witPath,
    worldName: 'plugin',
    disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
    enableAot: aot,
    wevalBin: join(tools, '../tools/bin/weval'),
  }));
} catch (e) {
  console.error(`weir js build: componentize failed for ${entry} (bundle kept at ${source}):\n${e.message ?? e}`);
  process.exit(1);
}
await writeFile(out, component);
await rm(work, { recursive: true, force: true });
await mkdir(cacheDir, { recursive: true });
await writeFile(`${cached}.tmp`, component);
await copyFile(`${cached}.tmp`, cached);
await rm(`${cached}.tmp`);
// Keep the 40 newest components (~12 MiB each).
const entries = await Promise.all((await readdir(cacheDir)).filter((f) => f.endsWith('.wasm')).map(async (f) => [f, (await stat(join(cacheDir, f))).mtimeMs]));
for (const [f] of entries.sort((a, b) => b[1] - a[1]).slice(40)) await rm(join(cacheDir, f), { force: true });
const kib = Math.round(component.length / 1024);
console.error(`weir js build: ${out} (${kib} KiB) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
