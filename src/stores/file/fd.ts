/**
 * The file store's calls on plain descriptors, promised: a FileHandle per
 * read or write costs more main-thread time than the call it wraps.
 */
import fsCallbacks from 'node:fs';
import { promisify } from 'node:util';

export const fdOpen = promisify(fsCallbacks.open);
export const fdClose = promisify(fsCallbacks.close);
export const fdStat = promisify(fsCallbacks.fstat);
export const fdSync = promisify(fsCallbacks.fsync);
export const fdDatasync = promisify(fsCallbacks.fdatasync);

type Transfer = (
  fd: number,
  buffer: Buffer,
  offset: number,
  length: number,
  position: number,
  done: (err: NodeJS.ErrnoException | null, bytes: number) => void,
) => void;

/** fs.read or fs.write at `position`, resolving to the number of bytes moved. */
function transfer(call: Transfer) {
  return (fd: number, buffer: Buffer, offset: number, length: number, position: number) =>
    new Promise<number>((resolve, reject) => {
      call(fd, buffer, offset, length, position, (err, bytes) =>
        err === null ? resolve(bytes) : reject(err),
      );
    });
}

export const fdRead = transfer(fsCallbacks.read);
export const fdWrite = transfer(fsCallbacks.write);
