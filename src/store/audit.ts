import type { AuditEvent, AuditQuery } from '../core/store.js';

/** The filters of a query other than `since`, `stream` and `limit`. */
export const matchesAudit = (e: AuditEvent, q: AuditQuery): boolean =>
  (!q.user || e.user === q.user) &&
  (!q.front || e.front === q.front) &&
  (!q.outcome || e.outcome === q.outcome) &&
  (!q.type || e.type === q.type);

/** One stream's events that match `q`, newest first, ending at the first one older than `since`. */
export async function* matching(events: Iterable<AuditEvent> | AsyncIterable<AuditEvent>, q: AuditQuery): AsyncGenerator<AuditEvent> {
  for await (const e of events) {
    if (q.since !== undefined && e.at < q.since) return;
    if (matchesAudit(e, q)) yield e;
  }
}

/**
 * Up to `limit` events from streams that are each newest first, merged newest first by `at`.
 * On a tie the later stream's event comes first: activity (a RADIUS packet's event) is written
 * when a request is answered, after the security event of the decision it carried, and within
 * one millisecond `at` cannot tell them apart. Each stream keeps its own order, so a stream
 * whose clocks disagree a little still reads as it was written.
 */
export async function mergeNewestFirst(streams: AsyncIterator<AuditEvent>[], limit: number): Promise<AuditEvent[]> {
  const heads = await Promise.all(streams.map((s) => s.next()));
  const out: AuditEvent[] = [];
  while (out.length < limit) {
    let best = -1;
    for (let i = 0; i < heads.length; i++) {
      const h = heads[i]!;
      if (!h.done && (best < 0 || h.value.at >= (heads[best]!.value as AuditEvent).at)) best = i;
    }
    if (best < 0) break;
    out.push(heads[best]!.value as AuditEvent);
    if (out.length < limit) heads[best] = await streams[best]!.next();
  }
  await Promise.all(streams.map((s) => s.return?.()));
  return out;
}
