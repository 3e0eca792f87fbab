import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Challenge } from '../core/challenge.js';
import type { ChallengeEngine } from '../core/engine.js';
import type { PushService } from '../core/push-service.js';

/** Prometheus metrics, fed by engine events; served as text at /metrics. */
export class Metrics {
  readonly registry = new Registry();
  private opened = new Counter({
    name: 'countersign_challenges_opened_total',
    help: 'Challenges opened, by front',
    labelNames: ['front'],
    registers: [this.registry],
  });
  private resolved = new Counter({
    name: 'countersign_challenges_resolved_total',
    help: 'Challenges resolved by this instance, by front and outcome',
    labelNames: ['front', 'outcome'],
    registers: [this.registry],
  });
  private latency = new Histogram({
    name: 'countersign_challenge_resolution_seconds',
    help: 'Time from opening a challenge to its outcome',
    labelNames: ['front', 'outcome'],
    buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120, 150, 300],
    registers: [this.registry],
  });
  readonly passkeyFailures = new Counter({
    name: 'countersign_passkey_failures_total',
    help: 'Refused passkey ceremonies, by reason (passkey_counter: a stale counter, a possible clone)',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly firstFactor = new Counter({
    name: 'countersign_first_factor_total',
    help: 'Password checks by front and outcome: accepted, invalid (a wrong password, however many readings), other (the directory or upstream did not answer), throttled (the source must wait), busy (too many checks at once)',
    labelNames: ['front', 'outcome'],
    registers: [this.registry],
  });
  readonly otpFailures = new Counter({
    name: 'countersign_otp_failures_total',
    help: 'Rejected one-time passwords, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });

  private pushSent = new Counter({
    name: 'countersign_push_sent_total',
    help: 'Pushes to a push service, by platform and result (ok, stale, error, refused: not sent, the endpoint is not allowed)',
    labelNames: ['platform', 'result'],
    registers: [this.registry],
  });
  private pushRefused = new Counter({
    name: 'countersign_push_refused_total',
    help: 'Pushes not sent because the endpoint is not allowed, by platform and reason (loopback, private, link-local, metadata, host-not-allowed, …)',
    labelNames: ['platform', 'reason'],
    registers: [this.registry],
  });
  private fraud = new Counter({
    name: 'countersign_push_fraud_reports_total',
    help: 'Pushes rejected as "this wasn\'t me"',
    registers: [this.registry],
  });

  readonly radiusRequests = new Counter({
    name: 'countersign_radius_requests_total',
    help: 'Access-Requests answered, by client and outcome (accept, reject, challenge)',
    labelNames: ['client', 'outcome'],
    registers: [this.registry],
  });
  readonly radiusDropped = new Counter({
    name: 'countersign_radius_dropped_total',
    help: 'RADIUS packets dropped without an answer, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  /**
   * The same drops again, for packets from a known client, by client: which NAS is being
   * dropped (e.g. one that sends no Message-Authenticator). A separate series so that
   * countersign_radius_dropped_total keeps one series per reason (sum() stays a packet count).
   */
  readonly radiusClientDropped = new Counter({
    name: 'countersign_radius_client_dropped_total',
    help: 'RADIUS packets from a known client dropped without an answer, by client and reason',
    labelNames: ['client', 'reason'],
    registers: [this.registry],
  });
  readonly radiusDuplicates = new Counter({
    name: 'countersign_radius_duplicates_total',
    help: 'Retransmitted Access- and Accounting-Requests, by what the first copy had reached (accounting: accounting-done, accounting-processing)',
    labelNames: ['state'],
    registers: [this.registry],
  });
  readonly radiusAccounting = new Counter({
    name: 'countersign_radius_accounting_total',
    help: 'Accounting-Requests recorded and answered, by client and Acct-Status-Type (start, interim-update, stop, accounting-on, accounting-off)',
    labelNames: ['client', 'status'],
    registers: [this.registry],
  });
  readonly radiusStatusServer = new Counter({
    name: 'countersign_radius_status_server_total',
    help: 'Status-Server requests (RFC 5997) answered, by client and port (auth, accounting)',
    labelNames: ['client', 'port'],
    registers: [this.registry],
  });
  /** RadSec (radius.radsec): TLS connections by what became of them before any RADIUS was read. */
  readonly radsecConnections = new Counter({
    name: 'countersign_radsec_connections_total',
    help:
      'RadSec connections, by outcome (accepted, unknown_address, too_many_handshakes, handshake_evicted, connections_full, handshake_timeout, handshake_failed, untrusted_certificate, unknown_certificate, too_many_connections) and client (accepted and too_many_connections only)',
    labelNames: ['outcome', 'client'],
    registers: [this.registry],
  });
  readonly radsecHandshakes = new Gauge({
    name: 'countersign_radsec_handshakes_in_progress',
    help: 'RadSec connections let through the address check and still in their TLS handshake (no certificate shown yet)',
    registers: [this.registry],
  });
  readonly radsecOpen = new Gauge({
    name: 'countersign_radsec_open_connections',
    help: 'RadSec connections open now, by client',
    labelNames: ['client'],
    registers: [this.registry],
  });
  readonly radsecClosed = new Counter({
    name: 'countersign_radsec_closed_total',
    help: 'RadSec connections of known clients closed, by reason (peer, idle, malformed_length, client_removed, write_backlog, shutdown) and client',
    labelNames: ['reason', 'client'],
    registers: [this.registry],
  });

  /** First factors checked by an upstream RADIUS server (radius.upstreams), by outcome. */
  readonly radiusUpstreamRequests = new Counter({
    name: 'countersign_radius_upstream_requests_total',
    help: 'Access-Requests forwarded to an upstream RADIUS server, by upstream and outcome (accept, reject, challenge, timeout, bad_response, busy, error)',
    labelNames: ['upstream', 'outcome'],
    registers: [this.registry],
  });
  readonly radiusUpstreamLatency = new Histogram({
    name: 'countersign_radius_upstream_seconds',
    help: 'Time from forwarding an Access-Request to an upstream RADIUS server to its verified answer (or giving up), by upstream',
    labelNames: ['upstream'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  constructor(engine: ChallengeEngine, push: PushService) {
    push.on('sent', (platform, r) => {
      this.pushSent.inc({ platform, result: r.ok ? 'ok' : r.stale ? 'stale' : r.refused ? 'refused' : 'error' });
      if (!r.ok && r.refused) this.pushRefused.inc({ platform, reason: r.refused });
    });
    push.on('fraud', () => this.fraud.inc());
    collectDefaultMetrics({ register: this.registry, prefix: 'countersign_' });
    new Gauge({
      name: 'countersign_waiting_requests',
      help: 'Requests on this instance waiting for a challenge outcome',
      registers: [this.registry],
      collect() {
        this.set(engine.waiting);
      },
    });
    engine.on('opened', (c) => this.opened.inc({ front: c.origin.front }));
    engine.on('resolved', (c: Challenge) => {
      const labels = { front: c.origin.front, outcome: c.state };
      this.resolved.inc(labels);
      this.latency.observe(labels, ((c.resolvedAt ?? c.createdAt) - c.createdAt) / 1000);
    });
  }
}
