/**
 * The Firestore RPCs a piece of work sends, seen through the client's request funnels (`request` for unary calls
 * such as a commit, `requestStream` for streamed ones such as a getAll or a query), wrapped for its duration.
 */
import type { Firestore } from "firebase-admin/firestore";

type Rpc = (method: string, ...rest: unknown[]) => unknown;

export interface RpcWatch {
  /** Where each RPC's method is pushed as it is sent (to look while the work runs); a new array otherwise. */
  sent?: string[];
  /**
   * Run once, just before the first commit outside a transaction (a spend's guarded batch) is sent: another
   * change lands between the work's reads and that commit.
   */
  beforeGuardedCommit?: () => Promise<void>;
}

/**
 * Runs `work`, recording each RPC's method, with " (transaction)" for one that belongs to a transaction; `held`
 * says whether `beforeGuardedCommit` ran.
 */
export async function watchRpcs<T>(
  firestore: Firestore,
  work: () => Promise<T>,
  watch: RpcWatch = {},
): Promise<{ result: T; sent: string[]; held: boolean }> {
  const client = firestore as unknown as { request: Rpc; requestStream: Rpc };
  const { request, requestStream } = client;
  const sent = watch.sent ?? [];
  let held = false;
  const label = (method: string, body: unknown) => {
    const fields = body as { transaction?: unknown; newTransaction?: unknown; options?: unknown } | undefined;
    return fields?.transaction || fields?.newTransaction || fields?.options ? `${method} (transaction)` : method;
  };
  client.request = async (method, ...rest) => {
    const name = label(method, rest[0]);
    sent.push(name);
    if (name === "commit" && watch.beforeGuardedCommit && !held) {
      held = true;
      await watch.beforeGuardedCommit();
    }
    return request.call(firestore, method, ...rest);
  };
  client.requestStream = (method, ...rest) => {
    sent.push(label(method, rest[0]));
    return requestStream.call(firestore, method, ...rest);
  };
  try {
    return { result: await work(), sent, held };
  } finally {
    delete (client as Partial<typeof client>).request;
    delete (client as Partial<typeof client>).requestStream;
  }
}
