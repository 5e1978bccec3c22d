/**
 * The README's fenced code blocks and the markers that tie each TypeScript
 * block to a file under examples/: `<!-- file: path -->` (the block is the
 * whole file) or `<!-- excerpt: path -->` (every line of the block appears in
 * the file, in order, spacing aside), on the line just above the fence.
 * Used by test/readme.test.ts and by `npm run readme:sync`.
 */
export interface Marker {
  kind: 'file' | 'excerpt';
  path: string;
}

export interface Block {
  /** The fence's info string: `ts`, `sh`, … */
  lang: string;
  code: string;
  marker?: Marker;
  /** 1-based line of the opening fence. */
  line: number;
  /** Offsets of the code between the fences, for rewriting. */
  start: number;
  end: number;
}

const MARKER = /^<!-- (file|excerpt): (\S+) -->$/;
const FENCE = /^```(\S*)\s*$/;

export function readmeBlocks(text: string): Block[] {
  const blocks: Block[] = [];
  const lines = text.split('\n');
  let offset = 0;
  let open: { lang: string; line: number; start: number; marker?: Marker } | undefined;
  for (const [i, line] of lines.entries()) {
    const fence = FENCE.exec(line);
    if (open === undefined && fence) {
      const found = MARKER.exec(lines[i - 1] ?? '');
      open = {
        lang: fence[1] ?? '',
        line: i + 1,
        start: offset + line.length + 1,
        ...(found && { marker: { kind: found[1] as Marker['kind'], path: found[2]! } }),
      };
    } else if (open !== undefined && line.trim() === '```') {
      blocks.push({ ...open, end: offset, code: text.slice(open.start, offset) });
      open = undefined;
    }
    offset += line.length + 1;
  }
  return blocks;
}

/** True when every non-blank line of `excerpt` appears in `file`, in order, spacing aside. */
export function isExcerptOf(excerpt: string, file: string): boolean {
  const normalize = (line: string) => line.trim().replace(/\s+/g, ' ');
  const wanted = excerpt.split('\n').map(normalize).filter(Boolean);
  const have = file.split('\n').map(normalize);
  let at = 0;
  for (const line of wanted) {
    const found = have.indexOf(line, at);
    if (found === -1) return false;
    at = found + 1;
  }
  return true;
}
