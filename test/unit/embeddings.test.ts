import assert from "node:assert/strict";
import fc from "fast-check";
import { chunkText, sentences } from "../../functions/src/embeddings/chunking";
import { metadataTag, quoteLiteral, whereClause } from "../../functions/src/embeddings/filter";
import { LocalEmbedder, embedText } from "../../functions/src/embeddings/local";
import { ProviderError } from "../../functions/src/embeddings/errors";
import { embedAll, withRetries, type EmbeddingProvider } from "../../functions/src/embeddings/provider";
import { EmbeddingRequest, IngestInput, SOURCE_ID_PATTERN, SearchInput } from "../../functions/src/embeddings/schemas";
import { expects, type SourceState } from "../../functions/src/embeddings/sources";
import { tableName } from "../../functions/src/embeddings/store";

const cosine = (a: number[], b: number[]) => a.reduce((sum, value, i) => sum + value * b[i], 0);

/** Each case: a text, its paraphrase, and an unrelated text. */
const PARAPHRASES: Array<[string, string, string]> = [
  [
    "How do I reset my password?",
    "Steps to change a forgotten password",
    "The recipe needs two cups of flour and an egg.",
  ],
  [
    "The train to Berlin departs at nine in the morning.",
    "Morning departure of the Berlin train is at 9.",
    "Tomatoes grow best in full sun with regular watering.",
  ],
  [
    "Credits are refunded when a job fails.",
    "If the job failed, the user gets a refund of the credits.",
    "The museum is closed on public holidays.",
  ],
  [
    "Our cat sleeps on the sofa all afternoon.",
    "In the afternoon the cat naps on the couch sofa.",
    "Quarterly revenue grew by twelve percent.",
  ],
  [
    "Indexing large documents takes several minutes.",
    "Large documents are indexed in a few minutes.",
    "She plays the violin in an orchestra.",
  ],
  [
    "Cancel the running podcast generation job.",
    "Stop the podcast job that is running now.",
    "Rainfall in the desert is rare.",
  ],
];

describe("unit: local embedder", () => {
  const embedder = new LocalEmbedder(384);

  it("when a text is embedded twice, then the vectors are identical, unit length and of the configured dimension", async () => {
    const [a, b] = await embedder.embed(["Hello, world of embeddings!", "Hello, world of embeddings!"], "document");
    assert.deepEqual(a, b);
    assert.equal(a.length, 384);
    assert.ok(Math.abs(cosine(a, a) - 1) < 1e-9);
    assert.equal(embedText("hello", 64).length, 64);
  });

  it("when comparing a small fixed set, then every paraphrase ranks above the unrelated text", async () => {
    for (const [text, paraphrase, unrelated] of PARAPHRASES) {
      const [t, p, u] = await embedder.embed([text, paraphrase, unrelated], "document");
      const related = cosine(t, p);
      const other = cosine(t, u);
      assert.ok(related > other + 0.1, `"${text}": paraphrase ${related.toFixed(3)} vs unrelated ${other.toFixed(3)}`);
    }
  });

  it("when a query is searched among all texts of the set, then its own paraphrase is the nearest", async () => {
    const corpus = PARAPHRASES.flatMap(([, paraphrase, unrelated]) => [paraphrase, unrelated]);
    const vectors = await embedder.embed(corpus, "document");
    for (const [index, [text]] of PARAPHRASES.entries()) {
      const [query] = await embedder.embed([text], "query");
      const scores = vectors.map((vector) => cosine(query, vector));
      assert.equal(scores.indexOf(Math.max(...scores)), index * 2, `nearest to "${text}"`);
    }
  });

  it("when a text has no words, then its vector is all zeros rather than NaN", () => {
    assert.ok(embedText("  ... !!! ", 32).every((value) => value === 0));
  });
});

