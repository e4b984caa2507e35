import { StringDecoder } from 'node:string_decoder';

/** Printing helpers: `--json` prints exactly one JSON document on stdout and nothing else there. */
export interface Output {
  json: boolean;
  /** A line for a person (suppressed under --json). */
  line(text?: string): void;
  /** The one JSON document (only under --json). */
  document(value: unknown): void;
  /** A warning for a person, on stderr (under --json too: stdout holds only the document). */
  warn(text: string): void;
}

export function makeOutput(json: boolean): Output {
  return {
    json,
    line(text = '') {
      if (!json) process.stdout.write(`${text}\n`);
    },
    document(value) {
      if (json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    },
    warn(text) {
      process.stderr.write(`gatehouse: warning: ${text}\n`);
    },
  };
}

const useColor = process.stdout.isTTY === true && process.env.NO_COLOR === undefined;
const paint = (code: string) => (s: string) => (useColor ? `\u001b[${code}m${s}\u001b[0m` : s);
export const green = paint('32');
export const red = paint('31');
export const yellow = paint('33');
export const bold = paint('1');
export const dim = paint('2');

export function ms(n: number): string {
  return n < 1000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(2)} s`;
}

/** Colour (SGR) sequences: harmless, and common in build output; left out of what is shown. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching terminal escapes is the point
const SGR = /\u001b\[[0-9;]*m/g;
/** Other control characters (C0 but tab, DEL, C1): a build must not drive the user's terminal. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g;

/**
 * A line of build output as it may be shown on a terminal: colour sequences dropped, a final CR
 * dropped, and every other control character (cursor moves, title changes, the start of an escape
 * sequence) shown as `?`, so that what a build prints cannot rewrite what gatehouse prints.
 */
export function printableLine(line: string): string {
  return line.replace(SGR, '').replace(/\r$/, '').replace(CONTROL, '?');
}

/**
 * Shows a stream of build output line by line, as it arrives: each complete line, made
 * printable, to `write`; a partial line waits for its end or for `flush`.
 */
export class LiveLines {
  readonly #write: (line: string) => void;
  readonly #decoder = new StringDecoder('utf8');
  #partial = '';

  constructor(write: (line: string) => void) {
    this.#write = write;
  }

  push(chunk: Buffer): void {
    const text = this.#partial + this.#decoder.write(chunk);
    const lines = text.split('\n');
    this.#partial = lines.pop() ?? '';
    for (const l of lines) this.#write(printableLine(l));
  }

  /** Show what is left of a last line without a line break. */
  flush(): void {
    const rest = this.#partial + this.#decoder.end();
    this.#partial = '';
    if (rest !== '') this.#write(printableLine(rest));
  }
}
