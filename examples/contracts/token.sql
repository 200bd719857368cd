-- A fungible token: the deployer receives the whole supply.
CREATE TABLE balances (
  owner  TEXT PRIMARY KEY,
  amount INTEGER NOT NULL CHECK (amount >= 0)
);
CREATE INDEX balances_by_amount ON balances (amount);

-- Every transfer says so (docs/dapps.md): wallets and indexers follow the token by its events.
CREATE EVENT transfer (sender TEXT, recipient TEXT, amount INTEGER);

INSERT INTO balances VALUES (sender(), 1000000);

CREATE FUNCTION transfer(recipient TEXT, n INTEGER) RETURNS VOID AS $$
BEGIN
  IF n <= 0 THEN RAISE EXCEPTION 'amount must be positive, not %', n; END IF;
  UPDATE balances SET amount = amount - n WHERE owner = sender();
  IF NOT EXISTS (SELECT 1 FROM balances WHERE owner = sender()) THEN
    RAISE EXCEPTION 'no balance';
  END IF;
  INSERT INTO balances VALUES (recipient, n)
    ON CONFLICT (owner) DO UPDATE SET amount = balances.amount + excluded.amount;
  EMIT transfer(sender(), recipient, n);
END $$;

CREATE FUNCTION balance_of(who TEXT) RETURNS INTEGER AS $$
  SELECT COALESCE((SELECT amount FROM balances WHERE owner = who), 0)
$$;

CREATE FUNCTION holders() RETURNS TABLE (owner TEXT, amount INTEGER) AS $$
  SELECT owner, amount FROM balances WHERE amount > 0 ORDER BY amount DESC, owner
$$;

-- Resolves a three-way merge of a branch (docs/branches.md): an owner whose balance changed on
-- both sides gets both sides' changes (the base, ours and theirs rows spread out as columns).
CREATE FUNCTION on_merge_balances(b_owner TEXT, b_amount INTEGER, o_owner TEXT, o_amount INTEGER,
                                  t_owner TEXT, t_amount INTEGER)
  RETURNS TABLE (owner TEXT, amount INTEGER) AS $$
  SELECT COALESCE(o_owner, t_owner, b_owner),
         COALESCE(o_amount, 0) + COALESCE(t_amount, 0) - COALESCE(b_amount, 0)
$$;
