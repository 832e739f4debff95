// Type-checks Grafana dashboard files against Grafana's published dashboard type.
//
//   node tests/js/check_dashboards.mjs [dashboard.json ...]    (default: deploy/grafana/*.json)
//
// Each file becomes a TypeScript module that assigns the file's text, unchanged, to
// `DashboardFile` (dashboard_types.ts); tsc --strict --noEmit then checks all of them at once.
// The module's header shares the JSON's first line, so a type error's line is the line in the
// JSON file. A file's `schemaVersion` must also be the one the installed @grafana/schema writes
// (its `defaultDashboard`).
//
// Prints one line per problem (`FILE:LINE:COLUMN: error TSnnnn: message` for a type error,
// `FILE: message` otherwise), then `N type errors, K other problems in M dashboards (versions)`.
// Exit status: 0 no problem, 1 problems, 2 the check cannot run (npm packages not installed).

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..", "..");
const INSTALL = "npm ci --prefix tests/js";
const TSC = join(HERE, "node_modules", "typescript", "bin", "tsc");
const HEADER = `import type { DashboardFile } from ${JSON.stringify(join(HERE, "dashboard_types"))}; `
  + "export const dashboard: DashboardFile = ";

/** The package.json of an installed npm package, or null when it is not installed. */
function installed(name) {
  const path = join(HERE, "node_modules", ...name.split("/"), "package.json");
  return existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : null;
}

/** A file's path relative to the current directory when it lies below it, else absolute. */
function shown(file) {
  const below = relative(process.cwd(), file);
  return below && !below.startsWith("..") && !isAbsolute(below) ? below : file;
}

/**
 * Problems of `files`: schema versions other than `schemaVersion`, then tsc's type errors with
 * their place in the JSON file. Throws when tsc itself cannot run.
 */
function check(files, schemaVersion, schemaPackageVersion) {
  const problems = [];
  const work = mkdtempSync(join(tmpdir(), "mfrm-dashboards-"));
  try {
    const modules = new Map();
    files.forEach((file, index) => {
      let text;
      let parsed;
      try {
        text = readFileSync(file, "utf8");
        parsed = JSON.parse(text);
      } catch (error) {
        problems.push(`${shown(file)}: ${text === undefined ? "cannot read" : "not JSON"}: ${error.message}`);
        return;
      }
      if (parsed.schemaVersion !== schemaVersion) {
        problems.push(`${shown(file)}: schemaVersion is ${parsed.schemaVersion}; @grafana/schema `
          + `${schemaPackageVersion} writes ${schemaVersion}`);
      }
      const module = join(work, `dashboard_${index}.ts`);
      writeFileSync(module, `${HEADER}${text.trimEnd()};\n`);
      modules.set(basename(module), file);
    });
    if (!modules.size) return problems;

    const project = join(work, "tsconfig.json");
    writeFileSync(project, JSON.stringify({
      extends: join(HERE, "tsconfig.dashboards.json"),
      files: [...modules.keys()].map((name) => join(work, name)),
    }));
    const run = spawnSync(process.execPath, [TSC, "--project", project, "--pretty", "false"], { encoding: "utf8" });
    if (run.error || run.status === null) throw new Error(`tsc did not run: ${run.error ?? run.signal}`);

    // tsc prints `path(line,col): error TSnnnn: message`; a long message goes on in indented lines.
    let continues = false;
    for (const line of `${run.stdout}${run.stderr}`.split("\n")) {
      const at = /^(.*?)\((\d+),(\d+)\): (error TS\d+: .*)$/.exec(line);
      if (at && modules.has(basename(at[1]))) {
        const row = Number(at[2]);
        const column = row === 1 ? Math.max(1, Number(at[3]) - HEADER.length) : Number(at[3]);
        problems.push(`${shown(modules.get(basename(at[1])))}:${row}:${column}: ${at[4]}`);
        continues = true;
      } else if (/error TS\d+/.test(line)) {
        problems.push(line.trim());
        continues = true;
      } else if (continues && /^\s+\S/.test(line)) {
        problems[problems.length - 1] += ` ${line.trim()}`;
      } else {
        continues = false;
      }
    }
    if (run.status !== 0 && !problems.length) {
      problems.push(`tsc exited with status ${run.status}: ${run.stdout}${run.stderr}`.trim());
    }
    return problems;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function main() {
  const schemaPackage = installed("@grafana/schema");
  const typescriptPackage = installed("typescript");
  for (const [name, found] of [["@grafana/schema", schemaPackage], ["typescript", typescriptPackage]]) {
    if (!found) {
      console.error(`${name} is not installed in tests/js; run: ${INSTALL}`);
      return 2;
    }
  }
  const require = createRequire(join(HERE, "package.json"));
  const { defaultDashboard } = await import(require.resolve("@grafana/schema"));
  const schemaVersion = defaultDashboard.schemaVersion;

  const grafana = join(ROOT, "deploy", "grafana");
  const files = process.argv.length > 2
    ? process.argv.slice(2).map((file) => resolve(file))
    : readdirSync(grafana).filter((name) => name.endsWith(".json")).sort().map((name) => join(grafana, name));

  let problems;
  try {
    problems = check(files, schemaVersion, schemaPackage.version);
  } catch (error) {
    console.error(error.message);
    return 2;
  }
  for (const problem of problems) console.log(problem);
  const typeErrors = problems.filter((problem) => /error TS\d+:/.test(problem)).length;
  console.log(`${typeErrors} type errors, ${problems.length - typeErrors} other problems in ${files.length} `
    + `dashboards (@grafana/schema ${schemaPackage.version}, schemaVersion ${schemaVersion}, `
    + `typescript ${typescriptPackage.version})`);
  return problems.length ? 1 : 0;
}

process.exitCode = await main();
