-- Schema version 4: the block list set at run time (`pbadmin block ADDR|CIDR [--for D]
-- [--listener L]`), kept across restarts. `network` is the canonical text of the address or
-- network ("192.0.2.7", "192.0.2.0/24", "2001:db8::/32"); `listener` is '' for every listener.
-- Times are unix seconds (UTC); `expires` NULL = until unblocked. Expired rows are deleted by
-- the balancer; readers skip them meanwhile.
CREATE TABLE block (
  network  TEXT    NOT NULL,
  listener TEXT    NOT NULL DEFAULT '',
  created  INTEGER NOT NULL,
  expires  INTEGER,
  PRIMARY KEY (network, listener)
) WITHOUT ROWID;
