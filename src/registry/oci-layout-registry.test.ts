import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeRegistryContract } from '../testing/registry-contract.ts';
import { OciLayoutRegistry } from './oci-layout-registry.ts';

describeRegistryContract('OCI image layout', async () => {
  const root = await mkdtemp(join(tmpdir(), 'gatehouse-layout-'));
  return {
    registry: new OciLayoutRegistry({ root }),
    close: () => rm(root, { recursive: true, force: true }),
  };
});
