/**
 * The CI integration files, parsed: the composite GitHub Action (action.yml), the GitLab CI
 * template and the workflow the JIT runner backend dispatches. Neither GitHub nor GitLab runs
 * here; these check what can be checked without them: the shape each platform documents, that
 * the action asks for what `gatehouse run` needs, that no input is spliced into a script's text
 * (where `${{ … }}` would let a crafted input run code), and that the GitLab job declares the ID
 * token under the name the agent reads.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { GITLAB_ID_TOKEN_VARIABLE } from '../src/agent/ci-token-source.ts';
import { repoRoot } from './helpers.ts';

/** A GitHub Actions expression as it is written in a workflow file. */
const expression = (inner: string): string => `\${{ ${inner} }}`;

const load = (path: string): Record<string, unknown> =>
  parse(readFileSync(join(repoRoot, path), 'utf8')) as Record<string, unknown>;

interface Step {
  name?: string;
  id?: string;
  run?: string;
  uses?: string;
  shell?: string;
  env?: Record<string, string>;
}

describe('CI integration files', () => {
  it('action.yml is a composite action that runs gatehouse with the job\u2019s identity', () => {
    const action = load('action.yml');
    const inputs = action.inputs as Record<string, { required?: boolean }>;
    for (const required of ['server', 'host', 'host-key'])
      assert.equal(inputs[required]?.required, true, required);
    const runs = action.runs as { using: string; steps: Step[] };
    assert.equal(runs.using, 'composite');
    for (const step of runs.steps) {
      assert.ok(step.uses === undefined, `${step.name}: a third-party action, unpinned by this file`);
      assert.equal(step.shell, 'bash', `${step.name}: a composite run step names its shell`);
      // Inputs and secrets reach scripts through env only.
      assert.doesNotMatch(step.run ?? '', /\$\{\{/, `${step.name}: an expression inside the script`);
    }
    const run = runs.steps.find((s) => s.id === 'run');
    assert.ok(run?.run?.includes('--host-key'));
    assert.ok(run?.run?.includes('rm -f "$key"'), 'the key file is removed');
    assert.equal(run?.env?.GATEHOUSE_INPUT_HOST_KEY, expression('inputs.host-key'));
  });

  it('the GitLab template declares the ID token the agent reads, and pins gatehouse by commit', () => {
    const template = load('ci/gitlab/gatehouse.gitlab-ci.yml');
    const job = template['.gatehouse-build'] as {
      id_tokens: Record<string, { aud: string }>;
      before_script: string[];
      script: string[];
    };
    assert.deepEqual(Object.keys(job.id_tokens), [GITLAB_ID_TOKEN_VARIABLE]);
    assert.equal(job.id_tokens[GITLAB_ID_TOKEN_VARIABLE]?.aud, '$GATEHOUSE_AUDIENCE');
    const before = job.before_script.join('\n');
    assert.match(before, /GATEHOUSE_COMMIT must be a 40-hex commit/);
    assert.match(before, /rev-parse HEAD\)" = "\$GATEHOUSE_COMMIT"/);
    assert.match(job.script.join('\n'), /\|\| code=\$\?\n\s*rm -f "\$key"/);
  });

  it('the dispatched JIT workflow runs only on the job\u2019s runner, with no token', () => {
    const workflow = load('ci/github/gatehouse-jit-build.yml');
    // YAML 1.1 reads the key `on` as a boolean; the yaml package keeps it a string.
    const on = workflow.on as { workflow_dispatch: { inputs: Record<string, { required: boolean }> } };
    assert.equal(on.workflow_dispatch.inputs.runner_label?.required, true);
    assert.deepEqual(workflow.permissions, {});
    const job = (workflow.jobs as Record<string, { 'runs-on': string; steps: Step[] }>).build;
    assert.equal(job?.['runs-on'], expression('inputs.runner_label'));
    for (const step of job?.steps ?? []) assert.doesNotMatch(step.run ?? '', /\$\{\{/);
  });
});
