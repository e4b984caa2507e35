import { z } from 'zod';

/**
 * The `source` section of the home's config.json: which hosted providers the gate may ask, besides
 * the local git repositories it always reads. Tokens are never in the file: `tokenEnv` names the
 * environment variable of the control plane that holds one.
 */
const hosted = (kind: 'github' | 'gitlab') =>
  z
    .object({
      kind: z.literal(kind),
      /** REST API base: `https://api.github.com`, `https://gitlab.example/api/v4`. */
      apiUrl: z.url(),
      /** Web base that repository URIs start with: `https://github.com`, `https://gitlab.example`. */
      webUrl: z.url(),
      tokenEnv: z
        .string()
        .regex(/^[A-Z_][A-Z0-9_]*$/)
        .optional(),
      /** Longest wait for a rate limit to reset before the check fails closed. */
      maxRateLimitWaitSeconds: z.number().int().min(0).max(300).optional(),
    })
    .strict();

export const sourceConfigSchema = z
  .object({
    providers: z.array(z.discriminatedUnion('kind', [hosted('github'), hosted('gitlab')])).max(16),
  })
  .strict();

export type SourceConfig = z.infer<typeof sourceConfigSchema>;
