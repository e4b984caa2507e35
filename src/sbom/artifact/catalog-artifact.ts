/**
 * Catalogue an artifact from its own bytes: every package it contains, found by reading the
 * artifact (a file or a directory of outputs) and the archives, images and binaries inside it,
 * within bounds that no artifact can push it past.
 */
import { constants } from 'node:fs';
import { type FileHandle, mkdtemp, open, readdir, rm, stat, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GatehouseError, isGatehouseError } from '../../common/errors.ts';
import { catalogFile } from '../catalog.ts';
import type { Component } from '../model.ts';
import { parseOsRelease } from '../os-packages.ts';
import { BinaryScanner } from './binary-scanner.ts';
import { ByteStream, FileRange } from './byte-stream.ts';
import { CargoAuditableScan, cargoAuditableComponents } from './cargo-auditable.ts';
import { decompress } from './decompress.ts';
import { isExecutable, SNIFF_BYTES, sniffFileKind } from './file-kind.ts';
import type { EvidenceMethod, FoundComponent } from './found-component.ts';
import { GoBuildInfoScan, goBuildInfoComponents } from './go-buildinfo.ts';
import { manifestComponent, pomPropertiesComponent } from './java-metadata.ts';
import { LayeredFindings, type PendingOsDatabase } from './layered-findings.ts';
import {
  ArtifactBudget,
  type ArtifactLimits,
  formatBytes,
  refused,
  resolveArtifactLimits,
} from './limits.ts';
import {
  detectImage,
  directoryImageStore,
  type ImageLayer,
  type ImageStore,
  imageFormatOf,
  planImages,
  tarImageStore,
  verifyingStream,
  verifyRange,
} from './oci-image.ts';
import {
  type MetadataKind,
  metadataKind,
  NotAPackage,
  npmPackageComponent,
  pythonMetadataComponent,
  rootPrefix,
  statusDToStatus,
} from './package-metadata.ts';
import { readTar } from './tar-reader.ts';
import { ZipArchive } from './zip-reader.ts';

export type { FoundComponent } from './found-component.ts';

/** The artifact to catalogue. */
export interface ArtifactInput {
  /** How to name the artifact in evidence and messages (its file name, say). */
  name: string;
  /** A file or a directory on disk. */
  path: string;
  /** Where temporary copies go (the system's temporary directory by default). */
  tempDir?: string;
}

/** A file that could not be read as what it looked like, and why. */
export interface SkippedFile {
  path: string;
  archive?: string[];
  reason: string;
}

/** What {@link catalogArtifact} found. */
export interface ArtifactCatalog {
  /** One component per purl, sorted by purl; installed metadata is preferred to a lockfile's word. */
  components: FoundComponent[];
  /**
   * Files inside the artifact that looked like metadata or archives but could not be read (a
   * package.json that is not JSON, a nested zip that is corrupt, a bzip2 stream): the first 1,000.
   */
  skipped: SkippedFile[];
  stats: {
    /** Regular files examined, at every level. */
    files: number;
    /** Bytes read from disk plus bytes produced by decompression, at every level. */
    bytesRead: number;
    /** Containers opened: tar, zip and image layouts. */
    archives: number;
    /** Entries seen (files, directories, links) at every level. */
    entries: number;
    /** Files skipped (all of them, where `skipped` lists the first 1,000). */
    skipped: number;
  };
}

const MAX_NOTES = 1000;
const MiB = 1024 * 1024;

interface Place {
  /** The archives around the file, outermost first. */
  chain: readonly string[];
  /** The file's path inside the innermost archive (or the directory). */
  path: string;
  /** Containers opened around it. */
  depth: number;
  /** Whether `path` is relative to a zip (for a jar's META-INF/MANIFEST.MF). */
  zipRoot: boolean;
  /** The file name of the zip around it, for the manifest fallback. */
  jarName?: string;
  /** The artifact itself: what it cannot be read as is an error, not a note. */
  top?: boolean;
  /** The output of a decompressor: only its magic bytes say what it is. */
  decoded?: boolean;
}

