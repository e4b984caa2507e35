import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { collectOutputs } from '../agent/outputs.ts';
import { sha256Hex } from '../common/encoding.ts';
import { isGatehouseError } from '../common/errors.ts';
import { parseProjectConfig } from '../runner/project-config.ts';
import type { Runner, RunnerInstance } from '../runner/runner.ts';

/** A minimal gatehouse.yaml around a shell command. */
export function shellConfig(
  script: string,
  extra: { outputs?: string[]; timeout?: number; env?: object } = {},
) {
  return parseProjectConfig(
    JSON.stringify({
      project: 'contract',
      build: { command: ['/bin/sh', '-c', script], timeout: extra.timeout ?? 30, env: extra.env ?? {} },
      outputs: extra.outputs ?? ['out.txt'],
    }),
    'contract/gatehouse.yaml',
  );
}

/** Host pids whose environment contains `marker`: a build's processes, or ones it left behind. */
export async function processesWithMarker(marker: string): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if ((await readFile(`/proc/${name}/environ`)).includes(marker)) found.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/**
 * The behaviour every Runner backend must have: fresh per-job workspaces, builds that see the
 * source, outputs collected by digest, idempotent destroy. Backend-specific isolation tests live
 * next to each backend.
 */
export function describeRunnerContract(name: string, makeRunner: () => Runner): void {
  describe(`runner contract: ${name}`, () => {
    let runner: Runner;
    let source: string;
    const instances: RunnerInstance[] = [];
    let jobCounter = 0;
    const provision = async (script: string, extra: Parameters<typeof shellConfig>[1] = {}) => {
      const instance = await runner.provision({
        jobId: `contract-${process.pid}-${++jobCounter}`,
        sourceDir: source,
        config: shellConfig(script, extra),
      });
      instances.push(instance);
      return instance;
    };

    before(async () => {
      runner = makeRunner();
      source = await mkdtemp(join(tmpdir(), 'gatehouse-contract-src-'));
      await writeFile(join(source, 'input.txt'), 'from the source\n');
      await mkdir(join(source, '.git'));
      await writeFile(join(source, '.git', 'config'), '[core]\n');
      await mkdir(join(source, 'node_modules', 'x'), { recursive: true });
      await writeFile(join(source, 'node_modules', 'x', 'index.js'), '');
    });

    after(async () => {
      for (const i of instances) await i.destroy();
      await rm(source, { recursive: true, force: true });
    });

    it('builds from a copy of the source and collects the output with its digest', async () => {
      const instance = await provision('cat input.txt > out.txt && printf built >> out.txt');
      const result = await instance.build();
      assert.equal(result.exitCode, 0, result.stderrTail);
      const [out, ...rest] = await collectOutputs(instance, instance.config.outputs);
      assert.equal(rest.length, 0);
      const expected = 'from the source\nbuilt';
      assert.deepEqual(out && { ...out, bytes: readFileSync(out.file, 'utf8') }, {
        path: 'out.txt',
        sha256: sha256Hex(expected),
        size: expected.length,
        file: join(instance.workspace, 'out.txt'),
        bytes: expected,
      });
    });

    it('leaves .git and node_modules out of the workspace', async () => {
      const instance = await provision(
        'test -e .git && echo HAS_GIT; test -e node_modules && echo HAS_NODE_MODULES; echo ok > out.txt',
      );
      const result = await instance.build();
      assert.equal(result.exitCode, 0, result.stderrTail);
      assert.doesNotMatch(result.stdoutTail, /HAS_/);
    });

    it('gives each job a fresh workspace', async () => {
      const first = await provision('echo job1 > leftover.txt; echo ok > out.txt');
      assert.equal((await first.build()).exitCode, 0);
      const second = await provision('if test -e leftover.txt; then echo LEFTOVER; fi; echo ok > out.txt');
      assert.notEqual(first.workspace, second.workspace);
      assert.notEqual(first.id, second.id);
      const result = await second.build();
      assert.equal(result.exitCode, 0, result.stderrTail);
      assert.doesNotMatch(result.stdoutTail, /LEFTOVER/);
    });

    it('reports a failing build by its exit code', async () => {
      const instance = await provision('echo oops >&2; exit 7');
      const result = await instance.build();
      assert.equal(result.exitCode, 7);
      assert.match(result.stderrTail, /oops/);
    });

    it('hands every byte of stdout and stderr to the output sink as it is written', async () => {
      const instance = await provision(
        "printf 'out-1\\n'; printf 'err-1\\n' >&2; sleep 0.2; printf 'out-2 no newline'; printf '\\000\\377' >&2",
      );
      const chunks: { stream: string; chunk: Buffer; at: number }[] = [];
      const started = Date.now();
      const result = await instance.build((chunk, stream) => chunks.push({ stream, chunk, at: Date.now() }));
      const ended = Date.now();
      assert.equal(result.exitCode, 0, result.stderrTail);
      const of = (stream: string) =>
        Buffer.concat(chunks.filter((c) => c.stream === stream).map((c) => c.chunk));
      assert.equal(of('stdout').toString(), 'out-1\nout-2 no newline');
      assert.deepEqual(of('stderr'), Buffer.concat([Buffer.from('err-1\n'), Buffer.from([0, 0xff])]));
      // Live, not at the end: the first line came well before the build ended.
      const first = chunks[0];
      assert.ok(
        first !== undefined && first.at - started < ended - started - 100,
        'output came as it was written',
      );
    });

    it('refuses to build twice in one runner', async () => {
      const instance = await provision('echo ok > out.txt');
      await instance.build();
      await assert.rejects(instance.build(), (e) => isGatehouseError(e, 'BUILD_FAILED'));
    });

    it('keeps only a bounded tail of a flood of output', async () => {
      const instance = await provision(
        'i=0; while [ $i -lt 3000 ]; do echo "line $i ................................................................"; i=$((i+1)); done',
      );
      const result = await instance.build();
      assert.equal(result.exitCode, 0);
      assert.ok(Buffer.byteLength(result.stdoutTail) <= 64 * 1024);
      assert.ok(result.truncated);
      assert.match(result.stdoutTail, /line 2999 /);
    });

    it('removes the workspace on destroy, and destroying twice is fine', async () => {
      const instance = await provision('echo ok > out.txt');
      await instance.destroy();
      await assert.rejects(stat(instance.workspace), { code: 'ENOENT' });
      await instance.destroy();
      await assert.rejects(instance.build(), (e) => isGatehouseError(e, 'BUILD_FAILED'));
    });
  });
}
