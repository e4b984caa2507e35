import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isGatehouseError } from '../../common/errors.ts';
import { consoleOidcSchema } from '../../home/config.ts';
import { loadOidcClientSecret } from './oidc-login.ts';
import { loadTriagerToken, loadViewerToken } from './viewer-token.ts';

describe("the console's token and secret files", () => {
  const root = mkdtempSync(join(tmpdir(), 'gatehouse-console-tokens-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  const file = (name: string, text: string, mode = 0o600) => {
    writeFileSync(join(root, name), text, { mode });
    return name;
  };
  const badConfig = (pattern: RegExp) => (e: unknown) => {
    assert.ok(isGatehouseError(e, 'BAD_CONFIG'), String(e));
    assert.match(e.message, pattern);
    return true;
  };

  it('makes no triager token by default, and reads a configured one', async () => {
    assert.equal(await loadTriagerToken(root, undefined, 'v'.repeat(20)), undefined);
    const name = file('triager', 'the triager token, long enough\n');
    assert.equal(await loadTriagerToken(root, name, 'v'.repeat(20)), 'the triager token, long enough');
  });

  it('refuses a triager token readable by others, too short, missing, or equal to the viewer token', async () => {
    const viewer = await loadViewerToken(root, file('viewer', 'the viewer token of this home\n'));
    await assert.rejects(
      loadTriagerToken(root, file('open', 'a triager token readable by all', 0o644), viewer.token),
      badConfig(/readable by others/),
    );
    await assert.rejects(loadTriagerToken(root, file('short', 'short'), viewer.token), badConfig(/shorter/));
    await assert.rejects(loadTriagerToken(root, 'absent', viewer.token), badConfig(/cannot read/));
    await assert.rejects(
      loadTriagerToken(root, file('same', `${viewer.token}\n`), viewer.token),
      badConfig(/is the viewer token/),
    );
  });

  it("reads the OIDC client secret only from a file of its owner's, and none for a public client", async () => {
    const base = { issuer: 'https://id.example', clientId: 'c', allowed: { groups: ['a'] } };
    assert.equal(await loadOidcClientSecret(root, consoleOidcSchema.parse(base)), undefined);
    const ok = consoleOidcSchema.parse({ ...base, clientSecretFile: file('secret', 'the secret\n') });
    assert.equal(await loadOidcClientSecret(root, ok), 'the secret');
    const open = consoleOidcSchema.parse({ ...base, clientSecretFile: file('secret-open', 'x', 0o640) });
    await assert.rejects(loadOidcClientSecret(root, open), badConfig(/readable by others/));
    const empty = consoleOidcSchema.parse({ ...base, clientSecretFile: file('secret-empty', '\n') });
    await assert.rejects(loadOidcClientSecret(root, empty), badConfig(/empty/));
  });
});
