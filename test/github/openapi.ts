/* eslint-disable @typescript-eslint/no-explicit-any -- objects here are JSON shaped by GitHub's description, checked by ajv, not by TypeScript */
/**
 * GitHub's published REST contract (npm @octokit/openapi: GitHub's official OpenAPI description of
 * api.github.com), turned into request and response validators for the stand-in. Each request is matched to
 * its operation by method and path template; its path and query parameters, its body, and the stand-in's
 * answer are checked with ajv against the operation's schemas. Anything off-contract becomes a violation.
 */
import { readFileSync } from 'node:fs';
import Ajv, { type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';

type Json = Record<string, any>;

const SPEC_FILE = require.resolve('@octokit/openapi/generated/api.github.com.json');
const SPEC_ID = 'https://api.github.com/openapi.json';

export interface Operation {
  method: string;
  template: string;
  operationId: string;
  op: Json;
  params: Json[];
  regex: RegExp;
  names: string[];
  /** Literal characters in the template: more means more specific. */
  specificity: number;
}

export interface Violation {
  kind: 'request' | 'response' | 'unknown-operation';
  operation: string;
  where: string;
  message: string;
}

let loaded: { spec: Json; ajv: Ajv; coercing: Ajv; ops: Operation[] } | undefined;

/** Replace local refs with refs into the registered spec, so fragments of it compile on their own. */
function anchor<T>(schema: T): T {
  return JSON.parse(JSON.stringify(schema), (k, v) => (k === '$ref' && typeof v === 'string' && v.startsWith('#/') ? `${SPEC_ID}${v}` : v)) as T;
}

/**
 * OpenAPI 3.0's `nullable: true` as JSON Schema: `type: [t, "null"]`, or `anyOf: [schema, {type: "null"}]` where
 * GitHub puts it beside `allOf`/`$ref` without a type (its intent there is "this field may be null").
 */
function denullable(node: any): any {
  if (Array.isArray(node)) return node.map(denullable);
  if (typeof node !== 'object' || node === null) return node;
  const out: Json = {};
  for (const [k, v] of Object.entries(node)) out[k] = denullable(v);
  if (typeof out.nullable !== 'boolean') return out;
  const nullable = out.nullable;
  delete out.nullable;
  if (!nullable) return out;
  if (typeof out.type === 'string') {
    out.type = [out.type, 'null'];
    if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
    return out;
  }
  return { anyOf: [out, { type: 'null' }] };
}

function makeAjv(coerce: boolean, spec: Json): Ajv {
  const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false, coerceTypes: coerce, discriminator: false });
  addFormats(ajv);
  // Formats GitHub's description uses beyond JSON Schema's.
  ajv.addFormat('repo.nwo', /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/);
  ajv.addFormat('timestamp', true);
  ajv.addSchema({ $id: SPEC_ID, components: spec.components }, SPEC_ID);
  return ajv;
}

function load() {
  if (loaded) return loaded;
  const spec = denullable(JSON.parse(readFileSync(SPEC_FILE, 'utf8'))) as Json;
  const ops: Operation[] = [];
  for (const [template, item] of Object.entries<Json>(spec.paths)) {
    for (const method of ['get', 'post', 'put', 'patch', 'delete', 'head']) {
      const op = item[method] as Json | undefined;
      if (!op) continue;
      const names: string[] = [];
      const pattern = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{([^}]+)\}/g, (_m, name: string) => {
        names.push(name);
        // `path` (repository file paths) spans slashes; every other parameter is one segment.
        return name === 'path' ? '(.+)' : '([^/]+)';
      });
      const params = [...(item.parameters ?? []), ...(op.parameters ?? [])].map((p: Json) => resolve(spec, p));
      ops.push({
        method: method.toUpperCase(),
        template,
        operationId: op.operationId,
        op,
        params,
        regex: new RegExp(`^${pattern}$`),
        names,
        specificity: template.replace(/\{[^}]+\}/g, '').length,
      });
    }
  }
  ops.sort((a, b) => b.specificity - a.specificity);
  loaded = { spec, ajv: makeAjv(false, spec), coercing: makeAjv(true, spec), ops };
  return loaded;
}

