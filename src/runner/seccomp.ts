import { sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';

/**
 * The seccomp filter every build runs under, as a classic BPF program that bubblewrap loads with
 * `--seccomp FD` (after it has set no_new_privs). Written by hand: there is no libseccomp binding,
 * and the program is short enough to read.
 *
 * Policy: a deny-list on top of namespaces, a dropped capability set and uid 1000. The calls below
 * are either kernel attack surface a build never needs (bpf, userfaultfd, perf_event_open,
 * io_uring, keyrings, the new mount API) or ways out of the sandbox (ptrace, mount, setns, user
 * namespaces). A denied call fails with EPERM, so that tools probing for a feature degrade instead
 * of dying; a call made through a foreign ABI (i386 or x32 on x86_64, arm32 on aarch64) kills the
 * process, because every number in this table means something else there.
 */

/** Syscalls refused with EPERM, by name. Kept sorted; documented in docs/runner.md. */
export const DENIED_SYSCALLS = [
  'acct',
  'add_key',
  'bpf',
  'chroot',
  'clock_adjtime',
  'clock_settime',
  'delete_module',
  'finit_module',
  'fsconfig',
  'fsmount',
  'fsopen',
  'fspick',
  'init_module',
  'io_uring_enter',
  'io_uring_register',
  'io_uring_setup',
  'kcmp',
  'kexec_file_load',
  'kexec_load',
  'keyctl',
  'lookup_dcookie',
  'mount',
  'mount_setattr',
  'move_mount',
  'name_to_handle_at',
  'open_by_handle_at',
  'open_tree',
  'perf_event_open',
  'pivot_root',
  'process_vm_readv',
  'process_vm_writev',
  'ptrace',
  'quotactl',
  'reboot',
  'request_key',
  'setns',
  'settimeofday',
  'swapoff',
  'swapon',
  'syslog',
  'umount2',
  'userfaultfd',
  'vhangup',
] as const;

type DeniedSyscall = (typeof DENIED_SYSCALLS)[number];
type Special = 'clone' | 'clone3' | 'unshare';

interface ArchTable {
  /** AUDIT_ARCH_* value the kernel puts in seccomp_data.arch for this ABI. */
  readonly auditArch: number;
  /** On x86_64, syscall numbers with this bit set are the x32 ABI. */
  readonly x32Bit?: number;
  readonly numbers: Readonly<Record<DeniedSyscall | Special, number>>;
}

// Numbers from the kernel's arch/x86/entry/syscalls/syscall_64.tbl and include/uapi/asm-generic/unistd.h.
const ARCHES: Readonly<Record<string, ArchTable>> = {
  x64: {
    auditArch: 0xc000003e,
    x32Bit: 0x40000000,
    numbers: {
      acct: 163,
      add_key: 248,
      bpf: 321,
      chroot: 161,
      clock_adjtime: 305,
      clock_settime: 227,
      clone: 56,
      clone3: 435,
      delete_module: 176,
      finit_module: 313,
      fsconfig: 431,
      fsmount: 432,
      fsopen: 430,
      fspick: 433,
      init_module: 175,
      io_uring_enter: 426,
      io_uring_register: 427,
      io_uring_setup: 425,
      kcmp: 312,
      kexec_file_load: 320,
      kexec_load: 246,
      keyctl: 250,
      lookup_dcookie: 212,
      mount: 165,
      mount_setattr: 442,
      move_mount: 429,
      name_to_handle_at: 303,
      open_by_handle_at: 304,
      open_tree: 428,
      perf_event_open: 298,
      pivot_root: 155,
      process_vm_readv: 310,
      process_vm_writev: 311,
      ptrace: 101,
      quotactl: 179,
      reboot: 169,
      request_key: 249,
      setns: 308,
      settimeofday: 164,
      swapoff: 168,
      swapon: 167,
      syslog: 103,
      umount2: 166,
      unshare: 272,
      userfaultfd: 323,
      vhangup: 153,
    },
  },
  arm64: {
    auditArch: 0xc00000b7,
    numbers: {
      acct: 89,
      add_key: 217,
      bpf: 280,
      chroot: 51,
      clock_adjtime: 266,
      clock_settime: 112,
      clone: 220,
      clone3: 435,
      delete_module: 106,
      finit_module: 273,
      fsconfig: 431,
      fsmount: 432,
      fsopen: 430,
      fspick: 433,
      init_module: 105,
      io_uring_enter: 426,
      io_uring_register: 427,
      io_uring_setup: 425,
      kcmp: 272,
      kexec_file_load: 294,
      kexec_load: 104,
      keyctl: 219,
      lookup_dcookie: 18,
      mount: 40,
      mount_setattr: 442,
      move_mount: 429,
      name_to_handle_at: 264,
      open_by_handle_at: 265,
      open_tree: 428,
      perf_event_open: 241,
      pivot_root: 41,
      process_vm_readv: 270,
      process_vm_writev: 271,
      ptrace: 117,
      quotactl: 60,
      reboot: 142,
      request_key: 218,
      setns: 268,
      settimeofday: 170,
      swapoff: 225,
      swapon: 224,
      syslog: 116,
      umount2: 39,
      unshare: 97,
      userfaultfd: 282,
      vhangup: 58,
    },
  },
};

// Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;
const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO = 0x00050000;
const RET_ALLOW = 0x7fff0000;
const EPERM = 1;
const ENOSYS = 38;
const CLONE_NEWUSER = 0x10000000;
// struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
const OFF_NR = 0;
const OFF_ARCH = 4;
// Low 32 bits of args[0] on a little-endian machine (both supported arches are).
const OFF_ARG0_LO = 16;

type Insn = readonly [code: number, jt: number, jf: number, k: number];

/** The compiled filter and a description of it that goes into the measured sandbox profile. */
export interface SeccompFilter {
  /** `struct sock_filter[]`, 8 bytes an instruction, native (little-endian) byte order. */
  readonly program: Buffer;
  readonly description: SeccompDescription;
}

/** What the filter does, canonical, for the sandbox profile. */
export interface SeccompDescription {
  readonly arch: string;
  readonly foreignArch: 'kill-process';
  readonly denied: readonly string[];
  readonly deniedAction: 'EPERM';
  /** clone/unshare are allowed unless they ask for CLONE_NEWUSER; clone3 reports ENOSYS. */
  readonly conditional: readonly string[];
  /** SHA-256 of the program bytes. */
  readonly programSha256: string;
}

/**
 * Compile the build filter for a Node `process.arch` value.
 * @throws GatehouseError SANDBOX_UNAVAILABLE on an architecture without a syscall table here
 */
export function buildSeccompFilter(arch: string = process.arch): SeccompFilter {
  const table = ARCHES[arch];
  if (table === undefined) {
    throw new GatehouseError(
      'SANDBOX_UNAVAILABLE',
      `no seccomp syscall table for architecture '${arch}' (supported: ${Object.keys(ARCHES).join(', ')})`,
    );
  }
  const n = table.numbers;
  const insns: Insn[] = [
    [LD_W_ABS, 0, 0, OFF_ARCH],
    [JEQ_K, 1, 0, table.auditArch],
    [RET_K, 0, 0, RET_KILL_PROCESS],
    [LD_W_ABS, 0, 0, OFF_NR],
  ];
  if (table.x32Bit !== undefined) insns.push([JGE_K, 0, 1, table.x32Bit], [RET_K, 0, 0, RET_KILL_PROCESS]);
  for (const name of DENIED_SYSCALLS) insns.push([JEQ_K, 0, 1, n[name]], [RET_K, 0, 0, RET_ERRNO | EPERM]);
  // clone3 passes its flags in memory that seccomp cannot read; ENOSYS makes libc fall back to
  // clone, whose flags it can.
  insns.push([JEQ_K, 0, 1, n.clone3], [RET_K, 0, 0, RET_ERRNO | ENOSYS]);
  for (const nr of [n.clone, n.unshare]) {
    insns.push(
      [JEQ_K, 0, 4, nr],
      [LD_W_ABS, 0, 0, OFF_ARG0_LO],
      [JSET_K, 0, 1, CLONE_NEWUSER],
      [RET_K, 0, 0, RET_ERRNO | EPERM],
      [RET_K, 0, 0, RET_ALLOW],
    );
  }
  insns.push([RET_K, 0, 0, RET_ALLOW]);
  const program = Buffer.alloc(insns.length * 8);
  insns.forEach(([code, jt, jf, k], i) => {
    program.writeUInt16LE(code, i * 8);
    program.writeUInt8(jt, i * 8 + 2);
    program.writeUInt8(jf, i * 8 + 3);
    program.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return {
    program,
    description: {
      arch,
      foreignArch: 'kill-process',
      denied: [...DENIED_SYSCALLS],
      deniedAction: 'EPERM',
      conditional: ['clone: EPERM with CLONE_NEWUSER', 'clone3: ENOSYS', 'unshare: EPERM with CLONE_NEWUSER'],
      programSha256: sha256Hex(program),
    },
  };
}
