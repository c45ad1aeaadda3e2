-- Named queries of replicas that claim work (workers/claims.py) and of the instance audit
-- (manager/instances.py). Each block: `-- name: <name>`, a description line, then the statement.
-- Schema: migrations/0015_work_claims.sql.

-- name: ensure_feed
-- The feed row of a queue; it starts where the worker's own cursor for the stream got to (a worker that
-- goes from one copy to several does not redo what it did), else before everything.
INSERT INTO work_feeds (queue, cursor)
SELECT %(queue)s, coalesce((SELECT value FROM sync_cursors WHERE worker_name = %(worker)s AND cursor_key = %(stream)s),
                           '{"updated_at": "-infinity", "id": 0}')
ON CONFLICT (queue) DO NOTHING;

-- name: lock_feed
-- The feed's cursor, locked for this transaction; no row back = another replica is feeding now.
SELECT cursor FROM work_feeds WHERE queue = %s FOR UPDATE SKIP LOCKED;

-- name: enqueue
-- Source rows changed after the feed's cursor join the queue; a newer version of a queued item makes it ready again.
INSERT INTO work_queue AS q (queue, item_id, version)
SELECT %(queue)s, x.item_id, x.version
FROM unnest(%(ids)s::bigint[], %(versions)s::timestamptz[]) AS x (item_id, version)
ON CONFLICT (queue, item_id) DO UPDATE SET
  version = excluded.version, state = 'ready', attempts = 0, claimed_by = NULL, due_at = NULL,
  last_error = NULL, enqueued_at = excluded.enqueued_at
WHERE q.version < excluded.version;

-- name: move_feed
-- Where the feed got to (updated_at, id of the last row it queued).
UPDATE work_feeds SET cursor = %s, fed_at = clock_timestamp() WHERE queue = %s;

-- name: claim
-- Up to %(limit)s due items nobody holds (ready, or a claim that ran out), oldest version first,
-- skipping rows other replicas have locked. Each taken item counts an attempt; an item already
-- claimed %(max_attempts)s times is parked as failed instead. Returns only what was claimed.
WITH picked AS (
  SELECT item_id FROM work_queue
  WHERE queue = %(queue)s AND state IN ('ready', 'claimed')
    AND (due_at IS NULL OR due_at <= clock_timestamp())
  ORDER BY version, item_id
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
), taken AS (
  UPDATE work_queue q SET
    state = CASE WHEN q.attempts >= %(max_attempts)s THEN 'failed' ELSE 'claimed' END,
    attempts = least(q.attempts + 1, %(max_attempts)s),
    last_error = CASE WHEN q.attempts >= %(max_attempts)s
                      THEN format('gave up after %%s attempts: %%s', q.attempts,
                                  coalesce(q.last_error, 'the claim ran out (the replica died or hung)'))
                      ELSE q.last_error END,
    claimed_by = %(by)s, claimed_at = clock_timestamp(),
    due_at = clock_timestamp() + make_interval(secs => %(timeout_s)s)
  FROM picked p
  WHERE q.queue = %(queue)s AND q.item_id = p.item_id
  RETURNING q.item_id, q.attempts, q.version, q.state
)
SELECT item_id, attempts, version FROM taken WHERE state = 'claimed' ORDER BY version, item_id;

-- name: complete
-- Inside the transaction that writes the results: marks done the claims this replica still holds
-- (same attempt, not taken over since); returns their ids. Only these may be written.
UPDATE work_queue q SET state = 'done', done_at = clock_timestamp(), completions = q.completions + 1,
  due_at = NULL, last_error = NULL
FROM unnest(%(ids)s::bigint[], %(attempts)s::smallint[]) AS c (item_id, attempts)
WHERE q.queue = %(queue)s AND q.item_id = c.item_id AND q.attempts = c.attempts
  AND q.state = 'claimed' AND q.claimed_by = %(by)s
RETURNING q.item_id;

-- name: release
-- Gives claims back (a failed batch, a rate limit, a stop): ready again after %(delay_s)s, the error kept;
-- an attempt that was not the items' fault (%(charge)s false) is not counted. Parked as failed at the cap.
UPDATE work_queue q SET
  attempts = CASE WHEN %(charge)s THEN q.attempts ELSE greatest(q.attempts - 1, 0) END,
  state = CASE WHEN %(charge)s AND q.attempts >= %(max_attempts)s THEN 'failed' ELSE 'ready' END,
  last_error = coalesce(%(error)s, q.last_error), claimed_by = NULL,
  due_at = clock_timestamp() + make_interval(secs => %(delay_s)s)
