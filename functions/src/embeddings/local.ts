/**
 * The offline default embedder: deterministic feature hashing of word and
 * character n-grams, L2-normalised.
 *
 * No model weights can be shipped, so similarity comes from shared vocabulary:
 * word unigrams (lightly stemmed, stopwords dropped) carry most weight, word
 * bigrams add phrase matches, and character trigrams of each word make
 * morphological variants ("indexing", "indexed") overlap. Each feature is
 * hashed (FNV-1a) to a dimension and a sign, so collisions cancel rather than
 * pile up. Pure TypeScript with no dependencies: the harness's fake provider
 * uses it too.
 */
import type { EmbedPurpose, EmbeddingProvider } from "./provider";

export const LOCAL_MODEL_ID = "local-hash-v1";

const STOPWORDS = new Set(
  (
    "a an and are as at be been but by can could did do does for from had has have how i if in into is it its " +
    "me my no not of on or our so some such than that the their them then there these they this to too was we " +
    "were what when where which who why will with would you your"
  ).split(" "),
);

const WORD_WEIGHT = 1;
const BIGRAM_WEIGHT = 0.6;
const TRIGRAM_WEIGHT = 0.25;

export class LocalEmbedder implements EmbeddingProvider {
  readonly modelId = LOCAL_MODEL_ID;

  constructor(
    readonly dimension: number,
    readonly batchSize = 256,
  ) {
    if (!Number.isInteger(dimension) || dimension < 8)
      throw new Error(`local embedder dimension must be an integer ≥ 8, got ${dimension}`);
  }

  async embed(texts: string[], purpose: EmbedPurpose): Promise<number[][]> {
    void purpose; // the same space serves queries and documents
    return texts.map((text) => embedText(text, this.dimension));
  }
}

/** One text's vector (exported for the fake provider and tests). */
export function embedText(text: string, dimension: number): number[] {
  const vector = new Float64Array(dimension);
  const words = tokens(text);
  const add = (feature: string, weight: number) => {
    const hash = fnv1a(feature);
    const index = hash % dimension;
    // A second, independent bit decides the sign.
    const sign = (fnv1a(`~${feature}`) & 1) === 0 ? 1 : -1;
    vector[index] += sign * weight;
  };
  for (let i = 0; i < words.length; i++) {
    const word = words[i];
    add(`w:${word}`, WORD_WEIGHT);
    if (i + 1 < words.length) add(`b:${word} ${words[i + 1]}`, BIGRAM_WEIGHT);
    const padded = `<${word}>`;
    for (let j = 0; j + 3 <= padded.length; j++) add(`c:${padded.slice(j, j + 3)}`, TRIGRAM_WEIGHT);
  }
  // Sub-linear term frequency: a word repeated ten times is not ten times as relevant.
  let norm = 0;
  for (let i = 0; i < dimension; i++) {
    const value = vector[i];
    vector[i] = Math.sign(value) * Math.log1p(Math.abs(value));
    norm += vector[i] * vector[i];
  }
  norm = Math.sqrt(norm);
  return Array.from(vector, (value) => (norm > 0 ? value / norm : 0));
}

/** Lower-cased words (letters and digits, any script), stopwords dropped, lightly stemmed. */
export function tokens(text: string): string[] {
  const words =
    text
      .toLowerCase()
      .normalize("NFKC")
      .match(/[\p{L}\p{N}]+/gu) ?? [];
  return words.filter((word) => !STOPWORDS.has(word)).map(stem);
}

/** A crude suffix stripper: enough to let "indexing", "indexed" and "indexes" share a unigram. */
function stem(word: string): string {
  if (word.length <= 4) return word;
  for (const suffix of ["ational", "ization", "ness", "ment", "ing", "ies", "ied", "ed", "es", "ly", "s"]) {
    if (word.endsWith(suffix) && word.length - suffix.length >= 3) {
      const base = word.slice(0, -suffix.length);
      return suffix === "ies" || suffix === "ied" ? `${base}y` : base;
    }
  }
  return word;
}

/** 32-bit FNV-1a over UTF-16 code units. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
