// Bundles src/main.js (+ src/styles.css) into dist/ with esbuild; copies index.html and theme-boot.js.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");
mkdirSync(dist, { recursive: true });
const options = {
  entryPoints: { app: join(root, "src/main.js") },
  bundle: true,
  minify: true,
  sourcemap: "linked",
  format: "iife",
  target: ["chrome110", "firefox110", "safari16"],
  outdir: dist,
  logLevel: "info",
};
copyFileSync(join(root, "index.html"), join(dist, "index.html"));
copyFileSync(join(root, "theme-boot.js"), join(dist, "theme-boot.js"));
if (process.argv.includes("--watch")) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
