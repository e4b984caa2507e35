/**
 * The dependency list `cargo auditable` embeds in Rust binaries: zlib-compressed JSON
 * (`{"packages":[{"name","version","source","kind","dependencies","root"}]}`) in a `.dep-v0`
 * section. Rather than read section tables (ELF, Mach-O, PE, wasm each have their own), the scan
 * tries each zlib header in the bytes: a few bytes inflated say at once whether the JSON follows.
 */
import { constants, inflateSync } from 'node:zlib';
import { z } from 'zod';
import type { Component } from '../model.ts';
import { formatPurl } from '../purl.ts';
import type { CaptureRule } from './binary-scanner.ts';

// zlib's first byte is 0x78 for a 32 KiB window; the second carries the level (fastest .. best).
const HEADERS = [0x01, 0x5e, 0x9c, 0xda].map((b) => Buffer.from([0x78, b]));
const PROBE = 64;
const JSON_START = /^\{\s*"(?:packages|format)"\s*:/;

const packageSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  version: z.string().regex(/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/),
  source: z.string().max(256),
  kind: z.enum(['build', 'runtime']).optional(),
  dependencies: z.array(z.number().int().nonnegative()).optional(),
  root: z.boolean().optional(),
});
const auditSchema = z.object({
  packages: z.array(packageSchema).max(100_000),
  format: z.number().optional(),
});

/** The scan rules and their findings for one binary. */
export class CargoAuditableScan {
  #json: string | undefined;

  /** Rules for a {@link BinaryScanner}; `maxBytes` bounds the inflated JSON. */
  rules(maxBytes: number): CaptureRule[] {
    return HEADERS.map((pattern) => ({
      pattern,
      initial: PROBE,
      inspect: (b: Buffer, atEnd: boolean): number => {
        if (this.#json !== undefined) return 0;
        if (b.length <= PROBE) {
          // The probe: does this zlib stream start with the audit JSON?
          let head: Buffer;
          try {
            head = inflateSync(b, { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: 256 });
          } catch {
            return 0;
          }
          if (!JSON_START.test(head.toString('latin1'))) return 0;
          if (!atEnd) return 4096;
        }
        try {
          this.#json = inflateSync(b, { maxOutputLength: maxBytes }).toString('utf8');
          return 0;
        } catch (e) {
          // Short of the stream's end: capture more, up to the bound.
          const short = (e as NodeJS.ErrnoException).code === 'Z_BUF_ERROR';
          return short && !atEnd && b.length < maxBytes ? Math.min(maxBytes, b.length * 4) : 0;
        }
      },
    }));
  }

  /** The audit JSON found, if any. */
  result(): string | undefined {
    return this.#json;
  }
}

/**
 * The components of cargo auditable data: every package, named `pkg:cargo/name@version`, with its
 * dependency edges. Build dependencies (proc macros, build scripts) are scope `dev`: they ran at
 * build time and are not linked in. Returns undefined when the JSON is not audit data.
 */
export function cargoAuditableComponents(json: string): Component[] | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    return undefined;
  }
  const parsed = auditSchema.safeParse(raw);
  if (!parsed.success) return undefined;
  const pkgs = parsed.data.packages;
  const comps = pkgs.map(
    (p): Component => ({
      name: p.name,
      version: p.version,
      purl: formatPurl({ type: 'cargo', name: p.name, version: p.version }),
      ecosystem: 'cargo',
      hashes: [],
      dependencies: [],
      scope: p.kind === 'build' ? 'dev' : 'required',
    }),
  );
  for (const [i, p] of pkgs.entries())
    for (const d of p.dependencies ?? []) {
      const t = comps[d];
      if (t !== undefined && d !== i) comps[i]?.dependencies.push(t.purl);
    }
  for (const c of comps) c.dependencies = [...new Set(c.dependencies)].sort();
  return comps;
}
