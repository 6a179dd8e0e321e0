/**
 * OpenTelemetry tracing of releases through @temporalio/interceptors-opentelemetry: a span for the release
 * workflow (`RunWorkflow:releaseWorkflow`), one where it schedules each step (`StartActivity:<activity>`) and one
 * per attempt of the step on the worker that runs it (`RunActivity:<activity>`, with `gantry.step`,
 * `gantry.service`, `gantry.version` and `gantry.attempt` attributes), all in one trace per release. The trace
 * context crosses Temporal in headers, so a step run by another worker joins the same trace.
 *
 * Workflow spans are made in the workflow sandbox (its interceptors are bundled with the workflow code) and
 * handed to the worker through a sink; they are never exported while a workflow replays.
 *
 * Spans go to an OTLP/HTTP endpoint (the standard OTEL_EXPORTER_OTLP_ENDPOINT / _TRACES_ENDPOINT /
 * _HEADERS variables; default http://localhost:4318/v1/traces) unless an exporter is given (tests pass an
 * in-memory one).
 */
import { context, isSpanContextValid, propagation, trace, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, SimpleSpanProcessor, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import {
  makeWorkflowExporter,
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
} from '@temporalio/interceptors-opentelemetry';
import type { WorkerOptions } from '@temporalio/worker';

/** The workflow interceptor modules tracing needs in the workflow bundle (`bundleWorkflowCode`'s workflowInterceptorModules). */
export const TRACING_WORKFLOW_MODULES: string[] = [require.resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors')];

/** Present in a workflow bundle built with {@link TRACING_WORKFLOW_MODULES}. */
const TRACING_MODULE_MARK = 'interceptors-opentelemetry/lib/workflow-interceptors';

export function bundleHasTracing(code: string): boolean {
  return code.includes(TRACING_MODULE_MARK);
}

export const DEFAULT_SERVICE_NAME = 'gantry-worker';

export interface TracingOptions {
  /** Where spans go. @default an OTLP/HTTP exporter configured by the OTEL_EXPORTER_OTLP_* variables */
  exporter?: SpanExporter;
  /** Export each span as it ends (tests) rather than in batches. @default false with the OTLP exporter */
  simple?: boolean;
  /** `service.name` of the spans. @default OTEL_SERVICE_NAME, else gantry-worker */
  serviceName?: string;
  env?: NodeJS.ProcessEnv;
}

export interface Tracing {
  readonly tracer: Tracer;
  readonly processor: SpanProcessor;
  readonly resource: Resource;
  /** What the OTLP exporter sends to, for the start-up line; undefined with a given exporter. */
  readonly endpoint: string | undefined;
  /** Export what is pending and stop; the process can start tracing again afterwards. */
  shutdown(): Promise<void>;
}

let active: Tracing | undefined;

function otlpEndpoint(env: NodeJS.ProcessEnv): string {
  if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT ?? 'http://localhost:4318';
  return `${base.replace(/\/+$/, '')}/v1/traces`;
}

/**
 * Start tracing in this process: registers a tracer provider, the AsyncLocalStorage context manager (so a step
 * sees its span: {@link currentTraceId}) and the W3C trace-context propagator. One at a time per process.
 */
export function startTracing(opts: TracingOptions = {}): Tracing {
  if (active) throw new Error('tracing is already started in this process; shut it down first');
  const env = opts.env ?? process.env;
  const resource = Resource.default().merge(new Resource({ [ATTR_SERVICE_NAME]: opts.serviceName ?? env.OTEL_SERVICE_NAME ?? DEFAULT_SERVICE_NAME }));
  const exporter = opts.exporter ?? new OTLPTraceExporter();
  const simple = opts.simple ?? opts.exporter !== undefined;
  const processor = simple ? new SimpleSpanProcessor(exporter) : new BatchSpanProcessor(exporter);
  const provider = new NodeTracerProvider({ resource, spanProcessors: [processor] });
  provider.register();
  const tracing: Tracing = {
    tracer: provider.getTracer('gantry'),
    processor,
    resource,
    endpoint: opts.exporter ? undefined : otlpEndpoint(env),
    async shutdown() {
      if (active !== tracing) return;
      active = undefined;
      try {
        await provider.shutdown();
      } finally {
        trace.disable();
        context.disable();
        propagation.disable();
      }
    },
  };
  active = tracing;
  return tracing;
}

/**
 * The Worker options that trace releases: the activity interceptors (a span per attempt, trace ids on the
 * activity's log lines), the workflow interceptor modules (bundled when the worker bundles the workflow
 * sources), and the sink that exports the workflow's spans.
 */
export function tracingWorkerOptions(t: Tracing): Required<Pick<WorkerOptions, 'interceptors' | 'sinks'>> {
  const options = { tracer: t.tracer };
  return {
    interceptors: {
      workflowModules: TRACING_WORKFLOW_MODULES,
      activity: [(ctx) => ({
        inbound: new OpenTelemetryActivityInboundInterceptor(ctx, options),
        outbound: new OpenTelemetryActivityOutboundInterceptor(ctx),
      })],
    },
    sinks: { exporter: makeWorkflowExporter(t.processor, t.resource) },
  };
}

/**
 * The trace id of the release, inside a step (activity) on a worker that traces: what the announce step writes
 * into the release record. Undefined when tracing is off.
 */
export function currentTraceId(): string | undefined {
  const sc = trace.getActiveSpan()?.spanContext();
  return sc && isSpanContextValid(sc) ? sc.traceId : undefined;
}
