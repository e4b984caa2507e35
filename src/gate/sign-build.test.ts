import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sourceOwnerOf } from './sign-build.ts';

describe("the leaf's source-repository owner", () => {
  it('names the owner of a hosted repository, as gh attestation verify --owner compares it', () => {
    assert.deepEqual(sourceOwnerOf('https://github.com/acme/app'), {
      sourceRepositoryOwnerUri: 'https://github.com/acme',
    });
    assert.deepEqual(sourceOwnerOf('https://gitlab.example/acme/app.git'), {
      sourceRepositoryOwnerUri: 'https://gitlab.example/acme',
    });
  });

  for (const uri of [
    'file:///srv/git/app',
    '/srv/git/app',
    'https://github.com/acme',
    'https://github.com/acme/app/tree/main',
    'https://user@github.com/acme/app',
    'http://github.com/acme/app',
  ])
    it(`names no owner for ${uri}`, () => {
      assert.deepEqual(sourceOwnerOf(uri), {});
    });
});
