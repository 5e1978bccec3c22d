/**
 * Child processes for the suites: `node --import tsx <script>`, their stdout
 * read line by line, and a kill that goes to their PID only.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface Child {
  process: ChildProcess;
  pid: number;
  /** Every stdout line so far. */
  lines: string[];
  /** Everything the child wrote to stderr. */
  stderr(): string;
  /** Resolves with the first line (already seen or still to come) that matches; rejects on exit or timeout. */
  waitFor(match: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Resolves when the process has exited, with its code and signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  kill(signal?: NodeJS.Signals): void;
  /** Called for each new stdout line. */
  onLine(listener: (line: string) => void): void;
  /** Writes a line to the child's stdin. */
  send(line: string): void;
}

/** Starts `script` (a path from the repository root) with tsx; `arg` is passed as JSON. */
export function startChild(script: string, arg: unknown, env: NodeJS.ProcessEnv = {}): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(arg)], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin!.on('error', () => {});
  const lines: string[] = [];
  const listeners: ((line: string) => void)[] = [];
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    if (stderr.length < 100_000) stderr += chunk;
  });
  let exitedWith: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      exitedWith = { code, signal };
      resolve(exitedWith);
    });
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(line);
    for (const listener of listeners) listener(line);
  });
  return {
    process: child,
    pid: child.pid!,
    lines,
    stderr: () => stderr,
    exited,
    alive: () => exitedWith === undefined,
    kill(signal = 'SIGKILL') {
      if (exitedWith === undefined) process.kill(child.pid!, signal);
    },
    onLine(listener) {
      listeners.push(listener);
    },
    send(line) {
      child.stdin!.write(`${line}\n`);
    },
    waitFor(match, timeoutMs = 20_000) {
      for (const line of lines) {
        const found = match.exec(line);
        if (found) return Promise.resolve(found);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `child ${child.pid}: no line matching ${match} in ${timeoutMs} ms; stderr: ${stderr}`,
              ),
            ),
          timeoutMs,
        );
        listeners.push((line) => {
          const found = match.exec(line);
          if (found) {
            clearTimeout(timer);
            resolve(found);
          }
        });
        void exited.then(({ code, signal }) => {
          clearTimeout(timer);
          reject(
            new Error(
              `child ${child.pid} exited (${code ?? signal}) before ${match}; stderr: ${stderr}`,
            ),
          );
        });
      });
    },
  };
}
