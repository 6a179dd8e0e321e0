/**
 * Reading and writing the recorded histories in test/histories (Temporal's JSON history format), shared by
 * scripts/record-histories.ts and the replay test.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJSON, historyToJSON, type History } from '@temporalio/common/lib/proto-utils';

export const HISTORIES_DIR = path.resolve(__dirname, '..', 'histories');
export const MANIFEST = path.join(HISTORIES_DIR, 'index.json');

export interface RecordedHistory {
  scenario: string;
  /** File name inside test/histories. */
  file: string;
  /** Histories carry no workflow id; the workflow reads its own, so replay is given the recorded one. */
  workflowId: string;
  description: string;
  /** How the execution ended (Temporal's status), checked when it was recorded. */
  status: string;
  recordedWith: string;
}

/**
 * The SDK converts with protobufjs's protojson, which only accepts types made by the same protobufjs copy as
 * @temporalio/proto's. When npm nests separate copies (another package pins protobufjs 7 at the top level),
 * the conversion fails with "type must be a Type".
 */
function explainProtobufCopies(err: unknown): never {
  if (err instanceof TypeError && err.message.includes('type must be a Type')) {
    throw new Error('Converting a Temporal history to or from JSON failed because npm installed separate copies of ' +
      'protobufjs under @temporalio/common and @temporalio/proto. Keep protobufjs@^8 as a top-level devDependency ' +
      '(package.json) and run `npm install`; `npm ls protobufjs` should show one 8.x copy, deduped.', { cause: err });
  }
  throw err;
}

export function historyAsJson(history: History): string {
  try {
    return historyToJSON(history);
  } catch (err) {
    return explainProtobufCopies(err);
  }
}

export function readManifest(): RecordedHistory[] {
  return JSON.parse(readFileSync(MANIFEST, 'utf8')) as RecordedHistory[];
}

/** The JSON history files present in test/histories (the manifest excluded). */
export function historyFiles(): string[] {
  return readdirSync(HISTORIES_DIR).filter((f) => f.endsWith('.json') && f !== 'index.json').sort();
}

export function loadHistory(file: string): History {
  const json: unknown = JSON.parse(readFileSync(path.join(HISTORIES_DIR, file), 'utf8'));
  try {
    return historyFromJSON(json);
  } catch (err) {
    return explainProtobufCopies(err);
  }
}
