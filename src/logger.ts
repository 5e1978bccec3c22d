/** Where satchel reports corrupt stored data, store trouble and failed requests. Never given a raw session ID. */
export interface Logger {
  warn(message: string, details?: Record<string, unknown>): void;
  error(message: string, details?: Record<string, unknown>): void;
}

/** The default logger: `console.warn` and `console.error`. */
export const consoleLogger: Logger = {
  warn: (message, details) => console.warn(message, details ?? ''),
  error: (message, details) => console.error(message, details ?? ''),
};
