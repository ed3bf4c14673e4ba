/**
 * Splitting a text into overlapping chunks that end on sentence boundaries
 * where possible. Deterministic: the same text and settings give the same
 * chunks, so re-deliveries produce the same chunk ids and rows.
 */
import { EMBEDDING_CHUNK_OVERLAP, EMBEDDING_CHUNK_SIZE } from "../config";

export interface ChunkSettings {
  /** Maximum length in characters; sentences longer than that are split on words. */
  size: number;
  /** Characters of the previous chunk's tail repeated at the start of the next. */
  overlap: number;
}

/** The settings the params give (read at run time, inside handlers). */
export function chunkSettings(): ChunkSettings {
  return { size: EMBEDDING_CHUNK_SIZE.value(), overlap: EMBEDDING_CHUNK_OVERLAP.value() };
}

/** Bumped whenever the algorithm changes, so content hashes (and so re-indexing) follow. */
export const CHUNKER_VERSION = 1;

export function chunkText(text: string, settings: ChunkSettings): string[] {
  const size = Math.max(1, settings.size);
  const overlap = Math.max(0, Math.min(settings.overlap, Math.floor(size / 2)));
  const pieces = sentences(text).flatMap((sentence) =>
    sentence.length <= size ? [sentence] : splitLong(sentence, size),
  );
  const chunks: string[] = [];
  let current: string[] = [];
  let length = 0;
  let fresh = 0; // sentences in `current` not carried over from the previous chunk
  const joinedLength = (parts: string[]) =>
    parts.reduce((sum, part) => sum + part.length, 0) + Math.max(0, parts.length - 1);
  for (const piece of pieces) {
    if (current.length > 0 && length + 1 + piece.length > size) {
      if (fresh > 0) chunks.push(current.join(" "));
      current = tail(current, overlap);
      length = joinedLength(current);
      // The carried tail must leave room for the new piece.
      while (current.length > 0 && length + 1 + piece.length > size)
        length -= current.shift()!.length + (current.length > 0 ? 1 : 0);
      fresh = 0;
    }
    length += (current.length > 0 ? 1 : 0) + piece.length;
    current.push(piece);
    fresh += 1;
  }
  if (fresh > 0) chunks.push(current.join(" "));
  return chunks;
}

const SENTENCE_END = new Set([".", "!", "?", "…", "。", "！", "？"]);

/**
 * Sentences with whitespace collapsed: a sentence ends at end punctuation
 * followed by a space, or at a paragraph break. A plain scan rather than a
 * look-behind split: this runs over every ingested byte.
 */
export function sentences(text: string): string[] {
  const out: string[] = [];
  for (const paragraph of text.split(/\n\s*\n/)) {
    const flat = paragraph.replace(/\s+/g, " ").trim();
    let start = 0;
    for (let i = 0; i + 1 < flat.length; i++) {
      if (flat.charCodeAt(i + 1) === 32 && SENTENCE_END.has(flat[i])) {
        out.push(flat.slice(start, i + 1));
        start = i + 2;
      }
    }
    if (start < flat.length) out.push(flat.slice(start));
  }
  return out.filter((sentence) => sentence.length > 0);
}

/** The last sentences of `parts` whose joined length fits in `overlap`. */
function tail(parts: string[], overlap: number): string[] {
  const kept: string[] = [];
  let length = 0;
  for (let i = parts.length - 1; i >= 0; i--) {
    const next = length + (kept.length > 0 ? 1 : 0) + parts[i].length;
    if (next > overlap) break;
    kept.unshift(parts[i]);
    length = next;
  }
  return kept;
}

/** A sentence longer than a chunk: cut on spaces (or anywhere, for unbroken runs). */
function splitLong(sentence: string, size: number): string[] {
  const out: string[] = [];
  let rest = sentence;
  while (rest.length > size) {
    const space = rest.lastIndexOf(" ", size);
    // Cut at the last space that fits; only a word longer than a chunk is cut inside.
    const cut = space > 0 ? space : size;
    out.push(rest.slice(0, cut).trim());
    rest = rest.slice(cut).trim();
  }
  if (rest.length > 0) out.push(rest);
  return out;
}
