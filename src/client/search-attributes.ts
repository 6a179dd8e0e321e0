/**
 * Registering gantry's search attributes (GantryService, GantryVersion, GantryStage, GantryOutcome, GantryEnvironment) in a
 * namespace through the OperatorService. Idempotent: attributes already there are left alone.
 */
import type { Connection } from '@temporalio/client';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes';
import { SEARCH_ATTRIBUTES } from '../shared/release';
import { isUnavailable } from './release';
import { ServerUnreachableError } from '../connection';

export interface RegistrationResult {
  namespace: string;
  added: string[];
  alreadyThere: string[];
}

export async function ensureSearchAttributes(connection: Connection, namespace: string, address: string): Promise<RegistrationResult> {
  try {
    const existing = await connection.operatorService.listSearchAttributes({ namespace });
    const known = new Set(Object.keys(existing.customAttributes ?? {}));
    const missing = SEARCH_ATTRIBUTES.filter((k) => !known.has(k.name));
    if (missing.length > 0) {
      const searchAttributes = Object.fromEntries(missing.map((k) => [k.name, encodeSearchAttributeIndexedValueType(k.type)!]));
      await connection.operatorService.addSearchAttributes({ namespace, searchAttributes });
    }
    return {
      namespace,
      added: missing.map((k) => k.name),
      alreadyThere: SEARCH_ATTRIBUTES.filter((k) => known.has(k.name)).map((k) => k.name),
    };
  } catch (err) {
    if (isUnavailable(err)) throw new ServerUnreachableError(address, err);
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(
      `Could not register gantry's search attributes in namespace ${namespace} on ${address}: ${msg}. ` +
        'Check that the namespace exists and that your credentials have operator rights; a cluster admin can run ' +
        '`temporal operator search-attribute create --name GantryService --type Keyword` (and GantryVersion, GantryStage, GantryOutcome, GantryEnvironment).',
    );
  }
}
