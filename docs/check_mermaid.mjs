// Parses every ```mermaid block of the Markdown files given as arguments with
// the real mermaid parser (in jsdom); exits 1 naming each block that fails.
// Run from a directory whose node_modules has mermaid and jsdom (see
// charts/install-tools.sh), script on stdin:
//   cd $TOOLS && node --input-type=module - FILE.md ... < docs/check_mermaid.mjs
import fs from 'node:fs';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });

let failures = 0;
for (const file of process.argv.slice(2)) {
  const text = fs.readFileSync(file, 'utf8');
  for (const match of text.matchAll(/^```mermaid\n([\s\S]*?)^```/gm)) {
    const line = text.slice(0, match.index).split('\n').length;
    try {
      const result = await mermaid.parse(match[1]);
      console.log(`${file}:${line}: ${result.diagramType} ok`);
    } catch (err) {
      failures += 1;
      console.log(`${file}:${line}: ${err.message}`);
    }
  }
}
process.exit(failures ? 1 : 0);
