-- The audit trail keeps no secrets: a setting's old and new values are stored masked the way
-- workers/redact.py masks them (by key words and URL structure), so reading config_audit, with
-- any tool, shows that a key changed and by whom but never the key itself. The settings table
-- still holds the real value (workers need it).

CREATE OR REPLACE FUNCTION is_secret_key(k text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
  WITH w AS (
    SELECT array_remove(regexp_split_to_array(
             lower(regexp_replace(k, '([a-z0-9])([A-Z])', '\1_\2', 'g')), '[^a-z0-9]+'), '') AS words
  )
  SELECT cardinality(words) > 0
     AND NOT (words[cardinality(words)] = ANY (ARRAY['env','var','file','path','url','uri','name','type','header','kind','id']))
     AND (words && ARRAY['password','passwd','pwd','pass','passphrase','secret','token','apikey','credential',
                         'credentials','auth','authorization','cookie','dsn','privatekey','mnemonic','bearer']
          OR EXISTS (SELECT 1 FROM generate_series(1, cardinality(words) - 1) AS i
                     WHERE words[i] || '_' || words[i + 1] = ANY (ARRAY['api_key','private_key','access_key',
                                                                       'secret_key','client_secret','session_key'])))
  FROM w
$$;

-- URL passwords, key-looking path segments, every query value and secret key=value pairs.
CREATE OR REPLACE FUNCTION mask_secret_text(t text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(t,
    '(://[^/?#@:\s]*:)\S*@(?=[A-Za-z0-9.\-]+(:[0-9]*)?([/?#]|$|\s)|\[)', '\1***@', 'g'),
    '/(?=[A-Za-z0-9_~.\-]*[0-9])(?=[A-Za-z0-9_~.\-]*[A-Za-z])[A-Za-z0-9_~.\-]{16,}', '/***', 'g'),
    '([?&][^=&#\s]+=)[^&#\s]+', '\1***', 'g'),
    '(\m[A-Za-z_]*(password|passwd|pwd|secret|token|api_?key)[A-Za-z_]*\s*[=:]\s*)(''[^'']*''|"[^"]*"|[^\s&,;]+)',
    '\1***', 'gi')
$$;

CREATE OR REPLACE FUNCTION mask_all_json(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE jsonb_typeof(v)
    WHEN 'object' THEN coalesce((SELECT jsonb_object_agg(e.key, mask_all_json(e.value)) FROM jsonb_each(v) e), '{}')
    WHEN 'array' THEN coalesce((SELECT jsonb_agg(mask_all_json(e.value) ORDER BY e.n)
                                FROM jsonb_array_elements(v) WITH ORDINALITY AS e(value, n)), '[]')
    WHEN 'null' THEN v
    ELSE CASE WHEN v = '""'::jsonb THEN v ELSE '"***"'::jsonb END
  END
$$;

CREATE OR REPLACE FUNCTION mask_secret_json(k text, v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN v IS NULL THEN NULL
    WHEN k IS NOT NULL AND is_secret_key(k) THEN mask_all_json(v)
    WHEN jsonb_typeof(v) = 'object' THEN
      coalesce((SELECT jsonb_object_agg(e.key, mask_secret_json(e.key, e.value)) FROM jsonb_each(v) e), '{}')
    WHEN jsonb_typeof(v) = 'array' THEN
      coalesce((SELECT jsonb_agg(mask_secret_json(NULL, e.value) ORDER BY e.n)
                FROM jsonb_array_elements(v) WITH ORDINALITY AS e(value, n)), '[]')
    WHEN jsonb_typeof(v) = 'string' THEN to_jsonb(mask_secret_text(v #>> '{}'))
    ELSE v
  END
$$;

CREATE OR REPLACE FUNCTION audit_and_notify_config() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  kind text := CASE TG_TABLE_NAME WHEN 'feature_flags' THEN 'flag' ELSE 'setting' END;
  k text;
  old_v jsonb;
  new_v jsonb;
BEGIN
  IF TG_TABLE_NAME = 'feature_flags' THEN
    k := coalesce(NEW.flag_name, OLD.flag_name);
    IF TG_OP <> 'INSERT' THEN old_v := to_jsonb(OLD.enabled); END IF;
    IF TG_OP <> 'DELETE' THEN new_v := to_jsonb(NEW.enabled); END IF;
  ELSE
    k := coalesce(NEW.key, OLD.key);
    IF TG_OP <> 'INSERT' THEN old_v := OLD.value; END IF;
    IF TG_OP <> 'DELETE' THEN new_v := NEW.value; END IF;
  END IF;
  IF TG_OP = 'UPDATE' AND old_v IS NOT DISTINCT FROM new_v THEN
    RETURN NULL;  -- a no-op write (e.g. only description) is neither audited nor announced
  END IF;
  IF kind = 'setting' THEN
    old_v := mask_secret_json(k, old_v);
    new_v := mask_secret_json(k, new_v);
  END IF;
  INSERT INTO config_audit (kind, key, operation, old_value, new_value, actor)
  VALUES (kind, k, TG_OP, old_v, new_v,
          CASE WHEN TG_OP = 'DELETE' THEN manager_actor() ELSE NEW.updated_by END);
  PERFORM pg_notify('config_changed', json_build_object('kind', kind, 'key', k)::text);
  RETURN NULL;
END $$;

UPDATE config_audit
   SET old_value = mask_secret_json(key, old_value), new_value = mask_secret_json(key, new_value)
 WHERE kind = 'setting';
