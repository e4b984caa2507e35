import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatehouseError } from '../common/errors.ts';
import { parseProjectConfig } from './project-config.ts';

const GOOD = `
project: hello-app
build:
  command: ["sh", "build.sh"]
  timeout: 120
  env: { NODE_ENV: production, RETRIES: 3, VERBOSE: true }
outputs:
  - dist/app.tar.gz
sbom:
  lockfiles: [package-lock.json]
`;

function rejects(text: string, mentions: string | RegExp): void {
  assert.throws(
    () => parseProjectConfig(text, 'gatehouse.yaml'),
    (e: unknown) => {
      assert.ok(e instanceof GatehouseError, `expected a GatehouseError, got ${String(e)}`);
      assert.equal(e.code, 'BAD_PROJECT_CONFIG');
      assert.equal(e.where, 'gatehouse.yaml');
      if (typeof mentions === 'string')
        assert.ok(e.message.includes(mentions), `'${e.message}' lacks '${mentions}'`);
      else assert.match(e.message, mentions);
      return true;
    },
  );
}

describe('gatehouse.yaml parsing', () => {
  it('parses a full config into typed, frozen values', () => {
    const c = parseProjectConfig(GOOD, 'gatehouse.yaml');
    assert.equal(c.project, 'hello-app');
    assert.deepEqual(c.build.command, ['sh', 'build.sh']);
    assert.equal(c.build.timeoutSeconds, 120);
    assert.deepEqual({ ...c.build.env }, { NODE_ENV: 'production', RETRIES: '3', VERBOSE: 'true' });
    assert.deepEqual(c.outputs, ['dist/app.tar.gz']);
    assert.deepEqual(c.sbom, { lockfiles: ['package-lock.json'], required: true });
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.build) && Object.isFrozen(c.build.command));
    assert.ok(
      Object.isFrozen(c.outputs) && Object.isFrozen(c.build.env) && Object.isFrozen(c.sbom.lockfiles),
    );
  });

  it('fills in defaults and runs a string command through /bin/sh -c', () => {
    const c = parseProjectConfig('project: a\nbuild:\n  command: make all\noutputs: [out/a]\n', 'x');
    assert.deepEqual(c.build.command, ['/bin/sh', '-c', 'make all']);
    assert.equal(c.build.timeoutSeconds, 300);
    assert.deepEqual({ ...c.build.env }, {});
    assert.deepEqual(c.sbom, { lockfiles: ['package-lock.json'], required: false });
  });

  it('normalises ./ prefixes and doubled slashes in output paths', () => {
    const c = parseProjectConfig('project: a\nbuild: {command: x}\noutputs: [./dist//a.tgz]\n', 'x');
    assert.deepEqual(c.outputs, ['dist/a.tgz']);
  });

  const bad: [string, string, string | RegExp][] = [
    ['empty document', '', 'mapping'],
    ['a list at the top', '- a\n- b\n', 'mapping'],
    ['a scalar at the top', 'hello\n', 'mapping'],
    ['broken YAML', 'project: [a\n', 'not valid YAML'],
    ['a duplicate key', 'project: a\nproject: b\nbuild: {command: x}\noutputs: [a]\n', 'not valid YAML'],
    [
      'an unknown top-level key',
      'project: a\nbuild: {command: x}\noutputs: [a]\nsecrets: {x: y}\n',
      'unknown key: secrets',
    ],
    [
      'an unknown build key',
      'project: a\nbuild: {command: x, network: true}\noutputs: [a]\n',
      'unknown key in build: network',
    ],
    [
      'an unknown sbom key',
      'project: a\nbuild: {command: x}\noutputs: [a]\nsbom: {format: spdx}\n',
      'in sbom: format',
    ],
    ['a missing project', 'build: {command: x}\noutputs: [a]\n', 'project'],
    [
      'an upper-case project name',
      'project: Hello\nbuild: {command: x}\noutputs: [a]\n',
      'project must match',
    ],
    [
      'a project name with a slash',
      'project: a/b\nbuild: {command: x}\noutputs: [a]\n',
      'project must match',
    ],
    [
      'a 64-character project name',
      `project: ${'a'.repeat(64)}\nbuild: {command: x}\noutputs: [a]\n`,
      'project',
    ],
    ['a missing build', 'project: a\noutputs: [a]\n', 'build'],
    ['an empty argv', 'project: a\nbuild: {command: []}\noutputs: [a]\n', 'build.command'],
    ['an argv with a number', 'project: a\nbuild: {command: [sh, 1]}\noutputs: [a]\n', 'build.command'],
    ['an argv with a mapping', 'project: a\nbuild: {command: {sh: x}}\noutputs: [a]\n', 'build.command'],
    ['a zero timeout', 'project: a\nbuild: {command: x, timeout: 0}\noutputs: [a]\n', 'build.timeout'],
    [
      'a timeout over an hour',
      'project: a\nbuild: {command: x, timeout: 3601}\noutputs: [a]\n',
      'build.timeout',
    ],
    [
      'a fractional timeout',
      'project: a\nbuild: {command: x, timeout: 1.5}\noutputs: [a]\n',
      'build.timeout',
    ],
    ['a string timeout', 'project: a\nbuild: {command: x, timeout: "10"}\noutputs: [a]\n', 'build.timeout'],
    [
      'a nested env value',
      'project: a\nbuild: {command: x, env: {A: {b: c}}}\noutputs: [a]\n',
      'build.env.A',
    ],
    ['a list env value', 'project: a\nbuild: {command: x, env: {A: [1]}}\noutputs: [a]\n', 'build.env.A'],
    ['a null env value', 'project: a\nbuild: {command: x, env: {A: null}}\noutputs: [a]\n', 'build.env.A'],
    [
      'an env that overrides PATH',
      'project: a\nbuild: {command: x, env: {PATH: /evil}}\noutputs: [a]\n',
      'build.env.PATH',
    ],
    [
      'an env that overrides HOME',
      'project: a\nbuild: {command: x, env: {HOME: /}}\noutputs: [a]\n',
      'build.env.HOME',
    ],
    [
      'an env named like a secret',
      'project: a\nbuild: {command: x, env: {NPM_TOKEN: abc}}\noutputs: [a]\n',
      'secret',
    ],
    [
      'an env name with a dash',
      'project: a\nbuild: {command: x, env: {A-B: c}}\noutputs: [a]\n',
      'build.env',
    ],
    [
      'an env named __proto__',
      'project: a\nbuild: {command: x, env: {__proto__: c}}\noutputs: [a]\n',
      'build.env',
    ],
    ['missing outputs', 'project: a\nbuild: {command: x}\n', 'outputs'],
    ['no outputs', 'project: a\nbuild: {command: x}\noutputs: []\n', 'outputs must list at least one'],
    [
      'an absolute output',
      'project: a\nbuild: {command: x}\noutputs: [/etc/passwd]\n',
      'outputs.0 must be relative',
    ],
    ['a ../ output', 'project: a\nbuild: {command: x}\noutputs: [../x]\n', "outputs.0 must not contain '..'"],
    ['an output escaping midway', 'project: a\nbuild: {command: x}\noutputs: [dist/../../x]\n', "'..'"],
    ['an output of .', 'project: a\nbuild: {command: x}\noutputs: [.]\n', 'outputs.0'],
    ['an output inside .git', 'project: a\nbuild: {command: x}\noutputs: [.git/config]\n', 'outputs.0'],
    ['a backslash output', 'project: a\nbuild: {command: x}\noutputs: ["..\\\\x"]\n', 'outputs.0'],
    ['an output with a newline', 'project: a\nbuild: {command: x}\noutputs: ["a\\nb"]\n', 'control'],
    ['a duplicated output', 'project: a\nbuild: {command: x}\noutputs: [a, ./a]\n', "'a' twice"],
    [
      'an absolute lockfile',
      'project: a\nbuild: {command: x}\noutputs: [a]\nsbom: {lockfiles: [/x]}\n',
      'sbom.lockfiles.0',
    ],
    [
      'an alias bomb',
      'a: &a [x, x]\nb: &b [*a, *a]\nproject: a\nbuild: {command: x}\noutputs: [a]\n',
      /alias|unknown/i,
    ],
    ['a custom tag', 'project: !!js/function "x"\nbuild: {command: x}\noutputs: [a]\n', /YAML|project/],
    ['a file over 64 KiB', `project: a\n# ${'x'.repeat(70_000)}\nbuild: {command: x}\noutputs: [a]\n`, '64'],
  ];
  for (const [name, text, mentions] of bad) {
    it(`refuses ${name}`, () => rejects(text, mentions));
  }

  it('lists every problem, not only the first', () => {
    rejects(
      'project: A\nbuild: {command: x, timeout: 0}\noutputs: [/x]\n',
      /project.*build\.timeout.*outputs\.0/s,
    );
  });
});

