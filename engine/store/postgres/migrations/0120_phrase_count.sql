-- How often a phrase occurs in a chunk: the positions p where words[1] is at p, words[2] at
-- p + 1, and so on (FTS5 counts a phrase's instances so, and bm25 scores a phrase by them).
-- The positions are the ones the engine wrote into the tsvector (engine.market.text): at most
-- 256 per term and none past 16,383, as PostgreSQL keeps them; chunks are far shorter.
CREATE OR REPLACE FUNCTION ipto_phrase_count(tsv tsvector, words text[]) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT count(*)::integer
    FROM unnest(tsv) AS first_word, unnest(first_word.positions) AS p(pos)
    WHERE first_word.lexeme = words[1]
      AND NOT EXISTS (
          SELECT 1 FROM generate_subscripts(words, 1) AS i
          WHERE i > 1 AND NOT EXISTS (
              SELECT 1 FROM unnest(tsv) AS w WHERE w.lexeme = words[i] AND p.pos + i - 1 = ANY(w.positions)))
$$;
