-- One function teaches the typo-correction lexicon from any documents (posts or profiles), so the
-- learning statement exists once. ndoc counts documents per lexeme; new lexemes only are inserted
-- (an upsert would burn an identity value per existing lexeme); their trigrams go to
-- search_lexeme_trigrams unless pg_trgm indexes the lexicon.
CREATE OR REPLACE FUNCTION search_learn_lexemes(docs tsvector[]) RETURNS void
LANGUAGE sql VOLATILE AS $$
  WITH counts AS (
    SELECT w.lexeme, count(*)::int AS ndoc
    FROM unnest(docs) AS d (tsv), unnest(d.tsv) AS w
    WHERE w.lexeme ~ '^[a-z][a-z0-9]{2,31}$'
    GROUP BY w.lexeme
  ), counted AS (
    UPDATE search_lexemes l SET ndoc = l.ndoc + c.ndoc FROM counts c WHERE l.lexeme = c.lexeme
  ), added AS (
    INSERT INTO search_lexemes (lexeme, ndoc, ntrigrams)
    SELECT c.lexeme, c.ndoc, cardinality(search_trigrams(c.lexeme)) FROM counts c
    WHERE NOT EXISTS (SELECT 1 FROM search_lexemes l WHERE l.lexeme = c.lexeme)
    ON CONFLICT (lexeme) DO NOTHING
    RETURNING id, lexeme
  )
  INSERT INTO search_lexeme_trigrams (trigram, lexeme_id)
  SELECT unnest(search_trigrams(lexeme)), id FROM added WHERE NOT search_uses_pg_trgm();
$$;
