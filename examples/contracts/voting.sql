-- Proposals and ballots: admins open proposals that stay open for a number of blocks; every
-- account votes once per proposal (voting again changes its ballot) until the proposal closes.
CREATE TABLE admins (who TEXT PRIMARY KEY);
CREATE TABLE proposals (
  id        INTEGER PRIMARY KEY,
  title     TEXT NOT NULL CHECK (length(title) > 0),
  closes_at INTEGER NOT NULL,
  creator   TEXT NOT NULL
);
CREATE TABLE ballots (
  proposal INTEGER NOT NULL,
  voter    TEXT NOT NULL,
  choice   BOOLEAN NOT NULL,
  PRIMARY KEY (proposal, voter)
);

-- The deployer is the first admin.
INSERT INTO admins VALUES (sender());

CREATE FUNCTION add_admin(who_to_add TEXT) RETURNS VOID AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM admins WHERE who = sender()) THEN
    RAISE EXCEPTION 'only an admin may add admins';
  END IF;
  INSERT INTO admins VALUES (who_to_add) ON CONFLICT (who) DO NOTHING;
END $$;

CREATE FUNCTION propose(title_text TEXT, blocks INTEGER) RETURNS INTEGER AS $$
DECLARE
  next_id INTEGER;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM admins WHERE who = sender()) THEN
    RAISE EXCEPTION 'only an admin may propose';
  END IF;
  IF blocks <= 0 THEN RAISE EXCEPTION 'a proposal stays open at least one block'; END IF;
  SELECT COALESCE(MAX(id), 0) + 1 INTO next_id FROM proposals;
  INSERT INTO proposals VALUES (next_id, title_text, block_height() + blocks, sender());
  RETURN next_id;
END $$;

CREATE FUNCTION vote(p INTEGER, in_favour BOOLEAN) RETURNS VOID AS $$
DECLARE
  closes INTEGER;
BEGIN
  SELECT closes_at INTO closes FROM proposals WHERE id = p;
  IF closes IS NULL THEN RAISE EXCEPTION 'no proposal %', p; END IF;
  IF block_height() > closes THEN
    RAISE EXCEPTION 'proposal % closed at height %', p, closes;
  END IF;
  INSERT INTO ballots VALUES (p, sender(), in_favour)
    ON CONFLICT (proposal, voter) DO UPDATE SET choice = excluded.choice;
END $$;

CREATE FUNCTION tally() RETURNS TABLE (id INTEGER, title TEXT, yes_votes INTEGER, no_votes INTEGER, open BOOLEAN) AS $$
  SELECT p.id, p.title,
         COUNT(CASE WHEN b.choice THEN 1 END) AS yes_votes,
         COUNT(CASE WHEN NOT b.choice THEN 1 END) AS no_votes,
         block_height() <= p.closes_at AS open
  FROM proposals p LEFT JOIN ballots b ON b.proposal = p.id
  GROUP BY p.id, p.title, p.closes_at
  ORDER BY p.id
$$;
