export type { FileStoreLogger, FileStoreOptions } from './file/index.js';
export { fileStore } from './file/index.js';