describe('gatehouse.yaml image outputs', () => {
  const IMAGE = `project: svc
build: { command: ["sh", "build.sh"] }
image:
  base: { layout: vendor/base, digest: sha256:${'a'.repeat(64)} }
  files: [{ from: ./dist//app, to: /srv/app/ }]
  platform: linux/arm64/v8
  owner: "1000:1000"
  entrypoint: [/srv/app/run]
  env: { PORT: 8080 }
`;

  it('parses an image output: normalised paths, base, platform, owner', () => {
    const c = parseProjectConfig(IMAGE, 'gatehouse.yaml');
    assert.deepEqual(c.outputs, []);
    assert.deepEqual(c.image, {
      name: 'svc',
      base: { kind: 'oci-layout', path: 'vendor/base', digest: `sha256:${'a'.repeat(64)}` },
      files: [{ from: 'dist/app', to: '/srv/app' }],
      owner: { uid: 1000, gid: 1000 },
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
      entrypoint: ['/srv/app/run'],
      env: { PORT: '8080' },
    });
    assert.ok(Object.isFrozen(c.image?.files));
  });

  it('refuses an image without a pinned base, with a base of the wrong shape, or with unknown keys', () => {
    rejects(IMAGE.replace(/base: .*\n/, 'base: { layout: vendor/base }\n'), 'image.base');
    rejects(IMAGE.replace(/base: .*\n/, 'base: { store: latest }\n'), 'image.base');
    rejects(IMAGE.replace(/base: .*\n/, 'base: debian:12\n'), 'image.base');
    rejects(`${IMAGE}  privileged: true\n`, 'unknown key in image: privileged');
    rejects(IMAGE.replace('owner: "1000:1000"', 'owner: node'), 'image.owner must be numeric uid:gid');
  });

  it('refuses an image and outputs together, no image and no outputs, and two files at one path', () => {
    rejects(`${IMAGE}outputs: [dist/x]\n`, 'declares both outputs and image');
    rejects('project: p\nbuild: { command: x }\n', 'outputs is required (or image)');
    rejects(
      IMAGE.replace(
        'files: [{ from: ./dist//app, to: /srv/app/ }]',
        'files: [{ from: a, to: /x }, { from: b, to: /x/ }]',
      ),
      "image.files puts two entries at '/x'",
    );
  });
});
