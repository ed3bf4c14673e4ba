/** Reading the `gs://` objects a source may point at, for the consumer. */
import { adminApp } from "../adapters/firebase";
import { PermanentFailure } from "./errors";
import { MAX_STORED_TEXT } from "./schemas";

/** Reads `gs://bucket/path` through firebase-admin/storage (loaded on first use). A missing object is permanent. */
export async function readStorageText(uri: string): Promise<string> {
  const match = /^gs:\/\/([^/]+)\/(.+)$/.exec(uri);
  if (!match) throw new PermanentFailure(`not a gs:// URI: ${uri.slice(0, 100)}`);
  const { getStorage } = require("firebase-admin/storage") as typeof import("firebase-admin/storage");
  const file = getStorage(adminApp()).bucket(match[1]).file(match[2]);
  try {
    const [metadata] = await file.getMetadata();
    if (Number(metadata.size ?? 0) > MAX_STORED_TEXT)
      throw new PermanentFailure(`object is larger than ${MAX_STORED_TEXT} bytes`);
    const [contents] = await file.download();
    return contents.toString("utf8");
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 404 || code === 403) throw new PermanentFailure(`cannot read ${uri}: HTTP ${code}`);
    throw error;
  }
}
