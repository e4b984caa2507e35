/** The central policy `gatehouse init` installs. Operators edit it in the home, never in a project. */
export const DEFAULT_POLICY = `# gatehouse central policy: every project's build is held to these rules.
# Projects cannot change it; it lives in the control plane's home. See docs/policy.md.
apiVersion: gatehouse.dev/v1
kind: Policy
name: default
rules:
  # Block known-exploitable dependencies: anything rated high or critical.
  - id: no-high-or-critical-vulnerabilities
    kind: vulnerability
    maxSeverity: medium
    action: deny
  # Releases that shipped malware (event-stream incident, ua-parser-js hijack, colors/faker sabotage).
  - id: known-malicious-releases
    kind: component-deny
    purls:
      - pkg:npm/event-stream@3.3.6
      - pkg:npm/flatmap-stream
      - pkg:npm/ua-parser-js@0.7.29
      - pkg:npm/ua-parser-js@0.8.0
      - pkg:npm/ua-parser-js@1.0.0
      - pkg:npm/colors@1.4.1
      - pkg:npm/colors@1.4.2
      - pkg:npm/faker@6.6.6
    action: deny
  # Only builds from a runner that proved its measured baseline with a TPM quote are signed.
  - id: attested-runner
    kind: attestation
    require: [tpm]
    action: deny
  # What the gate finds in the artifact must be what the project declared (its lockfiles): a
  # vendored copy, a decoy lockfile or a package fetched and shipped undeclared is refused.
  - id: undeclared-components
    kind: undeclared-component
    action: deny
  # SLSA Build L3: an isolated, ephemeral, TPM-attested runner with provenance the control plane
  # signs. Software-measured runners reach L2 at most and are refused.
  - id: slsa-build-level-3
    kind: slsa
    minLevel: 3
    action: deny
`;
