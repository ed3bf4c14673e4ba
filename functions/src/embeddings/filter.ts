/**
 * LanceDB `where` clauses built without splicing user input.
 *
 * Metadata filters never put a user's key or value into the clause: each
 * `key = value` pair is stored on the row as an opaque tag (a hex digest), and
 * a filter becomes `array_has_all(metadata_tags, ['<hex>', …])`. Source ids are
 * constrained by their schema to a safe alphabet and quoted as SQL literals
 * besides. Column names come from constants only.
 */
import { createHash } from "node:crypto";
import { SOURCE_ID_PATTERN, type MetadataValue, type SearchFilter } from "./schemas";

/** The tag a row carries for one metadata pair. */
export function metadataTag(key: string, value: MetadataValue): string {
  return createHash("sha256")
    .update(`${key}\u0000${JSON.stringify(value)}`)
    .digest("hex")
    .slice(0, 32);
}

/** Tags for all of a source's metadata (scalars, and each element of a string list). */
export function metadataTags(metadata: Record<string, MetadataValue | string[]>): string[] {
  const tags = Object.entries(metadata).flatMap(([key, value]) =>
    Array.isArray(value) ? value.map((item) => metadataTag(key, item)) : [metadataTag(key, value)],
  );
  return [...new Set(tags)].sort();
}

/** A SQL string literal; throws on anything outside the alphabet it is meant for. */
export function quoteLiteral(value: string, pattern: RegExp): string {
  if (!pattern.test(value)) throw new Error(`refusing to quote ${JSON.stringify(value.slice(0, 40))}`);
  return `'${value.replace(/'/g, "''")}'`;
}

/** The `where` clause for a search filter, or undefined for no filter. */
export function whereClause(filter: SearchFilter | undefined): string | undefined {
  const parts: string[] = [];
  if (filter?.source_ids && filter.source_ids.length > 0) {
    parts.push(`source IN (${filter.source_ids.map((id) => quoteLiteral(id, SOURCE_ID_PATTERN)).join(", ")})`);
  }
  const pairs = Object.entries(filter?.metadata ?? {});
  if (pairs.length > 0) {
    const tags = pairs.map(([key, value]) => quoteLiteral(metadataTag(key, value), /^[0-9a-f]{32}$/));
    parts.push(`array_has_all(metadata_tags, [${tags.join(", ")}])`);
  }
  return parts.length > 0 ? parts.join(" AND ") : undefined;
}

/** The clause selecting one source's rows. */
export function sourceClause(sourceId: string): string {
  return `source = ${quoteLiteral(sourceId, SOURCE_ID_PATTERN)}`;
}