type Source = { range: FileRange } | { stream: ByteStream; size?: number };

/** An archive entry's name as a clean relative path: no `.`, no `..` past the root, no leading `/`. */
export function normalizeEntryPath(name: string): string {
  const out: string[] = [];
  for (const seg of name.replace(/\\/g, '/').split('/')) {
    if (seg === '' || seg === '.') continue;
    // Archives are never extracted, but names still must not climb out of their archive: `..`
    // stops at the root, as container runtimes treat layer paths.
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return out.join('/');
}

function firstTarName(head: Buffer, at: number): { name: string; size: number; flag: string } | undefined {
  const b = head.subarray(at, at + 512);
  if (b.length < 512) return undefined;
  const cut = (s: Buffer) => {
    const n = s.indexOf(0);
    return (n < 0 ? s : s.subarray(0, n)).toString('utf8');
  };
  let name = cut(b.subarray(0, 100));
  if (b.subarray(257, 263).toString('latin1') === 'ustar\0') {
    const prefix = cut(b.subarray(345, 500));
    if (prefix !== '') name = `${prefix}/${name}`;
  }
  const sizeText = b.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim();
  return {
    name,
    size: /^[0-7]+$/.test(sizeText) ? Number.parseInt(sizeText, 8) : -1,
    flag: String.fromCharCode(b[156] ?? 0),
  };
}

const IMAGE_FIRST =
  /^(oci-layout|index\.json|manifest\.json|repositories|blobs(\/.*)?|[0-9a-f]{64}(\/.*|\.json)?)$/;

class ArtifactWalk {
  readonly budget: ArtifactBudget;
  readonly limits: Readonly<ArtifactLimits>;
  readonly skipped: SkippedFile[] = [];
  skippedCount = 0;
  readonly #tempParent: string;
  #tempDir: string | undefined;
  #spills = 0;

  constructor(limits: Readonly<ArtifactLimits>, tempParent: string) {
    this.limits = limits;
    this.budget = new ArtifactBudget(limits);
    this.#tempParent = tempParent;
  }

  where(p: Pick<Place, 'chain' | 'path'>): string {
    return [...p.chain, p.path].filter((s) => s !== '').join('!') || '.';
  }

  note(p: Pick<Place, 'chain' | 'path'>, reason: string): void {
    this.skippedCount++;
    if (this.skipped.length >= MAX_NOTES) return;
    this.skipped.push({ path: p.path, ...(p.chain.length > 0 ? { archive: [...p.chain] } : {}), reason });
  }

  found(c: Component, method: EvidenceMethod, p: Pick<Place, 'chain' | 'path'>): FoundComponent {
    return {
      ...c,
      evidence: { path: p.path, method, ...(p.chain.length > 0 ? { archive: [...p.chain] } : {}) },
    };
  }

  readonly resolveOs = (db: PendingOsDatabase, osRelease: string | undefined): FoundComponent[] => {
    const distro = osRelease === undefined ? undefined : parseOsRelease(osRelease);
    const apk = db.kind === 'apk-installed';
    const text = db.kind === 'dpkg-status-d' ? statusDToStatus(db.text) : db.text;
    const place = { chain: db.evidence.archive ?? [], path: db.evidence.path };
    try {
      const cat = catalogFile(
        apk ? 'lib/apk/db/installed' : 'var/lib/dpkg/status',
        text,
        distro === undefined ? {} : { distro },
        this.where(place),
      );
      return cat.components.map((c) => this.found(c, apk ? 'apk-installed' : 'dpkg-status', place));
    } catch (e) {
      if (!isGatehouseError(e)) throw e;
      this.note(place, e.describe());
      return [];
    }
  };

  async cleanup(): Promise<void> {
    if (this.#tempDir !== undefined) await rm(this.#tempDir, { recursive: true, force: true });
  }

  /**
   * Copy a stream to a temporary file, for the formats that need random access (a zip's central
   * directory is at its end; an image archive's index may follow its layers).
   */
  async spill(
    stream: ByteStream,
    size: number | undefined,
    where: string,
  ): Promise<{ range: FileRange; release(): Promise<void> }> {
    this.#tempDir ??= await mkdtemp(join(this.#tempParent, 'gatehouse-catalog-'));
    const fsInfo = await statfs(this.#tempDir);
    const free = Number(fsInfo.bavail) * Number(fsInfo.bsize) - 256 * MiB;
    const allowed = Math.min(this.limits.maxSpillBytes - this.budget.spillBytes, free);
    const what = 'temporary copy';
    const limit = `the temporary space left (${formatBytes(Math.max(0, allowed))} of maxSpillBytes and free disk)`;
    if (size !== undefined && size > allowed) throw refused(`${what} of ${formatBytes(size)}`, limit, where);
    const path = join(this.#tempDir, `spill-${++this.#spills}`);
    const fh: FileHandle = await open(path, 'wx+', 0o600);
    let written = 0;
    const release = async () => {
      await fh.close();
      await rm(path, { force: true });
      this.budget.spillBytes -= written;
    };
    try {
      for await (const c of stream.chunks()) {
        written += c.length;
        this.budget.spillBytes += c.length;
        if (written > allowed)
          throw refused(`${what} of more than ${formatBytes(written - c.length)}`, limit, where);
        await fh.write(c, 0, c.length, written - c.length);
      }
    } catch (e) {
      await release();
      throw e;
    }
    return { range: new FileRange(fh, 0, written, (n) => this.budget.addBytes(n, where)), release };
  }

  /** Whatever a file turns out to be, catalogue it into `tree` (at `layer` of an image). */
  async entry(tree: LayeredFindings, layer: number, p: Place, src: Source): Promise<void> {
    const head = 'range' in src ? await src.range.read(0, SNIFF_BYTES) : await src.stream.peek(SNIFF_BYTES);
    const kind = sniffFileKind(head);
    switch (kind) {
      case 'gzip':
      case 'zstd':
        return this.#guard(p, () => this.#decoded(tree, layer, p, src, kind));
      case 'bzip2':
      case 'xz':
        return this.#unreadable(p, `${kind} compression is not supported`);
      case 'zip':
        return this.#guard(p, () => this.#zip(tree, layer, p, src));
      case 'tar':
        return this.#guard(p, () => this.#tar(tree, layer, p, src));
      default:
        if (isExecutable(kind)) return this.#binary(tree, layer, p, src);
        if (p.decoded !== true) return this.#metadata(tree, layer, p, src);
    }
  }

  #unreadable(p: Place, reason: string): void {
    if (p.top === true) throw new GatehouseError('BAD_INPUT', `${reason}: ${this.where(p)}`);
    this.note(p, reason);
  }

  /** Open a container; a corrupt one inside the artifact is noted, the artifact itself refused. */
  async #guard(p: Place, open: () => Promise<void>): Promise<void> {
    try {
      await open();
    } catch (e) {
      if (p.top === true || !isGatehouseError(e, 'BAD_INPUT')) throw e;
      this.note(p, e.message);
    }
  }

  #meter(where: string): { onOutput(n: number, input: number): void } {
    let out = 0;
    return {
      onOutput: (n, input) => {
        out += n;
        this.budget.addBytes(n, where);
        this.budget.checkRatio(out, input, where);
      },
    };
  }

  async #decoded(
    tree: LayeredFindings,
    layer: number,
    p: Place,
    src: Source,
    kind: 'gzip' | 'zstd',
  ): Promise<void> {
    const where = this.where(p);
    this.budget.checkDepth(p.depth + 1, where);
    const raw = 'range' in src ? src.range.stream() : src.stream;
    const out = decompress(kind, raw, this.#meter(where), where);
    try {
      await this.entry(tree, layer, { ...p, depth: p.depth + 1, decoded: true }, { stream: out });
      // Decode to the end even what holds nothing to read: a bomb is refused, not left unread, and
      // a corrupt stream is reported rather than passed over.
      await out.skipRest();
    } finally {
      await out.close();
    }
  }

  async #zip(tree: LayeredFindings, layer: number, p: Place, src: Source): Promise<void> {
    const where = this.where(p);
    this.budget.checkDepth(p.depth + 1, where);
    const spilled = 'range' in src ? undefined : await this.spill(src.stream, src.size, where);
    const range = 'range' in src ? src.range : (spilled as { range: FileRange }).range;
    try {
      const zip = await ZipArchive.open(range, where, {
        maxEntries: this.limits.maxEntries - this.budget.entries,
        maxEntryRatio: this.limits.maxEntryRatio,
        ratioFloorBytes: this.limits.ratioFloorBytes,
      });
      this.budget.archives++;
      this.budget.addEntries(zip.count, where);
      const child = new LayeredFindings();
      const chain = [...p.chain, p.path];
      const jarName = p.path.slice(p.path.lastIndexOf('/') + 1);
      for await (const e of zip.entries()) {
        if (e.isDirectory || e.isSymlink) continue;
        const path = normalizeEntryPath(e.name);
        if (path === '') continue;
        const ep: Place = { chain, path, depth: p.depth + 1, zipRoot: true, jarName };
        this.budget.files++;
        if (e.encrypted || (e.method !== 0 && e.method !== 8)) {
          this.note(
            ep,
            e.encrypted ? 'the entry is encrypted' : `compression method ${e.method} is not supported`,
          );
          continue;
        }
        const stored = await zip.storedRange(e);
        if (stored !== undefined) {
          await this.entry(child, 0, ep, { range: stored });
          continue;
        }
        const ew = this.where(ep);
        const s = await zip.open(e, ew, this.#meter(ew).onOutput);
        try {
          await this.entry(child, 0, ep, { stream: s, size: e.size });
        } finally {
          await s.close();
        }
      }
      // A jar's manifest speaks for it only when Maven's pom.properties does not.
      if (child.has((k) => metadataKind(k, true) === 'java-pom-properties'))
        child.drop((k) => k === 'META-INF/MANIFEST.MF');
      tree.set(p.path, layer, child.finish(this.resolveOs));
    } finally {
      await spilled?.release();
    }
  }

  async #tar(tree: LayeredFindings, layer: number, p: Place, src: Source): Promise<void> {
    const where = this.where(p);
    this.budget.checkDepth(p.depth + 1, where);
    if ('range' in src) return this.#tarRange(tree, layer, p, src.range);
    // An image archive must be read in its manifest's order, which a stream cannot give: one whose
    // first entry says "image" is copied to disk first.
    const head = await src.stream.peek(1536);
    let first: { name: string; size: number; flag: string } | undefined;
    for (let at = 0; at < head.length; at += 512) {
      first = firstTarName(head, at);
      if (first === undefined || first.flag !== '5' || normalizeEntryPath(first.name) !== '') break;
    }
    if (first !== undefined && IMAGE_FIRST.test(normalizeEntryPath(first.name))) {
      const spilled = await this.spill(src.stream, src.size, where);
      try {
        return await this.#tarRange(tree, layer, p, spilled.range);
      } finally {
        await spilled.release();
      }
    }
    const roots = await this.#tarEntries(tree, layer, p, { stream: src.stream }, undefined);
    if (imageFormatOf(roots) === 'oci' || (roots.has('manifest.json') && roots.has('repositories')))
      throw new GatehouseError(
        'BAD_INPUT',
        `an image archive whose index follows its layers cannot be read from a stream (decompress it first): ${where}`,
      );
  }

  async #tarRange(tree: LayeredFindings, layer: number, p: Place, range: FileRange): Promise<void> {
    const where = this.where(p);
    // A pass over the headers alone (the data is seeked over): is this an image layout?
    const roots = new Set<string>();
    const files = new Map<string, { offset: number; size: number }>();
    let n = 0;
    for await (const h of readTar(range.stream(), where, { maxHeaderBytes: this.limits.maxHeaderBytes })) {
      if (++n > this.limits.maxEntries - this.budget.entries)
        throw refused('entries', `the limit of ${this.limits.maxEntries}`, where);
      const path = normalizeEntryPath(h.name);
      if (path === '') continue;
      if (!path.includes('/')) roots.add(path);
      if (path.split('/').length > 3) continue;
      if (h.type === 'file') files.set(path, { offset: h.dataOffset, size: h.size });
      else if (h.type === 'hardlink') {
        const t = files.get(normalizeEntryPath(h.linkName));
        if (t !== undefined) files.set(path, t);
      }
    }
    const format = imageFormatOf(roots);
    if (format !== undefined) {
      const store = tarImageStore(files, range);
      const detected = await detectImage(store, format, this.limits.maxMetadataBytes);
      if (detected !== undefined)
        return this.#image(tree, layer, p, store, detected, [...p.chain, p.path], '');
    }
    await this.#tarEntries(tree, layer, p, { range }, undefined);
  }

  /**
   * The entries of a tar, into a tree of their own (flushed into `tree` at the tar's path), or, for
   * an image layer, straight into the image's tree with the layer's whiteouts applied.
   * @returns the names at the tar's root
   */
  async #tarEntries(
    tree: LayeredFindings,
    layer: number,
    p: Place,
    src: { range: FileRange } | { stream: ByteStream },
    imageLayer: number | undefined,
  ): Promise<Set<string>> {
    const where = this.where(p);
    this.budget.archives++;
    const child = imageLayer === undefined ? new LayeredFindings() : tree;
    const at = imageLayer ?? 0;
    const chain = [...p.chain, p.path];
    const roots = new Set<string>();
    const range = 'range' in src ? src.range : undefined;
    const stream = 'range' in src ? src.range.stream() : src.stream;
    for await (const e of readTar(stream, where, {
      maxHeaderBytes: this.limits.maxHeaderBytes,
      onHeader: (name, size) => {
        this.budget.addEntries(1, where);
        // A streamed entry's bytes must all be decoded to get past it; a file's are seeked over.
        if (range === undefined) this.budget.checkDeclared(size, `${where}!${normalizeEntryPath(name)}`);
      },
    })) {
      const path = normalizeEntryPath(e.name);
      if (path === '') continue;
      if (!path.includes('/')) roots.add(path);
      if (imageLayer !== undefined) {
        const slash = path.lastIndexOf('/');
        const dir = slash < 0 ? '' : path.slice(0, slash);
        const base = path.slice(slash + 1);
        if (base === '.wh..wh..opq') {
          child.hide(dir, at, 'below');
          continue;
        }
        if (base.startsWith('.wh..wh.')) continue;
        if (base.startsWith('.wh.')) {
          child.hide(dir === '' ? base.slice(4) : `${dir}/${base.slice(4)}`, at, 'self-and-below');
          continue;
        }
        child.hide(path, at, e.type === 'directory' ? 'self' : 'self-and-below');
      }
      if (e.type !== 'file') continue;
      this.budget.files++;
      const ep: Place = { chain, path, depth: p.depth + 1, zipRoot: false };
      if (range !== undefined) {
        if (e.dataOffset + e.size > range.size)
          throw new GatehouseError(
            'BAD_INPUT',
            `tar entry '${path.slice(0, 200)}' runs past the end of the archive: ${where}`,
          );
        await this.entry(child, at, ep, { range: range.sub(e.dataOffset, e.size) });
      } else await this.entry(child, at, ep, { stream: e.body, size: e.size });
    }
    if (imageLayer === undefined) tree.set(p.path, layer, child.finish(this.resolveOs));
    return roots;
  }

  /**
   * Each image of a layout, its layers in order into one tree per image.
   * @param inside the archives around the layout's files
   * @param prefix the layout's folder inside the directory (`''` at its root)
   */
  async #image(
    tree: LayeredFindings,
    layer: number,
    p: Place,
    store: ImageStore,
    format: 'oci' | 'docker',
    inside: readonly string[],
    prefix: string,
  ): Promise<void> {
    const where = this.where(p);
    this.budget.checkDepth(p.depth + 1, where);
    this.budget.archives++;
    const at = (path: string) => (prefix === '' ? path : `${prefix}/${path}`);
    const plans = await planImages(store, format, this.limits.maxMetadataBytes, where, (path, reason) =>
      this.note({ chain: inside, path: at(path) }, reason),
    );
    for (const plan of plans) {
      const image = new LayeredFindings();
      for (const [i, l] of plan.layers.entries())
        await this.#layer(
          image,
          i,
          { chain: inside, path: at(l.path), depth: p.depth + 1, zipRoot: false },
          l,
        );
      tree.set(`${p.path}#${plan.ref}`, layer, image.finish(this.resolveOs));
    }
  }

  async #layer(image: LayeredFindings, index: number, p: Place, l: ImageLayer): Promise<void> {
    const where = this.where(p);
    const kind = sniffFileKind(await l.range.read(0, SNIFF_BYTES));
    if (kind === 'tar' || (l.range.size === 0 && kind === 'other')) {
      if (l.digest !== undefined) await verifyRange(l.range, l.digest, 'layer', where);
      await this.#tarEntries(image, index, p, { range: l.range }, index);
      return;
    }
    if (kind !== 'gzip' && kind !== 'zstd')
      throw new GatehouseError('BAD_INPUT', `image layer is ${kind}, not a tar: ${where}`);
    this.budget.checkDepth(p.depth + 1, where);
    const file = l.range.stream();
    // Read through, never seek, so that the digest covers every byte.
    let raw = new ByteStream({ pull: (max) => file.next(max) });
    if (l.digest?.of === 'blob') raw = verifyingStream(raw, l.digest, 'layer', where);
    let tar = decompress(kind, raw, this.#meter(where), where);
    if (l.digest?.of === 'uncompressed') tar = verifyingStream(tar, l.digest, 'layer', where);
    try {
      await this.#tarEntries(image, index, { ...p, depth: p.depth + 1 }, { stream: tar }, index);
      // The tar ends at its end blocks; the rest (padding) still counts toward the digest.
      await tar.skipRest();
      if (l.digest?.of === 'blob') await raw.skipRest();
    } finally {
      await tar.close();
    }
  }

  async #binary(tree: LayeredFindings, layer: number, p: Place, src: Source): Promise<void> {
    const max = this.limits.maxMetadataBytes;
    const go = new GoBuildInfoScan();
    const cargo = new CargoAuditableScan();
    const scanner = new BinaryScanner([...go.rules(max), ...cargo.rules(max)], {
      maxCapture: max + 64,
      maxOpenCaptures: 64,
    });
    const s = 'range' in src ? src.range.stream() : src.stream;
    for await (const c of s.chunks()) scanner.push(c);
    scanner.end();
    const found: FoundComponent[] = [];
    const info = go.result();
    if (info !== undefined)
      for (const c of goBuildInfoComponents(info)) found.push(this.found(c, 'go-buildinfo', p));
    const json = cargo.result();
    if (json !== undefined) {
      const comps = cargoAuditableComponents(json);
      if (comps === undefined) this.note(p, 'holds cargo auditable data that is not valid audit JSON');
      else for (const c of comps) found.push(this.found(c, 'cargo-auditable', p));
    }
    tree.set(p.path, layer, found);
  }

  async #metadata(tree: LayeredFindings, layer: number, p: Place, src: Source): Promise<void> {
    const kind: MetadataKind | undefined = metadataKind(p.path, p.zipRoot);
    if (kind === undefined) return;
    const where = this.where(p);
    const max = this.limits.maxMetadataBytes;
    let bytes: Buffer;
    if ('range' in src) {
      this.budget.checkMetadata(src.range.size, where);
      bytes = await src.range.read(0, src.range.size);
    } else {
      if (src.size !== undefined) this.budget.checkMetadata(src.size, where);
      bytes = await src.stream.read(max + 1);
      this.budget.checkMetadata(bytes.length, where);
    }
    const text = bytes.toString('utf8');
    const one = (c: Component | undefined, method: EvidenceMethod) => {
      if (c !== undefined) tree.set(p.path, layer, [this.found(c, method, p)]);
    };
    try {
      switch (kind) {
        case 'npm-package':
          return one(npmPackageComponent(text), 'npm-package');
        case 'python-metadata':
          return one(pythonMetadataComponent(text), 'python-metadata');
        case 'java-pom-properties':
          return one(pomPropertiesComponent(text), 'java-pom-properties');
        case 'java-manifest':
          return one(manifestComponent(text, p.jarName), 'java-manifest');
        case 'os-release':
          return tree.set(p.path, layer, [], { osRelease: text });
        case 'dpkg-status':
        case 'dpkg-status-d':
        case 'apk-installed':
          return tree.set(p.path, layer, [], {
            osDatabase: {
              kind,
              text,
              prefix: rootPrefix(p.path, kind),
              evidence: { path: p.path, ...(p.chain.length > 0 ? { archive: [...p.chain] } : {}) },
            },
          });
        case 'lockfile': {
          const cat = catalogFile(p.path, text, {}, where);
          return tree.set(
            p.path,
            layer,
            cat.components.map((c) => this.found(c, 'lockfile', p)),
          );
        }
      }
    } catch (e) {
      if (e instanceof NotAPackage) this.note(p, `${p.path.slice(p.path.lastIndexOf('/') + 1)} ${e.message}`);
      else if (isGatehouseError(e, 'BAD_LOCKFILE', 'BAD_INPUT')) this.note(p, e.describe());
      else throw e;
    }
  }

  /** A directory of outputs: regular files only, symlinks never followed, hard links read once. */
  async directory(root: string, tree: LayeredFindings): Promise<void> {
    const seen = new Set<string>();
    const stack: string[] = [''];
    for (let rel = stack.pop(); rel !== undefined; rel = stack.pop()) {
      const abs = rel === '' ? root : join(root, rel);
      const dirents = (await readdir(abs, { withFileTypes: true })).sort((a, b) =>
        a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
      );
      this.budget.addEntries(dirents.length, rel === '' ? '.' : rel);
      // An image layout among the outputs is read as an image, not as loose blobs.
      const format = imageFormatOf(new Set(dirents.filter((d) => d.isFile()).map((d) => d.name)));
      if (format !== undefined) {
        const store = directoryImageStore(abs, (n) => this.budget.addBytes(n, rel || '.'));
        try {
          const detected = await detectImage(store, format, this.limits.maxMetadataBytes);
          if (detected !== undefined) {
            await this.#image(
              tree,
              0,
              { chain: [], path: rel, depth: 0, zipRoot: false },
              store,
              detected,
              [],
              rel,
            );
            continue;
          }
        } finally {
          await store.close();
        }
      }
      const subdirs: string[] = [];
      for (const d of dirents) {
        const r = rel === '' ? d.name : `${rel}/${d.name}`;
        if (d.isDirectory()) subdirs.push(r);
        else if (d.isFile()) await this.#file(tree, join(abs, d.name), r, seen);
        // Symlinks are not followed: a target inside the directory is read where it lies.
      }
      for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i] as string);
    }
  }

  async #file(tree: LayeredFindings, abs: string, rel: string, seen: Set<string>): Promise<void> {
    let fh: FileHandle;
    try {
      // O_NOFOLLOW and O_NONBLOCK: a file swapped for a symlink or a FIFO since the listing is
      // neither followed nor waited on.
      fh = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (e) {
      this.note(
        { chain: [], path: rel },
        `cannot be opened (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
      );
      return;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) return;
      if (st.nlink > 1) {
        const key = `${st.dev}:${st.ino}`;
        if (seen.has(key)) return;
        seen.add(key);
      }
      this.budget.files++;
      this.budget.inputBytes += st.size;
      const range = new FileRange(fh, 0, st.size, (n) => this.budget.addBytes(n, rel));
      await this.entry(tree, 0, { chain: [], path: rel, depth: 0, zipRoot: false }, { range });
    } finally {
      await fh.close();
    }
  }
}

/**
 * Catalogue what an artifact contains, from its bytes: npm packages (package.json anywhere),
 * Python distributions (dist-info METADATA, egg-info PKG-INFO), Go modules (build info in
 * binaries), Maven artifacts (pom.properties, else the manifest), Rust crates (cargo auditable
 * data), Debian and Alpine packages (dpkg status and status.d, apk installed) and lockfiles
 * shipped in it; inside tar, tar.gz, zstd, zip, jar, war, wheel and npm tarballs, OCI image
 * layouts and docker save archives (layers in order, whiteouts honoured), recognised by content
 * and nested to a bounded depth. Nothing is extracted; memory stays bounded whatever the size.
 * @param limits overrides of {@link DEFAULT_ARTIFACT_LIMITS}
 * @throws GatehouseError ARTIFACT_REFUSED when the artifact exceeds a limit (a bomb);
 *   BAD_INPUT when the artifact is corrupt or truncated, or is no file or directory (an archive
 *   nested inside that cannot be read is listed in `skipped` instead)
 */
export async function catalogArtifact(
  input: ArtifactInput,
  limits?: Partial<ArtifactLimits>,
): Promise<ArtifactCatalog> {
  const walk = new ArtifactWalk(resolveArtifactLimits(limits ?? {}), input.tempDir ?? tmpdir());
  const tree = new LayeredFindings();
  try {
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(input.path);
    } catch (cause) {
      throw new GatehouseError('BAD_INPUT', `artifact '${input.name}' cannot be read`, {
        cause,
        where: input.path,
      });
    }
    if (st.isDirectory()) await walk.directory(input.path, tree);
    else if (st.isFile()) {
      const fh = await open(input.path, constants.O_RDONLY | constants.O_NONBLOCK);
      try {
        const size = (await fh.stat()).size;
        walk.budget.inputBytes = size;
        walk.budget.files++;
        const range = new FileRange(fh, 0, size, (n) => walk.budget.addBytes(n, input.name));
        await walk.entry(
          tree,
          0,
          { chain: [], path: input.name, depth: 0, zipRoot: false, top: true },
          { range },
        );
      } finally {
        await fh.close();
      }
    } else
      throw new GatehouseError('BAD_INPUT', `artifact '${input.name}' is not a file or a directory`, {
        where: input.path,
      });
    const byPurl = new Map<string, FoundComponent>();
    for (const c of tree.finish(walk.resolveOs)) {
      const had = byPurl.get(c.purl);
      // What is installed is better evidence than what a lockfile says was meant to be.
      if (had === undefined || (had.evidence.method === 'lockfile' && c.evidence.method !== 'lockfile'))
        byPurl.set(c.purl, c);
    }
    const components = [...byPurl.values()].sort((a, b) => (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0));
    const b = walk.budget;
    return {
      components,
      skipped: walk.skipped,
      stats: {
        files: b.files,
        bytesRead: b.bytesRead,
        archives: b.archives,
        entries: b.entries,
        skipped: walk.skippedCount,
      },
    };
  } finally {
    await walk.cleanup();
  }
}
