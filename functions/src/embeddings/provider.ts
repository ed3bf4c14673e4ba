/**
 * The one interface every embedding provider implements, and the batching and
 * retries every caller embeds through (errors.ts says what may be retried).
 */
import { ProviderError } from "./errors";

/** What the texts are for; retrieval models embed queries and documents differently. */
export type EmbedPurpose = "document" | "query";

export interface EmbeddingProvider {
  /** Stable model id; with `dimension` it names the LanceDB table the vectors live in. */
  readonly modelId: string;
  readonly dimension: number;
  /** Texts per request; callers split larger inputs (see `embedAll`). */
  readonly batchSize: number;
  /** One vector per text, in order, each of length `dimension`. */
  embed(texts: string[], purpose: EmbedPurpose): Promise<number[][]>;
}

export interface RetryPolicy {
  /** Total attempts per request, first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  sleep?: (ms: number) => Promise<void>;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Embeds any number of texts in the provider's batches, retrying transient
 * failures of a batch with capped exponential backoff and full jitter (never a
 * tight loop), honouring Retry-After up to the cap.
 */
export async function embedAll(
  provider: EmbeddingProvider,
  texts: string[],
  purpose: EmbedPurpose,
  policy: RetryPolicy,
): Promise<number[][]> {
  const vectors: number[][] = [];
  const size = Math.max(1, provider.batchSize);
  for (let start = 0; start < texts.length; start += size) {
    const batch = texts.slice(start, start + size);
    const result = await withRetries(() => provider.embed(batch, purpose), policy);
    if (result.length !== batch.length) {
      throw new ProviderError(`${provider.modelId} returned ${result.length} vectors for ${batch.length} texts`, false);
    }
    for (const vector of result) {
      if (vector.length !== provider.dimension || vector.some((value) => !Number.isFinite(value))) {
        throw new ProviderError(
          `${provider.modelId} returned a vector of ${vector.length} dimensions, configured ${provider.dimension}`,
          false,
        );
      }
      vectors.push(vector);
    }
  }
  return vectors;
}

export async function withRetries<T>(call: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  const sleep = policy.sleep ?? realSleep;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const transient = error instanceof ProviderError && error.transient;
      if (!transient || attempt >= policy.attempts) throw error;
      const backoff = Math.random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
      const suggested = error instanceof ProviderError ? (error.retryAfterMs ?? 0) : 0;
      await sleep(Math.min(policy.maxDelayMs, Math.max(backoff, suggested)));
    }
  }
}
