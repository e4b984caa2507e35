import type { Evidence, FoundComponent } from './found-component.ts';

/** An OS package database waiting for the os-release of its root file system. */
export interface PendingOsDatabase {
  kind: 'dpkg-status' | 'dpkg-status-d' | 'apk-installed';
  text: string;
  /** The path its root file system starts at (`''`, or `rootfs/`). */
  prefix: string;
  evidence: Omit<Evidence, 'method'>;
}

interface Item {
  layer: number;
  found: FoundComponent[];
  osDatabase?: PendingOsDatabase;
  osRelease?: string;
}

/**
 * What was found in one file system view (a directory, an archive, an image's merged layers),
 * keyed by the path of the file (or nested archive) it came from. In an image, a later layer hides
 * what lower layers put at a path it replaces or whites out, so a package removed in a later
 * layer is not reported.
 */
export class LayeredFindings {
  #items = new Map<string, Item>();
  // How many item paths lie under each directory, so that "anything below this path?" is O(1).
  #below = new Map<string, number>();

  #count(path: string, delta: number): void {
    for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) {
      const dir = path.slice(0, i);
      const n = (this.#below.get(dir) ?? 0) + delta;
      if (n <= 0) this.#below.delete(dir);
      else this.#below.set(dir, n);
    }
  }

  #delete(path: string): void {
    if (this.#items.delete(path)) this.#count(path, -1);
  }

  /** Record what the file at `path` holds (replacing an earlier record for the same path). */
  set(path: string, layer: number, found: FoundComponent[], extra: Omit<Item, 'layer' | 'found'> = {}): void {
    if (found.length === 0 && extra.osDatabase === undefined && extra.osRelease === undefined) return;
    if (!this.#items.has(path)) this.#count(path, 1);
    this.#items.set(path, { layer, found, ...extra });
  }

  /**
   * Hide what layers below `layer` put at `path` and under it (`self-and-below`: a whiteout, or a
   * file replacing a directory), only under it (`below`: an opaque directory), or only at it
   * (`self`: a directory replacing a file).
   */
  hide(path: string, layer: number, mode: 'self' | 'self-and-below' | 'below'): void {
    if (mode !== 'below') {
      const it = this.#items.get(path);
      if (it !== undefined && it.layer < layer) this.#delete(path);
    }
    if (mode === 'self') return;
    // Most entries of a layer replace nothing that holds findings: answer those without a scan.
    if (path !== '' && !this.#below.has(path)) return;
    const prefix = path === '' ? '' : `${path}/`;
    for (const [k, it] of [...this.#items]) if (k.startsWith(prefix) && it.layer < layer) this.#delete(k);
  }

  /** True when a record at a path matching `test` exists. */
  has(test: (path: string, item: { found: FoundComponent[] }) => boolean): boolean {
    for (const [k, it] of this.#items) if (test(k, it)) return true;
    return false;
  }

  /** Drop the records at paths matching `test`. */
  drop(test: (path: string) => boolean): void {
    for (const k of [...this.#items.keys()]) if (test(k)) this.#delete(k);
  }

  /**
   * Everything found, with each pending OS database resolved against the os-release of its root
   * (`<prefix>etc/os-release`, else `<prefix>usr/lib/os-release`).
   */
  finish(
    resolve: (db: PendingOsDatabase, osRelease: string | undefined) => FoundComponent[],
  ): FoundComponent[] {
    const out: FoundComponent[] = [];
    for (const it of this.#items.values()) {
      out.push(...it.found);
      const db = it.osDatabase;
      if (db !== undefined) {
        const rel =
          this.#items.get(`${db.prefix}etc/os-release`)?.osRelease ??
          this.#items.get(`${db.prefix}usr/lib/os-release`)?.osRelease;
        out.push(...resolve(db, rel));
      }
    }
    return out;
  }
}
