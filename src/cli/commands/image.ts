import { performance } from 'node:perf_hooks';
import { resolveHome } from '../../home/home.ts';
import { aptDefaultMirror, buildImage, importImage, listImages } from '../../runner/directory-image.ts';
import { homeImagesDir } from '../../runner/from-config.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { makeOutput, ms } from '../output.ts';

const USAGE = usageOf('image');

/**
 * `gatehouse image`: content-addressed runner base images in the home (`<home>/images`).
 * `build` makes a minimal Debian root file system with debootstrap and imports it; `import`
 * stores any root file system directory by its digest; `list` shows what is stored. An image is
 * used with `runner.image: { kind: directory, digest: sha256:… }` in the home's config.
 */
export async function imageCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...commonOptions,
      suite: { type: 'string' },
      mirror: { type: 'string' },
      include: { type: 'string' },
    },
    { min: 1, max: 2, usage: USAGE },
  );
  const [sub, dir] = positionals;
  const out = makeOutput(values.json === true);
  const imagesDir = homeImagesDir(resolveHome(values.home));
  const started = performance.now();
  const report = (r: { digest: string; path: string; files: number; bytes: number; skipped: number }) => {
    const elapsedMs = Math.round(performance.now() - started);
    out.document({ ...r, digest: `sha256:${r.digest}`, elapsedMs });
    out.line(`image sha256:${r.digest}`);
    out.line(
      `  ${r.files} files, ${(r.bytes / 1024 ** 2).toFixed(1)} MiB, stored at ${r.path} in ${ms(elapsedMs)}` +
        (r.skipped > 0 ? ` (${r.skipped} device nodes, sockets or FIFOs left out)` : ''),
    );
    out.line(`  use it with runner.image: { kind: directory, digest: 'sha256:${r.digest}' }`);
  };
  if (sub === 'list') {
    if (dir !== undefined) throw new UsageError(`usage: ${USAGE}`);
    const images = await listImages(imagesDir);
    out.document({ images });
    if (images.length === 0) out.line(`no images in ${imagesDir}`);
    for (const i of images) {
      out.line(
        `${i.digest}  ${i.files} files  ${(i.bytes / 1024 ** 2).toFixed(1)} MiB  ${i.importedAt}${i.source === undefined ? '' : `  ${i.source}`}`,
      );
    }
    return EXIT.ok;
  }
  if (sub === 'import') {
    if (dir === undefined) throw new UsageError(`usage: ${USAGE}`);
    report(await importImage(dir, imagesDir, { source: `import ${dir}` }));
    return EXIT.ok;
  }
  if (sub === 'build') {
    if (dir !== undefined) throw new UsageError(`usage: ${USAGE}`);
    const apt = await aptDefaultMirror();
    const mirror = values.mirror ?? apt?.mirror;
    if (mirror === undefined)
      throw new UsageError(`no Debian mirror in /etc/apt/sources*: pass --mirror URL\nusage: ${USAGE}`);
    report(
      await buildImage({
        imagesDir,
        suite: values.suite ?? apt?.suite ?? 'bookworm',
        mirror,
        include: values.include === undefined ? [] : values.include.split(',').filter((p) => p !== ''),
        log: (l) => out.line(l),
      }),
    );
    return EXIT.ok;
  }
  throw new UsageError(`unknown image command '${sub ?? ''}'\nusage: ${USAGE}`);
}
