/**
 * Inputs of the embeddings capability: callables and the Pub/Sub message. All
 * strict. Defaults are applied by the use cases (the callable wrapper wants a
 * schema whose input and output types agree).
 */
import * as z from "zod";

/** Source ids: a safe alphabet, so they can name rows, documents and be quoted in filters. */
export const SOURCE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const METADATA_KEY = /^[a-z][a-z0-9_]{0,39}$/;

/** The longest inline text; larger documents go through Cloud Storage (`uri`). */
export const MAX_INLINE_TEXT = 1_000_000;
/** The longest document read from Cloud Storage. */
export const MAX_STORED_TEXT = 20_000_000;

export type MetadataValue = string | number | boolean;

const sourceId = z
  .string()
  .regex(SOURCE_ID_PATTERN, "letters, digits and . _ : - only (1–128, starting with a letter or digit)");
const metadataValue = z.union([z.string().max(500), z.number(), z.boolean()]);
const metadata = z
  .record(
    z.string().regex(METADATA_KEY, "metadata keys are lower_snake_case"),
    z.union([metadataValue, z.array(z.string().max(200)).max(50)]),
  )
  .refine((value) => Object.keys(value).length <= 32, "at most 32 metadata keys");

export const IngestInput = z
  .object({
    source_id: sourceId,
    text: z.string().max(MAX_INLINE_TEXT).optional(),
    uri: z
      .string()
      .regex(/^gs:\/\/[a-z0-9][a-z0-9._-]{1,221}\/.+$/, "a gs://bucket/object URI")
      .max(1024)
      .optional(),
    metadata: metadata.optional(),
  })
  .strict()
  .refine((input) => (input.text === undefined) !== (input.uri === undefined), {
    error: "give exactly one of text or uri",
    path: ["text"],
  });
export type IngestInput = z.infer<typeof IngestInput>;

export const DeleteInput = z.object({ source_id: sourceId }).strict();
export type DeleteInput = z.infer<typeof DeleteInput>;

export const SearchFilter = z
  .object({
    source_ids: z.array(sourceId).min(1).max(50).optional(),
    metadata: z
      .record(z.string().regex(METADATA_KEY, "metadata keys are lower_snake_case"), metadataValue)
      .refine((value) => Object.keys(value).length <= 10, "at most 10 metadata conditions")
      .optional(),
  })
  .strict();
export type SearchFilter = z.infer<typeof SearchFilter>;

export const SearchInput = z
  .object({
    query: z.string().trim().min(1).max(2000),
    k: z.number().int().min(1).max(50).optional(),
    filter: SearchFilter.optional(),
  })
  .strict();
export type SearchInput = z.infer<typeof SearchInput>;
export const DEFAULT_K = 10;

export const SelectToolsInput = z
  .object({
    query: z.string().trim().min(1).max(2000),
    k: z.number().int().min(1).max(20).optional(),
  })
  .strict();
export type SelectToolsInput = z.infer<typeof SelectToolsInput>;
export const DEFAULT_TOOLS_K = 5;

/** The `embedding-requests` message, as ingestKnowledge publishes it. */
export const EmbeddingRequest = z
  .object({
    op: z.literal("ingest"),
    source_id: sourceId,
    text: z.string().max(MAX_INLINE_TEXT).optional(),
    uri: z.string().max(1024).optional(),
    metadata,
    requested_by: z.string().max(128),
    /** Milliseconds since the epoch, when the request was made (informational). */
    requested_at: z.number().int().nonnegative(),
    /** The source's generation taken for this request (sources.ts): what orders requests for one source. */
    generation: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  })
  .strict()
  .refine((input) => (input.text === undefined) !== (input.uri === undefined), {
    error: "exactly one of text or uri",
    path: ["text"],
  });
export type EmbeddingRequest = z.infer<typeof EmbeddingRequest>;
