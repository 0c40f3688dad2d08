-- Schema version 1: client affinity and persisted node state.
-- Times: first_seen/last_seen are unix seconds (UTC); unavailable_since is unix milliseconds.

-- One row per (cluster, client key). `client` is the key's canonical text ("192.0.2.7",
-- "192.0.2.0/24", "2001:db8:1:2::/64"). WITHOUT ROWID: the table is its primary key.
CREATE TABLE affinity (
  cluster     TEXT    NOT NULL,
  client      TEXT    NOT NULL,
  node        TEXT    NOT NULL,
  first_seen  INTEGER NOT NULL,
  last_seen   INTEGER NOT NULL,
  connections INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (cluster, client)
) WITHOUT ROWID;

-- `pbadmin affinity list --node N` and moving the clients of a removed node.
CREATE INDEX affinity_by_node ON affinity (cluster, node);

-- The store deletes expired rows every few seconds: this index makes that a range scan per
-- cluster instead of a scan of the whole table.
CREATE INDEX affinity_by_last_seen ON affinity (cluster, last_seen);

-- Node state set at run time (admin_state: available|draining|offline, NULL = none set, the
-- config's initial state applies) and the availability state of the last run (unavailable_since
-- 0 = up), so a restart neither forgets an operator's `offline` nor hammers a node known down.
CREATE TABLE node_state (
  cluster           TEXT    NOT NULL,
  node              TEXT    NOT NULL,
  admin_state       TEXT,
  unavailable_since INTEGER NOT NULL DEFAULT 0,
  failures          INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (cluster, node)
) WITHOUT ROWID;
