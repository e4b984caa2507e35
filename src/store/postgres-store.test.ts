import { after, before, describe } from 'node:test';
import { postgresSkip, startPostgres, type TestPostgres } from '../testing/postgres.ts';
import { describeStoreContract } from '../testing/store-contract.ts';
import { PostgresStore } from './postgres-store.ts';

const skip = postgresSkip();

describe('PostgreSQL store', { skip }, () => {
  let pg: TestPostgres | undefined;
  let databases = 0;
  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    await pg?.stop();
  });
  const fresh = async (): Promise<PostgresStore> => {
    if (pg === undefined) throw new Error('no cluster');
    const url = pg.createDatabase(`contract_${++databases}`);
    return PostgresStore.open({ url, password: pg.password });
  };
  describeStoreContract('PostgreSQL', fresh);
});
