/** Pub/Sub client, created on first use (it loads gRPC, so never at import). */
import type { PubSub } from "@google-cloud/pubsub";

let client: PubSub | undefined;

export function pubsub(): PubSub {
  if (!client) {
    const { PubSub: Client } = require("@google-cloud/pubsub") as typeof import("@google-cloud/pubsub");
    client = new Client();
  }
  return client;
}
