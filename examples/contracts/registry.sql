-- A name registry: first come, first served. An owner points a name at a target (an address,
-- a URL, anything), hands the name to someone else, or releases it.
CREATE TABLE names (
  name          TEXT PRIMARY KEY CHECK (length(name) BETWEEN 3 AND 64),
  owner         TEXT NOT NULL,
  target        TEXT,
  registered_at INTEGER NOT NULL
);
CREATE INDEX names_by_owner ON names (owner);

CREATE FUNCTION register(n TEXT, t TEXT) RETURNS VOID AS $$
BEGIN
  IF lower(n) <> n THEN RAISE EXCEPTION 'names are lower case: %', n; END IF;
  IF EXISTS (SELECT 1 FROM names WHERE name = n) THEN
    RAISE EXCEPTION 'name % is taken', n;
  END IF;
  INSERT INTO names (name, owner, target, registered_at) VALUES (n, sender(), t, block_height());
END $$;

-- Fails unless the caller owns the name; returns the owner it checked.
CREATE FUNCTION owned(n TEXT) RETURNS TEXT AS $$
DECLARE
  current_owner TEXT;
BEGIN
  SELECT owner INTO current_owner FROM names WHERE name = n;
  IF current_owner IS NULL THEN
    RAISE EXCEPTION 'no name %', n;
  ELSIF current_owner <> sender() THEN
    RAISE EXCEPTION 'name % belongs to %', n, current_owner;
  END IF;
  RETURN current_owner;
END $$;

CREATE FUNCTION set_target(n TEXT, t TEXT) RETURNS VOID AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM names WHERE name = n AND owner = sender()) THEN
    RAISE EXCEPTION 'you do not own %', n;
  END IF;
  UPDATE names SET target = t WHERE name = n;
END $$;

-- Hands a name to another owner (its target stays until the new owner changes it).
CREATE FUNCTION give(n TEXT, new_owner TEXT) RETURNS VOID AS $$
BEGIN
  IF length(new_owner) = 0 THEN RAISE EXCEPTION 'give % to whom?', n; END IF;
  UPDATE names SET owner = new_owner WHERE name = n AND owner = sender();
  IF NOT EXISTS (SELECT 1 FROM names WHERE name = n AND owner = new_owner) THEN
    RAISE EXCEPTION 'you do not own %', n;
  END IF;
END $$;

CREATE FUNCTION release(n TEXT) RETURNS VOID AS $$
BEGIN
  DELETE FROM names WHERE name = n AND owner = sender();
END $$;

CREATE FUNCTION resolve(n TEXT) RETURNS TEXT AS $$
  SELECT target FROM names WHERE name = n
$$;

CREATE FUNCTION names_of(who TEXT) RETURNS TABLE (name TEXT, target TEXT) AS $$
  SELECT name, target FROM names WHERE owner = who ORDER BY name
$$;
