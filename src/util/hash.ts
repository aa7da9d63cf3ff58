/** The one content hash of tidarc: cache keys, manifest file hashes and build stamps. */
import { createHash } from 'node:crypto';

/** Hex sha256 of a text (UTF-8) or of bytes. */
export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** An incremental sha256 for inputs read piece by piece (a directory's files). */
export function sha256Hasher(): { update(data: string | Uint8Array): void; digest(): string } {
  const hash = createHash('sha256');
  return {
    update(data) {
      hash.update(data);
    },
    digest: () => hash.digest('hex'),
  };
}
