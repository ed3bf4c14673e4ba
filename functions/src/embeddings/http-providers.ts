/**
 * Remote embedding providers, as plain HTTP clients (no SDKs to load):
 * any OpenAI-compatible `/embeddings` endpoint (OpenAI, Ollama, vLLM,
 * text-embeddings-inference) and Vertex AI text embeddings.
 */
import { ProviderError } from "./errors";
import type { EmbedPurpose, EmbeddingProvider } from "./provider";

export interface HttpProviderOptions {
  baseUrl: string;
  modelId: string;
  dimension: number;
  batchSize: number;
  timeoutMs?: number;
}

/** POSTs JSON and returns the parsed answer, mapping every failure to a ProviderError. */
async function postJson(
  provider: string,
  url: string,
  headers: Record<string, string>,
  body: unknown,
  timeoutMs: number,
): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    // Timeouts, refused connections, resets: the provider may well answer later.
    const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    throw new ProviderError(`${provider} request failed (${reason})`, true);
  }
  const text = await response.text().catch(() => "");
  if (!response.ok)
    throw ProviderError.fromStatus(provider, response.status, text, response.headers.get("retry-after"));
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ProviderError(`${provider} answered with invalid JSON`, false, response.status);
  }
}

function malformed(provider: string, what: string): ProviderError {
  return new ProviderError(`${provider} answer is malformed: ${what}`, false);
}

/**
 * An OpenAI-compatible embeddings endpoint: POST {baseUrl}/embeddings with
 * `{model, input: string[]}`, answer `{data: [{index, embedding}]}`.
 */
export class OpenAiCompatibleProvider implements EmbeddingProvider {
  readonly modelId: string;
  readonly dimension: number;
  readonly batchSize: number;

  constructor(
    private readonly options: HttpProviderOptions,
    private readonly apiKey: string,
  ) {
    this.modelId = options.modelId;
    this.dimension = options.dimension;
    this.batchSize = options.batchSize;
  }

  async embed(texts: string[], purpose: EmbedPurpose): Promise<number[][]> {
    void purpose; // OpenAI-style models embed queries and documents alike
    const url = `${this.options.baseUrl.replace(/\/+$/, "")}/embeddings`;
    const headers: Record<string, string> = this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {};
    const answer = await postJson(
      "openai-compatible",
      url,
      headers,
      { model: this.modelId, input: texts },
      this.options.timeoutMs ?? 30_000,
    );
    const data = (answer as { data?: unknown }).data;
    if (!Array.isArray(data)) throw malformed("openai-compatible", "no data array");
    const vectors = new Array<number[]>(texts.length);
    data.forEach((item: unknown, position: number) => {
      const entry = item as { index?: unknown; embedding?: unknown };
      const index = typeof entry.index === "number" ? entry.index : position;
      if (!Array.isArray(entry.embedding) || index < 0 || index >= texts.length)
        throw malformed("openai-compatible", `data[${position}]`);
      vectors[index] = entry.embedding as number[];
    });
    if (vectors.filter(Boolean).length !== texts.length)
      throw malformed("openai-compatible", `${data.length} embeddings for ${texts.length} inputs`);
    return vectors;
  }
}

/** Supplies an OAuth access token (the function's service identity in production). */
export type TokenSource = () => Promise<string>;

/**
 * Vertex AI text embeddings: POST
 * {baseUrl}/projects/{project}/locations/{location}/publishers/google/models/{model}:predict
 * with `{instances: [{content, task_type}], parameters: {outputDimensionality}}`,
 * answer `{predictions: [{embeddings: {values}}]}`.
 */
export class VertexAiProvider implements EmbeddingProvider {
  readonly modelId: string;
  readonly dimension: number;
  readonly batchSize: number;

  constructor(
    private readonly options: HttpProviderOptions & { project: string; location: string },
    private readonly token: TokenSource,
  ) {
    this.modelId = options.modelId;
    this.dimension = options.dimension;
    this.batchSize = options.batchSize;
  }

  async embed(texts: string[], purpose: EmbedPurpose): Promise<number[][]> {
    const { baseUrl, project, location, modelId } = this.options;
    const url = `${baseUrl.replace(/\/+$/, "")}/projects/${encodeURIComponent(project)}/locations/${encodeURIComponent(location)}/publishers/google/models/${encodeURIComponent(modelId)}:predict`;
    let token: string;
    try {
      token = await this.token();
    } catch (error) {
      throw new ProviderError(
        `vertex-ai credentials unavailable (${error instanceof Error ? error.message : String(error)})`,
        true,
      );
    }
    const taskType = purpose === "query" ? "RETRIEVAL_QUERY" : "RETRIEVAL_DOCUMENT";
    const answer = await postJson(
      "vertex-ai",
      url,
      { authorization: `Bearer ${token}` },
      {
        instances: texts.map((content) => ({ content, task_type: taskType })),
        parameters: { outputDimensionality: this.dimension, autoTruncate: true },
      },
      this.options.timeoutMs ?? 30_000,
    );
    const predictions = (answer as { predictions?: unknown }).predictions;
    if (!Array.isArray(predictions) || predictions.length !== texts.length)
      throw malformed("vertex-ai", "predictions do not match instances");
    return predictions.map((prediction: unknown, index: number) => {
      const values = (prediction as { embeddings?: { values?: unknown } }).embeddings?.values;
      if (!Array.isArray(values)) throw malformed("vertex-ai", `predictions[${index}]`);
      return values as number[];
    });
  }
}

/** Access tokens from google-auth-library's application default credentials, loaded on first use. */
export function googleTokenSource(): TokenSource {
  let auth: { getAccessToken(): Promise<string | null | undefined> } | undefined;
  return async () => {
    if (!auth) {
      const { GoogleAuth } = require("google-auth-library") as {
        GoogleAuth: new (options: { scopes: string[] }) => { getAccessToken(): Promise<string | null | undefined> };
      };
      auth = new GoogleAuth({ scopes: ["https://www.googleapis.com/auth/cloud-platform"] });
    }
    const token = await auth.getAccessToken();
    if (!token) throw new Error("no access token");
    return token;
  };
}
