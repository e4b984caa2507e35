import { join } from 'node:path';
import { loadConfig } from '../../home/config.ts';
import { homePaths, resolveHome } from '../../home/home.ts';
import { openHomeKeys, rotateHomeKey } from '../../signing/home-keys.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { bold, makeOutput } from '../output.ts';

const USAGE = usageOf('keys');

/** `gatehouse keys`: where the signing keys live, their generations, and rotation. */
export async function keysCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...commonOptions }, { min: 1, max: 2, usage: USAGE });
  const [sub, which] = positionals;
  const root = resolveHome(values.home);
  const p = homePaths(root);
  const config = loadConfig(p.config);
  const out = makeOutput(values.json === true);
  switch (sub) {
    case 'status': {
      const keys = await openHomeKeys(root, p.keys, config.keys);
      keys.close();
      const input = keys.trustedRootInput('https://log');
      const windows = (kind: string, list: { validFrom: Date; validTo?: Date | undefined }[]) =>
        list.map((w) => ({
          kind,
          validFrom: w.validFrom.toISOString(),
          validTo: w.validTo?.toISOString() ?? null,
        }));
      const generations = [
        ...windows('ca', [input.ca].flat()),
        ...windows('log', [input.tlog].flat()),
        ...windows('ct', input.ctlogs ?? []),
        ...windows('tsa', input.timestampAuthorities ?? []),
        ...keys.retiredAttestationKeys.map((k) => ({
          kind: 'attestation',
          keyId: k.keyId,
          publishedUntil: new Date(k.until * 1000).toISOString(),
        })),
        { kind: 'attestation', keyId: keys.attestationKeyId, current: true },
      ];
      const where =
        config.keys === undefined
          ? 'plain key files (a home from before encryption)'
          : config.keys.kind === 'pkcs11'
            ? `PKCS#11 token '${config.keys.token}' (labels ${config.keys.label}-ca, -log, -ct, -tsa); other keys in files`
            : `key files sealed with ${config.keys.encryption.kind === 'kek-file' ? `the key-encryption key ${join(root, config.keys.encryption.path)}` : config.keys.encryption.kind === 'passphrase' ? `the passphrase in $${config.keys.encryption.passphraseEnv}` : 'nothing (plain files)'}`;
      out.document({ keys: where, generations });
      out.line(`${bold('keys')}  ${where}`);
      for (const g of generations)
        out.line(
          'validFrom' in g
            ? `  ${g.kind.padEnd(4)} ${g.validFrom} → ${g.validTo ?? 'current'}`
            : `  ${g.kind} ${g.keyId} ${'current' in g ? 'current' : `retired, in the JWKS until ${g.publishedUntil}`}`,
        );
      return EXIT.ok;
    }
    case 'rotate': {
      if (which !== 'log' && which !== 'ct' && which !== 'ca' && which !== 'tsa' && which !== 'attestation') {
        throw new UsageError(`rotate log, ct, ca, tsa or attestation\nusage: ${USAGE}`);
      }
      await rotateHomeKey(root, p.keys, config.keys, which, new Date(), {
        tokenTtlSeconds: config.tokenTtlSeconds,
      });
      out.document({ rotated: which });
      out.line(
        which === 'attestation'
          ? 'rotated the attestation token key; restart the server: it signs with the new key and publishes the old one until its tokens have expired'
          : `rotated the ${which} key; export the trusted root again (gatehouse trust-root) for verifiers`,
      );
      return EXIT.ok;
    }
    default:
      throw new UsageError(`unknown keys command '${sub ?? ''}'\nusage: ${USAGE}`);
  }
}
