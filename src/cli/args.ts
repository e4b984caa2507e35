import { type ParseArgsConfig, parseArgs } from 'node:util';

/** A usage error: exit code 2, with the command's usage line. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Options every command takes. */
export const commonOptions = {
  home: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

/** parseArgs, with unknown options and stray positionals turned into usage errors. */
export function parse<O extends Options>(
  argv: string[],
  options: O,
  positionals: { min: number; max: number; usage: string },
): {
  values: ReturnType<
    typeof parseArgs<{ options: O; allowPositionals: true; args: string[]; strict: true }>
  >['values'];
  positionals: string[];
} {
  let parsed: ReturnType<
    typeof parseArgs<{ options: O; allowPositionals: true; args: string[]; strict: true }>
  >;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\nusage: ${positionals.usage}`);
  }
  const n = parsed.positionals.length;
  if (!(parsed.values as { help?: boolean }).help && (n < positionals.min || n > positionals.max)) {
    throw new UsageError(`usage: ${positionals.usage}`);
  }
  return { values: parsed.values, positionals: parsed.positionals };
}

/**
 * A whole number given on the command line: digits only, at most `digits` of them, and at least
 * `min`; anything else (a missing value too) is a usage error naming the option or argument.
 */
export function wholeNumber(
  value: string | undefined,
  name: string,
  usage: string,
  limits: { min: number; digits: number },
): number {
  if (
    value === undefined ||
    !new RegExp(`^\\d{1,${limits.digits}}$`).test(value) ||
    Number(value) < limits.min
  )
    throw new UsageError(`${name} must be a whole number\nusage: ${usage}`);
  return Number(value);
}
