-- A guestbook: anyone signs with a message and a rating; the newest entries come first.
-- `entries` has no PRIMARY KEY: each row gets a hidden rowid (1, 2, …), the order of signing.
-- The index lists entries newest first (`at DESC`), so `latest(n)` reads n entries, not the table.
CREATE TABLE entries (
  author  TEXT NOT NULL,
  message TEXT NOT NULL CHECK (length(message) BETWEEN 1 AND 280),
  rating  INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
  at      INTEGER NOT NULL
);
CREATE INDEX entries_newest ON entries (at DESC);
CREATE INDEX entries_by_author ON entries (author, at DESC);
CREATE TABLE hosts (who TEXT PRIMARY KEY);

-- The deployer hosts the book and signs it first.
INSERT INTO hosts VALUES (sender());
INSERT INTO entries VALUES (sender(), 'welcome', 5, block_height());

CREATE FUNCTION sign(text_in TEXT, stars INTEGER) RETURNS INTEGER AS $$
BEGIN
  INSERT INTO entries (author, message, rating, at) VALUES (sender(), text_in, stars, block_height());
  RETURN (SELECT COUNT(*) FROM entries);
END $$;

-- The n newest entries: an ordered scan of entries_newest that stops after n.
CREATE FUNCTION latest(n INTEGER) RETURNS TABLE (author TEXT, message TEXT, at INTEGER) AS $$
  SELECT author, message, at FROM entries ORDER BY at DESC LIMIT n
$$;

-- One author's entries, newest first (a prefix of entries_by_author, in its order).
CREATE FUNCTION entries_of(who_in TEXT) RETURNS TABLE (message TEXT, at INTEGER) AS $$
  SELECT message, at FROM entries WHERE author = who_in ORDER BY at DESC
$$;

-- Everyone who hosts or signed, once each.
CREATE FUNCTION people() RETURNS TABLE (who TEXT) AS $$
  SELECT who FROM hosts UNION SELECT author FROM entries ORDER BY 1
$$;

CREATE FUNCTION average_rating() RETURNS DECIMAL(10, 6) AS $$
  SELECT avg(rating) FROM entries
$$;
