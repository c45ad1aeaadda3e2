-- Throughput of the ai and search workers (issue 15).
--
-- 1. Summaries by content, like ai_embedding_cache for vectors: the ai worker now has several chat
--    calls in flight at once, so when one of them is refused (429) the others may already be paid
--    for; their answers are kept here at once, outside the batch, and reused when the batch runs
--    again. Filled from ai_posts where that table exists (pgvector installed).
CREATE TABLE IF NOT EXISTS ai_summary_cache (
  chat_model   text NOT NULL,
  content_hash bytea NOT NULL,                 -- sha256 of the post text sent
  summary      text,
  sentiment    text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chat_model, content_hash)
);

DO $backfill$
BEGIN
  IF to_regclass('ai_posts') IS NOT NULL THEN
    INSERT INTO ai_summary_cache (chat_model, content_hash, summary, sentiment)
    SELECT DISTINCT ON (chat_model, content_hash) chat_model, content_hash, summary, sentiment
    FROM ai_posts
    WHERE chat_model IS NOT NULL AND content_hash IS NOT NULL AND summary IS NOT NULL
    ORDER BY chat_model, content_hash, processed_at DESC
    ON CONFLICT DO NOTHING;
  END IF;
END
$backfill$;
