// Prometheus metrics (prom-client), one registry per server so several servers in one process (tests)
// do not share counters. Names follow Prometheus' conventions (base units, _total, _seconds).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface ServerMetrics {
  registry: Registry;
  requests: Counter<'route' | 'method' | 'status'>;
  latency: Histogram<'route' | 'method'>;
  batchSize: Histogram<'modality'>;
  queueDepth: Gauge<'modality'>;
  modelRun: Histogram<'modality'>;
  rejected: Counter<'modality'>;
  rejectedRequests: Counter<'reason'>;
  budgetRejected: Counter;
}

export function createMetrics(): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'altclip_' });
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: 'altclip_http_requests_total',
      help: 'HTTP requests answered, by route (the route pattern), method and status code',
      labelNames: ['route', 'method', 'status'],
      registers,
    }),
    latency: new Histogram({
      name: 'altclip_http_request_duration_seconds',
      help: 'Time from request received to response sent',
      labelNames: ['route', 'method'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    batchSize: new Histogram({
      name: 'altclip_batch_size',
      help: 'Inputs per model batch (after dynamic batching merged concurrent requests)',
      labelNames: ['modality'],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers,
    }),
    queueDepth: new Gauge({
      name: 'altclip_queue_depth',
      help: 'Inputs waiting for a model batch',
      labelNames: ['modality'],
      registers,
    }),
    modelRun: new Histogram({
      name: 'altclip_model_run_seconds',
      help: 'Wall time of one model batch (preprocessing + model run)',
      labelNames: ['modality'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    rejected: new Counter({
      name: 'altclip_queue_rejected_total',
      help: 'Requests refused with 429 because the queue was full, by the modality whose queue was full',
      labelNames: ['modality'],
      registers,
    }),
    rejectedRequests: new Counter({
      name: 'altclip_http_rejected_total',
      help: 'Requests and connections refused before a route ran or by a limit, by reason (host, auth, cors, '
        + 'queue_full, pixel_budget, body_too_large, uri_too_long, bad_request, timeout, connection_limit, shutting_down)',
      labelNames: ['reason'],
      registers,
    }),
    budgetRejected: new Counter({
      name: 'altclip_pixel_budget_rejected_total',
      help: 'Requests refused with 413 because their images alone declare more pixels than --max-pixels-in-flight',
      registers,
    }),
  };
}
