/**
 * A local HTTP server speaking the OpenAI embeddings API (POST /v1/embeddings),
 * the one kind of fake the suite allows: it stands in for a remote paid API.
 *
 * Vectors come from the suite's deterministic local embedder, so search
 * results are meaningful. Markers in an input text script failures, so a test
 * can make the provider misbehave for its own texts only:
 *   [[reject]]        400 invalid_request_error, every time
 *   [[down]]          503, every time
 *   [[flaky:TOKEN]]   429 (Retry-After: 0) the first time TOKEN is seen, 200 after
 * GET /_stats answers how many requests each marker has seen, so tests can
 * check the failure really happened.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { embedText } from "../../functions/src/embeddings/local";

export interface EmbeddingsApi {
  url: string;
  server: Server;
  close(): Promise<void>;
}

export async function startEmbeddingsApi(options: {
  dimension: number;
  apiKey?: string;
  port?: number;
}): Promise<EmbeddingsApi> {
  const seen = new Map<string, number>();
  const count = (marker: string) => {
    const hits = (seen.get(marker) ?? 0) + 1;
    seen.set(marker, hits);
    return hits;
  };
  const server = createServer((request, response) => {
    const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      response.writeHead(status, { "content-type": "application/json", ...headers });
      response.end(JSON.stringify(body));
    };
    if (request.method === "GET" && request.url === "/_stats") return reply(200, Object.fromEntries(seen));
    if (request.method !== "POST" || !/\/embeddings$/.test(request.url ?? ""))
      return reply(404, { error: { message: "not found" } });
    if (options.apiKey && request.headers.authorization !== `Bearer ${options.apiKey}`) {
      return reply(401, {
        error: { message: "Incorrect API key provided.", type: "invalid_request_error", code: "invalid_api_key" },
      });
    }
    readBody(request)
      .then((raw) => {
        const body = JSON.parse(raw) as { model?: unknown; input?: unknown };
        const inputs = typeof body.input === "string" ? [body.input] : body.input;
        if (
          typeof body.model !== "string" ||
          !Array.isArray(inputs) ||
          inputs.some((input) => typeof input !== "string")
        ) {
          return reply(400, {
            error: { message: "'model' and 'input' (string or string[]) are required", type: "invalid_request_error" },
          });
        }
        const texts = inputs as string[];
        const all = texts.join("\n");
        if (all.includes("[[reject]]")) {
          count("reject");
          return reply(400, { error: { message: "This input was rejected.", type: "invalid_request_error" } });
        }
        if (all.includes("[[down]]")) {
          count("down");
          return reply(503, { error: { message: "The server is overloaded.", type: "server_error" } });
        }
        for (const match of all.matchAll(/\[\[flaky:([A-Za-z0-9_-]+)\]\]/g)) {
          if (count(`flaky:${match[1]}`) === 1) {
            return reply(
              429,
              { error: { message: "Rate limit reached.", type: "rate_limit_error" } },
              { "retry-after": "0" },
            );
          }
        }
        count("ok");
        return reply(200, {
          object: "list",
          model: body.model,
          // Reversed on purpose: clients must order by `index`, as the API allows any order.
          data: texts
            .map((text, index) => ({ object: "embedding", index, embedding: embedText(text, options.dimension) }))
            .reverse(),
          usage: { prompt_tokens: 0, total_tokens: 0 },
        });
      })
      .catch(() => reply(400, { error: { message: "invalid JSON body", type: "invalid_request_error" } }));
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    server,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}
