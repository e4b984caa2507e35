/** Runner backends, the project config they run, and output collection. */
export {
  BubblewrapRunner,
  type BubblewrapRunnerOptions,
  bubblewrapSandboxProfile,
  detectHostLayout,
  type HostLayout,
} from './bubblewrap-runner.ts';
export { type CollectedOutput, collectOutputs, DEFAULT_MAX_OUTPUT_BYTES } from './outputs.ts';
export {
  DEFAULT_BUILD_TIMEOUT_SECONDS,
  MAX_BUILD_TIMEOUT_SECONDS,
  PROJECT_CONFIG_FILE,
  type ProjectConfig,
  parseProjectConfig,
} from './project-config.ts';
export {
  type BuildResult,
  OUTPUT_TAIL_BYTES,
  type ProvisionSpec,
  type Runner,
  type RunnerInstance,
  type SandboxMount,
  type SandboxProfile,
} from './runner.ts';
