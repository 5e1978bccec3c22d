/**
 * The progress line of a long command (`satchel clearsessions`), drawn on
 * stderr only when it is a terminal: a bar with counts when the store tells
 * how many records there are, a spinner with the running count when it does
 * not. Elsewhere (a pipe, a cron log) it draws nothing and the command prints
 * its plain final line.
 */

/** What a store reports after each batch (ClearExpiredOptions.onProgress). */
export interface ProgressReport {
  removed: number;
  total?: number;
}

export interface Progress {
  /** Records the latest counts; the next frame shows them. */
  update(report: ProgressReport): void;
  /** Erases the line. Safe to call more than once. */
  stop(): void;
}

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /**
   * Nothing is drawn before this many ms, so quick runs stay quiet.
   * @default 500
   */
  delayMs?: number;
  /**
   * Time between frames, in ms.
   * @default 100
   */
  intervalMs?: number;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const BAR_WIDTH = 24;
const count = new Intl.NumberFormat('en-US');

/**
 * One frame of the progress line, without control characters, at most
 * `width` characters: a long label is shortened, never the counts.
 * Exported for tests.
 */
export function progressLine(
  label: string,
  report: ProgressReport | undefined,
  ms: number,
  frame = 0,
  width = 79,
): string {
  const seconds = `${(ms / 1000).toFixed(1)}s`;
  let head: string;
  let tail: string;
  if (report === undefined) {
    // Work that reports no counts (a migration), or a store that has not reported yet.
    head = `${FRAMES[frame % FRAMES.length]} `;
    tail = `… ${seconds}`;
  } else if (report.total !== undefined && report.total > 0) {
    const { removed, total } = report;
    const fraction = Math.min(1, removed / total);
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = `${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}`;
    const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
    head = '';
    tail = ` [${bar}] ${percent} ${count.format(removed)} of ${count.format(total)} · ${seconds}`;
  } else {
    head = `${FRAMES[frame % FRAMES.length]} `;
    tail = `… ${count.format(report.removed)} removed · ${seconds}`;
  }
  const room = width - head.length - tail.length;
  const shown = label.length <= room ? label : `${label.slice(0, Math.max(0, room - 1))}…`;
  return `${head}${shown}${tail}`;
}

/** Starts the progress line on `stream`; a no-op unless `stream` is a terminal. */
export function startProgress(
  stream: ProgressStream,
  label: string,
  options: ProgressOptions = {},
): Progress {
  if (!stream.isTTY) return { update() {}, stop() {} };
  let latest: ProgressReport | undefined;
  const started = Date.now();
  let frame = 0;
  let shown = false;
  let stopped = false;
  const draw = () => {
    // One column short of the width: a wrapped line cannot be erased with \r.
    // A terminal that reports no size (0 columns) gets the usual 80.
    const width = (stream.columns || 80) - 1;
    stream.write(`\r${progressLine(label, latest, Date.now() - started, frame++, width)}\x1b[K`);
    shown = true;
  };
  let timer: NodeJS.Timeout | undefined;
  const delay = setTimeout(() => {
    draw();
    timer = setInterval(draw, options.intervalMs ?? 100);
  }, options.delayMs ?? 500);
  return {
    update(report) {
      latest = report;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clearTimeout(delay);
      clearInterval(timer);
      if (shown) stream.write('\r\x1b[K');
    },
  };
}