describe("unit: chunking", () => {
  const settings = { size: 120, overlap: 40 };

  it("when a text has sentences, then chunks end on sentence boundaries and overlap by whole sentences", () => {
    const text = Array.from({ length: 10 }, (_, i) => `Sentence number ${i} is here.`).join(" ");
    const chunks = chunkText(text, settings);
    assert.ok(chunks.length > 1);
    for (const chunk of chunks) {
      assert.ok(chunk.length <= settings.size, chunk);
      assert.match(chunk, /^Sentence number \d+ is here\.( Sentence number \d+ is here\.)*$/);
    }
    // The next chunk starts with the previous one's last sentence (it fits in the overlap).
    const lastOfFirst = sentences(chunks[0]).at(-1);
    assert.equal(sentences(chunks[1])[0], lastOfFirst);
  });

  it("for any text, chunks are deterministic, within the size, and every sentence appears in some chunk", () => {
    fc.assert(
      fc.property(
        fc.array(fc.stringMatching(/^[a-z]{1,12}( [a-z]{1,12}){0,30}[.!?]$/), { minLength: 0, maxLength: 25 }),
        fc.integer({ min: 20, max: 300 }),
        fc.integer({ min: 0, max: 100 }),
        (parts, size, overlap) => {
          const text = parts.join(" ");
          const chunks = chunkText(text, { size, overlap });
          assert.deepEqual(chunkText(text, { size, overlap }), chunks);
          for (const chunk of chunks) assert.ok(chunk.length <= size, `${chunk.length} > ${size}`);
          const joined = chunks.join(" ");
          for (const word of text.split(/[ .!?]+/).filter(Boolean)) assert.ok(joined.includes(word));
          if (text.trim() === "") assert.deepEqual(chunks, []);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("unit: LanceDB filters", () => {
  it("when filtering on metadata, then neither keys nor values appear in the where clause", () => {
    const value = "x' OR '1'='1";
    const clause = whereClause({ metadata: { lang: value, draft: false } })!;
    assert.ok(!clause.includes(value) && !clause.includes("lang") && !clause.includes("OR"), clause);
    assert.match(clause, /^array_has_all\(metadata_tags, \['[0-9a-f]{32}', '[0-9a-f]{32}'\]\)$/);
    assert.ok(clause.includes(metadataTag("lang", value)));
  });

  it("when a value is typed differently, then it is a different tag (1 ≠ '1' ≠ true)", () => {
    const tags = new Set([metadataTag("k", 1), metadataTag("k", "1"), metadataTag("k", true)]);
    assert.equal(tags.size, 3);
  });

  it("when filtering on source ids, then they are quoted literals from a safe alphabet, and anything else is refused", () => {
    assert.equal(whereClause({ source_ids: ["doc-1", "a.b:c_d"] }), "source IN ('doc-1', 'a.b:c_d')");
    assert.throws(() => quoteLiteral("a' OR 1=1 --", SOURCE_ID_PATTERN));
    assert.equal(whereClause(undefined), undefined);
    assert.equal(whereClause({}), undefined);
  });

  it("when models or dimensions differ, then their tables differ", () => {
    assert.equal(tableName("knowledge_text", "local-hash-v1", 384), "knowledge_text__local_hash_v1__384");
    assert.notEqual(tableName("knowledge_text", "m", 384), tableName("knowledge_text", "m", 768));
    assert.notEqual(
      tableName("knowledge_text", "text-embedding-3-small", 1536),
      tableName("tool_selector", "text-embedding-3-small", 1536),
    );
  });
});

describe("unit: provider retries", () => {
  const noSleep = { attempts: 4, baseDelayMs: 100, maxDelayMs: 1000 };

  it("when a call fails transiently and then succeeds, then it is retried with growing, capped waits", async () => {
    const waits: number[] = [];
    let calls = 0;
    const result = await withRetries(
      async () => {
        calls += 1;
        if (calls < 3) throw new ProviderError("429", true, 429, calls === 2 ? 900 : undefined);
        return "ok";
      },
      { ...noSleep, sleep: async (ms) => void waits.push(ms) },
    );
    assert.equal(result, "ok");
    assert.equal(calls, 3);
    assert.equal(waits.length, 2);
    assert.ok(waits[0] <= 100, "first wait within the base delay");
    assert.equal(waits[1], 900, "Retry-After is honoured up to the cap");
  });

  it("when a call fails permanently, then it is not retried", async () => {
    let calls = 0;
    await assert.rejects(
      withRetries(
        async () => {
          calls += 1;
          throw ProviderError.fromStatus("p", 400, "bad", null);
        },
        { ...noSleep, sleep: async () => undefined },
      ),
      (error: unknown) => error instanceof ProviderError && !error.transient && error.status === 400,
    );
    assert.equal(calls, 1);
  });

  it("when a call keeps failing transiently, then it gives up after the attempts", async () => {
    let calls = 0;
    await assert.rejects(
      withRetries(
        async () => {
          calls += 1;
          throw ProviderError.fromStatus("p", 503, "down", "0");
        },
        { ...noSleep, sleep: async () => undefined },
      ),
    );
    assert.equal(calls, 4);
  });

  it("when texts exceed a batch, then they are embedded in batches, and a wrong dimension is a permanent error", async () => {
    const batches: number[] = [];
    const provider: EmbeddingProvider = {
      modelId: "m",
      dimension: 2,
      batchSize: 3,
      embed: async (texts) => {
        batches.push(texts.length);
        return texts.map(() => [1, 0]);
      },
    };
    assert.equal((await embedAll(provider, ["a", "b", "c", "d", "e", "f", "g"], "document", noSleep)).length, 7);
    assert.deepEqual(batches, [3, 3, 1]);
    const wrong = { ...provider, dimension: 3 };
    await assert.rejects(
      embedAll(wrong, ["a"], "document", noSleep),
      (error: unknown) => error instanceof ProviderError && !error.transient,
    );
  });
});

describe("unit: embeddings input schemas", () => {
  it("when both or neither of text and uri are given, then the input is refused", () => {
    assert.equal(IngestInput.safeParse({ source_id: "a", text: "x", uri: "gs://b/x" }).success, false);
    assert.equal(IngestInput.safeParse({ source_id: "a" }).success, false);
    assert.equal(IngestInput.safeParse({ source_id: "a", text: "x" }).success, true);
    assert.equal(IngestInput.safeParse({ source_id: "a", uri: "gs://bucket/folder/doc.txt" }).success, true);
    assert.equal(IngestInput.safeParse({ source_id: "a", uri: "https://example.com/x" }).success, false);
  });

  it("when ids, metadata keys or k are out of bounds, then the input is refused", () => {
    assert.equal(IngestInput.safeParse({ source_id: "../x", text: "x" }).success, false);
    assert.equal(IngestInput.safeParse({ source_id: "a", text: "x", metadata: { "Bad Key": 1 } }).success, false);
    assert.equal(SearchInput.safeParse({ query: "q", k: 51 }).success, false);
    assert.equal(SearchInput.safeParse({ query: "   " }).success, false);
    assert.equal(SearchInput.safeParse({ query: "q", filter: { where: "1=1" } }).success, false);
  });
});

describe("unit: which request a knowledge source expects", () => {
  const state = (fields: Partial<SourceState>): SourceState => ({
    exists: true,
    generation: 0,
    applied_generation: 0,
    deleted_generation: 0,
    ...fields,
  });

  it("when a newer request was applied or a delete came after, then an older request is no longer expected", () => {
    assert.equal(expects(state({ generation: 2, applied_generation: 2, live_generation: 2 }), 1), false);
    assert.equal(expects(state({ generation: 3, applied_generation: 1, deleted_generation: 3 }), 2), false);
    assert.equal(expects(state({ generation: 3, applied_generation: 1, deleted_generation: 3 }), 3), false);
  });

  it("when no newer request was applied, then a request is expected, and a republished copy of the applied one too", () => {
    assert.equal(expects(state({ generation: 1 }), 1), true);
    assert.equal(expects(state({ generation: 3, applied_generation: 1, live_generation: 1 }), 2), true);
    assert.equal(expects(state({ generation: 2, applied_generation: 2, live_generation: 2 }), 2), true);
    assert.equal(expects(state({ generation: 4, applied_generation: 1, deleted_generation: 3 }), 4), true);
  });

  it("when a message carries no generation, then it is refused as malformed", () => {
    const message = { op: "ingest", source_id: "a", text: "x", metadata: {}, requested_by: "u", requested_at: 1 };
    assert.equal(EmbeddingRequest.safeParse(message).success, false);
    assert.equal(EmbeddingRequest.safeParse({ ...message, generation: 1 }).success, true);
    assert.equal(EmbeddingRequest.safeParse({ ...message, generation: 1.5 }).success, false);
  });
});