function resolve(spec: Json, node: Json): Json {
  let cur = node;
  while (cur && typeof cur.$ref === 'string') {
    cur = cur.$ref
      .slice(2)
      .split('/')
      .map((s: string) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
      .reduce((o: Json, k: string) => o[k], spec);
  }
  return cur;
}

function formatErrors(v: ValidateFunction): string {
  return (v.errors ?? [])
    .slice(0, 8)
    .map((e) => `${e.instancePath || '(root)'} ${e.message}${e.params && Object.keys(e.params).length ? ` ${JSON.stringify(e.params)}` : ''}`)
    .join('; ');
}

const compiled = new Map<string, ValidateFunction>();
function validator(key: string, make: () => ValidateFunction): ValidateFunction {
  let v = compiled.get(key);
  if (!v) {
    v = make();
    compiled.set(key, v);
  }
  return v;
}

/** The contract, loaded once per process (the description is about 13 MB). */
export class GithubContract {
  constructor() {
    load();
  }

  get version(): string {
    return load().spec.info.version as string;
  }

  /** The operation a request is for, with its path parameters; undefined when GitHub has no such endpoint. */
  match(method: string, pathname: string): { operation: Operation; pathParams: Record<string, string> } | undefined {
    for (const operation of load().ops) {
      if (operation.method !== method) continue;
      const m = operation.regex.exec(pathname);
      if (!m) continue;
      const pathParams: Record<string, string> = {};
      operation.names.forEach((n, i) => (pathParams[n] = decodeURIComponent(m[i + 1]!)));
      return { operation, pathParams };
    }
    return undefined;
  }

  operationById(operationId: string): Operation {
    const op = load().ops.find((o) => o.operationId === operationId);
    if (!op) throw new Error(`GitHub's description has no operation ${operationId}`);
    return op;
  }

  /** Violations of the request: parameters (path and query) and body. Returns coerced parameters too. */
  validateRequest(
    operation: Operation,
    pathParams: Record<string, string>,
    query: URLSearchParams,
    contentType: string | undefined,
    rawBody: string,
  ): { violations: string[]; path: Record<string, any>; query: Record<string, any>; body: any } {
    const { coercing, ajv } = load();
    const violations: string[] = [];
    const out = { path: { ...pathParams } as Record<string, any>, query: {} as Record<string, any>, body: undefined as any };
    for (const where of ['path', 'query'] as const) {
      const defs = operation.params.filter((p) => p.in === where);
      const v = validator(`${operation.operationId}:${where}`, () =>
        coercing.compile(
          anchor({
            type: 'object',
            properties: Object.fromEntries(defs.map((p) => [p.name, p.schema ?? {}])),
            required: defs.filter((p) => p.required).map((p) => p.name),
            additionalProperties: false,
          }),
        ),
      );
      const values: Record<string, any> = where === 'path' ? out.path : out.query;
      if (where === 'query') {
        for (const key of new Set(query.keys())) {
          const all = query.getAll(key);
          values[key] = all.length > 1 ? all : all[0];
        }
      }
      if (!v(values)) violations.push(`${where} parameters: ${formatErrors(v)}`);
    }
    const rb = operation.op.requestBody ? resolve(load().spec, operation.op.requestBody) : undefined;
    if (rawBody.length > 0 && !rb) violations.push(`a body was sent, but ${operation.operationId} takes none`);
    if (rb) {
      if (rawBody.length === 0) {
        if (rb.required) violations.push('the required request body is missing');
      } else if (!/^application\/json\b/.test(contentType ?? '')) {
        violations.push(`request body content-type is ${contentType ?? 'missing'}, not application/json`);
      } else {
        try {
          out.body = JSON.parse(rawBody);
        } catch {
          violations.push('request body is not JSON');
        }
        const schema = rb.content?.['application/json']?.schema;
        if (out.body !== undefined && schema) {
          const v = validator(`${operation.operationId}:body`, () => ajv.compile(anchor(schema)));
          if (!v(out.body)) violations.push(`request body: ${formatErrors(v)}`);
        }
      }
    }
    return { violations, ...out };
  }

  /**
   * Violations of a response the stand-in is about to send. Statuses the operation does not document but GitHub
   * answers on any endpoint (401 bad credentials, 403/429 rate limits, 404 missing or invisible to the token,
   * 5xx) must look like GitHub's basic-error; any other undocumented status is a violation.
   */
  validateResponse(operation: Operation, status: number, body: unknown, headers: Record<string, string>): string[] {
    const { spec, ajv } = load();
    const declared = operation.op.responses?.[String(status)];
    if (!declared) {
      if ([401, 403, 404, 429].includes(status) || status >= 500) {
        const v = validator('basic-error', () => ajv.compile({ $ref: `${SPEC_ID}#/components/schemas/basic-error` }));
        return v(body) ? [] : [`${status} body is not a GitHub basic-error: ${formatErrors(v)}`];
      }
      return [`${operation.operationId} does not document status ${status}`];
    }
    const res = resolve(spec, declared);
    const violations: string[] = [];
    for (const [name, h] of Object.entries<Json>(res.headers ?? {})) {
      const header = resolve(spec, h);
      if (header.required && headers[name.toLowerCase()] === undefined) violations.push(`response header ${name} is missing`);
    }
    if (status === 302 && headers.location === undefined) violations.push('302 without a Location header');
    const schema = res.content?.['application/json']?.schema;
    if (!schema) {
      if (body !== undefined && body !== '') violations.push(`status ${status} of ${operation.operationId} has no body in the contract`);
      return violations;
    }
    const v = validator(`${operation.operationId}:${status}`, () => ajv.compile(anchor(schema)));
    if (!v(body)) violations.push(`response ${status} body: ${formatErrors(v)}`);
    return violations;
  }

  /** The documented example of a response (a template for stand-in objects), by operation and status. */
  example(operationId: string, status = 200, name?: string): any {
    const { spec } = load();
    const op = this.operationById(operationId);
    const res = resolve(spec, op.op.responses[String(status)]);
    const examples = res.content?.['application/json']?.examples as Json | undefined;
    if (!examples) throw new Error(`no example for ${operationId} ${status}`);
    const ex = resolve(spec, examples[name ?? Object.keys(examples)[0]!]);
    return structuredClone(ex.value);
  }

  /** Validate an arbitrary value against a component schema (used to check the stand-in's own fixtures). */
  check(component: string, value: unknown): string[] {
    const { ajv } = load();
    const v = validator(`component:${component}`, () => ajv.compile({ $ref: `${SPEC_ID}#/components/schemas/${component}` }));
    return v(value) ? [] : [formatErrors(v)];
  }
}
