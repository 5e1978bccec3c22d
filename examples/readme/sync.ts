/**
 * `npm run readme:sync`: copies each file under examples/ into the README
 * block marked `<!-- file: path -->`. Excerpts are not rewritten: the test
 * (test/readme.test.ts) only checks that they still match their file.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { readmeBlocks } from './blocks.js';

const root = new URL('../../', import.meta.url);
const readmeUrl = new URL('README.md', root);
let text = readFileSync(readmeUrl, 'utf8');
// From the last block back, so earlier offsets stay valid.
for (const block of readmeBlocks(text).reverse()) {
  if (block.marker?.kind !== 'file') continue;
  const code = readFileSync(new URL(block.marker.path, root), 'utf8');
  text = text.slice(0, block.start) + code + text.slice(block.end);
}
writeFileSync(readmeUrl, text);
