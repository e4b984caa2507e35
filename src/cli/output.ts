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