FROM unnest(%(ids)s::bigint[], %(attempts)s::smallint[]) AS c (item_id, attempts)
WHERE q.queue = %(queue)s AND q.item_id = c.item_id AND q.attempts = c.attempts
  AND q.state = 'claimed' AND q.claimed_by = %(by)s;

-- name: queue_waiting
-- Items of the given queues not done yet (ready, claimed; failed ones are parked, not waiting).
SELECT count(*) FROM work_queue WHERE queue = ANY(%s) AND state IN ('ready', 'claimed');

-- name: feed_cursors
-- The feed cursors of the given queues.
SELECT queue, cursor FROM work_feeds WHERE queue = ANY(%s);

-- name: instance_started
-- The lease holder started a worker instance (audit; see migrations/0015_work_claims.sql). Idempotent:
-- a retry after a commit whose answer was lost finds the row it already wrote.
INSERT INTO worker_instances (worker_name, epoch, pid, manager_id, host, started_at)
VALUES (%(name)s, %(epoch)s, %(pid)s, %(manager_id)s, %(host)s, to_timestamp(%(at)s))
ON CONFLICT (worker_name, pid, started_at) DO UPDATE SET epoch = EXCLUDED.epoch
RETURNING id;

-- name: instance_ended
-- The lease holder reaped that instance. If another manager took the lease before (recorded in
-- worker_lease_epochs), the instance ended at that takeover, when the fence began refusing it: its reaping
-- is noted in end_reason. A row the next owner already closed (close_abandoned_instances) keeps its end.
UPDATE worker_instances i SET
  ended_at = coalesce(i.ended_at, least(to_timestamp(%(at)s::float8), n.taken_at)),
  end_reason = CASE
    WHEN i.ended_at IS NOT NULL THEN i.end_reason || format('; its process was reaped at %%s (%%s)',
                                                            to_timestamp(%(at)s::float8), %(reason)s::text)
    WHEN n.taken_at < to_timestamp(%(at)s::float8) THEN format('fenced: lease taken over at %%s; its process was reaped at %%s (%%s)',
                                                             n.taken_at, to_timestamp(%(at)s::float8), %(reason)s::text)
    ELSE %(reason)s::text END
FROM (SELECT min(e.acquired_at) AS taken_at FROM worker_instances w
      JOIN worker_lease_epochs e ON e.worker_name = w.worker_name AND e.epoch > w.epoch
      WHERE w.id = %(id)s) n
WHERE i.id = %(id)s;

-- name: close_abandoned_instances
-- Starting a worker under a new epoch: instances of earlier epochs that were still open, or were reaped
-- after this epoch was acquired (their manager died, froze or renewed late), end at the acquisition,
-- since the fence refuses their writes from that moment; the reaping, if reported, stays in end_reason.
UPDATE worker_instances i SET
  ended_at = t.acquired_at,
  end_reason = format('fenced: lease taken over at epoch %%s; %%s', %(epoch)s::bigint,
                      CASE WHEN i.ended_at IS NULL THEN 'its manager had not reported the end of its process'
                           ELSE format('its process was reaped at %%s (%%s)', i.ended_at, i.end_reason) END)
FROM (SELECT coalesce((SELECT e.acquired_at FROM worker_lease_epochs e
                       WHERE e.worker_name = %(name)s AND e.epoch = %(epoch)s::bigint), clock_timestamp()) AS acquired_at) t
WHERE i.worker_name = %(name)s AND i.epoch < %(epoch)s::bigint AND (i.ended_at IS NULL OR i.ended_at > t.acquired_at);

-- name: release_mine
-- A replica starting: the claims its previous process left (it crashed; the lease allows one process per
-- name) are claimable again at once rather than after claim_timeout_s. Their attempts stay counted.
UPDATE work_queue SET state = 'ready', claimed_by = NULL, due_at = NULL
WHERE queue = ANY(%(queues)s) AND state = 'claimed' AND claimed_by = %(by)s;
